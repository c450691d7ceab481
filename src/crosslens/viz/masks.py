"""Mask visualizers: show only the part of an image that an attribution or a channel selects.

- :func:`attribution_mask` / :func:`mask_image`: keep the top fraction of an attribution
  map, smooth the kept region with a Gaussian blur and threshold it again (so the mask is
  made of compact regions rather than scattered pixels), then mask the image with it.
- :func:`channel_mask`: where in the input a channel of a layer responds. The map is the
  channel's upsampled activation, from ``cl.explain(model, x, "channel_mask",
  layer=..., channel=c)``; positions above ``threshold`` times its maximum are kept.

Inputs follow the package convention: images ``(H, W, C)`` (or ``(H, W)``), maps ``(H, W)``
or channels-last ``(H, W, C)`` attributions (reduced over channels first). A map of
another size is resized bilinearly to the image. The masked image keeps the image's own
values (not rescaled for display), with ``background`` outside the mask.
"""
from __future__ import annotations

from typing import Union

import numpy as np
from numpy.typing import ArrayLike

from .colors import reduce_channels
from ..core.imageops import resize_bilinear

__all__ = ["attribution_mask", "mask_image", "channel_mask", "apply_mask"]

SIGNS = ("absolute", "positive", "negative")


def _as_map(attribution: ArrayLike, reduce: str, size: tuple[int, int] | None) -> np.ndarray:
    """An ``(H, W)`` float64 map: channels reduced, resized to ``size`` when given."""
    amap = np.asarray(attribution, dtype=np.float64)
    if amap.ndim == 3:
        amap = reduce_channels(amap, reduce)
    if amap.ndim != 2:
        raise ValueError(f"expected an (H, W) map or an (H, W, C) attribution, got shape "
                         f"{amap.shape}")
    if size is not None and tuple(size) != amap.shape:
        amap = resize_bilinear(amap, tuple(size))
    return amap


def _image(image: ArrayLike) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) image, got shape {img.shape}")
    return img


def attribution_mask(attribution: ArrayLike, keep: float = 0.1, *, sign: str = "absolute",
                     blur_sigma: float = 2.0, threshold: float = 0.5, reduce: str = "sum",
                     size: tuple[int, int] | None = None) -> np.ndarray:
    """Boolean mask of the top ``keep`` fraction of an attribution, blurred and thresholded.

    Parameters
    ----------
    attribution : array_like
        Raw attribution map ``(H, W)`` or channels-last ``(H, W, C)``.
    keep : float
        Fraction of pixels (0 < keep <= 1) with the largest score that are kept before
        the blur (ties at the cut are kept too).
    sign : {"absolute", "positive", "negative"}
        The score ranked: ``|a|``, ``a`` (positive evidence) or ``-a``.
    blur_sigma : float
        Standard deviation in pixels of the Gaussian that smooths the binary top-``keep``
        mask; ``0`` keeps it as is.
    threshold : float
        The smoothed mask (values in ``[0, 1]``) is kept where it is ``>= threshold``.
    reduce : str
        Channel reduction for ``(H, W, C)`` attributions (see :func:`reduce_channels`).
    size : (int, int), optional
        Resize the map bilinearly to this ``(H, W)`` first (e.g. the image's size).

    Returns
    -------
    numpy.ndarray
        Boolean ``(H, W)`` mask.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be a fraction in (0, 1], got {keep}")
    if sign not in SIGNS:
        raise ValueError(f"unknown sign {sign!r}; choose one of {SIGNS}")
    amap = _as_map(attribution, reduce, size)
    score = np.abs(amap) if sign == "absolute" else amap if sign == "positive" else -amap
    count = max(1, int(np.ceil(keep * score.size)))
    cut = np.partition(score.ravel(), score.size - count)[score.size - count]
    mask = (score >= cut).astype(np.float64)
    if blur_sigma > 0:
        from ..core.imageops import gaussian_blur
        mask = gaussian_blur(mask, blur_sigma, axes=(0, 1))
    return mask >= threshold


def apply_mask(image: ArrayLike, mask: ArrayLike, background: float = 0.0) -> np.ndarray:
    """The image where ``mask`` is true and ``background`` elsewhere (float64)."""
    img = _image(image).astype(np.float64)
    keep = np.asarray(mask, dtype=bool)
    if keep.shape != img.shape[:2]:
        raise ValueError(f"mask of shape {keep.shape} does not match the image's "
                         f"{img.shape[:2]}")
    keep = keep[..., None] if img.ndim == 3 else keep
    return np.where(keep, img, float(background))


def mask_image(image: ArrayLike, attribution: ArrayLike, keep: float = 0.1, *,
               sign: str = "absolute", blur_sigma: float = 2.0, threshold: float = 0.5,
               reduce: str = "sum", background: float = 0.0,
               return_mask: bool = False) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The image restricted to the top ``keep`` fraction of its attribution.

    Parameters are those of :func:`attribution_mask` (the map is resized to the image),
    plus ``background``, the value outside the mask. With ``return_mask=True`` returns
    ``(masked_image, mask)``.

    Examples
    --------
    >>> exp = cl.explain(model, x, "integrated_gradients")           # doctest: +SKIP
    >>> shown = mask_image(exp.images()[0], exp.image_maps()[0], keep=0.05)  # doctest: +SKIP
    """
    img = _image(image)
    mask = attribution_mask(attribution, keep, sign=sign, blur_sigma=blur_sigma,
                            threshold=threshold, reduce=reduce, size=img.shape[:2])
    masked = apply_mask(img, mask, background)
    return (masked, mask) if return_mask else masked


def channel_mask(image: ArrayLike, channel_map: ArrayLike, threshold: float = 0.5, *,
                 background: float = 0.0,
                 return_mask: bool = False) -> Union[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Where in ``image`` a channel responds: its activation map thresholded as a mask.

    Parameters
    ----------
    image : array_like
        ``(H, W, C)`` or ``(H, W)`` image.
    channel_map : array_like
        ``(h, w)`` activation of one channel, e.g. ``cl.explain(model, x, "channel_mask",
        layer=..., channel=c).image_maps()[i]`` (already upsampled to the input); another
        size is resized bilinearly.
    threshold : float
        Kept where the map is ``>= threshold * max(map)``; a map with no positive value
        keeps nothing.
    background : float
        Value outside the mask.
    return_mask : bool
        Also return the boolean mask.
    """
    img = _image(image)
    amap = _as_map(channel_map, "sum", img.shape[:2])
    top = amap.max()
    mask = amap >= threshold * top if top > 0 else np.zeros(amap.shape, dtype=bool)
    masked = apply_mask(img, mask, background)
    return (masked, mask) if return_mask else masked
