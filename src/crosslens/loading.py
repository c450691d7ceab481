"""Loading models from paths, safely by default.

- ``*.keras``: ``keras.saving.load_model(path, safe_mode=True)`` (no arbitrary code);
- ``*.pt`` / ``*.pth`` TorchScript archives: ``torch.jit.load`` (no pickle);
- ``module:callable`` (or ``path/to/file.py:callable``): imports the module and calls the
  callable with no arguments; this runs the user's own code, which they name explicitly.

Full pickled PyTorch models (``torch.save(model)``) are refused: unpickling runs
arbitrary code. Save a TorchScript module, or expose a ``module:callable`` that builds
the model and loads a ``state_dict``.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

from .core.errors import InputError


def load_model(spec: str) -> Any:
    """Load a model from a file path or a ``module:callable`` reference."""
    if os.path.isfile(spec):
        lower = spec.lower()
        if lower.endswith(".keras"):
            import keras
            return keras.saving.load_model(spec, safe_mode=True)
        if lower.endswith((".pt", ".pth", ".torchscript")):
            return _load_torchscript(spec)
        if lower.endswith(".onnx"):
            from .translate import load_onnx
            return load_onnx(spec)
        raise InputError(f"cannot load {spec!r}: use a .keras file, a TorchScript .pt, an "
                         ".onnx file, or 'module:callable'")
    if ":" in spec:
        return _load_callable(spec)
    raise InputError(f"model {spec!r} is neither an existing file nor 'module:callable'")


def _load_torchscript(path: str) -> Any:
    import torch
    try:
        return torch.jit.load(path, map_location="cpu")
    except RuntimeError as error:
        raise InputError(
            f"{path!r} is not a TorchScript archive ({error.__class__.__name__}). crosslens "
            "does not unpickle full models (unsafe); save with torch.jit.script(model).save() "
            "or give 'module:callable' that builds the model") from None


def _load_callable(spec: str) -> Any:
    module_name, _, attribute = spec.rpartition(":")
    if module_name.endswith(".py") and os.path.isfile(module_name):
        name = os.path.splitext(os.path.basename(module_name))[0]
        loader = importlib.util.spec_from_file_location(name, module_name)
        module = importlib.util.module_from_spec(loader)
        sys.modules.setdefault(name, module)
        loader.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise InputError(f"{module_name!r} has no attribute {attribute!r}")
    return factory() if callable(factory) else factory
