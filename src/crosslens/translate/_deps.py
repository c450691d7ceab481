"""Instructive errors for the optional converter packages (imported lazily)."""

from __future__ import annotations

import importlib.util

HINTS = {
    "onnx": "pip install onnx",
    "tf2onnx": "pip install tf2onnx",
    "onnxscript": "pip install onnxscript   (needed by torch.onnx.export(dynamo=True))",
    "onnx2torch": (
        "pip install --no-deps onnx2torch   (its metadata requires torchvision, which crosslens does "
        "not need: crosslens imports onnx2torch with or without a working torchvision)"
    ),
}


def require(module: str, purpose: str) -> None:
    """Raise :class:`MissingDependencyError` (an ``ImportError``) with the install command if
    ``module`` is not importable."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package / a module without __spec__
        found = False
    if not found:
        from .errors import MissingDependencyError

        raise MissingDependencyError(
            f"{purpose} needs the package {module!r}, which is not installed: "
            f"{HINTS.get(module, 'pip install ' + module)}")
