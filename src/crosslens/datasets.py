"""Small data sets for evaluating explanations (numpy only; nothing is downloaded).

:func:`clever_hans` builds a "Clever Hans" task (Lapuschkin et al. 2019): the label can
be read from the image content *and* from a small watermark patch that every image of
one class carries. A model trained on it takes the shortcut, so a faithful explanation
of that class puts its relevance on the watermark; the known watermark mask makes this
measurable (:func:`crosslens.evaluate.relevance_mass`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .core.errors import OptionError

SOURCES = ("digits", "synthetic")


@dataclass
class CleverHans:
    """A watermarked binary classification data set (images channels-last, in [0, 1]).

    Attributes
    ----------
    x_train, x_test
        Images ``(N, size, size, 1)`` float32.
    y_train, y_test
        Labels ``(N,)`` int64: 1 for digits 5-9 (digits source) or vertical bars
        (synthetic), else 0.
    mask
        ``(size, size)`` boolean mask of the watermark patch.
    patch_class
        The class whose images (all of them, train and test) carry the watermark.
    source
        ``"digits"`` or ``"synthetic"``.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mask: np.ndarray
    patch_class: int
    source: str

    @staticmethod
    def to_layout(x: np.ndarray, layout: str) -> np.ndarray:
        """Images in ``"channels_last"`` (as stored) or ``"channels_first"`` layout."""
        if layout == "channels_first":
            return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
        if layout == "channels_last":
            return x
        raise OptionError(f"layout must be 'channels_first' or 'channels_last', got {layout!r}")

    def remove_patch(self, x: np.ndarray) -> np.ndarray:
        """A copy of channels-last images with the watermark area set to background (0)."""
        out = np.array(x, copy=True)
        out[:, self.mask] = 0.0
        return out

    def watermarked_test(self, count: int | None = None) -> np.ndarray:
        """Indices of test images that carry the watermark (the first ``count``)."""
        index = np.flatnonzero(self.y_test == self.patch_class)
        return index if count is None else index[:count]


def clever_hans(seed: int = 0, n: int = 600, *, source: str = "digits", size: int = 16,
                patch: int = 4, test_fraction: float = 0.25, patch_class: int = 1,
                noise: float = 0.02) -> CleverHans:
    """A watermarked binary data set whose label a model can read off a corner patch.

    Parameters
    ----------
    seed
        Seed of the sampling, the split and the noise.
    n
        Number of images (train + test).
    source
        ``"digits"``: scikit-learn's 8x8 handwritten digits (shipped with scikit-learn)
        in the centre of the image (upsampled bilinearly when ``size - 2 * patch`` is
        more than 8), label ``digit >= 5``.
        ``"synthetic"``: a horizontal (label 0) or vertical (label 1) bar of random
        position and length.
    size
        Image side in pixels; the content fills the centre, leaving a ``patch``-wide
        border.
    patch
        Side of the watermark: a bright square in the top-left corner, on every image of
        ``patch_class``.
    test_fraction
        Share of the images held out as the test split.
    patch_class
        The class that carries the watermark.
    noise
        Standard deviation of Gaussian pixel noise (clipped to [0, 1]).

    Returns
    -------
    CleverHans
    """
    if source not in SOURCES:
        raise OptionError(f"source must be one of {SOURCES}, got {source!r}")
    inner = size - 2 * patch
    if patch < 1 or inner < 8:
        raise OptionError(f"size {size} leaves no room for {patch}-pixel watermarks around "
                          "the content; use size >= 2 * patch + 8")
    rng = np.random.default_rng(seed)
    content, labels = (_digits if source == "digits" else _bars)(rng, n, inner)
    images = np.zeros((n, size, size), dtype=np.float64)
    images[:, patch:patch + inner, patch:patch + inner] = content
    mask = np.zeros((size, size), dtype=bool)
    mask[:patch, :patch] = True
    images[labels == patch_class] = np.where(mask, 1.0, images[labels == patch_class])
    if noise > 0:
        images = np.clip(images + rng.normal(0.0, noise, images.shape), 0.0, 1.0)
    images = images[..., None].astype(np.float32)
    n_test = max(1, int(round(n * test_fraction)))
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    return CleverHans(images[train], labels[train], images[test], labels[test], mask,
                      patch_class, source)


def _digits(rng: np.random.Generator, n: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - scikit-learn is a dev dependency
        raise OptionError("source='digits' needs scikit-learn (pip install scikit-learn); "
                          "or use source='synthetic'") from error
    from .viz import resize_bilinear

    digits = load_digits()
    pick = rng.choice(len(digits.target), size=n, replace=n > len(digits.target))
    small = digits.images[pick] / 16.0
    if inner == 8:
        return small, (digits.target[pick] >= 5).astype(np.int64)
    content = np.stack([np.clip(resize_bilinear(image, (inner, inner)), 0.0, 1.0)
                        for image in small])
    return content, (digits.target[pick] >= 5).astype(np.int64)


def _bars(rng: np.random.Generator, n: int, inner: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 2, size=n).astype(np.int64)
    content = np.zeros((n, inner, inner))
    width = max(2, inner // 8)
    for i, label in enumerate(labels):
        length = rng.integers(inner // 2, inner + 1)
        start = rng.integers(0, inner - length + 1)
        offset = rng.integers(0, inner - width + 1)
        if label:
            content[i, start:start + length, offset:offset + width] = 1.0
        else:
            content[i, offset:offset + width, start:start + length] = 1.0
    return content, labels
