"""Forward-only Shapley values over features: KernelSHAP and Shapley value sampling.

Both attribute the target score to the features of an integer ``feature_mask`` (equal
ids form one feature: superpixels, a grid, tabular columns; default: a 4 x 4 grid over
an image's spatial axes, or every element of a non-image input). A coalition keeps the
features it contains and replaces the others by the baseline. Each element gets its
feature's value (Captum's ``return_input_shape`` convention), so the values of the
features — not of the elements — sum to ``f(x) - f(baseline)`` (efficiency).

- **KernelSHAP** (Lundberg & Lee 2017): a weighted linear regression of the coalitions'
  scores on their membership, with the Shapley kernel as weights and efficiency imposed
  exactly. With ``2^M - 2 <= samples`` every coalition is evaluated and the values are
  the exact Shapley values; otherwise coalitions are drawn from the kernel's distribution
  of sizes (seeded), as the ``shap`` package does (default ``2M + 2048`` of them, its
  default).
- **Shapley value sampling** (Castro et al. 2009; Captum ``ShapleyValueSampling``):
  random orders of the features (seeded); each feature gets its mean marginal
  contribution when added to the features before it.

On a model additive in the features (a linear model) both are exact for any sample (for
KernelSHAP, any sample whose coalitions determine the regression: at least ``M``).
Coalitions are scored in memory-bounded batches of forward passes, like occlusion.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import register
from .base import Context, MethodResult
from .baselines import make_baseline
from .perturbation import _evaluate, _feature_mask, _flat_mask, _reject_layer, _spatial_axes
from .scoring import forward_scores

#: Default grid of the feature mask of image inputs (cells per spatial axis).
DEFAULT_GRID = 4


@register("kernel_shap", needs=("forward",), family="perturbation",
          aliases=("kernelshap", "kernel_shapley"),
          summary="Shapley values of mask features by kernel-weighted regression on "
                  "coalitions (exact when every coalition fits the sample budget)",
          reference="Lundberg & Lee 2017")
def kernel_shap(ctx: Context, *, feature_mask: Any = None, baseline: Any = 0.0,
                samples: int | None = None, blur_sigma: float = 8.0) -> MethodResult:
    """KernelSHAP over the features of ``feature_mask`` (see the module docstring).

    Parameters
    ----------
    feature_mask
        Integer feature ids broadcastable to the input (as for ``feature_ablation``);
        default a 4 x 4 grid over an image, or one feature per element.
    baseline
        What absent features become (see :mod:`crosslens.methods.baselines`).
    samples
        Coalitions to evaluate (besides the empty and the full one), at least ``M``;
        default ``2M + 2048``. When all ``2^M - 2`` fit, all are evaluated and the result
        is exact.
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    setup = _Features(ctx, feature_mask, baseline, blur_sigma, "kernel_shap")
    m = setup.count
    samples = 2 * m + 2048 if samples is None else samples
    if samples < min(m, 2 ** m - 2):
        raise OptionError(f"kernel_shap needs samples >= the {m} features (fewer coalitions "
                          f"leave the regression undetermined); got {samples}")
    exact = m <= 30 and 2 ** m - 2 <= samples
    if exact:
        coalitions = _all_coalitions(m)
        weights = _kernel_weights(coalitions.sum(axis=1), m)
    else:
        coalitions = _sampled_coalitions(m, samples, ctx.rng())
        weights = np.ones(len(coalitions))
    scores = setup.scores(coalitions, "kernel_shap coalitions")  # (S, N)
    values = _constrained_regression(coalitions, weights, scores, setup.f_base, setup.f_x)
    info = {"features": m, "coalitions": len(coalitions), "exact": exact}
    return MethodResult(setup.broadcast(values), info=info)


@register("shapley_value_sampling", needs=("forward",), family="perturbation",
          aliases=("shapley_sampling", "shapley_values"),
          summary="Shapley values of mask features: mean marginal contributions over "
                  "random feature orders (Captum ShapleyValueSampling)",
          reference="Castro et al. 2009")
