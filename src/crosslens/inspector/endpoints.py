"""The JSON API as a table: each endpoint's method, path, parameters, body and handler.

One table serves the web app (:mod:`.app`), the OpenAPI document (:mod:`.openapi`) and
the static export (:mod:`.export`), so the three cannot disagree. A handler takes the
:class:`~.session.Inspector` and the parsed parameters and returns a JSON-able value;
every parameter is checked here (an unknown one, or a bad value, is a 400 naming it).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..core.errors import InputError

MAX_JSON = 1 * 2 ** 20


@dataclass(frozen=True)
class Param:
    """One query parameter: ``kind`` is ``"int"`` or ``"str"``."""

    name: str
    kind: str = "str"
    required: bool = False
    default: Any = None
    description: str = ""
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    summary: str
    handler: Callable[..., Any]
    params: tuple[Param, ...] = ()
    body: dict | None = None  # JSON schema of the request body
    response: dict = field(default_factory=lambda: {"type": "object"})


def parse(endpoint: Endpoint, query: Mapping[str, str]) -> dict[str, Any]:
    """Checked keyword arguments of ``endpoint``'s handler from the query string."""
    known = {p.name: p for p in endpoint.params}
    for name in query:
        if name not in known:
            valid = ", ".join(known) or "none"
            raise InputError(f"{endpoint.path} has no parameter {name!r}; its parameters "
                             f"are: {valid}")
    values: dict[str, Any] = {}
    for param in endpoint.params:
        text = query.get(param.name)
        if text is None or text == "":
            if param.required:
                raise InputError(f"{endpoint.path} needs the parameter {param.name!r} "
                                 f"({param.description})")
            values[param.name] = param.default
            continue
        if len(text) > 10_000:
            raise InputError(f"parameter {param.name!r} is too long")
        if param.kind == "int":
            try:
                values[param.name] = int(text)
            except ValueError:
                raise InputError(f"parameter {param.name!r} must be an integer; got "
                                 f"{text[:40]!r}") from None
        else:
            if param.enum is not None and text not in param.enum:
                raise InputError(f"parameter {param.name!r} must be one of "
                                 f"{', '.join(param.enum)}; got {text[:40]!r}")
            values[param.name] = text
    return values


def parse_body(raw: bytes) -> dict:
    if len(raw) > MAX_JSON:
        raise InputError(f"the request body is over {MAX_JSON} bytes")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise InputError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise InputError("the request body must be a JSON object")
    return body


def canonical_key(method: str, path: str, params: Mapping[str, Any] | None = None) -> str:
    """The export's key of a request: ``"GET /api/x?a=1&b=2"`` (parameters sorted by name,
    each url-encoded as ``encodeURIComponent`` does; empty ones left out)."""
    items = sorted((k, str(v)) for k, v in (params or {}).items()
                   if v is not None and str(v) != "")
    query = "&".join(f"{quote(k, safe=_SAFE)}={quote(v, safe=_SAFE)}" for k, v in items)
    return f"{method} {path}" + (f"?{query}" if query else "")


_SAFE = "-_.!~*'()"  # what encodeURIComponent leaves as is


# --- handlers ----------------------------------------------------------------------------------

def _target(text: Any) -> Any:
    if isinstance(text, str) and text.lstrip("-").isdigit():
        return int(text)
    return text


