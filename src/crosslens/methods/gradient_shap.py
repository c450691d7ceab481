"""GradientSHAP (Lundberg & Lee 2017; Captum ``GradientShap``): expected gradients from a
distribution of baselines.

For each of ``samples`` draws per input: a baseline ``b`` chosen uniformly from the
``baselines`` distribution, a point ``α`` uniform in ``[0, 1]`` on the path from ``b`` to
``x``, optional Gaussian noise ``ε`` (``stdev``); the draw contributes
``(x - b) · ∇f(b + α (x - b) + ε)``, and the attribution is their mean. In expectation it
is integrated gradients averaged over the baseline distribution, so it approximates
completeness ``Σ attr ≈ f(x) - E_b f(b)``. Draws come from ``seed`` (numpy, channels-first
noise, so the same seed draws the same for PyTorch and Keras models).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import register
from .base import Context, MethodResult
from .baselines import as_baseline_list, make_baseline
from .batching import points_per_pass


@register("gradient_shap", needs=("grad",), family="gradient", batch_coupling="draws",
          aliases=("gradientshap", "expected_gradients"),
          summary="Mean of (x - b)·∇f at random points between random baselines b and x "
                  "(expected gradients)",
          reference="Lundberg & Lee 2017")
def gradient_shap(ctx: Context, *, baselines: Any = "zeros", samples: int = 50,
                  stdev: float = 0.0, blur_sigma: float = 8.0) -> MethodResult:
    """GradientSHAP (see the module docstring).

    Parameters
    ----------
    baselines
        The baseline distribution: a list of baselines (each as for integrated gradients:
        ``"zeros"``, a number, ``"blur"``, an array like one sample or the batch), or one
        array of ``M`` samples ``(M, *sample_shape)`` with ``M`` other than the batch size
        (an array shaped like the batch is one baseline per sample).
    samples
        Draws per input.
    stdev
        Standard deviation of the Gaussian noise added to each point (0: none).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    if samples < 1:
        raise OptionError(f"samples must be >= 1, got {samples}")
    if stdev < 0:
        raise OptionError(f"stdev must be >= 0, got {stdev}")
    if ctx.layer is not None:
        raise OptionError("gradient_shap attributes to the input; for a layer use "
                          "integrated_gradients with layer=")
    ops, n = ctx.ops, ctx.n
    shape = ops.shape(ctx.x)
    target = ctx.fixed_target()
    candidates = _distribution(ctx, baselines, blur_sigma)  # each a native batch like x
    rng = ctx.rng()
    choice = rng.integers(0, len(candidates), size=(samples, n))
    alphas = rng.uniform(0.0, 1.0, size=(samples, n))
    total = None
    for start, stop in ctx.chunks(samples, points_per_pass(ctx, samples), "gradient_shap"):
        k = stop - start
        base = ops.concat([_rows(ctx, candidates, choice[s]) for s in range(start, stop)])
        x = ops.repeat_batch(ctx.x, k)
        alpha = ops.asarray(alphas[start:stop].reshape((k * n,) + (1,) * (len(shape) - 1)))
        points = base + alpha * (x - base)
        if stdev > 0:
            points = points + ops.asarray(
                ctx.canonical_normal((k * n,) + tuple(shape[1:]), rng) * stdev)
        grads = ctx.gradient(points, target.repeat(k)).grad
        part = ops.sum(ops.reshape(grads * (x - base), (k, n) + tuple(shape[1:])), axis=0)
        total = part if total is None else total + part
    return MethodResult(total / float(samples),
                        info={"samples": samples, "baselines": len(candidates),
                              "stdev": stdev})


def _distribution(ctx: Context, baselines: Any, blur_sigma: float) -> list[Any]:
    """The candidate baselines, each a native batch shaped like the input."""
    array = baselines if hasattr(baselines, "shape") else None
    shape = ctx.ops.shape(ctx.x)
    if array is not None and len(array.shape) == len(shape) and tuple(
            array.shape[1:]) == tuple(shape[1:]) and array.shape[0] != shape[0]:
        # (M, *sample) samples of the distribution: each one sample-shaped baseline
        return [make_baseline(ctx, array[i], blur_sigma) for i in range(array.shape[0])]
    return [make_baseline(ctx, spec, blur_sigma) for spec in as_baseline_list(baselines, ctx)]


def _rows(ctx: Context, candidates: list[Any], chosen: np.ndarray) -> Any:
    """One baseline row per input sample, from the chosen candidates."""
    if len(candidates) == 1:
        return candidates[0]
    return ctx.ops.concat([ctx.ops.take_rows(candidates[int(c)], [i])
                           for i, c in enumerate(chosen)])
