"""Layer-wise relevance propagation (LRP) and Deep Taylor decomposition, native on every
backend.

The rules and composites are in :mod:`crosslens.core.relevance` (framework-free); each
backend applies them to one differentiation pass. The relevance of the target's output
starts as its score, so relevance is in the score's units and, under conserving rules on
bias-free models, sums to it (raw and signed, like every crosslens attribution).
Canonization is automatic: a batch norm that takes a dense or convolution layer's output
is merged into that layer, residual additions split relevance in proportion to their
summands (the sum rule), and the model is unchanged afterwards.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..core import relevance
from ..core.errors import OptionError
from ..core.registry import register
from ..core.rules import DECONV, GUIDED
from .base import Context, MethodResult

#: zennit's gradient composites, accepted by name: plain modified gradients (one-hot start).
GRADIENT_COMPOSITES = {"guided_backprop": GUIDED, "deconvnet": DECONV}


@register("lrp", needs=("grad", "relevance"), family="relevance",
          aliases=("layerwise_relevance_propagation", "layer_wise_relevance_propagation"),
          summary="Layer-wise relevance propagation under a composite of rules "
                  "(epsilon, z+, alpha-beta, gamma, z^B, flat, w^2), batch norms merged",
          reference="Bach et al. 2015; Montavon et al. 2019")
def lrp(ctx: Context, *, composite: str = "epsilon_plus_flat", epsilon: float = 1e-6,
        stabilizer: float = 1e-6, gamma: float = 0.25, low: Any = None, high: Any = None,
        rules: Mapping[str, Any] | None = None) -> MethodResult:
    """Relevance of the target score, propagated back to the input (or to ``layer``).

    Parameters
    ----------
    composite
        Which rule each layer gets (zennit's composites of the same names):
        ``epsilon_plus_flat`` (default: flat at the first layer, z+ in convolutions,
        epsilon in dense layers), ``epsilon_plus``, ``epsilon_alpha2_beta1``,
        ``epsilon_alpha2_beta1_flat``, ``epsilon_gamma_box`` (z^B at the first
        convolution, gamma in convolutions), ``excitation_backprop`` (z+ everywhere),
        ``deep_taylor`` (z+ in hidden layers, z^B at the input), ``epsilon``; or
        ``guided_backprop`` / ``deconvnet`` (modified gradients).
    epsilon
        The epsilon of dense layers' epsilon rule.
    stabilizer
        The epsilon added to the denominators of every other rule.
    gamma
        The gamma rule's weight on positive contributions.
    low, high
        Input bounds of the z^B rule: scalars, one value per channel, or ``None`` (the
        default) for each sample's own minimum and maximum.
    rules
        Rules by layer name or layer type name overriding the composite, e.g.
        ``{"fc": "epsilon", "Conv2d": relevance.gamma_rule(0.5)}``; ``"pass"`` passes
        relevance unchanged, ``"gradient"`` uses the layer's plain gradient.
    """
    if composite in GRADIENT_COMPOSITES:
        if rules:
            raise OptionError(f"rules= applies to LRP composites, not to {composite!r}")
        result = ctx.gradient(wrt=ctx.layer, rule=GRADIENT_COMPOSITES[composite])
        return MethodResult(result.grad, result.outputs, layer=ctx.layer,
                            info={"composite": composite})
    chosen = (relevance.composite(composite, epsilon=epsilon, stabilizer=stabilizer,
                                  gamma=gamma, low=low, high=high)
              if composite in relevance.COMPOSITES else None)
    if chosen is None:
        raise OptionError(_unknown_composite(composite))
    resolved = relevance.resolve(ctx.backend.relevance_layers(ctx.x), chosen, rules)
    result = ctx.gradient(wrt=ctx.layer, rule=resolved)
    # the propagation is linear in the output's relevance: start from 1, scale by the score
    ops = ctx.ops
    rank = len(ops.shape(result.grad))
    scores = ops.reshape(result.scores, (ctx.n,) + (1,) * (rank - 1))
    relevances = result.grad * scores
    totals = ops.to_numpy(ops.sum(ops.reshape(relevances, (ctx.n, -1)), axis=1))
    score_values = np.asarray(ops.to_numpy(result.scores), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        conservation = np.asarray(totals, dtype=np.float64) / score_values
    return MethodResult(relevances, result.outputs, layer=ctx.layer,
                        info={"composite": composite, "conservation": conservation,
                              "rules": {name: str(rule) for name, rule in resolved.assignments}})


@register("deep_taylor", needs=("grad", "relevance"), family="relevance",
          aliases=("deep_taylor_decomposition",),
          summary="Deep Taylor decomposition: z+ in the hidden layers, z^B at the input",
          reference="Montavon et al. 2017")
def deep_taylor(ctx: Context, *, low: Any = None, high: Any = None,
                stabilizer: float = 1e-6) -> MethodResult:
    """Deep Taylor decomposition of the target score (Montavon et al. 2017): the z+ rule
    for layers fed by ReLUs, the z^B rule for the input layer, whose values lie in
    ``[low, high]`` (scalars, one value per channel, or ``None``: each sample's own
    minimum and maximum)."""
    return lrp(ctx, composite="deep_taylor", stabilizer=stabilizer, low=low, high=high)


def _unknown_composite(name: Any) -> str:
    from ..core.names import unknown_name_message
    return unknown_name_message("LRP composite", str(name),
                                list(relevance.COMPOSITES) + list(GRADIENT_COMPOSITES))
