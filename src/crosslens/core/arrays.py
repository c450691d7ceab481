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


def framework_of_array(array: Any) -> str:
    """``"numpy"``, ``"torch"``, ``"tensorflow"``, ``"jax"`` or ``"other"`` (by type only)."""
    if isinstance(array, np.ndarray):
        return "numpy"
    root = type(array).__module__.split(".")[0]
    return {"torch": "torch", "tensorflow": "tensorflow", "jaxlib": "jax",
            "jax": "jax"}.get(root, "other")


def as_like(array: np.ndarray, like: Any) -> Any:
    """``array`` (numpy) in the array type of ``like``: a torch tensor on ``like``'s
    device, a ``tf.Tensor``, a jax array, or numpy. Floating ``like`` dtypes are kept.

    The framework of ``like`` is already imported by whoever made it, so it is taken
    from ``sys.modules`` and nothing new is imported.
    """
    import sys

    kind = framework_of_array(like)
    dtype = getattr(like, "dtype", None)
    if kind == "torch":
        torch = sys.modules["torch"]
        array = np.ascontiguousarray(array)
        out = torch.from_numpy(array if array.flags.writeable else array.copy()).to(like.device)
        return out.to(dtype) if dtype is not None and dtype.is_floating_point else out
    if kind == "tensorflow":
        tf = sys.modules["tensorflow"]
        out = tf.convert_to_tensor(array)
        return tf.cast(out, dtype) if dtype is not None and dtype.is_floating else out
    if kind == "jax":
        jnp = sys.modules["jax.numpy"] if "jax.numpy" in sys.modules else None
        if jnp is not None:
            out = jnp.asarray(array)
            return out.astype(dtype) if np.dtype(dtype).kind == "f" else out
    if dtype is not None:
        try:
            if np.dtype(dtype).kind == "f":
                return array.astype(dtype, copy=False)
        except TypeError:
            pass
    return array
