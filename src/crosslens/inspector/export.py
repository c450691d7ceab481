"""The static export: one self-contained HTML file (no server, no network) holding the
front end and precomputed API responses for a bounded set of views.

The front end's ``static/index.html`` is copied with every ``<script type="module"
src=...>`` and ``<link rel="stylesheet" href=...>`` replaced by the file's text, and
``window.CROSSLENS_EXPORT = {key: response}`` (and ``window.CROSSLENS_EXPORT_STATE``, the
layer, instance and channel shown first) inserted before the first script (keys as
:func:`~.endpoints.canonical_key`; notes/inspect_api.md, "Front-end files"). Each
response is stored under the key with every parameter given (defaults filled in) and
under the key with only the parameters that differ from their defaults; both keys point
to one object in the file.

What is exported: the session (``export: true``), graph and subsets; per layer the matrix
(variance order, and the difference of the default pair of subsets) and the PCA
projection; the first page of every subset's instances; the detail of a few instances
with their attributions for a few methods; for image data, for the default layer and a
few other spatial layers, the channel views of their most varying channels and their
neuron groups on the first of those instances (text, tables and series have no spatial
maps on their inputs: the page says so instead).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .app import STATIC
from .endpoints import ENDPOINTS, canonical_key, parse

_SCRIPT = re.compile(r"<script\b[^>]*\bsrc=[\"']([^\"']+)[\"'][^>]*>\s*</script>", re.I)
_STYLE = re.compile(r"<link\b[^>]*\brel=[\"']stylesheet[\"'][^>]*>", re.I)
_HREF = re.compile(r"\bhref=[\"']([^\"']+)[\"']", re.I)
_IMPORT = re.compile(r"^\s*import\s*[\w{*'\"]|\bimport\s*\(", re.M)


class _Collector:
    """Calls the endpoints' handlers as the app does and records their responses."""

    def __init__(self, inspector: Any) -> None:
        self.inspector = inspector
        self.values: list[Any] = []
        self.keys: dict[str, int] = {}
        self.state: dict = {}  # window.CROSSLENS_EXPORT_STATE: what the page shows first
        self._table = {(e.method, e.path): e for e in ENDPOINTS}

    def get(self, path: str, **params: Any) -> Any:
        endpoint = self._table[("GET", path)]
        query = {k: str(v) for k, v in params.items() if v is not None}
        value = endpoint.handler(self.inspector, **parse(endpoint, query))
        self.add(path, endpoint, query, value)
        return value

    def add(self, path: str, endpoint: Any, query: dict, value: Any) -> None:
        defaults = {p.name: p.default for p in endpoint.params}
        full = {**defaults, **query}
        minimal = {k: v for k, v in query.items() if str(v) != str(defaults[k])}
        self.values.append(value)
        for params in (full, minimal):
            self.keys[canonical_key("GET", path, params)] = len(self.values) - 1


def export_data(inspector: Any, *, instances: int = 4, methods: tuple[str, ...] = (
        "saliency", "integrated_gradients"), channels: int = 4, page: int = 100,
                channel_instances: int = 1, channel_layers: int = 6,
                groups: int = 3) -> _Collector:
    """Precompute the exported responses (see the module docstring for the set).

    Parameters
    ----------
    inspector
        The :class:`~.session.Inspector`.
    instances
        Instances whose detail and attributions are exported (the first of each of the
        first true classes, else the first instances).
    methods
        Attribution methods exported for those instances (their default options).
    channels
        Channel views per spatial layer (its most varying channels).
    page
        Instances per subset list page (one page per subset).
    channel_layers
        Spatial layers with channel views and groups: the default layer and others
        evenly spread over the model.
    channel_instances
        Instances (of the exported ones) the channel views and neuron groups are computed
        on.
    groups
        Neuron groups (NMF components) per spatial layer, for the predicted class.
    """
    c = _Collector(inspector)
    chosen = _chosen(inspector, instances)
    session = dict(c.get("/api/session"), export=True)
    c.values[-1] = session
    c.get("/api/graph")
    subsets = c.get("/api/subsets")
    a, b = inspector.default_pair()
    for layer in inspector.layers:
        c.get("/api/matrix", layer=layer, sort="variance")
        c.get("/api/matrix", layer=layer, sort="difference", a=a, b=b)
        c.get("/api/projection", layer=layer, method="pca")
    for subset in subsets:
        c.get("/api/instances", subset=subset["id"], offset=0, limit=page)
    for index in chosen:
        c.get("/api/instance", index=index)
        for method in methods:
            c.get("/api/attribution", index=index, method=method, target="predicted")
    spatial = _channel_layers(inspector, channel_layers) \
        if inspector.modality.kind == "image" else []
    for layer in spatial:
        order = inspector.matrix(layer, "variance", subsets=["all"])["order"][:channels]
        for index in chosen[:channel_instances]:
            for channel in order:
                c.get("/api/channel", layer=layer, channel=channel, index=index)
            try:
                c.get("/api/groups", layer=layer, index=index, k=groups, target="predicted")
            except InputError:  # fewer positions or channels than groups
                pass
    layer = inspector.default_layer
    c.state = {"layer": layer, "index": chosen[0] if chosen else 0,
               "channel": inspector.matrix(layer, "variance", subsets=["all"])["order"][0]}
    return c


