"""Backend selection by the model's type, importing only the framework the model uses.

A model's framework is recognised from the module names in its class hierarchy, so
``import crosslens`` never imports torch or tensorflow; the matching backend module is
imported the first time a model of that framework is explained. Backend instances are
cached per model (weakly), so compiled functions and memory estimates are reused across
calls on the same model.
"""
from __future__ import annotations

import importlib
import weakref
from dataclasses import dataclass
from typing import Any

from ..core.errors import UnsupportedError
from .base import ArrayOps, Backend, GradientResult


@dataclass(frozen=True)
class BackendInfo:
    """Static description of a backend, available without importing its framework."""

    name: str
    module: str
    cls: str
    class_prefixes: tuple[str, ...]  # module prefixes of model base classes
    capabilities: frozenset[str]


_ALL = frozenset({"grad", "layer_grad", "activations", "relu_override", "layer_override",
                  "forward"})

BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo("torch", "crosslens.backends.torch", "TorchBackend",
                         ("torch.nn.modules.module.Module", "torch.jit."), _ALL),
    "keras": BackendInfo("keras", "crosslens.backends.keras", "KerasBackend",
                         ("keras.src.models.model.Model", "keras.src.layers.layer.Layer"), _ALL),
}

_CACHE: "weakref.WeakKeyDictionary[Any, Backend]" = weakref.WeakKeyDictionary()


def framework_of(model: Any) -> str | None:
    """Name of the backend for ``model``, from its class hierarchy (no imports)."""
    for klass in type(model).__mro__:
        qualified = f"{klass.__module__}.{klass.__qualname__}"
        for info in BACKENDS.values():
            if any(qualified.startswith(prefix) for prefix in info.class_prefixes):
                return info.name
    return None


def get_backend(model: Any) -> Backend:
    """The (cached) backend wrapping ``model``."""
    if isinstance(model, Backend):
        return model
    try:
        cached = _CACHE.get(model)
    except TypeError:  # unhashable or not weak-referenceable model object
        cached = None
    if cached is not None:
        return cached
    name = framework_of(model)
    if name is None:
        raise UnsupportedError(
            f"crosslens cannot explain a {type(model).__module__}.{type(model).__name__}: "
            f"supported models are {', '.join(BACKENDS)} (a torch.nn.Module, a Keras 3 model), "
            "or a path to a .keras / .pt / .onnx file")
    info = BACKENDS[name]
    backend = getattr(importlib.import_module(info.module), info.cls)(model)
    try:
        _CACHE[model] = backend
    except TypeError:
        pass
    return backend


__all__ = ["ArrayOps", "Backend", "BackendInfo", "BACKENDS", "GradientResult",
           "framework_of", "get_backend"]
