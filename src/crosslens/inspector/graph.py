"""The model's computation graph for the graph view: nodes (layer type, output shape,
enclosing block, parameter count) and data-flow edges.

- PyTorch: the ``named_modules`` tree gives the nodes and their parents; one hooked
  forward pass of one sample gives output shapes and edges. Edges follow tensors from
  leaf module to leaf module, also through functional operations between them (``x + y``,
  ``torch.cat``, ``flatten``), which a ``TorchFunctionMode`` tags with the leaf modules
  they came from. TorchScript modules (no hooks) get nodes in module order, no edges.
- Keras: the layers (nested models by ``outer/inner`` names, their children's ``parent``
  the nested model) and their inbound nodes.
- ONNX: the graph's nodes (op type, inferred output shape) and the tensors between them.

Node ids are layer names where a node is a layer (``is_layer``), so selecting a node
selects that layer in every view. ``input`` and ``output`` are extra nodes.
"""
from __future__ import annotations

from typing import Any

import numpy as np

INPUT, OUTPUT = "input", "output"


def _node(id_: str, type_: str, shape: Any, parent: str | None, params: int,
          is_layer: bool) -> dict:
    return {"id": id_, "name": id_, "type": type_,
            "shape": None if shape is None else [int(s) for s in shape],
            "parent": parent, "params": int(params), "is_layer": bool(is_layer)}


def _graph(nodes: list[dict], edges: set | list) -> dict:
    ids = {n["id"] for n in nodes}
    kept = sorted({(a, b) for a, b in edges if a in ids and b in ids and a != b},
                  key=lambda e: (e[0], e[1]))
    return {"nodes": nodes, "edges": [list(e) for e in kept]}


def model_graph(model: Any, backend: Any, x1: np.ndarray, onnx_path: str | None = None
                ) -> dict:
    """The graph of ``model`` (or of the ONNX file it was loaded from) on sample ``x1``.

    Parameters
    ----------
    model
        The PyTorch or Keras model.
    backend
        Its crosslens backend (layer names).
    x1
        One input sample with its batch axis ``(1, ...)``, in the model's layout.
    onnx_path
        The ``.onnx`` file the model was loaded from: its own graph is shown.
    """
    if onnx_path is not None:
        return onnx_graph(onnx_path, set(backend.layer_names()))
    if backend.name == "torch":
        return torch_graph(model, backend, x1)
    return keras_graph(model, backend, x1)


# --- PyTorch ---------------------------------------------------------------------------------

def torch_graph(model: Any, backend: Any, x1: np.ndarray) -> dict:
    layers = set(backend.layer_names())
    modules = dict(model.named_modules())
    leaves = {n for n, m in modules.items() if n and not any(True for _ in m.children())}
    with backend.session():
        native = backend.prepare(x1)
        if getattr(backend, "is_script", False):
            shapes, edges = {}, set()
        else:
            shapes, edges = _torch_trace(model, modules, leaves, native)
    nodes = [_node(INPUT, "Input", tuple(native.shape[1:]), None, 0, False)]
    called = set(shapes)
    for name in list(called):  # a called module's ancestors are part of the graph
        while "." in name:
            name = name.rpartition(".")[0]
            called.add(name)
    for name, module in modules.items():
        if not name or (shapes and name not in called):
            continue
        params = sum(int(p.numel()) for p in module.parameters())
        parent = name.rpartition(".")[0] or None
        nodes.append(_node(name, type(module).__name__, shapes.get(name), parent, params,
                           name in layers))
    nodes.append(_node(OUTPUT, "Output", None, None, 0, False))
    return _graph(nodes, edges)


