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
import zipfile
import zlib
from typing import Any

from .core.errors import CrosslensError, LoadError

#: File endings crosslens loads, with what they hold.
MODEL_FILES = {".keras": "a Keras 3 archive", ".pt": "a TorchScript archive",
               ".pth": "a TorchScript archive", ".torchscript": "a TorchScript archive",
               ".onnx": "an ONNX model"}
_FORMS = ("a .keras file, a TorchScript .pt, an .onnx file, or 'module:callable' "
          "(e.g. 'mypackage.models:build' or 'path/to/file.py:build')")


def load_model(spec: str) -> Any:
    """Load a model from a file path or a ``module:callable`` reference.

    Raises
    ------
    LoadError
        When the file is missing, corrupt or of an unknown kind, or the callable cannot
        be imported or fails; the message names the cause and the accepted forms.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise LoadError(f"a model reference must be a path or 'module:callable' string; got "
                        f"{type(spec).__name__}")
    spec = os.fspath(spec)
    lower = spec.lower()
    if os.path.isdir(spec):
        raise LoadError(f"{spec!r} is a directory; crosslens loads {_FORMS}")
    if os.path.isfile(spec):
        try:
            if lower.endswith(".keras"):
                return _load_keras(spec)
            if lower.endswith((".pt", ".pth", ".torchscript")):
                return _load_torchscript(spec)
            if lower.endswith(".onnx"):
                from .translate import load_onnx
                return load_onnx(spec)
        except CrosslensError:
            raise
        except Exception as error:
            raise LoadError(f"cannot load {spec!r} as {MODEL_FILES[os.path.splitext(lower)[1]]}"
                            f": {type(error).__name__}: {error}") from error
        raise LoadError(f"cannot load {spec!r}: unknown file kind; use {_FORMS}")
    if lower.endswith(tuple(MODEL_FILES)):
        raise LoadError(f"model file {spec!r} does not exist (looked in {os.getcwd()!r})")
    module_name, sep, attribute = spec.rpartition(":")
    if sep and module_name and attribute and (
            module_name.endswith(".py") or not any(c in module_name for c in "/\\")):
        return _load_callable(module_name, attribute)
    raise LoadError(f"model {spec!r} is neither an existing file nor 'module:callable'; "
                    f"use {_FORMS}")


def _load_keras(path: str) -> Any:
    if not zipfile.is_zipfile(path):
        raise LoadError(f"{path!r} is not a valid .keras archive (a .keras file is a zip "
                        "archive written by model.save('name.keras')); the file is corrupt or "
                        "of another kind")
    import keras
    return keras.saving.load_model(path, safe_mode=True)


def _load_torchscript(path: str) -> Any:
    import torch
    try:
        return torch.jit.load(path, map_location="cpu")
    except RuntimeError as error:
        raise LoadError(
            f"{path!r} is not a TorchScript archive ({error.__class__.__name__}). crosslens "
            "does not unpickle full models (unsafe); save with torch.jit.script(model).save() "
            "or give 'module:callable' that builds the model") from None


def _load_callable(module_name: str, attribute: str) -> Any:
    spec = f"{module_name}:{attribute}"
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise LoadError(f"{spec!r}: the file {module_name!r} does not exist")
            # a private module name per file: loading never shadows an importable module
            # (the file's own code may need to find itself in sys.modules, e.g. dataclasses)
            path = os.path.abspath(module_name)
            stem = os.path.splitext(os.path.basename(path))[0]
            name = f"_crosslens_file_{stem}_{zlib.crc32(path.encode()):08x}"
            loader = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[name] = module
            loader.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except CrosslensError:
        raise
    except Exception as error:
        raise LoadError(f"cannot import {module_name!r} for {spec!r}: {type(error).__name__}: "
                        f"{error}. Check the module is importable (on sys.path, or give "
                        "'path/to/file.py:callable')") from error
    factory = getattr(module, attribute, None)
    if factory is None:
        public = sorted(n for n in vars(module) if not n.startswith("_"))[:12]
        raise LoadError(f"{module_name!r} has no attribute {attribute!r}; it defines: "
                        f"{public}")
    if not callable(factory):
        return factory
    try:
        return factory()
    except CrosslensError:
        raise
    except Exception as error:
        raise LoadError(f"{spec!r} raised {type(error).__name__} when called with no "
                        f"arguments: {error}") from error
