"""Bilinear resizing in pure numpy.

The sampling convention is exactly the one of
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
(also ``tf.image.resize(method="bilinear")`` with half-pixel centers), so a
Grad-CAM map upsampled here matches the one a PyTorch implementation would
produce.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["resize_bilinear"]


def _axis_weights(n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for one axis (half-pixel centers).

    Returns ``(i0, i1, w1)`` so that ``out[j] = (1 - w1[j]) * x[i0[j]] + w1[j] * x[i1[j]]``.
    """
    # torch's area_pixel_compute_scale: plain in/out ratio when a size is given.
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    # torch clamps negative source coordinates to 0 (left/top border replicates).
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    return i0, i1, w1


def resize_bilinear(array: ArrayLike, size: Tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map or a channels-last image with bilinear interpolation.

    Parameters
    ----------
    array : array_like
        Array of shape ``(H, W)`` or ``(H, W, C)``.
    size : tuple of int
        Target spatial size ``(H_out, W_out)``.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(H_out, W_out)`` or ``(H_out, W_out, C)``. Floating
        inputs keep their dtype; other inputs are returned as ``float64``.

    Notes
    -----
    Uses half-pixel centers (``align_corners=False``): output pixel ``j``
    samples source coordinate ``(j + 0.5) * H / H_out - 0.5``, clamped at 0,
    with the upper neighbour clamped at the border. This is identical to
    ``torch.nn.functional.interpolate(x, size, mode="bilinear",
    align_corners=False)`` (without antialiasing).
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {arr.shape}")
    if len(size) != 2:
        raise ValueError(f"size must be (H, W), got {size!r}")
    h_out, w_out = int(size[0]), int(size[1])
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f"target size must be positive, got {size!r}")
    h_in, w_in = arr.shape[:2]
    if h_in == 0 or w_in == 0:
        raise ValueError(f"cannot resize an empty array of shape {arr.shape}")

    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    x = arr.astype(np.float64, copy=False)

    # Separable: interpolate rows first, then columns (same result as the 2-D
    # formula since bilinear weights factorize).
    r0, r1, rw = _axis_weights(h_in, h_out)
    c0, c1, cw = _axis_weights(w_in, w_out)
    extra = (1,) * (x.ndim - 2)
    rw = rw.reshape((-1, 1) + extra)
    cw = cw.reshape((1, -1) + extra)
    rows = x[r0] * (1.0 - rw) + x[r1] * rw
    out = rows[:, c0] * (1.0 - cw) + rows[:, c1] * cw
    return out.astype(out_dtype, copy=False)
