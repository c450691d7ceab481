"""ONNX → PyTorch via onnx2torch, with clear errors and node-named modules."""

from __future__ import annotations

import os

from . import onnx_utils as ou
from ._torchvision import check_graph_supported, import_onnx2torch
from .errors import UnsupportedOpError

CONVERTER_NAME = "onnx2torch"


def _check_supported(model_proto, onnx2torch):
    from onnx2torch.node_converters import get_converter

    versions = {o.domain: o.version for o in model_proto.opset_import}
    for node in model_proto.graph.node:
        domain = node.domain or ""
        version = versions.get(domain, versions.get("ai.onnx", 1))
        try:
            get_converter(domain=domain, operation_type=node.op_type, version=version)
        except NotImplementedError as exc:
            raise UnsupportedOpError(node.op_type, node.name, CONVERTER_NAME, f"{exc} (opset {version})") from None


def _find_failing_node(model_proto):
    from onnx2torch.node_converters import get_converter
    from onnx2torch.onnx_graph import OnnxGraph

    versions = {o.domain: o.version for o in model_proto.opset_import}
    graph = OnnxGraph(model_proto.graph)
    for node in graph.nodes.values():
        try:
            conv = get_converter(
                domain=node.domain, operation_type=node.operation_type, version=versions.get(node.domain, 1)
            )
            conv(node, graph)
        except NotImplementedError:
            return node.operation_type, node.proto.name
        except Exception:
            continue
    return "?", "?"


def onnx_to_torch(model_proto):
    """Convert an ``onnx.ModelProto`` (modified in place: node names made unique) to a torch module."""
    onnx2torch = import_onnx2torch()
    check_graph_supported(model_proto)
    ou.uniquify_node_names(model_proto.graph)
    _check_supported(model_proto, onnx2torch)
    try:
        module = onnx2torch.convert(model_proto)
    except NotImplementedError as exc:  # attribute combinations onnx2torch rejects inside a converter
        op, name = _find_failing_node(model_proto)
        raise UnsupportedOpError(op, name, CONVERTER_NAME, str(exc)) from None
    return module.eval()


def load_onnx(path_or_proto):
    """Load an ONNX model (path or ``ModelProto``) as a differentiable ``torch.nn.Module``.

    Module names are the ONNX node names (``'.'`` replaced by ``'/'``; empty or
    duplicated names get the op type / a numeric suffix), so a layer of the
    ONNX graph is addressed as ``dict(module.named_modules())[node_name]``.
    Raises :class:`UnsupportedOpError` naming the op and node for anything
    onnx2torch cannot convert.
    """
    import onnx

    if isinstance(path_or_proto, (str, os.PathLike)):
        proto = onnx.load(os.fspath(path_or_proto))
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(path_or_proto)
    return onnx_to_torch(proto)
