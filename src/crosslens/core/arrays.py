"""Framework-free conversions of user arrays (duck-typed: no framework import)."""
from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(array: Any) -> np.ndarray:
    """Convert a numpy array, torch tensor, tf tensor or jax array to numpy."""
    if isinstance(array, np.ndarray):
        return array
    if hasattr(array, "detach"):  # torch
        return array.detach().cpu().numpy()
    if hasattr(array, "numpy"):  # tf eager tensors
        return np.asarray(array.numpy())
    return np.asarray(array)


def to_channels_last(array: np.ndarray, layout: str | None) -> np.ndarray:
    """Move the channel axis of an image batch (or one image) to the end, by transpose."""
    if layout != "channels_first" or array.ndim < 3:
        return array
    channel_axis = 1 if array.ndim == 4 else 0  # (N, C, H, W) or (C, H, W)
    return np.moveaxis(array, channel_axis, -1)
