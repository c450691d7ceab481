"""DeepLIFT with the Rescale rule, and DeepLiftShap over a baseline distribution.

DeepLIFT (Shrikumar et al. 2017) explains ``f(x) - f(x0)`` against a baseline ``x0``:
multipliers are back-propagated like gradients, except that every elementwise
nonlinearity uses its secant ``(f(a) - f(a0)) / (a - a0)`` between its input on ``x`` and
on ``x0`` instead of its derivative (its derivative where ``|a - a0| < 1e-10``), and the
attribution is ``multiplier * (x - x0)``. Linear layers, pools and batch norms keep their
gradients, so on networks made of those and elementwise nonlinearities the attributions
sum exactly to ``f(x) - f(x0)`` (summation-to-delta; ``info["delta"]`` reports the
per-sample gap, Captum's convergence delta). Max pooling keeps its gradient (Captum
applies its own max-pool rule there; the two agree on models without max pooling).

Each input is paired with its baseline in one pass of ``[inputs; baselines]``: the
backends reroute the model's nonlinearities for that pass (PyTorch: a function mode, so
``nn.ReLU`` and ``F.relu`` alike; Keras: gradient overrides of the nonlinearity ops), and
passes are sized so that pairs are never split.

DeepLiftShap (Captum ``DeepLiftShap``; Lundberg & Lee 2017) averages DeepLIFT over a
distribution of baselines, approximating SHAP values: the mean attribution sums to
``f(x) - E_b f(b)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core import relevance
from ..core.errors import OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.registry import register
from ..core.rules import RESCALE
from .base import Context, MethodResult
from .baselines import make_baseline
from .gradient_shap import _distribution


RULES = ("rescale", "reveal_cancel")


@register("deeplift", needs=("grad", "rescale"), family="gradient", aliases=("deep_lift",),
          summary="Multipliers with secant slopes of the nonlinearities between input and "
                  "baseline (Rescale rule), times (x - baseline)",
          reference="Shrikumar et al. 2017")
def deeplift(ctx: Context, *, baseline: Any = 0.0, rule: str = "rescale",
             blur_sigma: float = 8.0) -> MethodResult:
    """DeepLIFT of the target score against ``baseline``.

    Parameters
    ----------
    baseline
        The reference input (see :mod:`crosslens.methods.baselines`): ``0.0``,
        ``"blur"``, an array like the batch or one sample, ...
    rule
        ``"rescale"`` (Captum's DeepLift) or ``"reveal_cancel"``: every activation that
        directly follows a dense or convolution layer (a batch norm between them merged
        into it; Keras' fused activations too) sends the layer's positive and negative
        contributions through separate multipliers (Shrikumar et al. 2017, 3.5.3), which
        reveals contributions that cancel out under Rescale; other nonlinearities rescale.
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.

    With ``layer=`` the attributions are those of the layer's output:
    ``multiplier * (a(x) - a(x0))``.
    """
    base = make_baseline(ctx, baseline, blur_sigma)
    values, delta = _deeplift(ctx, base, rule)
    return MethodResult(values, layer=ctx.layer, info={"delta": delta, "rule": rule})


@register("deeplift_shap", needs=("grad", "rescale"), family="gradient",
          aliases=("deepliftshap", "deep_shap"),
          summary="DeepLIFT averaged over a distribution of baselines (SHAP values)",
          reference="Lundberg & Lee 2017")
def deeplift_shap(ctx: Context, *, baselines: Any = "zeros", rule: str = "rescale",
                  blur_sigma: float = 8.0) -> MethodResult:
    """Mean DeepLIFT attribution over the baselines of a distribution.

    Parameters
    ----------
    baselines
        The distribution, as for :func:`crosslens.methods.gradient_shap.gradient_shap`:
        a list of baselines, or an array of ``M`` samples ``(M, *sample_shape)``.
    rule
        As for :func:`deeplift`.
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    candidates = _distribution(ctx, baselines, blur_sigma)
    total, deltas = None, []
    for base in candidates:
        values, delta = _deeplift(ctx, base, rule)
        total = values if total is None else total + values
        deltas.append(delta)
    return MethodResult(total / float(len(candidates)), layer=ctx.layer,
                        info={"baselines": len(candidates),
                              "delta": np.mean(deltas, axis=0)})


def _reveal_cancel(ctx: Context) -> relevance.RevealCancelRules:
    """The model's RevealCancel pairs; an error when there are none (it would silently
    equal Rescale)."""
    layers = ctx.backend.relevance_layers(ctx.x)
    rules = relevance.reveal_cancel_rules(layers)
    fused = any(i.kind == relevance.LINEAR and i.fused for i in layers)
    if not rules.pairs and not fused:
        raise UnsupportedError(
            "rule='reveal_cancel' applies to activation layers (nn.ReLU, keras.layers.ReLU, "
            "activation='relu', ...) that directly follow a dense or convolution layer, and "
            "this model has none (functional activations such as F.relu are not layers); "
            "the result would equal rule='rescale'. Use rule='rescale'")
    return rules


def _deeplift(ctx: Context, base: Any, rule: str) -> tuple[Any, np.ndarray]:
    """Attributions against one baseline batch, and the per-sample summation-to-delta gap
    ``sum(attributions) - (f(x) - f(x0))``."""
    if rule not in RULES:
        raise OptionError(unknown_name_message("DeepLIFT rule", str(rule), list(RULES)))
    ops, n = ctx.ops, ctx.n
    target = ctx.fixed_target()
    backward = RESCALE if rule == "rescale" else _reveal_cancel(ctx)
    size = max(1, ctx.backend.pass_size(ctx.x, backward=True) // 2)
    parts, deltas = [], []
    for a, b in ctx.chunks(n, size, "deeplift"):
        k = b - a
        rows, base_rows = ops.take_rows(ctx.x, list(range(a, b))), ops.take_rows(
            base, list(range(a, b)))
        result = ctx.gradient(ops.concat([rows, base_rows]), target.take(a, b).repeat(2),
                              wrt=ctx.layer, rule=backward, split=False)
        first, second = list(range(k)), list(range(k, 2 * k))
        if ctx.layer is None:
            difference = rows - base_rows
        else:
            acts = result.activations[ctx.layer]
            difference = ops.take_rows(acts, first) - ops.take_rows(acts, second)
        values = ops.take_rows(result.grad, first) * difference
        scores = np.asarray(ops.to_numpy(result.scores), dtype=np.float64)
        sums = np.asarray(ops.to_numpy(ops.sum(ops.reshape(values, (k, -1)), axis=1)),
                          dtype=np.float64)
        deltas.append(sums - (scores[:k] - scores[k:]))
        parts.append(values)
    return (parts[0] if len(parts) == 1 else ops.concat(parts)), np.concatenate(deltas)
