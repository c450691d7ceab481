"""The map between feature-visualization images and a model's inputs (and its adjoint).

Images are optimized on the host as channels-last ``(N, H, W, C)`` float64 arrays with
values in ``[0, 1]`` (the *canonical* form, the same for every framework, so a seed gives
the same draws on PyTorch and Keras). A model sees

    x = (lo + (hi - lo) * image - mean) / std        in its own layout,

an affine, per-channel map whose adjoint (for the chain rule) is a per-channel scale.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError


def image_layout(backend: Any) -> str:
    """``"channels_first"`` or ``"channels_last"``: the backend's layout, else its
    framework's convention (PyTorch NCHW, Keras NHWC) for models without a conv stem."""
    layout = backend.layout
    if layout in ("channels_first", "channels_last"):
        return layout
    return "channels_first" if backend.name == "torch" else "channels_last"


class ModelIO:
    """Canonical images <-> model inputs for one model (see the module docstring).

    Parameters
    ----------
    layout
        The model's layout.
    channels
        Number of image channels.
    input_range
        ``(lo, hi)``: the model's pixel range before normalization (``(0, 255)`` for a
        model trained on raw bytes).
    mean, std
        Per-channel (or scalar) normalization in ``input_range`` units; ``None`` for none.
    """

    def __init__(self, layout: str, channels: int, input_range: tuple[float, float] = (0.0, 1.0),
                 mean: Any = None, std: Any = None) -> None:
        lo, hi = (float(v) for v in input_range)
        if not hi > lo:
            raise OptionError(f"input_range must be (low, high) with high > low; got {input_range}")
        mean = np.zeros(channels) if mean is None else _per_channel(mean, channels, "mean")
        std = np.ones(channels) if std is None else _per_channel(std, channels, "std")
        if np.any(std <= 0):
            raise OptionError("std must be positive")
        self.layout, self.channels = layout, channels
        self.lo, self.hi, self.mean, self.std = lo, hi, mean, std
        self.scale = (hi - lo) / std  # d x / d image, per channel
        self.offset = (lo - mean) / std

    def mean_image(self) -> np.ndarray:
        """The per-channel normalization mean as a ``[0, 1]`` color (0.5 gray without one)."""
        if np.all(self.mean == 0) and np.all(self.std == 1) and (self.lo, self.hi) == (0.0, 1.0):
            return np.full(self.channels, 0.5)
        return np.clip((self.mean - self.lo) / (self.hi - self.lo), 0.0, 1.0)

    def to_layout(self, canonical: np.ndarray) -> np.ndarray:
        if self.layout == "channels_first":
            return np.ascontiguousarray(np.transpose(canonical, (0, 3, 1, 2)))
        return canonical

    def from_layout(self, native_layout: np.ndarray) -> np.ndarray:
        if self.layout == "channels_first":
            return np.ascontiguousarray(np.transpose(native_layout, (0, 2, 3, 1)))
        return native_layout

    def encode(self, image: np.ndarray) -> np.ndarray:
        """Canonical image -> model input (numpy, model layout)."""
        return self.to_layout(image * self.scale + self.offset)

    def encode_vjp(self, grad: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the model input -> gradient w.r.t. the canonical image."""
        return self.from_layout(np.asarray(grad, dtype=np.float64)) * self.scale

    def decode(self, x: np.ndarray) -> np.ndarray:
        """Model-layout values in model units -> canonical image."""
        return (self.from_layout(np.asarray(x, dtype=np.float64)) - self.offset) / self.scale

    def decode_vjp(self, grad_image: np.ndarray) -> np.ndarray:
        """Gradient w.r.t. the decoded image -> gradient w.r.t. the model-layout values."""
        return self.to_layout(grad_image / self.scale)


def _per_channel(value: Any, channels: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        return np.full(channels, float(array[0]))
    if array.size != channels:
        raise OptionError(f"{what} has {array.size} values for {channels} channels")
    return array