def _options(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise InputError("options must be a JSON object, e.g. {\"steps\": 32}") from None
    if not isinstance(value, dict):
        raise InputError("options must be a JSON object, e.g. {\"steps\": 32}")
    return value


def _subset_ids(ins, text: str | None) -> list[str] | None:
    if text is None:
        return None
    ids = [part for part in text.split(",") if part]
    for id_ in ids:
        ins.subsets.get(id_)
    return ids


def post_subset(ins, body: dict) -> dict:
    unknown = set(body) - {"name", "indices"}
    if unknown:
        raise InputError(f"a subset has a name and indices; unknown field {sorted(unknown)[0]!r}")
    return ins.subsets.create(body.get("name"), body.get("indices"))


def post_job(ins, body: dict) -> dict:
    kind = body.get("kind")
    fields = {"attribution": {"kind", "index", "method", "options", "target"},
              "featurevis": {"kind", "layer", "channel", "direction", "steps"}}
    if kind not in fields:
        raise InputError(f"a job's kind must be 'attribution' or 'featurevis'; got {kind!r}")
    unknown = set(body) - fields[kind]
    if unknown:
        raise InputError(f"a {kind} job has no field {sorted(unknown)[0]!r}; its fields are "
                         f"{', '.join(sorted(fields[kind]))}")
    if kind == "attribution":
        job = ins.submit_attribution(body.get("index"), body.get("method"),
                                     body.get("options"), _target(body.get("target",
                                                                           "predicted")))
    else:
        job = ins.submit_featurevis(body.get("layer"), body.get("channel"),
                                    body.get("direction"), body.get("steps"))
    state = job.describe()
    return {"job": job.id, "status": state["status"], "result": state["result"]}


def get_job(ins, job: str) -> dict:
    return ins.jobs.get(job).describe()


def get_attribution(ins, index: int, method: str, target: str, options: str | None) -> dict:
    request, key = ins.attribution_request(index, method, _options(options), _target(target))
    return ins.attribution(request, key)


LAYER = Param("layer", required=True, description="a layer name of session.layers")
INDEX = Param("index", "int", required=True, description="an instance index")
K = Param("k", "int", default=4, description="number of groups / channels")
TARGET = Param("target", default="predicted", description="'predicted', 'label' or a class")

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/api/session", "Model, data set, layers, methods, store, settings",
             lambda ins: ins.session()),
    Endpoint("GET", "/api/graph", "The computation graph: nodes and edges",
             lambda ins: ins.graph()),
    Endpoint("GET", "/api/subsets", "Instance subsets (all, per label / prediction, "
             "correct, wrong, user-made)", lambda ins: ins.subsets.list(),
             response={"type": "array", "items": {"type": "object"}}),
    Endpoint("POST", "/api/subsets", "Make a subset of data-set instances", post_subset,
             body={"type": "object", "required": ["name", "indices"], "properties": {
                 "name": {"type": "string"},
                 "indices": {"type": "array", "items": {"type": "integer"}}}}),
    Endpoint("GET", "/api/instances", "One page of a subset's instances with thumbnails",
             lambda ins, subset, offset, limit: ins.instance_list(subset, offset, limit),
             (Param("subset", default="all", description="a subset id"),
              Param("offset", "int", default=0, description="first item"),
              Param("limit", "int", default=100, description="items (1..1000)"))),
    Endpoint("GET", "/api/instance", "An instance: image, label, top-5 prediction",
             lambda ins, index: ins.instance(index), (INDEX,)),
    Endpoint("GET", "/api/matrix", "Mean pooled activation per subset and channel",
             lambda ins, layer, sort, a, b, subsets: ins.matrix(
                 layer, sort, a, b, _subset_ids(ins, subsets)),
             (LAYER, Param("sort", default="variance", enum=("variance", "difference", "index"),
                           description="column order"),
              Param("a", description="first subset of sort=difference"),
              Param("b", description="second subset of sort=difference"),
              Param("subsets", description="comma-separated subset ids (rows)"))),
    Endpoint("GET", "/api/projection", "2-D projection of the pooled activations",
             lambda ins, layer, method: ins.projection(layer, method),
             (LAYER, Param("method", default="pca", enum=("pca", "umap"),
                           description="pca or umap"))),
    Endpoint("POST", "/api/jobs", "Start an attribution or feature-visualization job",
             post_job, body={"type": "object", "required": ["kind"], "properties": {
                 "kind": {"type": "string", "enum": ["attribution", "featurevis"]},
                 "index": {"type": "integer"}, "method": {"type": "string"},
                 "options": {"type": "object"}, "target": {},
                 "layer": {"type": "string"}, "channel": {"type": "integer"},
                 "direction": {"type": "array", "items": {"type": "number"}},
                 "steps": {"type": "integer"}}}),
    Endpoint("GET", "/api/jobs/{job}", "A job's status, progress and result", get_job,
             (Param("job", required=True, description="the job id (path)"),)),
    Endpoint("GET", "/api/attribution", "An attribution, computed now or from the cache "
             "(the static export holds these)", get_attribution,
             (INDEX, Param("method", required=True, description="a method name"), TARGET,
              Param("options", description="the method's options as a JSON object"))),
    Endpoint("GET", "/api/channel", "A channel's map on an instance, its top-9 instances "
             "and its feature visualization",
             lambda ins, layer, channel, index: ins.channel(layer, channel, index),
             (LAYER, Param("channel", "int", required=True, description="channel index"),
              INDEX)),
    Endpoint("GET", "/api/dictionary", "The top channels at a position (semantic "
             "dictionary)", lambda ins, layer, index, y, x, k: ins.dictionary(
                 layer, index, y, x, k),
             (LAYER, INDEX, Param("y", "int", required=True, description="row in the map"),
              Param("x", "int", required=True, description="column in the map"),
              Param("k", "int", default=6, description="channels"))),
    Endpoint("GET", "/api/groups", "Neuron groups by NMF with their attribution to a class",
             lambda ins, layer, index, k, target: ins.groups(layer, index, k, _target(target)),
             (LAYER, INDEX, K, TARGET)),
    Endpoint("GET", "/api/group_flow", "Attribution from one layer's groups to a later one's",
             lambda ins, layer, to, index, k: ins.group_flow(layer, to, index, k),
             (LAYER, Param("to", required=True, description="the later layer"), INDEX, K)),
    Endpoint("GET", "/api/frames", "The frames of --frames (Live view)",
             lambda ins: {"frames": ins.instances.frames()}),
    Endpoint("POST", "/api/upload", "Add an image (multipart or a raw image body, at most "
             "5 MB) as a new instance", lambda ins: None,
             body={"type": "string", "format": "binary"}),
)
