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
    """Raise ImportError with the install command if ``module`` is not importable."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{purpose} needs the package {module!r}: {HINTS.get(module, 'pip install ' + module)}")
