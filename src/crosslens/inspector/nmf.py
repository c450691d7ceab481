"""Non-negative matrix factorization in numpy (Lee & Seung's multiplicative updates).

Used for the neuron groups of the Building Blocks (Olah et al. 2018): a layer's
activations at every position ``V (positions, channels) >= 0`` are factorized as
``V ≈ W H`` with ``W (positions, k)`` the groups' spatial maps and ``H (k, channels)``
their directions in channel space.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import OptionError

EPS = 1e-12


def nmf(v: np.ndarray, k: int, *, seed: int = 0, iterations: int = 400,
        tol: float = 1e-7) -> tuple[np.ndarray, np.ndarray]:
    """Factorize ``v >= 0`` as ``w @ h`` (Frobenius loss, multiplicative updates).

    Parameters
    ----------
    v
        ``(m, n)`` non-negative matrix.
    k
        Number of components, ``1 <= k <= min(m, n)``.
    seed
        Seed of the random start (uniform, scaled to ``v``'s mean): same seed, same result.
    iterations
        Most update rounds.
    tol
        Stop when the relative decrease of the loss over one round is below this.

    Returns
    -------
    (w, h)
        ``(m, k)`` and ``(k, n)`` non-negative factors (float64). Components are sorted
        by their share of ``w @ h`` (largest first) and ``h``'s rows scaled to unit
        maximum, so the factorization is canonical for a given start.
    """
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 2 or (v < 0).any() or not np.isfinite(v).all():
        raise OptionError("NMF needs a finite non-negative 2-D matrix")
    m, n = v.shape
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= min(m, n):
        raise OptionError(f"k must be an integer in 1..{min(m, n)} (positions x channels "
                          f"{m} x {n}); got {k!r}")
    rng = np.random.default_rng(seed)
    scale = np.sqrt(max(v.mean(), EPS) / k)
    w = rng.uniform(0.1, 1.0, (m, k)) * scale
    h = rng.uniform(0.1, 1.0, (k, n)) * scale
    previous = np.inf
    for _ in range(int(iterations)):
        h *= (w.T @ v) / (w.T @ w @ h + EPS)
        w *= (v @ h.T) / (w @ (h @ h.T) + EPS)
        loss = float(np.sum((v - w @ h) ** 2))
        if previous - loss <= tol * max(previous, EPS):
            break
        previous = loss
    peak = h.max(axis=1, keepdims=True) + EPS
    h, w = h / peak, w * peak.T
    share = (w.sum(0) * h.sum(1))
    order = np.argsort(-share, kind="stable")
    return w[:, order], h[order]