def shapley_value_sampling(ctx: Context, *, feature_mask: Any = None, baseline: Any = 0.0,
                           samples: int = 25, blur_sigma: float = 8.0) -> MethodResult:
    """Shapley value sampling over the features of ``feature_mask``.

    Parameters
    ----------
    feature_mask, baseline, blur_sigma
        As for :func:`kernel_shap`.
    samples
        Number of random feature orders (permutations), drawn from ``seed``.
    """
    if samples < 1:
        raise OptionError(f"samples must be >= 1, got {samples}")
    setup = _Features(ctx, feature_mask, baseline, blur_sigma, "shapley_value_sampling")
    m, rng = setup.count, ctx.rng()
    orders = np.stack([rng.permutation(m) for _ in range(samples)])  # (P, M)
    # the coalitions along each order: the first j features of it, j = 1..M
    steps = np.zeros((samples, m, m), dtype=bool)
    for p, order in enumerate(orders):
        for j in range(m):
            steps[p, j, order[:j + 1]] = True
    scores = setup.scores(steps.reshape(samples * m, m), "shapley orders")
    scores = scores.reshape(samples, m, -1)  # (P, M, N)
    before = np.concatenate([np.broadcast_to(setup.f_base, (samples, 1, len(setup.f_base))),
                             scores[:, :-1]], axis=1)
    gains = scores - before  # gain of the j-th feature of each order
    values = np.zeros((m, scores.shape[2]))
    for p, order in enumerate(orders):
        values[order] += gains[p]
    values /= samples
    return MethodResult(setup.broadcast(values.T),
                        info={"features": m, "permutations": samples})


class _Mask:
    """The call's features (ids of the mask, the feature of each element), its fixed
    target, and the scoring of inputs with some features replaced."""

    def __init__(self, ctx: Context, feature_mask: Any, method: str) -> None:
        _reject_layer(ctx, method)
        self.ctx = ctx
        shape = ctx.ops.shape(ctx.x)
        if feature_mask is None:
            feature_mask = _default_mask(shape, ctx.layout)
        mask = _feature_mask(_flat_mask(ctx, feature_mask), shape, ctx.layout)
        self.ids = np.unique(mask)
        self.index = np.searchsorted(self.ids, mask)  # feature position of each element
        self.count = len(self.ids)
        self.shape = shape
        self.target = ctx.fixed_target()

    def replaced_scores(self, coalitions: np.ndarray, base: Any, desc: str) -> np.ndarray:
        """Scores ``(S, N)`` of coalitions ``(S, M)``: features outside a coalition (False)
        take their values from ``base`` (native, shaped like ``x``)."""
        def masks(a: int, b: int) -> np.ndarray:
            return ~coalitions[a:b][:, self.index]  # True where replaced by the base
        out = np.empty((len(coalitions), self.ctx.n))
        for a, b, _, scores in _evaluate(self.ctx, base, self.target, len(coalitions),
                                         masks, desc=desc):
            out[a:b] = scores
        return out

    def broadcast(self, values: np.ndarray) -> Any:
        """Per-feature values ``(N, M)`` as an attribution map in the input's shape."""
        per_element = np.take_along_axis(
            values.reshape((values.shape[0],) + (1,) * (len(self.shape) - 1) + (-1,)),
            np.broadcast_to(self.index, self.shape)[..., None], axis=-1)[..., 0]
        return self.ctx.ops.asarray(per_element)


