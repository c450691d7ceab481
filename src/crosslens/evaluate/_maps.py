"""Attributions of any form -> per-pixel relevance maps ``(N, H, W)`` (numpy).

Metrics score pixels: input-space attributions are summed over the channel axis
(signed; the layout says which axis), 2-D-per-sample maps (CAMs) are taken as they
are, and maps of another spatial size are upsampled bilinearly to the input's.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.errors import InputError
from ..core.explanation import Explanation


def relevance_maps(attributions: Any, layout: str | None = None,
                   size: tuple[int, int] | None = None) -> np.ndarray:
    """Per-pixel relevance ``(N, H, W)`` as float64.

    Parameters
    ----------
    attributions
        An :class:`~crosslens.Explanation`, or an array: ``(N, C, H, W)`` /
        ``(N, H, W, C)`` input-space attributions (``layout`` says which), ``(N, H, W)``
        maps, or ``(N, F)`` feature attributions (kept as ``(N, 1, F)``).
    layout
        ``"channels_first"`` or ``"channels_last"`` for 4-D arrays (taken from the
        Explanation when one is given).
    size
        ``(H, W)`` to resize the maps to (bilinear, ``align_corners=False``).
    """
    if isinstance(attributions, Explanation):
        layout = attributions.layout
        attributions = attributions.attributions
    array = to_numpy(attributions).astype(np.float64)
    if array.ndim == 4:
        if layout not in ("channels_first", "channels_last"):
            raise InputError("4-D attributions need layout='channels_first' (N, C, H, W) or "
                             "'channels_last' (N, H, W, C); pass the Explanation instead")
        maps = array.sum(axis=1 if layout == "channels_first" else 3)
    elif array.ndim == 3:
        maps = array
    elif array.ndim == 2:
        maps = array[:, None, :]
    else:
        raise InputError(f"cannot read attributions of shape {array.shape} as per-pixel maps")
    if size is not None and tuple(maps.shape[1:]) != tuple(size):
        from ..viz import resize_bilinear
        maps = np.stack([resize_bilinear(m, tuple(size)) for m in maps])
    return maps


def spatial_size(shape: tuple[int, ...], layout: str | None) -> tuple[int, int]:
    """``(H, W)`` of an input batch shape (``(1, F)`` for feature vectors)."""
    if len(shape) == 4:
        return tuple(shape[2:]) if layout == "channels_first" else tuple(shape[1:3])
    if len(shape) == 2:
        return (1, shape[1])
    raise InputError(f"inputs of shape {shape} are neither images nor feature vectors")


def as_masks(masks: Any, n: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean masks ``(N, H, W)`` from one ``(H, W)`` mask or a batch of them."""
    array = to_numpy(masks).astype(bool)
    if array.ndim == 2:
        array = np.broadcast_to(array, (n,) + array.shape)
    if array.ndim != 3 or array.shape[0] != n:
        raise InputError(f"masks must be (H, W) or (N, H, W) with N={n}; got {array.shape}")
    if size is not None and tuple(array.shape[1:]) != tuple(size):
        raise InputError(f"masks are {array.shape[1:]} but the maps are {tuple(size)}; "
                         "give masks at the input's resolution")
    return array
