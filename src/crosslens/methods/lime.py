"""LIME: a local linear surrogate over the features of a mask (forward passes only).

LIME (Ribeiro et al. 2016; Captum ``Lime``) explains the target score near ``x`` by a
linear model of interpretable binary features: the integer ids of ``feature_mask``
(as for :func:`~crosslens.methods.shapley.kernel_shap`: default a 4 x 4 grid over an
image's spatial axes, or every element of a non-image input). A coalition ``z`` keeps
the features with ``z_f = 1`` and replaces the others by the baseline.

- **Coalitions**: ``samples`` rows of ``default_rng(seed).random((samples, M)) < 0.5``
  (each feature kept with probability 1/2, Captum's default ``perturb_func``), shared by
  every sample of the batch, scored in memory-bounded batches of forward passes.
- **Weights**: Captum's default similarity,
  ``exp(-d^2 / (2 kernel_width^2))`` with ``d`` the cosine distance ``1 - cos(x, x_z)``
  between the sample and its perturbed copy ``x_z`` in the *input* space (each sample's
  elements flattened; several inputs concatenated). Integer inputs (token ids) have no
  geometry: their distance is the cosine distance of ``z`` to the all-ones coalition.
- **Fit**: per sample, the weighted ridge regression with an (unpenalized) intercept
  ``min Σ_s w_s (f(x_z_s) - c - z_s·β)^2 + ridge |β|^2``, as scikit-learn's
  ``Ridge(alpha=ridge).fit(z, scores, sample_weight=w)`` (the default ``ridge=1.0`` is
  that class's and the ``lime`` package's). ``ridge=0`` is ordinary weighted least
  squares (the minimum-norm solution where the coalitions leave it undetermined).

Each element gets the coefficient of its feature (Captum's ``return_input_shape``); the
intercepts are in ``info["intercept"]``. On a model linear in the features (a linear
model) with ``ridge=0`` and coalitions that determine the regression (at least ``M + 1``
of full rank), the coefficient of a feature is exactly its contribution
``Σ_{i in F} w_i (x_i - b_i)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import register
from .base import Context, MethodResult
from .shapley import _Features

#: The ``eps`` of ``torch.nn.CosineSimilarity`` (Captum's distance): norms are at least it.
COSINE_EPS = 1e-8


@register("lime", needs=("forward",), family="perturbation", batch_coupling="draws",
          aliases=("local_surrogate",),
          summary="Coefficients of a similarity-weighted ridge regression of the score on "
                  "random coalitions of mask features (Captum Lime)",
          reference="Ribeiro et al. 2016")
def lime(ctx: Context, *, feature_mask: Any = None, baseline: Any = 0.0, samples: int = 1000,
         kernel_width: float = 1.0, ridge: float = 1.0, blur_sigma: float = 8.0
         ) -> MethodResult:
    """LIME over the features of ``feature_mask`` (see the module docstring).

    Parameters
    ----------
    feature_mask
        Integer feature ids broadcastable to the input (as for ``feature_ablation``);
        default a 4 x 4 grid over an image, or one feature per element.
    baseline
        What absent features become (see :mod:`crosslens.methods.baselines`).
    samples
        Number of random coalitions (each feature kept with probability 1/2), drawn
        from ``seed``.
    kernel_width
        Width of the exponential kernel on the cosine distance: a coalition's weight is
        ``exp(-d^2 / (2 kernel_width^2))``.
    ridge
        L2 penalty of the coefficients (``alpha`` of scikit-learn's ``Ridge``); 0 for
        plain weighted least squares.
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    if samples < 1:
        raise OptionError(f"lime needs samples >= 1 coalitions; got {samples}")
    if kernel_width <= 0:
        raise OptionError(f"kernel_width must be > 0 (the width of the similarity kernel); "
                          f"got {kernel_width}")
    if ridge < 0:
        raise OptionError(f"ridge is an L2 penalty and must be >= 0; got {ridge}")
    setup = _Features(ctx, feature_mask, baseline, blur_sigma, "lime")
    coalitions = ctx.rng().random((samples, setup.count)) < 0.5
    distances = cosine_distances(setup, coalitions)  # (S, N)
    weights = np.exp(-distances ** 2 / (2.0 * kernel_width ** 2))
    if not (weights.sum(axis=0) > 0).all():
        nearest = float(distances.min(axis=0).max())
        raise OptionError(f"kernel_width={kernel_width} is too narrow: every coalition of a "
                          f"sample (the nearest at cosine distance {nearest:.3g}) gets weight "
                          f"0; use kernel_width >= {nearest / 30:.3g}, e.g. the default 1.0")
    scores = setup.scores(coalitions, "lime coalitions")  # (S, N)
    coef, intercept = weighted_ridge(coalitions, scores, weights, ridge)
    info = {"features": setup.count, "samples": samples,
            "intercept": [float(c) for c in intercept]}
    return MethodResult(setup.broadcast(coef), info=info)


def cosine_distances(setup: _Features, coalitions: np.ndarray) -> np.ndarray:
    """Cosine distances ``(S, N)`` between each sample and its perturbed copies (for
    integer inputs, between each coalition and the full one; see the module docstring)."""
    ctx, z = setup.ctx, coalitions.astype(np.float64)
    if ctx.ops.is_integer(ctx.x):
        cosine = np.sqrt(z.sum(axis=1) / z.shape[1])[:, None] * np.ones((1, ctx.n))
    else:
        # x_z = b + z[f(e)] (x - b) per element, so x·x_z and |x_z|^2 are affine in z
        # (z binary): per-feature sums once, no perturbed copy on the host.
        n, m = ctx.n, setup.count
        x = ctx.ops.to_numpy(ctx.x).astype(np.float64).reshape(n, -1)
        b = ctx.ops.to_numpy(setup.base).astype(np.float64).reshape(n, -1)
        index = np.broadcast_to(setup.index, setup.shape).reshape(n, -1)
        d = x - b
        dot_gain = np.stack([np.bincount(index[i], x[i] * d[i], minlength=m)
                             for i in range(n)])  # (N, M)
        square_gain = np.stack([np.bincount(index[i], d[i] * (d[i] + 2 * b[i]), minlength=m)
                                for i in range(n)])
        dot = (x * b).sum(axis=1)[None, :] + z @ dot_gain.T  # (S, N)
        square = np.maximum((b * b).sum(axis=1)[None, :] + z @ square_gain.T, 0.0)
        norms = np.maximum(np.sqrt((x * x).sum(axis=1)), COSINE_EPS)[None, :]
        cosine = dot / (norms * np.maximum(np.sqrt(square), COSINE_EPS))
    return 1.0 - cosine


def weighted_ridge(coalitions: np.ndarray, scores: np.ndarray, weights: np.ndarray,
                   ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Per sample ``n``, ``β, c`` minimizing ``Σ_s w_sn (y_sn - c - z_s·β)^2 + ridge |β|^2``
    (intercept unpenalized); returns coefficients ``(N, M)`` and intercepts ``(N,)``.

    Centering by the weighted means removes the intercept; the penalty enters as ``M``
    extra rows ``sqrt(ridge) I`` of a least-squares problem (minimum norm when
    ``ridge = 0`` leaves it undetermined).
    """
    z = coalitions.astype(np.float64)
    m = z.shape[1]
    count = scores.shape[1]
    coef, intercept = np.empty((count, m)), np.empty(count)
    penalty = np.sqrt(ridge) * np.eye(m)
    for i in range(count):
        w, y = weights[:, i], scores[:, i]
        z_mean, y_mean = w @ z / w.sum(), w @ y / w.sum()
        root = np.sqrt(w)
        design = np.concatenate([(z - z_mean) * root[:, None], penalty])
        target = np.concatenate([(y - y_mean) * root, np.zeros(m)])
        coef[i] = np.linalg.lstsq(design, target, rcond=None)[0]
        intercept[i] = y_mean - z_mean @ coef[i]
    return coef, intercept