class _Features(_Mask):
    """:class:`_Mask` with a baseline: absent features become the baseline's values."""

    def __init__(self, ctx: Context, feature_mask: Any, baseline: Any, blur_sigma: float,
                 method: str) -> None:
        super().__init__(ctx, feature_mask, method)
        self.base = make_baseline(ctx, baseline, blur_sigma)
        self.f_x = forward_scores(ctx, ctx.x, self.target)
        self.f_base = forward_scores(ctx, self.base, self.target)

    def scores(self, coalitions: np.ndarray, desc: str) -> np.ndarray:
        """Scores ``(S, N)`` of coalitions ``(S, M)`` (True: the feature is kept)."""
        return self.replaced_scores(coalitions, self.base, desc)


def _default_mask(shape: tuple[int, ...], layout: str | None) -> np.ndarray:
    """A 4 x 4 grid over an image's spatial axes (every channel together), else one
    feature per element of a sample (numbered in channels-first order)."""
    spatial = _spatial_axes(len(shape), layout)
    if layout is None or len(spatial) != 2:
        ids = np.arange(int(np.prod(shape[1:])))
        if layout == "channels_last" and len(shape) >= 3:  # numbered channels-first, as
            first = (shape[-1],) + tuple(shape[1:-1])      # the same input in PyTorch
            return np.moveaxis(ids.reshape(first), 0, -1)[None]
        return ids.reshape((1,) + tuple(shape[1:]))
    h, w = shape[spatial[0]], shape[spatial[1]]
    rows = np.minimum(np.arange(h) * DEFAULT_GRID // h, DEFAULT_GRID - 1)
    cols = np.minimum(np.arange(w) * DEFAULT_GRID // w, DEFAULT_GRID - 1)
    grid = rows[:, None] * DEFAULT_GRID + cols[None, :]
    full = [1] * len(shape)
    full[spatial[0]], full[spatial[1]] = h, w
    return grid.reshape(full)


def _all_coalitions(m: int) -> np.ndarray:
    """Every coalition but the empty and the full one, ``(2^M - 2, M)`` booleans."""
    codes = np.arange(1, 2 ** m - 1)
    return ((codes[:, None] >> np.arange(m)[None, :]) & 1).astype(bool)


def _kernel_weights(sizes: np.ndarray, m: int) -> np.ndarray:
    """The Shapley kernel ``(M - 1) / (C(M, s) s (M - s))`` of coalitions of size ``s``."""
    return np.array([(m - 1) / (math.comb(m, int(s)) * s * (m - s)) for s in sizes])


def _sampled_coalitions(m: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Coalitions drawn from the Shapley kernel: a size ``s`` with probability
    proportional to ``(M - 1) / (s (M - s))``, then ``s`` features uniformly."""
    if m < 2:
        return np.ones((1, m), dtype=bool)
    sizes = np.arange(1, m)
    p = (m - 1) / (sizes * (m - sizes))
    drawn = rng.choice(sizes, size=samples, p=p / p.sum())
    coalitions = np.zeros((samples, m), dtype=bool)
    for row, s in enumerate(drawn):
        coalitions[row, rng.choice(m, size=s, replace=False)] = True
    return coalitions


def _constrained_regression(coalitions: np.ndarray, weights: np.ndarray, scores: np.ndarray,
                            f_base: np.ndarray, f_x: np.ndarray) -> np.ndarray:
    """Per sample, ``phi`` minimizing ``Σ w (f(z) - f(b) - z·phi)^2`` with
    ``Σ phi = f(x) - f(b)`` (the last feature is eliminated, as in the shap package);
    returns ``(N, M)``."""
    z = coalitions.astype(np.float64)
    m = z.shape[1]
    total = f_x - f_base  # (N,)
    if m == 1:
        return total[:, None]
    design = z[:, :-1] - z[:, -1:]  # (S, M - 1)
    sw = np.sqrt(weights)[:, None]
    targets = scores - f_base[None, :] - z[:, -1:] * total[None, :]  # (S, N)
    solution, *_ = np.linalg.lstsq(design * sw, targets * sw, rcond=None)  # (M - 1, N)
    last = total - solution.sum(axis=0)
    return np.concatenate([solution, last[None, :]], axis=0).T
