"""The numbers of the layer views, from arrays only (no model, no store): the activation
matrix, the 2-D projection, the semantic dictionary, and the box around the region of an
input that activates a channel most."""
from __future__ import annotations

import numpy as np

from ..core.errors import OptionError

SORTS = ("variance", "difference", "index")
PROJECTIONS = ("pca", "umap")


def column_order(pooled: np.ndarray, sort: str, a: np.ndarray | None = None,
                 b: np.ndarray | None = None) -> np.ndarray:
    """The channel order of the matrix.

    Parameters
    ----------
    pooled
        ``(N, C)`` pooled activations of every instance.
    sort
        ``"variance"`` (over all instances, largest first), ``"difference"``
        (``|mean over a - mean over b|``, largest first; ``a`` and ``b`` are boolean masks
        or index arrays of the two subsets) or ``"index"``.

    Returns
    -------
    numpy.ndarray
        Channel indices; ties keep the channel order (stable sort).
    """
    channels = pooled.shape[1]
    if sort == "index":
        return np.arange(channels)
    if sort == "variance":
        return np.argsort(-pooled.astype(np.float64).var(axis=0), kind="stable")
    if sort == "difference":
        if a is None or b is None:
            raise OptionError("sort=difference compares two subsets: give a=ID and b=ID")
        diff = np.abs(subset_mean(pooled, a) - subset_mean(pooled, b))
        return np.argsort(-diff, kind="stable")
    raise OptionError(f"sort must be one of {', '.join(SORTS)}; got {sort!r}")


def subset_mean(pooled: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Mean over the subset's rows of ``pooled`` (``(C,)``; zeros for an empty subset)."""
    values = pooled[rows].astype(np.float64)
    return values.mean(axis=0) if len(values) else np.zeros(pooled.shape[1])


def pca(x: np.ndarray, components: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the rows of ``x``: ``(points (N, components), explained
    variance ratio (components,))``.

    Exactly the projection on the leading right singular vectors of the centred data
    (numpy's SVD); computed from the ``C x C`` scatter matrix when there are more rows than
    columns (the same vectors, much faster for 10,000 rows). Signs are fixed so each
    component's largest loading is positive.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    n, c = centred.shape
    k = min(components, c, n)
    if n > c:
        values, vectors = np.linalg.eigh(centred.T @ centred)
        order = np.argsort(-values, kind="stable")
        values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
        total = values.sum()
        basis, variance = vectors[:, :k], values[:k]
    else:
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        total = float((s ** 2).sum())
        basis, variance = vt[:k].T, s[:k] ** 2
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(k)])
    basis = basis * np.where(signs == 0, 1.0, signs)
    points = centred @ basis
    ratio = variance / total if total > 0 else np.zeros(k)
    if k < components:  # fewer channels than components: pad with zeros
        points = np.pad(points, ((0, 0), (0, components - k)))
        ratio = np.pad(ratio, (0, components - k))
    return points, ratio


def umap_points(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D UMAP embedding of the rows of ``x`` (umap-learn, seeded)."""
    try:
        import umap
    except ImportError as error:  # pragma: no cover - the inspect extra is missing
        raise OptionError("method=umap needs umap-learn: pip install 'crosslens[inspect]'; "
                          "or use method=pca") from error
    reducer = umap.UMAP(n_components=2, random_state=int(seed), n_jobs=1)
    return np.asarray(reducer.fit_transform(np.asarray(x, dtype=np.float32)), np.float64)


def top_channels(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of ``values``, largest first (stable)."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k]


def region_box(heat: np.ndarray, threshold: float = 0.5) -> list[int]:
    """``[y0, x0, y1, x1]`` (end exclusive) of the region of ``heat`` around its maximum.

    The region is the 4-connected component containing the maximum of the pixels at or
    above ``threshold`` times the maximum (relative to the map's minimum); ``heat`` is a
    channel map already upsampled onto the input.
    """
    heat = np.asarray(heat, dtype=np.float64)
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    lo, hi = float(heat.min()), float(heat.max())
    if hi <= lo:
        return [0, 0, int(heat.shape[0]), int(heat.shape[1])]
    mask = heat >= lo + threshold * (hi - lo)
    seen = np.zeros_like(mask)
    stack = [peak]
    seen[peak] = True
    ys, xs = [peak[0]], [peak[1]]
    while stack:
        y, x = stack.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < heat.shape[0] and 0 <= nx < heat.shape[1] and mask[ny, nx] \
                    and not seen[ny, nx]:
                seen[ny, nx] = True
                stack.append((ny, nx))
                ys.append(ny)
                xs.append(nx)
    return [int(min(ys)), int(min(xs)), int(max(ys)) + 1, int(max(xs)) + 1]

