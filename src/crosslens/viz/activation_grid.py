"""Tiling a layer's activations into one image (like tf-explain's ExtractActivations)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["activation_grid"]

_MODES = ("per_channel", "global", "none")


def _rescale(x: np.ndarray, axis: Optional[tuple]) -> np.ndarray:
    lo = x.min(axis=axis, keepdims=True)
    span = x.max(axis=axis, keepdims=True) - lo
    # Constant channels (dead ReLUs) become 0 instead of NaN.
    return np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 0.0)


def activation_grid(
    activations: ArrayLike,
    *,
    max_channels: int = 64,
    ncols: Optional[int] = None,
    normalize: str = "per_channel",
    pad: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile the channels of one sample's activations into a single image.

    Parameters
    ----------
    activations : array_like
        Channels-last activations of one sample: ``(H, W, C)`` (a leading
        batch axis of size 1 is dropped; ``(H, W)`` is one channel), or
        ``(C,)`` for a dense layer, shown as one near-square tile with one
        pixel per unit, row-major (all units are shown; ``max_channels`` does
        not apply).
    max_channels : int, default 64
        Only the first ``max_channels`` channels are tiled.
    ncols : int, optional
        Tiles per row; default ``ceil(sqrt(n_channels))``.
    normalize : {"per_channel", "global", "none"}, default "per_channel"
        ``"per_channel"`` rescales each channel to ``[0, 1]`` with its own
        min/max (constant channels become 0); ``"global"`` uses the min/max
        over all shown channels; ``"none"`` only clips to ``[0, 1]``.
    pad : int, default 1
        Width in pixels of the separators between tiles.
    pad_value : float, default 1.0
        Value of separators and of empty trailing tiles/pixels.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(rows * H + (rows - 1) * pad,
        cols * W + (cols - 1) * pad)`` with values in ``[0, 1]``; channel
        ``k`` sits at tile row ``k // cols``, tile column ``k % cols``.
    """
    if normalize not in _MODES:
        raise ValueError(f"unknown normalize mode {normalize!r}; valid names: {', '.join(_MODES)}")
    if max_channels < 1:
        raise ValueError(f"max_channels must be >= 1, got {max_channels}")
    if pad < 0 or not 0.0 <= pad_value <= 1.0:
        raise ValueError(f"need pad >= 0 and pad_value in [0, 1], got {pad}, {pad_value}")
    a = np.nan_to_num(np.asarray(activations, dtype=np.float64))
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]

    if a.ndim == 1:
        # Dense layer: one near-square tile, one pixel per unit.
        n = a.shape[0]
        side_w = max(1, math.ceil(math.sqrt(n)))
        side_h = max(1, math.ceil(n / side_w))
        vals = a if normalize == "none" else _rescale(a, None)
        tile = np.full(side_h * side_w, float(pad_value))
        tile[:n] = np.clip(vals, 0.0, 1.0)
        return tile.reshape(side_h, side_w)

    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3:
        raise ValueError(
            f"expected (H, W, C), (1, H, W, C), (H, W) or (C,) activations, got shape {np.shape(activations)}"
        )
    a = a[..., :max_channels]
    h, w, n = a.shape
    if normalize == "per_channel":
        a = _rescale(a, (0, 1))
    elif normalize == "global":
        a = _rescale(a, None)
    a = np.clip(a, 0.0, 1.0)

    cols = int(ncols) if ncols is not None else max(1, math.ceil(math.sqrt(n)))
    if cols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad), float(pad_value))
    for k in range(n):
        r, c = divmod(k, cols)
        y, x = r * (h + pad), c * (w + pad)
        out[y : y + h, x : x + w] = a[..., k]
    return out
