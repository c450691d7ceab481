"""Compositing an attribution heatmap over its input image."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from .colors import (
    DEFAULT_OUTLIER_PERC,
    DisplayScale,
    heatmap_rgba,
    is_channel_broadcast,
    is_signed,
    reduce_channels,
    to_display_image,
)
from ..core.imageops import resize_bilinear

__all__ = ["is_signed", "prepare_map", "overlay"]


def prepare_map(
    attribution: ArrayLike, shape: Optional[tuple] = None, reduce: str = "sum"
) -> np.ndarray:
    """Reduce an attribution to ``(H, W)`` and resize it to ``shape``.

    Parameters
    ----------
    attribution : array_like
        ``(h, w)`` or channels-last ``(h, w, C)`` map.
    shape : tuple of int, optional
        Target ``(H, W)``; resized bilinearly (half-pixel centers) if it
        differs from ``(h, w)``.
    reduce : str, default "sum"
        Channel reduction, see :func:`crosslens.viz.reduce_channels`. A map that
        is identical in every channel (one map broadcast over the channels, as
        RISE and occlusion give) is reduced as one channel, not summed
        (:func:`crosslens.viz.is_channel_broadcast`).

    Returns
    -------
    numpy.ndarray
        ``float64`` map of shape ``(H, W)``.
    """
    a = np.asarray(attribution)
    if a.ndim == 3 and is_channel_broadcast(a):
        a = a[..., :1]
    m = reduce_channels(a, reduce)
    if shape is not None and m.shape != tuple(shape[:2]):
        m = resize_bilinear(m, tuple(shape[:2]))
    return m


def overlay(
    image: ArrayLike,
    attribution: ArrayLike,
    *,
    signed: Optional[bool] = None,
    cmap: Union[str, Any, None] = None,
    alpha: float = 0.6,
    reduce: str = "sum",
    scale: Union[str, DisplayScale] = "auto",
    outlier_perc: float = DEFAULT_OUTLIER_PERC,
) -> np.ndarray:
    """Blend an attribution heatmap over an image.

    Parameters
    ----------
    image : array_like
        Channels-last image ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``;
        ``uint8`` is read as ``[0, 255]``, other dtypes are min/max rescaled.
    attribution : array_like
        Raw attribution ``(h, w)`` or ``(h, w, C)``. Channels are reduced with
        ``reduce`` (see :func:`prepare_map`); a different spatial size is
        upsampled bilinearly (``align_corners=False``) to ``(H, W)``.
    signed : bool, optional
        Diverging (True) or sequential (False) coloring. ``None`` decides from
        the data (:func:`crosslens.viz.display_scale`).
    cmap : str or matplotlib.colors.Colormap, optional
        Colormap; defaults to ``"bwr"`` (signed) or ``"inferno"`` (unsigned).
    alpha : float, default 0.6
        Opacity of the heatmap where the display saturates; the per-pixel
        opacity is ``alpha * sqrt(u)`` with ``u`` the scaled magnitude in
        ``[0, 1]``, so zero attribution leaves the image untouched.
    reduce : str, default "sum"
        Channel reduction for ``(h, w, C)`` attributions.
    scale : {"auto", "percentile", "minmax", "max_abs"} or DisplayScale, default "auto"
        Display scaling (:func:`crosslens.viz.display_scale`): ``"auto"`` uses
        min-max for maps with an offset (RISE) and Captum's percentile clipping
        otherwise. Only the display changes, never the attribution.
    outlier_perc : float, default 2
        Captum's ``outlier_perc``: percent of the ``|a|`` mass that saturates
        with ``"percentile"``.

    Returns
    -------
    numpy.ndarray
        ``uint8`` RGB array of shape ``(H, W, 3)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_display_image(image)
    m = prepare_map(attribution, img.shape[:2], reduce)
    rgba = heatmap_rgba(m, signed=signed, cmap=cmap, scale=scale, outlier_perc=outlier_perc)
    w = alpha * rgba[..., 3:4]
    out = img * (1.0 - w) + rgba[..., :3] * w
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
