"""ONNX → PyTorch via onnx2torch, with clear errors and node-named modules."""

from __future__ import annotations

import os

from . import onnx_utils as ou
from ._torchvision import check_graph_supported, import_onnx2torch
from ..core.errors import CrosslensError
from .errors import ConversionError, OnnxLoadError, TranslationOptionError, UnsupportedOpError

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
            raise UnsupportedOpError(node.op_type, node.name, CONVERTER_NAME, f"{exc} (opset {version})") from exc


def _find_failing_node(model_proto, kind=NotImplementedError):
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
        except kind:
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
        raise UnsupportedOpError(op, name, CONVERTER_NAME, str(exc)) from exc
    except Exception as exc:  # a converter crashed on this graph: name the node
        try:
            op, name = _find_failing_node(model_proto, type(exc))
        except Exception:  # pragma: no cover - the search itself failed
            op, name = "?", "?"
        if name == "?":  # not a node's converter: the caller reports it as it is
            raise
        raise UnsupportedOpError(op, name, CONVERTER_NAME, f"{type(exc).__name__}: {exc}") from exc
    return module.eval()


def load_onnx(path_or_proto):
    """Load an ONNX model (path or ``ModelProto``) as a differentiable ``torch.nn.Module``.

    Module names are the ONNX node names (``'.'`` replaced by ``'/'``; empty or
    duplicated names get the op type / a numeric suffix), so a layer of the
    ONNX graph is addressed as ``dict(module.named_modules())[node_name]``.
    Raises :class:`UnsupportedOpError` naming the op and node for anything
    onnx2torch cannot convert.
    """
    from ._deps import require

    require("onnx", "loading an ONNX model")
    import onnx

    if isinstance(path_or_proto, (str, os.PathLike)):
        path = os.fspath(path_or_proto)
        if not os.path.isfile(path):
            raise OnnxLoadError(f"ONNX file {path!r} not found")
        try:
            proto = onnx.load(path)
        except Exception as exc:
            raise OnnxLoadError(f"{path!r} is not a readable ONNX model ({type(exc).__name__}: {exc}); "
                                "export it again, e.g. with torch.onnx.export or tf2onnx") from exc
        if not len(proto.graph.node):
            raise OnnxLoadError(f"{path!r} holds no ONNX graph (empty or not an ONNX file)")
    elif isinstance(path_or_proto, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(path_or_proto)
    else:
        raise TranslationOptionError(
            f"load_onnx takes a path or an onnx.ModelProto, got {type(path_or_proto).__name__}")
    try:
        return onnx_to_torch(proto)
    except CrosslensError:
        raise
    except Exception as exc:
        from .locate import cause_of

        raise ConversionError(f"the ONNX model cannot be converted to PyTorch: onnx2torch failed: "
                              f"{cause_of(exc)}", stage="convert") from exc
