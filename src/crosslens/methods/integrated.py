"""Integrated gradients (Sundararajan et al. 2017).

``IG(x) = (x - b) · ∫₀¹ ∂f(b + α(x - b))/∂x dα``, approximated with a Captum-named
integration rule (default ``"gausslegendre"``, Captum's default). Points along the path
are evaluated in as few passes as the memory budget allows; several baselines are
averaged. Completeness: ``sum(IG) ≈ f(x) - f(b)``, reported by :func:`completeness`.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.registry import register
from .base import Context, MethodResult
from .batching import points_per_pass
from .baselines import as_baseline_list, make_baseline
from .quadrature import integration_points
from .scoring import forward_scores


@register("integrated_gradients", needs=("grad",), family="gradient",
          aliases=("ig", "integrated_gradient"),
          summary="Path integral of gradients from a baseline (Captum integration rules)",
          reference="Sundararajan et al. 2017")
def integrated_gradients(ctx: Context, *, baseline: Any = "zeros", steps: int = 50,
                         rule: str = "gausslegendre", blur_sigma: float = 8.0,
                         completeness: bool = False) -> MethodResult:
    """Integrated gradients of the target w.r.t. the input.

    Parameters
    ----------
    baseline
        ``"zeros"``, a number, ``"blur"``, ``"uniform"``, an array, or a list of these
        (averaged). See :mod:`crosslens.methods.baselines`.
    steps
        Number of integration points.
    rule
        ``"gausslegendre"``, ``"riemann_left"``, ``"riemann_right"``, ``"riemann_middle"``
        or ``"riemann_trapezoid"`` (Captum's names and points).
    blur_sigma
        Gaussian sigma in pixels for the ``"blur"`` baseline.
    completeness
        Also compute ``f(x) - f(baseline)`` and report, in ``info``, the relative error
        of ``sum(attributions)`` against it per sample (two extra passes).

    With ``layer=...``: layer integrated gradients (Captum ``LayerIntegratedGradients``),
    see :func:`crosslens.methods.layer.layer_integrated_gradients`.
    """
    if ctx.layer is not None:
        from .layer import layer_integrated_gradients
        return layer_integrated_gradients(ctx, baseline=baseline, steps=steps, rule=rule,
                                          blur_sigma=blur_sigma, completeness=completeness)
    target = ctx.fixed_target()
    alphas, weights = integration_points(rule, steps)
    baselines = [make_baseline(ctx, spec, blur_sigma)
                 for spec in as_baseline_list(baseline, ctx)]
    total = None
    for base in baselines:
        attribution = (ctx.x - base) * path_gradient_integral(ctx, base, target, alphas, weights)
        total = attribution if total is None else total + attribution
    total = total / float(len(baselines))
    info: dict[str, Any] = {"rule": rule, "steps": steps, "baselines": len(baselines)}
    if completeness:
        info.update(completeness_report(ctx, total, baselines, target))
    return MethodResult(total, None, info=info)


def path_gradient_integral(ctx: Context, base: Any, target: Any, alphas: np.ndarray,
                           weights: np.ndarray) -> Any:
    """``Σ_k w_k · ∇f(base + α_k (x - base))``, batched over as many α as fit a pass."""
    ops, n = ctx.ops, ctx.n
    sample_shape = ops.shape(ctx.x)[1:]
    per_pass = points_per_pass(ctx, len(alphas))
    delta = ctx.x - base
    integral = None
    for start, stop in ctx.chunks(len(alphas), per_pass, "integrated gradients"):
        k = stop - start
        points = ops.concat([base + float(a) * delta for a in alphas[start:stop]])
        grads = ctx.gradient(points, target.repeat(k)).grad
        w = ops.asarray(weights[start:stop].reshape((k, 1) + (1,) * len(sample_shape)))
        part = ops.sum(ops.reshape(grads, (k, n) + sample_shape) * w, axis=0)
        integral = part if integral is None else integral + part
    return integral


def completeness_report(ctx: Context, attributions: Any, baselines: list, target: Any,
                        baseline_scores: list | None = None) -> dict[str, Any]:
    """Per-sample ``sum(attr)`` vs ``f(x) - mean_b f(b)`` and their relative error.

    ``baseline_scores`` gives ``f(b)`` directly (baselines at a layer); otherwise it is
    computed from the input-space ``baselines``.
    """
    ops = ctx.ops
    f_x = forward_scores(ctx, ctx.x, target)
    if baseline_scores is None:
        baseline_scores = [forward_scores(ctx, b, target) for b in baselines]
    f_b = np.mean(baseline_scores, axis=0)
    attr = ops.to_numpy(attributions)
    sums = attr.reshape(attr.shape[0], -1).sum(axis=1)
    difference = f_x - f_b
    error = np.abs(sums - difference) / np.maximum(np.abs(difference), 1e-12)
    return {"attribution_sum": sums, "score_difference": difference,
            "completeness_error": error}