def _torch_trace(model, modules, leaves, native):
    import torch
    from torch.overrides import TorchFunctionMode

    producers: dict[int, frozenset] = {id(native): frozenset({INPUT})}
    keep = [native]  # alive, so ids are not reused while tracing
    edges: set = set()
    shapes: dict[str, tuple] = {}
    depth = [0]

    def tensors(value):
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from tensors(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from tensors(item)

    def sources(value) -> frozenset:
        found: set = set()
        for t in tensors(value):
            found |= producers.get(id(t), frozenset())
        return frozenset(found)

    def tag(value, origin: frozenset) -> None:
        for t in tensors(value):
            producers[id(t)] = origin
            keep.append(t)

    def pre(name):
        def hook(module, args, kwargs):
            if depth[0] == 0:
                for source in sources((args, kwargs)):
                    edges.add((source, name))
            depth[0] += 1
        return hook

    def post(name, leaf):
        def hook(module, args, output):
            if leaf:
                depth[0] -= 1
                if depth[0] == 0:
                    tag(output, frozenset({name}))
            if isinstance(output, torch.Tensor) and name not in shapes:
                shapes[name] = tuple(output.shape[1:])
            elif name not in shapes:
                shapes[name] = None
        return hook

    class Flow(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if depth[0] == 0:
                origin = sources((args, kwargs or {}))
                if origin:
                    tag(out, origin)
            return out

    handles = []
    try:
        for name, module in modules.items():
            if not name:
                continue
            leaf = name in leaves
            if leaf:
                handles.append(module.register_forward_pre_hook(pre(name), with_kwargs=True))
            handles.append(module.register_forward_hook(post(name, leaf)))
        with torch.no_grad(), Flow():
            out = model(native)
        for source in sources(out):
            edges.add((source, OUTPUT))
    finally:
        for handle in handles:
            handle.remove()
    return shapes, edges


# --- Keras -----------------------------------------------------------------------------------

def keras_graph(model: Any, backend: Any, x1: np.ndarray) -> dict:
    with backend.session():
        native = backend.prepare(x1)
        shapes = backend.layer_shapes(native)
        order = [name for name, _, _ in backend.layer_calls(native)]
    nodes = [_node(INPUT, "Input", tuple(np.shape(x1)[1:]), None, 0, False)]
    edges: set = set()
    _keras_scope(model, "", None, shapes, order, nodes, edges)
    for source in _keras_outputs(model, ""):
        edges.add((source, OUTPUT))
    nodes.append(_node(OUTPUT, "Output", None, None, 0, False))
    return _graph(nodes, edges)


def _keras_scope(model, prefix, parent, shapes, order, nodes, edges) -> None:
    """Nodes and edges of one (possibly nested) model: from the layers' inbound nodes
    (Functional, Sequential), else — a subclassed model keeps none — a chain in the order
    the layers ran."""
    layers = list(getattr(model, "layers", []))
    names = {id(layer): prefix + layer.name for layer in layers}
    inner: set = set()
    for layer in layers:
        name = names[id(layer)]
        params = int(sum(int(np.prod(w.shape)) for w in layer.weights))
        nested = bool(getattr(layer, "layers", None))
        nodes.append(_node(name, type(layer).__name__, shapes.get(name), parent, params,
                           name in shapes or nested))
        for node in getattr(layer, "_inbound_nodes", []):
            for parent_node in getattr(node, "parent_nodes", []):
                source = names.get(id(getattr(parent_node, "operation", None)))
                if source is not None:
                    inner.add((source, name))
        if nested:
            _keras_scope(layer, name + "/", name, shapes, order, nodes, edges)
    start = parent or INPUT
    if inner:
        targets = {b for _, b in inner}
        edges |= inner | {(start, names[id(layer)]) for layer in layers
                          if names[id(layer)] not in targets
                          and type(layer).__name__ != "InputLayer"}
    else:
        ran = [n for n in dict.fromkeys(order) if n in names.values()]
        edges |= set(zip([start] + ran[:-1], ran))
    if parent is not None:
        for source in _keras_outputs(model, prefix):
            edges.add((source, parent))


def _keras_outputs(model, prefix) -> list[str]:
    """The layers producing ``model``'s outputs (the last layer when unknown)."""
    layers = list(getattr(model, "layers", []))
    try:
        found = [prefix + t._keras_history.operation.name for t in model.outputs]
    except (AttributeError, ValueError, TypeError):
        found = []
    return found or ([prefix + layers[-1].name] if layers else [])


# --- ONNX ------------------------------------------------------------------------------------

def onnx_graph(path: str, layers: set[str]) -> dict:
    import onnx

    proto = onnx.load(path)
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # shapes are a nicety; the nodes and edges are what matters
        pass
    shapes = {}
    for info in list(proto.graph.value_info) + list(proto.graph.output) \
            + list(proto.graph.input):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None
                             for d in dims][1:]
    initializers = {t.name for t in proto.graph.initializer}
    params = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    first = next((i for i in proto.graph.input if i.name not in initializers), None)
    nodes = [_node(INPUT, "Input", [s or 0 for s in shapes.get(first.name, [])]
                   if first else None, None, 0, False)]
    producer = {i.name: INPUT for i in proto.graph.input if i.name not in initializers}
    edges: set = set()
    seen: dict[str, int] = {}
    for node in proto.graph.node:
        # the module names onnx2torch gives: '.' -> '/', the op type when unnamed
        base = (node.name or node.op_type).replace(".", "/")
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}_{seen[base] - 1}"
        out = shapes.get(node.output[0]) if node.output else None
        nodes.append(_node(name, node.op_type, None if out is None else [s or 0 for s in out],
                           None, sum(params.get(i, 0) for i in node.input),
                           name in layers))
        for tensor in node.input:
            if tensor in producer:
                edges.add((producer[tensor], name))
        for tensor in node.output:
            producer[tensor] = name
    for output in proto.graph.output:
        if output.name in producer:
            edges.add((producer[output.name], OUTPUT))
    nodes.append(_node(OUTPUT, "Output", None, None, 0, False))
    return _graph(nodes, edges)
