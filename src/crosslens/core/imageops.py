"""Image operations on numpy arrays, one implementation for methods, viz and featurevis.

- Bilinear resizing with half-pixel centres (``align_corners=False``, no antialiasing):
  exactly ``torch.nn.functional.interpolate(mode="bilinear")``; :func:`axis_weights` is the
  one set of interpolation weights (the Keras backend gathers with it natively,
  :func:`resize_matrix` is it as a matrix for featurevis' adjoint-friendly operators).
- Gaussian blur, separable, taps out to ``ceil(3 sigma)``, normalized, with one edge mode:
  :data:`BLUR_EDGE` = numpy's ``"symmetric"`` (the edge pixel repeated: ``d c b a | a b c
  d``), which is scipy.ndimage's default ``"reflect"``, as used for blurred baselines by
  Sturmfels et al. 2020.
- Channel reductions of attribution maps for display (:func:`reduce_channels`,
  :func:`is_channel_broadcast`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

#: Boundary of every Gaussian blur (numpy ``np.pad`` mode; scipy's ``"reflect"``).
BLUR_EDGE = "symmetric"
#: Channel reductions of :func:`reduce_channels`.
REDUCTIONS = ("sum", "mean", "max_abs", "l2", "abs_sum")


# --- resizing ------------------------------------------------------------------------------

def axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights for one axis (half-pixel centers).

    Returns ``(i0, i1, w1)`` so that ``out[j] = (1 - w1[j]) * x[i0[j]] + w1[j] * x[i1[j]]``.
    """
    # torch's area_pixel_compute_scale: plain in/out ratio when a size is given.
    scale = n_in / n_out
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * scale - 0.5
    # torch clamps negative source coordinates to 0 (left/top border replicates).
    src = np.maximum(src, 0.0)
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w1 = src - i0
    return i0, i1, w1


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` bilinear interpolation matrix with :func:`axis_weights`."""
    i0, i1, w1 = axis_weights(n_in, n_out)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), i0), 1.0 - w1)
    np.add.at(matrix, (np.arange(n_out), i1), w1)
    return matrix


def resize_bilinear(array: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D map or a channels-last image with bilinear interpolation.

    Parameters
    ----------
    array : array_like
        Array of shape ``(H, W)`` or ``(H, W, C)``.
    size : tuple of int
        Target spatial size ``(H_out, W_out)``.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(H_out, W_out)`` or ``(H_out, W_out, C)``. Floating
        inputs keep their dtype; other inputs are returned as ``float64``.

    Notes
    -----
    Uses half-pixel centers (``align_corners=False``): output pixel ``j``
    samples source coordinate ``(j + 0.5) * H / H_out - 0.5``, clamped at 0,
    with the upper neighbour clamped at the border. This is identical to
    ``torch.nn.functional.interpolate(x, size, mode="bilinear",
    align_corners=False)`` (without antialiasing).
    """
    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {arr.shape}")
    if len(size) != 2:
        raise ValueError(f"size must be (H, W), got {size!r}")
    h_out, w_out = int(size[0]), int(size[1])
    if h_out <= 0 or w_out <= 0:
        raise ValueError(f"target size must be positive, got {size!r}")
    h_in, w_in = arr.shape[:2]
    if h_in == 0 or w_in == 0:
        raise ValueError(f"cannot resize an empty array of shape {arr.shape}")

    out_dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.float64
    x = arr.astype(np.float64, copy=False)

    # Separable: interpolate rows first, then columns (same result as the 2-D
    # formula since bilinear weights factorize).
    r0, r1, rw = axis_weights(h_in, h_out)
    c0, c1, cw = axis_weights(w_in, w_out)
    extra = (1,) * (x.ndim - 2)
    rw = rw.reshape((-1, 1) + extra)
    cw = cw.reshape((1, -1) + extra)
    rows = x[r0] * (1.0 - rw) + x[r1] * rw
    out = rows[:, c0] * (1.0 - cw) + rows[:, c1] * cw
    return out.astype(out_dtype, copy=False)



def apply_separable(images: np.ndarray, rows: np.ndarray | None,
                    cols: np.ndarray | None) -> np.ndarray:
    """``rows @ image @ cols.T`` for every image and channel of ``(N, H, W, C)``."""
    out = images
    if rows is not None:
        out = np.einsum("ah,nhwc->nawc", rows, out, optimize=True)
    if cols is not None:
        out = np.einsum("bw,nawc->nabc", cols, out, optimize=True)
    return out


# --- blur ----------------------------------------------------------------------------------

def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """``(n, n)`` Gaussian blur matrix (:data:`BLUR_EDGE` boundary); rows sum to 1."""
    if sigma <= 0:
        return np.eye(n)
    radius = max(1, int(np.ceil(3.0 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    index = np.pad(np.arange(n), radius, mode=BLUR_EDGE)  # source pixel of each tap
    matrix = np.zeros((n, n))
    rows = np.repeat(np.arange(n), len(offsets))
    cols = index[np.arange(n)[:, None] + radius + offsets[None, :]].reshape(-1)
    np.add.at(matrix, (rows, cols), np.tile(kernel, n))
    return matrix


def gaussian_blur(array: ArrayLike, sigma: float, axes: Sequence[int] = (1, 2)) -> np.ndarray:
    """Separable Gaussian blur (std ``sigma`` pixels) of ``array`` along ``axes`` (default
    the spatial axes of ``(N, H, W, C)`` images), in float64; ``sigma <= 0`` copies."""
    out = np.asarray(array, dtype=np.float64)
    for axis in axes:
        matrix = gaussian_matrix(out.shape[axis], sigma)
        out = np.moveaxis(np.tensordot(matrix, np.moveaxis(out, axis, 0), axes=(1, 0)), 0, axis)
    return out


# --- channel reductions (display) ------------------------------------------------------------

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


def is_channel_broadcast(attr: ArrayLike) -> bool:
    """Whether a channels-last array holds exactly the same values in every channel.

    Single-map methods (RISE, occlusion and feature ablation over full-depth windows)
    broadcast one map over the colour channels; such an array is one map, and summing
    its channels would multiply it by the number of channels.

    Parameters
    ----------
    attr : array_like
        Array whose last axis is the channel axis, e.g. ``(H, W, C)`` or ``(N, H, W, C)``.

    Returns
    -------
    bool
        True for at least 3-D arrays with more than one channel whose channels are
        all exactly equal (NaNs never compare equal, so a map with NaNs is not).
        Channels are compared one at a time, stopping at the first difference.
    """
    a = np.asarray(attr)
    if a.ndim < 3 or a.shape[-1] < 2:
        return False
    first = a[..., 0]
    return all(np.array_equal(first, a[..., c]) for c in range(1, a.shape[-1]))
