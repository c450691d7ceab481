"""Compositing an attribution heatmap over its input image."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from .colors import heatmap_rgba, reduce_channels, to_display_image
from .resize import resize_bilinear

__all__ = ["is_signed", "prepare_map", "overlay"]

# A map counts as signed when its negative mass exceeds this fraction of its
# positive mass: tiny negative noise (e.g. float error in a ReLU-ed Grad-CAM)
# should not switch the display to a diverging colormap.
SIGNED_MASS_RATIO = 0.01


def is_signed(attr: ArrayLike) -> bool:
    """Whether an attribution has material mass of both signs.

    Parameters
    ----------
    attr : array_like
        Attribution of any shape.

    Returns
    -------
    bool
        True when ``sum |a| over a < 0`` is more than 1 % of ``sum a over
        a > 0`` (an all-negative map counts as signed).
    """
    a = np.nan_to_num(np.asarray(attr, dtype=np.float64))
    pos = float(a[a > 0].sum())
    neg = float(-a[a < 0].sum())
    return neg > SIGNED_MASS_RATIO * pos if neg > 0 else False


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
        Channel reduction, see :func:`crosslens.viz.reduce_channels`.

    Returns
    -------
    numpy.ndarray
        ``float64`` map of shape ``(H, W)``.
    """
    m = reduce_channels(attribution, reduce)
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
    clip_percentile: float = 99.5,
) -> np.ndarray:
    """Blend an attribution heatmap over an image.

    Parameters
    ----------
    image : array_like
        Channels-last image ``(H, W)``, ``(H, W, 1)`` or ``(H, W, 3)``;
        ``uint8`` is read as ``[0, 255]``, other dtypes are min/max rescaled.
    attribution : array_like
        Raw attribution ``(h, w)`` or ``(h, w, C)``. Channels are reduced with
        ``reduce``; a different spatial size is upsampled bilinearly
        (``align_corners=False``) to ``(H, W)``.
    signed : bool, optional
        Diverging (True) or magnitude (False) coloring. ``None`` decides from
        the data with :func:`is_signed`.
    cmap : str or matplotlib.colors.Colormap, optional
        Colormap; defaults to ``"bwr"`` (signed) or ``"inferno"`` (absolute).
    alpha : float, default 0.6
        Opacity of the heatmap where the attribution saturates; the per-pixel
        opacity is ``alpha * sqrt(min(|a| / scale, 1))``, so zero attribution leaves
        the image untouched.
    reduce : str, default "sum"
        Channel reduction for ``(h, w, C)`` attributions.
    clip_percentile : float, default 99.5
        Percentile of ``|a|`` that saturates the colormap.

    Returns
    -------
    numpy.ndarray
        ``uint8`` RGB array of shape ``(H, W, 3)``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_display_image(image)
    m = prepare_map(attribution, img.shape[:2], reduce)
    if signed is None:
        signed = is_signed(m)
    rgba = heatmap_rgba(m, signed=bool(signed), cmap=cmap, clip_percentile=clip_percentile)
    w = alpha * rgba[..., 3:4]
    out = img * (1.0 - w) + rgba[..., :3] * w
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
