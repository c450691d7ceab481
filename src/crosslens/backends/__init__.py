"""Backend selection by the model's type, importing only the framework the model uses.

A model's framework is recognised from the module names in its class hierarchy, so
``import crosslens`` never imports torch or tensorflow; the matching backend module is
imported the first time a model of that framework is explained. Backend instances are
cached per model (weakly), so compiled functions and memory estimates are reused across
calls on the same model. A cached backend is re-validated against the model on every
call (:meth:`Backend.is_current`: a cheap structural fingerprint) and rebuilt when the
model changed (a new head, ``.double()``, a replaced activation), so a cache never
changes an answer.

Every model has one re-entrant lock (:func:`model_lock`), shared by the backends built
for it over time; :meth:`Backend.session` holds it. Calls on one model are therefore
serialized, while calls on different models run in parallel.
"""
from __future__ import annotations

import importlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any

from ..core.errors import UnsupportedError
from ..core.backend import ArrayOps, Backend, GradientResult


@dataclass(frozen=True)
class BackendInfo:
    """Static description of a backend, available without importing its framework."""

    name: str
    module: str
    cls: str
    class_prefixes: tuple[str, ...]  # module prefixes of model base classes
    capabilities: frozenset[str]


# What each backend class provides, stated here so that listing methods imports no
# framework; tests/test_layering.py checks it equals the class's derived capabilities().
_ALL = frozenset({"grad", "layer_grad", "activations", "relu_override", "layer_override",
                  "forward", "relevance", "rescale"})

BACKENDS: dict[str, BackendInfo] = {
    "torch": BackendInfo("torch", "crosslens.backends.torch", "TorchBackend",
                         ("torch.nn.modules.module.Module", "torch.jit."), _ALL),
    "keras": BackendInfo("keras", "crosslens.backends.keras", "KerasBackend",
                         ("keras.src.models.model.Model", "keras.src.layers.layer.Layer"), _ALL),
}

_CACHE: "weakref.WeakKeyDictionary[Any, Backend]" = weakref.WeakKeyDictionary()
_LOCKS: "weakref.WeakKeyDictionary[Any, threading.RLock]" = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()  # guards the two dictionaries above


def model_lock(model: Any) -> "threading.RLock":
    """The re-entrant lock of ``model``, held while crosslens runs it.

    Why a lock rather than per-call copies: a call must change state that every thread
    shares — module modes (``eval()``), forward hooks, Keras ``call`` patches while
    tracing — and copying the model per call would cost its whole memory. One lock per
    model keeps results exactly the sequential ones and leaves different models free to
    run concurrently.
    """
    with _GUARD:
        try:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = threading.RLock()
        except TypeError:  # not weak-referenceable: a private lock (no sharing possible)
            lock = threading.RLock()
        return lock


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
        with cached.lock:  # not while another call on this model is half-way
            if cached.is_current():
                return cached
    name = framework_of(model)
    if name is None:
        raise UnsupportedError(
            f"crosslens cannot explain a {type(model).__module__}.{type(model).__name__}: "
            f"supported models are {', '.join(BACKENDS)} (a torch.nn.Module, a Keras 3 model), "
            "or a path to a .keras / .pt / .onnx file")
    info = BACKENDS[name]
    backend = getattr(importlib.import_module(info.module), info.cls)(model)
    backend.lock = model_lock(model)
    backend.stamp()
    try:
        _CACHE[model] = backend
    except TypeError:
        pass
    return backend


__all__ = ["ArrayOps", "Backend", "BackendInfo", "BACKENDS", "GradientResult",
           "framework_of", "get_backend", "model_lock"]
