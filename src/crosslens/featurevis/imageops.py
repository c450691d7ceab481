"""Linear image operators on ``(N, H, W, C)`` numpy batches, with their adjoints.

Separable operators are applied as small dense matrices per axis (``out = A @ img @ B.T``
per channel), so the adjoint is the same product with the transposed matrices.
"""
from __future__ import annotations

import numpy as np


def apply_separable(images: np.ndarray, rows: np.ndarray | None,
                    cols: np.ndarray | None) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image and channel of ``(N, H, W, C)``."""
    out = images
    if rows is not None:
        out = np.einsum("ah,nhwc->nawc", rows, out, optimize=True)
    if cols is not None:
        out = np.einsum("bw,nawc->nabc", cols, out, optimize=True)
    return out


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear interpolation matrix, half-pixel centres
    (``align_corners=False``, no antialiasing: ``torch.nn.functional.interpolate``)."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(matrix, (np.arange(n_out), i1), w1)
    return matrix


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` Gaussian blur matrix with symmetric (mirror) boundary; rows sum to 1."""
    if sigma <= 0:
        return np.eye(n)
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    index = np.pad(np.arange(n), radius, mode="symmetric")  # mirrored source of each tap
    matrix = np.zeros((n, n))
    rows = np.repeat(np.arange(n), len(offsets))
    cols = index[np.arange(n)[:, None] + radius + offsets[None, :]].reshape(-1)
    np.add.at(matrix, (rows, cols), np.tile(kernel, n))
    return matrix


def gaussian_blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (std ``sigma`` pixels) of ``(N, H, W, C)`` images."""
    _, h, w, _ = images.shape
    return apply_separable(images, gaussian_matrix(h, sigma), gaussian_matrix(w, sigma))
