"""Trace a translation failure back to the user's own layer, and word the error.

Converters fail on ONNX nodes (``node_zeros``, ``LSTM__437``) and exporters inside
framework internals; the user knows their model by its layers (``lstm``,
``encoder.lstm``).  This module maps one to the other:

* torch → ONNX (``torch.onnx.export(dynamo=True)``): every node carries metadata
  ``pkg.torch.onnx.name_scopes`` (full module paths, outermost first, then the aten op),
  ``pkg.torch.onnx.class_hierarchy`` (the matching classes) and
  ``pkg.torch.onnx.stack_trace`` (the user's source line first).  The TorchScript
  exporter names nodes ``/block/block.1/Conv`` instead.
* Keras → ONNX (tf2onnx): node names are TensorFlow op names inside the layers' name
  scopes (``functional_1/lstm_1/zeros``), the node producing a layer's output is renamed
  to the layer (``keras_export``), and nodes tf2onnx's rewriters create (``LSTM__437``)
  are placed by their neighbours in the graph.
* An exception raised while a framework runs Python code (tracing, export in
  non-strict mode, eager fallback) has the layer's ``call``/``forward`` frame in its
  traceback: the innermost frame whose ``self`` is a layer of the model names it.
"""

from __future__ import annotations

import ast
import collections
import os
import re

from .errors import ConversionError, UnsupportedOpError, _short, layer_phrase

FRAMEWORK_NAMES = {"torch": "PyTorch", "keras": "Keras"}

HINTS = {
    "keras": (
        "crosslens translates convolutional networks (convolutions, pooling, dense, normalisation, "
        "element-wise ops) to Keras; explain this model with an implementation that runs on PyTorch "
        "(implementation='crosslens' or 'captum'), or replace the layer"
    ),
    "torch": (
        "onnx2torch has no converter for this op; explain this model with an implementation that "
        "runs on Keras (implementation='crosslens' or 'tf-keras-vis'), or replace the layer"
    ),
}


# --------------------------------------------------------------------------- torch side
def _metadata(node) -> dict:
    return {p.key: p.value for p in getattr(node, "metadata_props", ())}


def _literal_list(text):
    try:
        value = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    return list(value) if isinstance(value, (list, tuple)) else None


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*([^\n]*)')


def _source_line(stack_trace: str | None) -> str | None:
    """``"`o, _ = self.lstm(y)` (net.py:14, in forward)"``: the innermost frame of the exporter's
    stack trace that is the user's code (not torch's own modules)."""
    if not stack_trace:
        return None
    frames = _FRAME.findall(stack_trace)
    if not frames:
        return None
    import torch

    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    user = [f for f in frames if not os.path.abspath(f[0]).startswith(torch_dir)] or frames
    path, line, func, code = user[-1]
    return f"`{code.strip()}` ({os.path.basename(path)}:{line}, in {func})"


def torch_node_origin(node, modules: dict | None = None):
    """``(module_path, class_name, source_line)`` of an ONNX node exported from torch.

    ``module_path`` is the innermost module whose forward emitted the node (``None`` for
    operations written directly in the root model's forward).
    """
    md = _metadata(node)
    scopes = _literal_list(md.get("pkg.torch.onnx.name_scopes"))
    classes = _literal_list(md.get("pkg.torch.onnx.class_hierarchy"))
    where = _source_line(md.get("pkg.torch.onnx.stack_trace"))
    path = cls = None
    if scopes is not None:
        for k in range(len(scopes) - 2, 0, -1):  # scopes = ['', mod, mod.sub, ..., aten op]
            if scopes[k]:
                path = scopes[k]
                if classes is not None and k < len(classes):
                    cls = str(classes[k]).rsplit(".", 1)[-1]
                break
    elif node.name.startswith("/"):  # TorchScript exporter: /block/block.1/Conv
        parts = [p for p in node.name.split("/")[1:-1] if p]
        path = parts[-1] if parts else None
    if path is not None and modules is not None and path in modules:
        cls = type(modules[path]).__name__
    return path, cls, where


def torch_unsupported(error: UnsupportedOpError, proto, model) -> UnsupportedOpError:
    """``error`` (raised on a node of ``proto``) reworded to name the torch layer."""
    node = next((n for n in proto.graph.node if n.name == error.node_name), None)
    path = cls = where = None
    if node is not None:
        path, cls, where = torch_node_origin(node, dict(model.named_modules()))
    if path is None and where is None:
        where = f"of {type(model).__name__}.forward"
    return error.with_layer(path, cls, where=where, hint=HINTS["keras"])


# --------------------------------------------------------------------------- Keras side
def keras_layers(model) -> dict:
    """``{name: layer}`` of every (nested) layer of a Keras model."""
    out = {}

    def walk(obj):
        for layer in getattr(obj, "layers", None) or []:
            if layer.name not in out:
                out[layer.name] = layer
                walk(layer)

    walk(model)
    return out


def _layer_in_name(name: str, layers: dict, *, whole: bool = True) -> str | None:
    """The innermost Keras layer named in a TensorFlow/ONNX node name's scopes."""
    if whole and name.replace("/", ".") in layers:
        return name.replace("/", ".")
    if whole and name in layers:
        return name
    parts = [p for p in re.split(r"[/:]", name) if p]
    for part in reversed(parts[:-1] if whole else parts):
        for candidate in (part, re.sub(r"_\d+$", "", part)):
            if candidate in layers:
                return candidate
    return None


