"""The two translation directions as data for :func:`crosslens.translate.pipeline.translate`.

A :class:`Direction` says what differs between PyTorch → Keras and Keras → PyTorch: how
the original is exported to ONNX, how ONNX is converted into the other framework (and
the layer map built), how a cached translation is rebuilt, and the layouts between the
two. The sequence export → convert → verify → cache → report is written once, in the
pipeline; running either model goes through crosslens' backends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cache as _cache
from . import locate
from . import onnx_utils as ou
from ..core.errors import CrosslensError
from .errors import ConversionError, UnsupportedOpError
from .layout import LayerRef
from .locate import failure

KERAS_OPSET = 17
TORCH_OPSET = 18


@dataclass(frozen=True)
class Direction:
    """One way of translating: every step the pipeline delegates, and its layouts."""

    source: str  # "torch" / "keras"
    target: str
    opset: int
    #: image layouts of the original and the translated model, and the axis permutation
    #: taking a rank-4 array from the first to the second
    layouts: tuple[str, str]
    perm: tuple[int, ...]
    #: ``(package, purpose)`` pairs the direction needs installed
    requires: tuple[tuple[str, str], ...]
    #: ``scope(model)``: context manager around the whole translation, yields its warnings
    scope: Callable[[Any], Any]
    fingerprint: Callable[[Any], dict]
    #: ``export(model, example, low_memory, warnings) -> (proto, export_method, extra)``
    export: Callable[..., tuple]
    #: ``convert(model, proto, extra) -> (translated model, layer_map)``
    convert: Callable[..., tuple]
    converter: str  # named after the export method in the report
    #: ``load(cache folder) -> translated model`` for a cache hit (may raise: a miss)
    load: Callable[[Path], Any]
    #: the file a cache entry must hold for :attr:`load` (``None``: ``model.onnx`` suffices)
    artefact: str | None
    saves_keras: bool  # the cache stores the translated Keras model itself

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"


# --------------------------------------------------------------------------- torch -> Keras
@contextlib.contextmanager
def _torch_eval(model) -> Iterator[list]:
    """Translate (and verify) in eval mode; every module's own flag comes back afterwards
    (``model.train(flag)`` would overwrite submodules' modes)."""
    modes = [(m, m.training) for m in model.modules()]
    warn = ["model was in training mode; translated (and verified) in eval mode"] if model.training else []
    model.eval()
    try:
        yield warn
    finally:
        for module, flag in modes:
            module.training = flag


def _torch_export(model, example, low_memory, warn):
    from .torch_export import torch_to_onnx

    proto, info = torch_to_onnx(model, example, opset=TORCH_OPSET)
    warn.extend(info.get("export_errors", []))
    return proto, info["export_method"], None


def _torch_convert(model, proto, _extra):
    from .onnx_to_keras import onnx_to_keras

    try:
        ou.uniquify_node_names(proto.graph)
        mod_out = ou.module_outputs(proto.graph)
        prod = ou.producers(proto.graph)
        # name Keras layers after the innermost module whose output a node produces
        layer_names = {}
        for mod in sorted(mod_out, key=lambda m: m.count(".")):
            n = prod.get(mod_out[mod])
            if n is not None:
                layer_names[n.name] = mod
        km, value_map = onnx_to_keras(proto, layer_names=layer_names, name=model_name(model))
    except UnsupportedOpError as error:
        raise locate.torch_unsupported(error, proto, model) from error
    except CrosslensError:
        raise
    except Exception as error:
        raise failure(error, model=model, source="torch", target="keras", stage="convert",
                      what="the ONNX → Keras conversion (crosslens.onnx_to_keras)") from error
    layer_map = {}
    for name, _ in model.named_modules():
        if not name:
            continue
        v = mod_out.get(name)
        if v is None or v not in value_map:
            layer_map[name] = LayerRef(None, None, v)
            continue
        lname, perm = value_map[v]
        perm = None if perm == tuple(range(len(perm))) else tuple(perm)
        layer_map[name] = LayerRef(lname, perm, v)
    return km, layer_map


def _load_keras(path: Path):
    import keras

    from .keras_layers import CUSTOM_OBJECTS

    return keras.models.load_model(str(path / "model.keras"), custom_objects=CUSTOM_OBJECTS, compile=False)


# --------------------------------------------------------------------------- Keras -> torch
def _keras_export(model, example, low_memory, warn):
    """``keras_to_onnx`` with the frozen-graph fallback; failures name the layer and the cause."""
    from .keras_export import keras_to_onnx

    try:
        proto, layer_values, info = keras_to_onnx(model, example, opset=KERAS_OPSET,
                                                  weights_as_inputs=low_memory)
        return proto, info["export_method"], layer_values
    except CrosslensError:
        raise
    except Exception as exc:
        first = exc
    what = "the Keras → ONNX export (tf2onnx)"
    if not low_memory:
        raise failure(first, model=model, source="keras", target="torch", stage="export", what=what) from first
    try:
        n_params = model.count_params()
    except Exception:  # an unbuilt model: the frozen export reports why it fails
        n_params = 0
    if n_params > 50_000_000:
        error = failure(first, model=model, source="keras", target="torch", stage="export",
                        what="the low-memory Keras → ONNX export (tf2onnx)")
        raise ConversionError(
            f"{error.args[0]}\n  not falling back to the frozen-graph export for {n_params / 1e6:.0f} M "
            "weights (VGG16 needs ~19 GB RAM there); pass low_memory=False to force it",
            layer=error.layer, layer_type=error.layer_type, stage="export") from first
    warn.append(f"low-memory export failed ({locate.cause_of(first)}); used the frozen-graph export")
    try:
        proto, layer_values, info = keras_to_onnx(model, example, opset=KERAS_OPSET, weights_as_inputs=False)
        return proto, info["export_method"], layer_values
    except CrosslensError:
        raise
    except Exception as exc:
        raise failure([("low-memory export", first), ("frozen-graph export", exc)], model=model,
                      source="keras", target="torch", stage="export", what=what) from exc


def _keras_convert(model, proto, layer_values):
    from ._torchvision import TorchvisionUnavailableError
    from .onnx_to_torch import onnx_to_torch

    try:
        tm = onnx_to_torch(proto)
    except UnsupportedOpError as error:
        raise locate.keras_unsupported(error, proto, model) from error
    except TorchvisionUnavailableError as error:
        layers = locate.keras_layers(model)
        name = locate.keras_node_layer(proto.graph, getattr(error, "node_name", ""), layers)
        if name is None:
            raise
        raise TorchvisionUnavailableError(
            f"layer {name!r} ({type(layers[name]).__name__}) cannot be translated to PyTorch: {error}") from error
    except CrosslensError:
        raise
    except Exception as error:
        raise failure(error, model=model, source="keras", target="torch", stage="convert",
                      what="the ONNX → PyTorch conversion (onnx2torch)") from error
    prod = ou.producers(proto.graph)
    layer_map = {}
    for lname, (value, perm) in layer_values.items():
        node = prod.get(value) if value else None
        layer_map[lname] = LayerRef(node.name if node is not None else None, perm, value)
    return tm, layer_map


def _load_torch(path: Path):
    import onnx

    from .onnx_to_torch import onnx_to_torch

    return onnx_to_torch(onnx.load(str(path / "model.onnx")))


def model_name(model) -> str:
    return getattr(model, "name", None) or type(model).__name__


TORCH_TO_KERAS = Direction(
    source="torch", target="keras", opset=TORCH_OPSET, layouts=("NCHW", "NHWC"), perm=(0, 2, 3, 1),
    requires=(("onnx", "translation"),
              ("onnxscript", "PyTorch → Keras translation (torch.onnx.export(dynamo=True))")),
    scope=_torch_eval, fingerprint=_cache.torch_fingerprint, export=_torch_export,
    convert=_torch_convert, converter="crosslens.onnx_to_keras", load=_load_keras,
    artefact="model.keras", saves_keras=True)

KERAS_TO_TORCH = Direction(
    source="keras", target="torch", opset=KERAS_OPSET, layouts=("NHWC", "NCHW"), perm=(0, 3, 1, 2),
    requires=(("onnx", "translation"), ("tf2onnx", "Keras → PyTorch translation"),
              ("onnx2torch", "Keras → PyTorch translation")),
    scope=lambda model: contextlib.nullcontext([]), fingerprint=_cache.keras_fingerprint,
    export=_keras_export, convert=_keras_convert, converter="onnx2torch", load=_load_torch,
    artefact=None, saves_keras=False)

DIRECTIONS = {d.source: d for d in (TORCH_TO_KERAS, KERAS_TO_TORCH)}
