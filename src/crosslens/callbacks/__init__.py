"""Training callbacks that run a :class:`crosslens.monitor.Monitor`.

``KerasCallback`` (a ``keras.callbacks.Callback``) and ``LightningCallback`` (a
``lightning.pytorch.Callback``) take the :class:`~crosslens.monitor.Monitor` arguments.
Each is imported on first access, so using one never imports the other framework.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = ["KerasCallback", "LightningCallback"]


_NEEDS = {"KerasCallback": ("keras", "keras>=3 and tensorflow-cpu"),
          "LightningCallback": ("lightning", "lightning")}


def __getattr__(name: str) -> Any:
    if name not in _NEEDS:
        raise AttributeError(f"module 'crosslens.callbacks' has no attribute {name!r}")
    module, package = _NEEDS[name]
    try:
        loaded = importlib.import_module(f".{module}", __name__)
    except ImportError as error:
        from ..monitor.errors import MissingDependencyError
        raise MissingDependencyError(f"{name} needs {package} (pip install {package}); a "
                                     "hand-written loop can call Monitor.step instead") \
            from error
    return getattr(loaded, name)
