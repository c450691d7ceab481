"""The numbers a monitor logs, computed with numpy from maps and layer values.

Kept free of any framework and of the monitor's bookkeeping, so the tests can check
them against independent references (``scipy.stats.spearmanr``, plain loops).
"""
from __future__ import annotations

import numpy as np


def rank_rows(values: np.ndarray) -> np.ndarray:
    """Ranks ``0 .. M-1`` of each row of ``(N, M)`` values, ties given their mean rank."""
    values = np.asarray(values, dtype=np.float64)
    out = np.empty_like(values)
    for i, row in enumerate(values):
        _, inverse, counts = np.unique(row, return_inverse=True, return_counts=True)
        first = np.cumsum(counts) - counts  # rank of the first member of each tie group
        out[i] = (first + (counts - 1) / 2.0)[inverse]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each sample's map in ``a`` with its map in ``b``.

    Parameters
    ----------
    a, b
        ``(N, ...)`` maps of the same shape (each sample is flattened).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` correlations in ``[-1, 1]``; ``nan`` where a map is constant (its ranks
        carry no order to compare).
    """
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    if a.shape != b.shape:
        raise ValueError(f"maps of different shapes {a.shape} and {b.shape}")
    ra, rb = rank_rows(a), rank_rows(b)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    norm = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norm > 0, (ra * rb).sum(axis=1) / np.where(norm > 0, norm, 1.0),
                        np.nan)


def channel_means(values: np.ndarray, channel_axis: int) -> np.ndarray:
    """Mean of each channel (unit) of a layer over the probes and positions: ``(C,)``."""
    values = np.asarray(values, dtype=np.float64)
    axis = channel_axis % values.ndim
    return values.mean(axis=tuple(i for i in range(values.ndim) if i != axis))


def is_rectified(values: np.ndarray) -> bool:
    """Whether a layer's outputs are all non-negative on the probes (ReLU-like), the
    layers for which a dead-unit share is meaningful."""
    return bool(np.min(values) >= 0.0)


def dead_share(values: np.ndarray, channel_axis: int) -> float:
    """Share of channels (units) that output zero for every probe at every position."""
    values = np.asarray(values)
    axis = channel_axis % values.ndim
    alive = np.any(values != 0, axis=tuple(i for i in range(values.ndim) if i != axis))
    return float(1.0 - alive.mean())


def mass_share(maps: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of each map's absolute attribution inside a boolean ``(H, W)`` mask: ``(N,)``
    (``nan`` for an all-zero map)."""
    magnitude = np.abs(np.asarray(maps, dtype=np.float64)).reshape(len(maps), -1)
    total = magnitude.sum(axis=1)
    inside = magnitude[:, np.asarray(mask, dtype=bool).reshape(-1)].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)


def runner_up(outputs: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Per sample, the highest-scoring class other than ``classes`` (the contrast class of
    the class-sensitivity check)."""
    scores = np.array(outputs, dtype=np.float64, copy=True)
    scores[np.arange(len(scores)), np.asarray(classes)] = -np.inf
    return scores.argmax(axis=1)
