"""Turning images and raw attribution arrays into displayable colors.

Only numpy is imported at module level; matplotlib (for colormaps) is imported
inside :func:`heatmap_rgba` so that ``import crosslens.viz`` stays cheap.
"""

from __future__ import annotations

from typing import Any, Union

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "REDUCTIONS",
    "NORMALIZATIONS",
    "to_display_image",
    "reduce_channels",
    "normalize",
    "heatmap_scale",
    "heatmap_rgba",
]

REDUCTIONS = ("sum", "mean", "max_abs", "l2", "abs_sum")
NORMALIZATIONS = ("max_abs", "minmax", "sum", "percentile")

DEFAULT_SIGNED_CMAP = "bwr"
DEFAULT_ABS_CMAP = "inferno"


def _finite(a: ArrayLike) -> np.ndarray:
    """Float64 copy with NaN/inf replaced, so one bad pixel cannot blank a plot."""
    return np.nan_to_num(np.asarray(a, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def to_display_image(image: ArrayLike) -> np.ndarray:
    """Convert an image to RGB floats in ``[0, 1]`` for display.

    Parameters
    ----------
    image : array_like
        Image of shape ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or
        ``(H, W, 4)`` (alpha is dropped). ``uint8`` images are read as
        ``[0, 255]``; any other dtype is rescaled with its own min/max.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(H, W, 3)`` with values in ``[0, 1]``.
        A constant non-``uint8`` image is clipped to ``[0, 1]`` instead of
        rescaled (there is no range to stretch).
    """
    img = np.asarray(image)
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {img.shape}"
        )
    if img.shape[-1] == 4:
        img = img[..., :3]
    if img.dtype == np.uint8:
        out = img.astype(np.float64) / 255.0
    else:
        out = _finite(img)
        lo, hi = float(out.min()), float(out.max())
        if hi > lo:
            out = (out - lo) / (hi - lo)
        else:
            out = np.clip(out, 0.0, 1.0)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return out


def reduce_channels(attr: ArrayLike, how: str = "sum") -> np.ndarray:
    """Reduce a channels-last attribution map ``(H, W, C)`` to ``(H, W)``.

    Parameters
    ----------
    attr : array_like
        Attribution of shape ``(H, W, C)``; an ``(H, W)`` map is returned
        unchanged (as ``float64``).
    how : {"sum", "mean", "max_abs", "l2", "abs_sum"}
        ``"sum"`` and ``"mean"`` keep the sign; ``"max_abs"`` keeps, per
        pixel, the channel value of largest magnitude *with its sign*;
        ``"l2"`` (Euclidean norm over channels) and ``"abs_sum"`` (sum of
        absolute values) are non-negative.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of shape ``(H, W)``.

    Raises
    ------
    ValueError
        If ``how`` is not a known reduction or ``attr`` is not 2-D/3-D.
    """
    if how not in REDUCTIONS:
        raise ValueError(f"unknown channel reduction {how!r}; valid names: {', '.join(REDUCTIONS)}")
    a = np.asarray(attr, dtype=np.float64)
    if a.ndim == 2:
        return a.copy()
    if a.ndim != 3:
        raise ValueError(f"expected an (H, W) or (H, W, C) attribution, got shape {a.shape}")
    if how == "sum":
        return a.sum(axis=-1)
    if how == "mean":
        return a.mean(axis=-1)
    if how == "max_abs":
        idx = np.abs(a).argmax(axis=-1)[..., None]
        return np.take_along_axis(a, idx, axis=-1)[..., 0]
    if how == "l2":
        return np.sqrt((a * a).sum(axis=-1))
    return np.abs(a).sum(axis=-1)  # abs_sum


def normalize(attr: ArrayLike, how: str = "max_abs", *, percentile: float = 99.5) -> np.ndarray:
    """Normalize an attribution array (any shape) for display or comparison.

    Parameters
    ----------
    attr : array_like
        Raw signed attribution.
    how : {"max_abs", "minmax", "sum", "percentile"}
        ``"max_abs"``: divide by ``max |a|`` (sign kept, result in
        ``[-1, 1]``). ``"minmax"``: affine map to ``[0, 1]``. ``"sum"``:
        divide by ``sum |a|``. ``"percentile"``: clip to ``±p`` where ``p``
        is the ``percentile``-th percentile of ``|a|``, then divide by ``p``
        (sign kept, result in ``[-1, 1]``); ``p`` falls back to ``max |a|``
        when the percentile is 0 (very sparse maps).
    percentile : float, default 99.5
        Percentile used by ``how="percentile"``.

    Returns
    -------
    numpy.ndarray
        ``float64`` array of the same shape. An all-zero (or constant, for
        ``"minmax"``) input gives all zeros rather than NaNs.

    Raises
    ------
    ValueError
        If ``how`` is not a known normalization.
    """
    if how not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {how!r}; valid names: {', '.join(NORMALIZATIONS)}")
    a = _finite(attr)
    if a.size == 0:
        return a
    if how == "max_abs":
        d = float(np.abs(a).max())
        return a / d if d > 0 else np.zeros_like(a)
    if how == "minmax":
        lo, hi = float(a.min()), float(a.max())
        return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if how == "sum":
        d = float(np.abs(a).sum())
        return a / d if d > 0 else np.zeros_like(a)
    p = _robust_scale(a, percentile)
    return np.clip(a, -p, p) / p if p > 0 else np.zeros_like(a)


def _robust_scale(a: np.ndarray, percentile: float) -> float:
    """Percentile of ``|a|``, falling back to ``max |a|`` for sparse maps.

    A map with fewer than 0.5 % non-zero pixels has a 99.5th percentile of 0;
    falling back to the maximum keeps those few pixels visible.
    """
    mag = np.abs(a)
    if mag.size == 0:
        return 0.0
    p = float(np.percentile(mag, percentile))
    return p if p > 0 else float(mag.max())


def heatmap_scale(map2d: ArrayLike, clip_percentile: float = 99.5) -> float:
    """Magnitude that maps to full color in :func:`heatmap_rgba`.

    Parameters
    ----------
    map2d : array_like
        Attribution map.
    clip_percentile : float, default 99.5
        Percentile of ``|a|`` that saturates the colormap (``100`` = max).

    Returns
    -------
    float
        The scale (0.0 for an all-zero map). Useful for colorbars: signed
        heatmaps span ``[-scale, scale]``, absolute ones ``[0, scale]``.
    """
    return _robust_scale(_finite(map2d), clip_percentile)


def _get_cmap(cmap: Any, signed: bool):
    """Resolve a colormap name/object, with exact-white center for the default."""
    from matplotlib import colormaps
    from matplotlib.colors import Colormap

    if isinstance(cmap, Colormap):
        return cmap
    if cmap is None:
        if signed:
            # An odd LUT size puts a LUT entry exactly at 0.5, so zero is pure
            # white (the 256-entry default gives (1, .996, .996)).
            return colormaps[DEFAULT_SIGNED_CMAP].resampled(255)
        return colormaps[DEFAULT_ABS_CMAP]
    return colormaps[cmap]


def heatmap_rgba(
    map2d: ArrayLike,
    signed: bool,
    cmap: Union[str, Any, None] = None,
    clip_percentile: float = 99.5,
) -> np.ndarray:
    """Color a 2-D attribution map, with an alpha channel for overlays.

    Parameters
    ----------
    map2d : array_like
        Attribution of shape ``(H, W)`` (raw, signed, unnormalized).
    signed : bool
        If True, use a diverging colormap centered at zero and scaled
        symmetrically (default ``"bwr"``: blue negative, white zero, red
        positive). If False, color ``|a|`` with a sequential colormap
        (default ``"inferno"``).
    cmap : str or matplotlib.colors.Colormap, optional
        Colormap overriding the default.
    clip_percentile : float, default 99.5
        Values with ``|a|`` above this percentile of ``|a|`` saturate the
        colormap, so a few outlier pixels do not wash out the rest.

    Returns
    -------
    numpy.ndarray
        ``float64`` RGBA array of shape ``(H, W, 4)`` in ``[0, 1]``. The alpha
        channel is ``sqrt(min(|a| / scale, 1))``: it grows with ``|a|`` and is
        0 where the attribution is 0, so overlays show the photo there.
    """
    a = _finite(map2d)
    if a.ndim != 2:
        raise ValueError(f"heatmap_rgba expects a 2-D map, got shape {a.shape}; reduce channels first")
    scale = _robust_scale(a, clip_percentile)
    cm = _get_cmap(cmap, signed)
    if signed:
        v = np.clip(a / scale, -1.0, 1.0) if scale > 0 else np.zeros_like(a)
        rgba = np.asarray(cm((v + 1.0) / 2.0), dtype=np.float64)
        mag = np.abs(v)
    else:
        mag = np.clip(np.abs(a) / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(a)
        rgba = np.asarray(cm(mag), dtype=np.float64)
    # sqrt so mid-strength regions are clearly visible in overlays while zero
    # stays fully transparent; linear alpha made half-scale evidence too faint.
    rgba[..., 3] = np.sqrt(mag)
    return rgba
