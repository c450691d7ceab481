"""The OpenAPI 3.1 document of the inspection API, built from the endpoint table (so it
lists every endpoint the app serves, with its parameters and request body)."""
from __future__ import annotations

from .endpoints import ENDPOINTS

ERROR = {"description": "bad input (the message names the problem and the fix)",
         "content": {"application/json": {"schema": {
             "type": "object", "properties": {"error": {"type": "string"}}}}}}


def openapi_document() -> dict:
    """The OpenAPI document (JSON-able dict)."""
    from .. import __version__

    paths: dict[str, dict] = {}
    for endpoint in ENDPOINTS:
        operation: dict = {
            "summary": endpoint.summary,
            "operationId": (endpoint.method.lower() + endpoint.path.replace("/", "_")
                            .replace("{", "").replace("}", "")),
            "parameters": [{
                "name": p.name, "in": "path" if "{" + p.name + "}" in endpoint.path
                else "query", "required": p.required or "{" + p.name + "}" in endpoint.path,
                "description": p.description,
                "schema": {"type": "integer" if p.kind == "int" else "string",
                           **({"enum": list(p.enum)} if p.enum else {}),
                           **({"default": p.default} if p.default is not None else {})}}
                for p in endpoint.params],
            "responses": {"200": {"description": "OK", "content": {
                "application/json": {"schema": endpoint.response}}},
                "400": ERROR, "404": ERROR}}
        if endpoint.body is not None:
            media = "multipart/form-data" if endpoint.path == "/api/upload" else \
                "application/json"
            schema = ({"type": "object", "properties": {"file": endpoint.body}}
                      if endpoint.path == "/api/upload" else endpoint.body)
            operation["requestBody"] = {"required": True,
                                        "content": {media: {"schema": schema}}}
            if endpoint.path == "/api/upload":
                operation["responses"].update({"413": ERROR, "415": ERROR})
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    paths["/openapi.json"] = {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": {"description": "OK"}}}}
    paths["/"] = {"get": {"summary": "The page (static/index.html)", "operationId": "page",
                          "responses": {"200": {"description": "HTML"}}}}
    paths["/static/{path}"] = {"get": {
        "summary": "A front-end file of the package's static/ folder (no traversal)",
        "operationId": "static",
        "parameters": [{"name": "path", "in": "path", "required": True,
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "the file"}, "404": ERROR}}}
    return {"openapi": "3.1.0",
            "info": {"title": "crosslens inspection API", "version": __version__,
                     "description": "The JSON API of `crosslens inspect` (notes/"
                                    "inspect_api.md)."},
            "paths": paths}
