"""The Starlette app of the inspection page: the JSON API of :mod:`.endpoints`, the
OpenAPI document, and the front end's files from ``static/``.

Security: the API reads only the model, data and store it was started with; static files
are served from the package's ``static/`` folder only (``..``, hidden names, backslashes
and anything resolving outside are refused); uploads are limited to 5 MB and decoded by
Pillow as images only; every error is a JSON answer (4xx for bad input).
"""
from __future__ import annotations

import json
import math
import mimetypes
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

from ..core.errors import CrosslensError, InputError
from .endpoints import ENDPOINTS, MAX_JSON, Endpoint, parse, parse_body
from .errors import MediaTypeError, NotFoundError, PayloadTooLargeError, status_of
from .instances import MAX_UPLOAD

STATIC = Path(__file__).parent / "static"
#: Room for a multipart form's headers around a file of the largest size.
FORM_OVERHEAD = 64 * 2 ** 10


def json_response(value: Any, status: int = 200) -> Any:
    """A JSON response; NaN / infinity become ``null`` (browsers reject them)."""
    from starlette.responses import Response
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        text = json.dumps(_finite(value), allow_nan=False, separators=(",", ":"))
    return Response(text, status_code=status, media_type="application/json")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def error_response(status: int, message: str) -> Any:
    return json_response({"error": message}, status)


def create_app(inspector: Any, static_dir: str | Path | None = None) -> Any:
    """The ASGI app serving ``inspector`` (a :class:`~.session.Inspector`).

    Parameters
    ----------
    inspector
        The data layer.
    static_dir
        The front end's folder (default: the package's ``inspector/static``).

    Returns
    -------
    starlette.applications.Starlette
    """
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.responses import FileResponse, HTMLResponse
    from starlette.routing import Route

    from .openapi import openapi_document

    root = Path(static_dir or STATIC).resolve()

    def api_route(endpoint: Endpoint) -> Route:
        async def handle(request):
            query = dict(request.query_params)
            if len(query) != len(request.query_params.multi_items()):
                raise InputError("a query parameter is given twice")
            query.update(request.path_params)
            kwargs = parse(endpoint, query)  # also refuses unknown parameters of a POST
            if endpoint.method == "POST":
                body = parse_body(await _read(request, MAX_JSON))
                return json_response(await run_in_threadpool(endpoint.handler, inspector,
                                                             body))
            return json_response(await run_in_threadpool(endpoint.handler, inspector,
                                                         **kwargs))
        return Route(endpoint.path, handle, methods=[endpoint.method])

    async def upload(request):
        data = await _read(request, MAX_UPLOAD + FORM_OVERHEAD)
        image, name = _image_bytes(request.headers.get("content-type", ""), data)
        index = await run_in_threadpool(inspector.add_image, image, name, "upload")
        return json_response({"index": index, "name": name})

    async def index(request):
        page = root / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse("<!doctype html><meta charset='utf-8'><title>crosslens</title>"
                            "<p>The crosslens inspection API is running; its front end "
                            "(static/index.html) is not installed. See "
                            "<a href='/openapi.json'>/openapi.json</a>.")

    async def static(request):
        return FileResponse(_static_file(root, request.path_params["path"]),
                            media_type=mimetypes.guess_type(request.path_params["path"])[0]
                            or "application/octet-stream")

    async def openapi(request):
        return json_response(openapi_document())

    async def crosslens_error(request, error):
        return error_response(status_of(error), str(error))

    async def http_error(request, error):
        message = {404: f"no such route {request.url.path!r}; see /openapi.json",
                   405: f"{request.method} is not allowed on {request.url.path!r}"}.get(
            error.status_code, str(error.detail))
        return error_response(error.status_code, message)

    async def internal_error(request, error):
        return error_response(500, f"internal error: {type(error).__name__}: {error}")

    routes = [api_route(e) for e in ENDPOINTS if e.path != "/api/upload"]
    routes += [Route("/api/upload", upload, methods=["POST"]),
               Route("/openapi.json", openapi, methods=["GET"]),
               Route("/", index, methods=["GET"]),
               Route("/static/{path:path}", static, methods=["GET"])]
    app = Starlette(routes=routes, exception_handlers={
        CrosslensError: crosslens_error, HTTPException: http_error,
        Exception: internal_error})
    app.state.inspector = inspector
    return app


async def _read(request: Any, limit: int) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InputError("bad Content-Length header")
        if int(declared) > limit:
            raise PayloadTooLargeError(f"the request has {declared} bytes; the limit is "
                                       f"{limit} ({limit / 2 ** 20:.0f} MB)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the request is over the limit of {limit} bytes "
                                       f"({limit / 2 ** 20:.0f} MB)")
        chunks.append(chunk)
    return b"".join(chunks)


def _image_bytes(content_type: str, data: bytes) -> tuple[bytes, str]:
    """The image file of an upload: the first file of a multipart form, or the body of
    an ``image/*`` request."""
    kind = content_type.split(";")[0].strip().lower()
    if kind.startswith("image/"):
        return data, "upload"
    if kind != "multipart/form-data":
        raise MediaTypeError(f"send the image as multipart/form-data or as an image/* body; "
                             f"got {kind or 'no content type'!r}")
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + data)
    if not message.is_multipart():
        raise MediaTypeError("the multipart form could not be read")
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if part.get_filename() is not None and payload:
            return payload, Path(part.get_filename()).name[:80] or "upload"
    raise InputError("the multipart form holds no file; send the image as a file field")


def _static_file(root: Path, path: str) -> Path:
    """``root/path`` if it is a file inside ``root``; a 404 for anything else (``..``,
    hidden names, absolute paths, backslashes, NUL)."""
    parts = path.split("/")
    if not path or "\\" in path or "\x00" in path or any(
            p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFoundError(f"no static file {path[:80]!r}")
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFoundError(f"no static file {path[:80]!r}")
    return target
