"""Localization: do attributions fall on a known region (an object, a watermark)?

- :func:`pointing_game` (Zhang et al. 2016): the most relevant pixel lies in the mask
  (or within ``tolerance`` pixels of it).
- :func:`relevance_mass` (Arras et al. 2022, "relevance mass accuracy"): the share of
  positive relevance that lies inside the mask.

Both work on numpy copies of any attributions (an Explanation, torch or TF arrays);
channels are summed (signed) per pixel and smaller maps (CAMs) are upsampled bilinearly
to the mask's size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._maps import as_masks, relevance_maps


def pointing_game(attributions: Any, masks: Any, *, layout: str | None = None,
                  tolerance: float = 0.0) -> np.ndarray:
    """Whether each sample's maximum of relevance hits its mask.

    Parameters
    ----------
    attributions
        An :class:`~crosslens.Explanation` or an array (see
        :func:`crosslens.evaluate.relevance_maps`).
    masks
        Boolean ``(H, W)`` mask for every sample, or ``(N, H, W)``.
    layout
        Layout of 4-D array attributions (read from an Explanation).
    tolerance
        A maximum within this Euclidean distance (pixels) of the mask counts as a hit.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` booleans; a constant map (no maximum) is a miss. ``.mean()`` is the
        pointing-game accuracy.
    """
    masks = np.asarray(masks)
    size = masks.shape[-2:]
    maps = relevance_maps(attributions, layout, size)
    masks = as_masks(masks, len(maps), size)
    hits = np.zeros(len(maps), dtype=bool)
    for i, (m, mask) in enumerate(zip(maps, masks)):
        if not mask.any() or m.max() == m.min():
            continue
        point = np.array(np.unravel_index(np.argmax(m), m.shape))
        if tolerance <= 0:
            hits[i] = bool(mask[tuple(point)])
        else:
            distance = np.sqrt(((np.argwhere(mask) - point) ** 2).sum(axis=1)).min()
            hits[i] = bool(distance <= tolerance)
    return hits


def relevance_mass(attributions: Any, masks: Any, *, layout: str | None = None,
                   positive: bool = True) -> np.ndarray:
    """Share of relevance inside the mask, per sample.

    Parameters
    ----------
    attributions, masks, layout
        As in :func:`pointing_game`.
    positive
        ``True``: share of the positive relevance ``Σ_mask max(r, 0) / Σ max(r, 0)``;
        ``False``: share of the absolute relevance.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` shares in ``[0, 1]``; ``nan`` for a map without (positive) relevance.
    """
    masks = np.asarray(masks)
    size = masks.shape[-2:]
    maps = relevance_maps(attributions, layout, size)
    masks = as_masks(masks, len(maps), size)
    mass = np.maximum(maps, 0.0) if positive else np.abs(maps)
    total = mass.reshape(len(maps), -1).sum(axis=1)
    inside = (mass * masks).reshape(len(maps), -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
