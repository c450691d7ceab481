"""First principal components of per-sample ``(positions, channels)`` matrices: the 2-D
projections behind Eigen-Grad-CAM, ``eigen_smooth`` and KPCA-CAM (float64 numpy, the
same for every framework).

pytorch-grad-cam's ``get_2d_projection`` centres each sample's ``(H·W, K)`` matrix over
the positions and projects it on its first right singular vector;
``get_2d_projection_kernel`` centres it likewise and takes the first component of
``sklearn.decomposition.KernelPCA``. Both are reproduced here without sklearn.

Sign: a principal component has no sign. pytorch-grad-cam's SVD projection keeps
whatever LAPACK returns; sklearn's ``KernelPCA`` (hence KPCA-CAM) and pytorch-grad-cam's
own sign correction (Seg-Eigen-CAM, Chung & Ying 2025, Eq. 13) make the entry of largest
magnitude positive. Every projection here does the latter (:func:`sign_fixed`), so maps
are deterministic and equal across frameworks.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import OptionError

#: Kernels of :func:`kernel_matrix` (sklearn's ``pairwise_kernels`` names).
KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")
#: sklearn ``KernelPCA`` defaults for the polynomial degree and the ``coef0`` of
#: ``poly`` and ``sigmoid`` (pytorch-grad-cam leaves them at the defaults).
POLY_DEGREE = 3
KERNEL_COEF0 = 1.0


def position_matrices(values: np.ndarray, channel_axis: int, batch_axis: int = 0
                      ) -> tuple[np.ndarray, tuple[int, int]]:
    """A rank-4 batch as float64 ``(N, H·W, K)`` matrices (positions in row-major
    ``(h, w)`` order, whatever the layout) and the spatial size ``(H, W)``."""
    a = np.moveaxis(np.asarray(values, dtype=np.float64), (batch_axis, channel_axis), (0, 3))
    n, h, w, k = a.shape
    return a.reshape(n, h * w, k), (h, w)


def sign_fixed(vector: np.ndarray) -> np.ndarray:
    """``vector`` with its entry of largest magnitude made positive (sklearn's
    ``svd_flip``; the first such entry on ties)."""
    return -vector if vector[np.argmax(np.abs(vector))] < 0 else vector


def principal_projection(matrix: np.ndarray) -> np.ndarray:
    """The centred ``(Z, K)`` matrix projected on its first right singular vector
    (pytorch-grad-cam ``get_2d_projection``), sign-fixed: ``(Z,)``."""
    centred = matrix - matrix.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return sign_fixed(centred @ vt[0])


def check_kernel(kernel: object, gamma: object) -> None:
    """Raise :class:`OptionError` unless ``kernel`` is one of :data:`KERNELS` and
    ``gamma`` is ``None`` or a positive finite number."""
    if not isinstance(kernel, str) or kernel not in KERNELS:
        raise OptionError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if gamma is None:
        return
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)) \
            or not np.isfinite(gamma) or gamma <= 0:
        raise OptionError(f"gamma must be a positive number (or None for 1 / channels, as "
                          f"sklearn), got {gamma!r}")


def kernel_matrix(x: np.ndarray, kernel: str, gamma: float) -> np.ndarray:
    """The ``(Z, Z)`` kernel matrix of the rows of ``x`` with sklearn's formulas:
    ``linear`` ``x·y``; ``poly`` ``(γ x·y + 1)³``; ``sigmoid`` ``tanh(γ x·y + 1)``;
    ``rbf`` ``exp(-γ |x - y|²)``; ``cosine`` ``x·y / (|x| |y|)`` (0 for a zero row)."""
    if kernel == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        unit = x / np.where(norms == 0, 1.0, norms)
        return unit @ unit.T
    gram = x @ x.T
    if kernel == "linear":
        return gram
    if kernel == "poly":
        return (gamma * gram + KERNEL_COEF0) ** POLY_DEGREE
    if kernel == "sigmoid":
        return np.tanh(gamma * gram + KERNEL_COEF0)
    squares = np.diag(gram)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2.0 * gram, 0.0)
    np.fill_diagonal(distances, 0.0)  # as sklearn's euclidean_distances
    return np.exp(-gamma * distances)


def kernel_projection(matrix: np.ndarray, kernel: str = "sigmoid",
                      gamma: float | None = None) -> np.ndarray:
    """First kernel principal component of the rows of the centred ``(Z, K)`` matrix
    (pytorch-grad-cam ``get_2d_projection_kernel``, i.e. sklearn ``KernelPCA(
    n_components=1).fit_transform``): ``u·sqrt(λ)`` for the top eigenpair of the
    doubly centred kernel matrix, sign-fixed. ``gamma=None`` is ``1 / K``.

    The eigendecomposition is dense, ``O(Z³)`` per sample (sklearn switches to ARPACK
    beyond 200 positions; the answer is the same).
    """
    centred = matrix - matrix.mean(axis=0)
    gamma = 1.0 / matrix.shape[1] if gamma is None else float(gamma)
    k = kernel_matrix(centred, kernel, gamma)
    rows = k.mean(axis=0, keepdims=True)
    k = k - rows - rows.T + k.mean()  # sklearn's KernelCenterer
    values, vectors = np.linalg.eigh(k)
    # the centred kernel has the eigenvector 1 with eigenvalue 0, so the top one is >= 0
    # up to rounding (sklearn raises on a negative top eigenvalue; 0 here)
    return sign_fixed(vectors[:, -1]) * np.sqrt(max(values[-1], 0.0))


def projection_maps(values: np.ndarray, channel_axis: int, batch_axis: int = 0, *,
                    kernel: str | None = None, gamma: float | None = None) -> np.ndarray:
    """``(N, H, W)`` maps of :func:`principal_projection` (``kernel=None``) or
    :func:`kernel_projection` of each sample of a rank-4 batch."""
    matrices, (h, w) = position_matrices(values, channel_axis, batch_axis)
    if kernel is None:
        maps = [principal_projection(m) for m in matrices]
    else:
        maps = [kernel_projection(m, kernel, gamma) for m in matrices]
    return np.stack(maps).reshape(len(matrices), h, w)