def _channel_layers(inspector: Any, count: int) -> list[str]:
    """The default layer and up to ``count - 1`` other spatial layers, evenly spread."""
    spatial = [l for l in inspector.layers if len(inspector.shapes[l]) == 3]
    others = [l for l in spatial if l != inspector.default_layer]
    picks = [others[int(i)] for i in np.linspace(0, len(others) - 1, min(count - 1,
                                                                         len(others)))] \
        if others and count > 1 else []
    return [inspector.default_layer] + list(dict.fromkeys(picks))


def _chosen(inspector: Any, count: int) -> list[int]:
    """The first instance of each true class (else the first instances), ``count`` at
    most."""
    labels = inspector.instances.labels
    firsts = [int((labels == c).argmax()) for c in sorted(set(labels.tolist())) if c >= 0]
    picks = list(dict.fromkeys(firsts + list(range(min(count, inspector.instances.size)))))
    return picks[:count]


def build_html(collector: _Collector, static_dir: str | Path | None = None) -> str:
    """The self-contained page: the front end inlined, the responses embedded."""
    root = Path(static_dir or STATIC)
    index = root / "index.html"
    if not index.is_file():
        raise InputError(f"the front end is not installed ({index} is missing); the export "
                         "needs it")
    html = index.read_text(encoding="utf-8")

    def read(ref: str) -> str:
        name = ref.split("?")[0].lstrip("/")
        name = name[len("static/"):] if name.startswith("static/") else name  # as served
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()) or not path.is_file():
            raise InputError(f"index.html refers to {ref!r}, which is not a file of {root}")
        return path.read_text(encoding="utf-8")

    def script(match: re.Match) -> str:
        text = read(match.group(1))
        if _IMPORT.search(text):
            raise InputError(f"{match.group(1)} imports other modules; the export inlines "
                             "one bundle without imports (notes/inspect_api.md, Front-end "
                             "files)")
        module = " type=\"module\"" if "module" in match.group(0) else ""
        return f"<script{module}>{_safe(text)}</script>"

    def style(match: re.Match) -> str:
        href = _HREF.search(match.group(0))
        return f"<style>{_safe(read(href.group(1)))}</style>" if href else ""

    html = _SCRIPT.sub(script, html)
    html = _STYLE.sub(style, html)
    values = json.dumps(collector.values, allow_nan=False, separators=(",", ":"))
    keys = ",".join(f"{json.dumps(k)}:R[{i}]" for k, i in collector.keys.items())
    data = (f"<script>(function(){{const R={_safe(values)};"
            f"window.CROSSLENS_EXPORT={{{_safe(keys)}}};}})();"
            f"window.CROSSLENS_EXPORT_STATE={_safe(json.dumps(collector.state))};</script>")
    at = html.lower().find("<script")
    return html[:at] + data + html[at:] if at >= 0 else html.replace("</body>", data +
                                                                     "</body>")


def _safe(text: str) -> str:
    """Text that cannot close the ``<script>`` element it is in."""
    return text.replace("</", "<\\/")


def export_html(inspector: Any, path: str | Path, *, static_dir: str | Path | None = None,
                **options: Any) -> Path:
    """Write the static export of ``inspector`` to ``path`` (see :func:`export_data` for
    ``options``); returns the path."""
    html = build_html(export_data(inspector, **options), static_dir)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