def keras_node_layer(graph, node_name: str, layers: dict) -> str | None:
    """The Keras layer an ONNX node of a tf2onnx graph belongs to.

    By name first; nodes created by tf2onnx's rewriters (``LSTM__437``) carry no scope,
    so the nearest named node downstream (inside the same layer, or the layer's renamed
    output node) decides, then the nearest upstream.
    """
    found = _layer_in_name(node_name, layers)
    if found:
        return found
    nodes = {n.name: n for n in graph.node}
    start = nodes.get(node_name)
    if start is None:
        return None
    users = collections.defaultdict(list)
    producer = {}
    for n in graph.node:
        for i in n.input:
            users[i].append(n)
        for o in n.output:
            producer[o] = n
    for step in (lambda n: [u for o in n.output for u in users.get(o, ())],
                 lambda n: [producer[i] for i in n.input if i in producer]):
        seen, queue = {start.name}, collections.deque([start])
        while queue:
            for nxt in step(queue.popleft()):
                if nxt.name in seen:
                    continue
                seen.add(nxt.name)
                found = _layer_in_name(nxt.name, layers)
                if found:
                    return found
                queue.append(nxt)
    return None


def keras_unsupported(error: UnsupportedOpError, proto, model) -> UnsupportedOpError:
    """``error`` (raised on a node of ``proto``) reworded to name the Keras layer."""
    layers = keras_layers(model)
    name = keras_node_layer(proto.graph, error.node_name, layers)
    cls = type(layers[name]).__name__ if name in layers else None
    where = None if name else f"of {getattr(model, 'name', None) or type(model).__name__!r}"
    return error.with_layer(name, cls, where=where, hint=HINTS["torch"])


# --------------------------------------------------------------------- any exception
def _chain(exc):
    """``exc`` and its causes / contexts, outermost first, without repeats."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def layer_from_traceback(exc, objects: dict):
    """The innermost ``(name, object)`` of ``objects`` (``{id(obj): (name, obj)}``) whose method
    is on the traceback of ``exc`` or of the exceptions it was raised from."""
    for err in reversed(_chain(exc)):  # the original exception first
        found = None
        tb = err.__traceback__
        while tb is not None:
            try:
                owner = tb.tb_frame.f_locals.get("self")
            except Exception:  # pragma: no cover - exotic frames
                owner = None
            if owner is not None and id(owner) in objects:
                found = objects[id(owner)]
            tb = tb.tb_next
        if found is not None:
            return found
    return None


def torch_objects(model) -> dict:
    return {id(m): (name, m) for name, m in model.named_modules() if name}


def keras_objects(model) -> dict:
    return {id(layer): (name, layer) for name, layer in keras_layers(model).items()}


_SUMMARY = re.compile(r"## Exception summary\s*\n\s*<class '([\w.]+)'>: ([^\n]+)")


def cause_of(exc) -> str:
    """``"RuntimeError: Given groups=1, ..."``: the original exception's type and first line."""
    chain = _chain(exc)
    for err in chain:  # torch.onnx puts the original error in a summary section
        match = _SUMMARY.search(str(err))
        if match:
            return f"{match.group(1).rsplit('.', 1)[-1]}: {_short(match.group(2))}"
    root = chain[-1]
    text = next((line for line in str(root).splitlines() if line.strip()), "") or repr(root)
    return f"{type(root).__name__}: {_short(text)}"


def failure(excs, *, model, source: str, target: str, stage: str, what: str,
            translated_names: dict | None = None) -> ConversionError:
    """A :class:`ConversionError` whose first line names the layer and the cause.

    ``excs``: the exception, or ``[(label, exception), ...]`` when several tools were tried
    (the first one tracing to a layer decides); ``what`` says which step failed
    (``"the PyTorch → ONNX export"``); ``translated_names`` maps ids of the translated
    model's modules/layers to ``(original name, object)``.
    """
    if isinstance(excs, BaseException):
        excs = [(None, excs)]
    objects = torch_objects(model) if source == "torch" else keras_objects(model)
    if translated_names:
        objects = {**translated_names, **objects}
    name = cls = None
    main = excs[-1][1]
    for _, exc in excs:
        found = layer_from_traceback(exc, objects)
        if found is None and source == "keras":
            found = _keras_layer_in_text(exc, model)
        if found is not None:
            (name, obj), main = found, exc
            cls = type(obj).__name__
            break
    cause = cause_of(main)
    dst = FRAMEWORK_NAMES.get(target, target)
    if name:
        first = f"{layer_phrase(name, cls)} cannot be translated to {dst}: {what} failed: {cause}"
    else:
        model_name = getattr(model, "name", None) or type(model).__name__
        first = f"model {model_name!r} cannot be translated to {dst}: {what} failed: {cause}"
    lines = [first]
    for label, exc in excs:  # what each tool said, where it differs from the first line
        said = cause_of(exc)
        if said != cause:
            lines.append(f"  {label or 'also'}: {said}")
    lines.append(f"  fix: {_FIX.get(stage, _FIX['convert'])}")
    return ConversionError("\n".join(lines), layer=name, layer_type=cls, stage=stage)


def _keras_layer_in_text(exc, model):
    """``(name, layer)`` of the innermost Keras layer named in TensorFlow op names in the
    messages of ``exc`` (``functional_1/lstm_1/while``)."""
    layers = keras_layers(model)
    for err in _chain(exc):
        for token in re.findall(r"[\w.\-]+(?:/[\w.\-]+)+", str(err)):
            name = _layer_in_name(token, layers, whole=False)
            if name:
                return name, layers[name]
    return None


_FIX = {
    "export": "check that the model runs on the example; or explain it with an implementation "
              "for its own framework (implementation='crosslens'), which needs no translation",
    "convert": "explain the model with an implementation for its own framework "
               "(implementation='crosslens'), which needs no translation",
    "verify": "explain the model with an implementation for its own framework "
              "(implementation='crosslens'), which needs no translation",
}
