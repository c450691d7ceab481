"""Turning images and raw attribution arrays into displayable colors.

Only numpy is imported at module level; matplotlib (for colormaps) is imported
inside :func:`heatmap_rgba` so that ``import crosslens.viz`` stays cheap.

Display scaling
---------------
Attributions are never changed; only how values map to colors is chosen, per map,
by :func:`display_scale` (one :class:`DisplayScale` per map, which the overlay, the
heatmap and the colour bar all use, so the bar shows exactly the range mapped):

- ``"percentile"``: Captum's ``outlier_perc`` rule (``visualize_image_attr``):
  the threshold ``t`` is the value of ``|a|`` at which the cumulative sum of the
  sorted ``|a|`` reaches ``100 - outlier_perc`` % of the total; ``|a| >= t``
  saturates. Signed maps span ``[-t, t]`` on a diverging colormap with zero at
  its neutral centre; unsigned maps color ``|a|`` over ``[0, t]``.
- ``"max_abs"``: as ``"percentile"`` with ``t = max |a|`` (nothing clipped).
- ``"minmax"``: ``[min(a), max(a)]`` stretched over a sequential colormap. Meant
  for maps with a constant offset (RISE: a score-weighted mean of masks is about
  the mean score everywhere; occlusion when every window lowers the score), where
  scaling from zero would spend most of the colour range on the offset.
- ``"auto"`` (default): ``"minmax"`` when the map :func:`has_offset`, else
  ``"percentile"`` with Captum's default ``outlier_perc=2``. The choice is made
  from the map itself, so it follows the method without a list of method names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
from numpy.typing import ArrayLike

from ..core.imageops import REDUCTIONS, is_channel_broadcast, reduce_channels

__all__ = [
    "REDUCTIONS",
    "NORMALIZATIONS",
    "SCALES",
    "DEFAULT_OUTLIER_PERC",
    "OFFSET_RATIO",
    "DisplayScale",
    "display_scale",
    "has_offset",
    "is_signed",
    "is_channel_broadcast",
    "outlier_threshold",
    "to_display_image",
    "reduce_channels",
    "normalize",
    "heatmap_rgba",
]

NORMALIZATIONS = ("max_abs", "minmax", "sum", "percentile")
#: Display scalings accepted by :func:`display_scale` (``scale=``).
SCALES = ("auto", "percentile", "minmax", "max_abs")
#: Captum ``visualize_image_attr``'s default: the top 2 % of the |a| mass saturates.
DEFAULT_OUTLIER_PERC = 2.0
#: A one-signed map whose smallest magnitude is at least this fraction of its largest
#: has an offset (see :func:`has_offset`): scaled from zero, over half of the colour
#: range would show the offset and less than half the map's structure.
OFFSET_RATIO = 0.5
# A map counts as signed when its negative mass exceeds this fraction of its
# positive mass: tiny negative noise (e.g. float error in a ReLU-ed Grad-CAM)
# should not switch the display to a diverging colormap.
SIGNED_MASS_RATIO = 0.01

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


def has_offset(map2d: ArrayLike, ratio: float = OFFSET_RATIO) -> bool:
    """Whether a map sits on a constant offset that is large relative to its spread.

    Parameters
    ----------
    map2d : array_like
        Attribution map (any shape).
    ratio : float, default OFFSET_RATIO (0.5)
        Threshold on ``min |a| / max |a|``.

    Returns
    -------
    bool
        True when every value has the same strict sign, the map is not constant and
        ``min |a| >= ratio * max |a|``. With the default ratio this says the offset
        (``min |a|``) is at least the spread (``max |a| - min |a|``): a colour scale
        starting at zero would spend at least half its range on the offset. RISE maps
        (about the mean score everywhere, e.g. 28.2 to 32.6 for a logit of 30) are the
        typical case.
    """
    a = _finite(map2d)
    if a.size == 0:
        return False
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return False
    if lo > 0.0:
        return lo >= ratio * hi
    if hi < 0.0:
        return -hi >= ratio * -lo
    return False


def outlier_threshold(values: ArrayLike, outlier_perc: float = DEFAULT_OUTLIER_PERC) -> float:
    """Captum's saturation threshold for ``outlier_perc``, on ``|values|``.

    Exactly Captum's ``_cumulative_sum_threshold(np.abs(values), 100 - outlier_perc)``
    (``captum.attr._utils.visualization``, used by ``visualize_image_attr``): sort
    ``|a|``, and return the first sorted value at which the cumulative sum reaches
    ``(100 - outlier_perc)`` % of the total. Note that this is a share of the total
    mass of ``|a|``, not ``np.percentile`` of ``|a|``: it clips the largest values that
    together hold the top ``outlier_perc`` % of the attribution mass.

    Parameters
    ----------
    values : array_like
        Attribution (any shape); its magnitudes are used.
    outlier_perc : float, default 2
        Share of the mass of ``|a|`` (in percent, ``0 <= outlier_perc < 100``) that
        saturates; 0 gives ``max |a|``.

    Returns
    -------
    float
        The threshold ``t``; 0.0 for an empty or all-zero map, and ``max |a|`` where
        float rounding leaves no sorted value reaching the share (both cases where
        Captum raises instead).
    """
    _check_outlier_perc(outlier_perc)
    mag = np.abs(_finite(values))
    if mag.size == 0:
        return 0.0
    sorted_vals = np.sort(mag.flatten())
    cum_sums = np.cumsum(sorted_vals)
    if cum_sums[-1] <= 0.0:
        return 0.0
    percentile = 100.0 - outlier_perc
    hits = np.where(cum_sums >= cum_sums[-1] * 0.01 * percentile)[0]
    # With outlier_perc=0, rounding in ``total * 0.01 * 100`` can exceed the total and
    # leave no hit (Captum raises IndexError there): the answer is then the maximum.
    return float(sorted_vals[hits[0] if hits.size else -1])


def _check_outlier_perc(outlier_perc: float) -> None:
    if not isinstance(outlier_perc, (int, float, np.integer, np.floating)) or isinstance(
            outlier_perc, bool) or not 0.0 <= float(outlier_perc) < 100.0:
        raise ValueError(f"outlier_perc is the percent of the |a| mass that saturates and "
                         f"must be a number in [0, 100); got {outlier_perc!r}")


def _tick(value: float) -> str:
    """Colour-bar and legend label of a value (3 significant digits)."""
    return f"{value:.3g}"


@dataclass(frozen=True)
class DisplayScale:
    """How one attribution map's values map to colors (the map itself is untouched).

    Build it with :func:`display_scale`. The same object drives the overlay
    (:func:`heatmap_rgba`), the colour bar and the report legend, so all three
    agree on the range shown.

    Attributes
    ----------
    mode : {"percentile", "minmax", "max_abs"}
        The scaling used (``"auto"`` is resolved to one of these).
    signed : bool
        True: diverging colormap, ``[-vmax, vmax]``, zero at its neutral centre.
        False: sequential colormap of ``|a|`` over ``[0, vmax]`` (``"percentile"``,
        ``"max_abs"``) or of ``a`` over ``[vmin, vmax]`` (``"minmax"``).
    vmin, vmax : float
        Value range mapped to the ends of the colormap (what the colour bar shows);
        values beyond it saturate.
    outlier_perc : float or None
        Captum ``outlier_perc`` for ``"percentile"``, else None.
    reason : str
        Why this scaling was chosen (for legends), e.g. the offset test's numbers.
    """

    mode: str
    signed: bool
    vmin: float
    vmax: float
    outlier_perc: Optional[float] = None
    reason: str = ""

    @property
    def shows_magnitude(self) -> bool:
        """True when an unsigned percentile / max_abs display colors ``|a|``."""
        return not self.signed and self.mode != "minmax"

    def position(self, map2d: ArrayLike) -> np.ndarray:
        """Colormap positions in ``[0, 1]`` (0.5 is zero for signed maps)."""
        return (self.unit(map2d) + 1.0) / 2.0 if self.signed else self.unit(map2d)

    def unit(self, map2d: ArrayLike) -> np.ndarray:
        """Values scaled as Captum's ``_normalize_scale``: ``clip(a / t, -1, 1)``.

        Signed: ``clip(a / vmax, -1, 1)``; unsigned ``|a|``: ``clip(|a| / vmax, 0, 1)``;
        min–max: ``clip((a - vmin) / (vmax - vmin), 0, 1)``. A zero range gives zeros.
        """
        a = _finite(map2d)
        if self.mode == "minmax":
            span = self.vmax - self.vmin
            return np.clip((a - self.vmin) / span, 0.0, 1.0) if span > 0 else np.zeros_like(a)
        if self.vmax <= 0:
            return np.zeros_like(a)
        if self.signed:
            return np.clip(a / self.vmax, -1.0, 1.0)
        return np.clip(np.abs(a) / self.vmax, -1.0, 1.0)

    def ticks(self) -> list[float]:
        """Colour-bar ticks: both ends of the mapped range, and zero for signed maps."""
        ends = [self.vmin, 0.0, self.vmax] if self.signed else [self.vmin, self.vmax]
        return sorted(set(ends))

    def range_text(self) -> str:
        """The mapped range, e.g. ``"[-0.012, 0.012]"`` or ``"|a| in [0, 3.1]"``."""
        text = f"[{_tick(self.vmin)}, {_tick(self.vmax)}]"
        return f"|a| in {text}" if self.shows_magnitude else text

    def rule_text(self, reason: bool = True) -> str:
        """One sentence on the scaling rule (and why it was chosen), for legends."""
        if self.mode == "percentile":
            rule = (f"percentile (Captum outlier_perc={self.outlier_perc:g}): the largest "
                    f"|a| holding the top {self.outlier_perc:g} % of the |a| mass saturate")
        elif self.mode == "max_abs":
            rule = "max_abs: scaled by max |a|, nothing clipped"
        else:
            rule = "min-max: the lowest value at the dark end, the highest at the bright end"
        return f"{rule} ({self.reason})" if reason and self.reason else rule

    def colors_text(self, cmap: Optional[str] = None) -> str:
        """What the colours mean, for legends (``cmap`` defaults to the scale's default)."""
        if self.signed:
            name = cmap or DEFAULT_SIGNED_CMAP
            sides = (" (blue negative, white zero, red positive)"
                     if name == DEFAULT_SIGNED_CMAP else " (zero at its centre)")
            return f"signed, diverging {name}{sides}; opacity grows with |a|"
        name = cmap or DEFAULT_ABS_CMAP
        if self.mode == "minmax":
            return (f"unsigned, sequential {name} of the value: transparent at the minimum, "
                    "bright and opaque at the maximum; the offset below the minimum is not "
                    "coloured")
        return (f"unsigned, sequential {name} of |a|: transparent at 0, bright and opaque "
                "at the top of the range")

    def short(self) -> str:
        """A few words for a colour-bar label."""
        if self.mode == "percentile":
            return f"top {self.outlier_perc:g}% clipped"
        return "min-max" if self.mode == "minmax" else "max |a|"


def display_scale(
    map2d: ArrayLike,
    scale: Union[str, DisplayScale] = "auto",
    *,
    outlier_perc: float = DEFAULT_OUTLIER_PERC,
    signed: Optional[bool] = None,
) -> DisplayScale:
    """Choose how a map's values map to colors (see the module docstring).

    Parameters
    ----------
    map2d : array_like
        Raw attribution map (any shape; typically ``(H, W)`` after channel reduction).
    scale : {"auto", "percentile", "minmax", "max_abs"} or DisplayScale, default "auto"
        ``"auto"``: ``"minmax"`` if the map :func:`has_offset` (and ``signed`` is not
        True), else ``"percentile"``. ``"percentile"``: Captum's ``outlier_perc``
        clipping (:func:`outlier_threshold`). ``"max_abs"``: scale by ``max |a|``.
        ``"minmax"``: stretch ``[min, max]`` over a sequential colormap. A
        :class:`DisplayScale` is returned as it is (to reuse one scale).
    outlier_perc : float, default 2
        Percent of the ``|a|`` mass that saturates with ``"percentile"`` (Captum's
        default is 2).
    signed : bool, optional
        Force a diverging (True) or sequential (False) display; ``None`` decides with
        :func:`is_signed` (and ``"minmax"`` is always sequential).

    Returns
    -------
    DisplayScale

    Raises
    ------
    ValueError
        For an unknown ``scale``, an ``outlier_perc`` outside ``[0, 100)``, or
        ``scale="minmax"`` with ``signed=True`` (min-max cannot keep zero at the
        neutral colour).
    """
    if isinstance(scale, DisplayScale):
        return scale
    if scale not in SCALES:
        raise ValueError(f"unknown display scale {scale!r}; valid names: {', '.join(SCALES)}")
    _check_outlier_perc(outlier_perc)
    a = _finite(map2d)
    reason = ""
    if scale == "auto":
        if signed is not True and has_offset(a):
            mag = np.abs(a)
            scale = "minmax"
            sign = "positive" if a.min() > 0 else "negative"
            reason = (f"auto: all values {sign} with min|a|/max|a| = "
                      f"{mag.min() / mag.max():.2f} >= {OFFSET_RATIO:g}, an offset")
        else:
            scale = "percentile"
            if signed is True:
                reason = "auto: signed display requested"
            elif a.size and a.min() < 0 < a.max():
                reason = "auto: values of both signs, no offset"
            else:
                reason = f"auto: min|a| < {OFFSET_RATIO:g} max|a|, no offset"
    if scale == "minmax":
        if signed:
            raise ValueError("scale='minmax' stretches [min, max] over a sequential colormap "
                             "and cannot keep zero at the neutral colour; use "
                             "scale='percentile' or 'max_abs' for a signed display, or "
                             "signed=False/None with 'minmax'")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        return DisplayScale("minmax", False, lo, hi, None, reason)
    sign = is_signed(a) if signed is None else bool(signed)
    if scale == "percentile":
        t = outlier_threshold(a, outlier_perc)
        perc: Optional[float] = float(outlier_perc)
    else:
        t = float(np.abs(a).max()) if a.size else 0.0
        perc = None
    return DisplayScale(scale, sign, -t if sign and t > 0 else 0.0, t, perc, reason)


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
    signed: Optional[bool] = None,
    cmap: Union[str, Any, None] = None,
    *,
    scale: Union[str, DisplayScale] = "auto",
    outlier_perc: float = DEFAULT_OUTLIER_PERC,
) -> np.ndarray:
    """Color a 2-D attribution map, with an alpha channel for overlays.

    Parameters
    ----------
    map2d : array_like
        Attribution of shape ``(H, W)`` (raw, signed, unnormalized).
    signed : bool, optional
        True: diverging colormap centered at zero and scaled symmetrically (default
        ``"bwr"``: blue negative, white zero, red positive). False: sequential
        colormap (default ``"inferno"``) of ``|a|``, or of ``a`` with ``"minmax"``.
        None: decided by :func:`display_scale`.
    cmap : str or matplotlib.colors.Colormap, optional
        Colormap overriding the default.
    scale : {"auto", "percentile", "minmax", "max_abs"} or DisplayScale, default "auto"
        Display scaling, see :func:`display_scale`.
    outlier_perc : float, default 2
        Captum's ``outlier_perc`` for ``scale="percentile"`` (and ``"auto"``).

    Returns
    -------
    numpy.ndarray
        ``float64`` RGBA array of shape ``(H, W, 4)`` in ``[0, 1]``. The alpha
        channel is ``sqrt(u)`` where ``u`` in ``[0, 1]`` is the scaled magnitude
        (:meth:`DisplayScale.unit`, absolute for signed maps): 0 at zero attribution
        (or at the minimum of a min-max map), so overlays show the photo there.
    """
    a = _finite(map2d)
    if a.ndim != 2:
        raise ValueError(f"heatmap_rgba expects a 2-D map, got shape {a.shape}; reduce channels first")
    ds = display_scale(a, scale, outlier_perc=outlier_perc, signed=signed)
    cm = _get_cmap(cmap, ds.signed)
    rgba = np.asarray(cm(ds.position(a)), dtype=np.float64)
    # sqrt so mid-strength regions are clearly visible in overlays while zero
    # stays fully transparent; linear alpha made half-scale evidence too faint.
    rgba[..., 3] = np.sqrt(np.abs(ds.unit(a)))
    return rgba
