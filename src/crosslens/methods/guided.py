"""Guided backpropagation and deconvnet: gradients under a modified ReLU backward rule.

Both override the backward pass of every ReLU in the model, scoped to one pass:

- guided backprop (Springenberg et al. 2015): ``relu'(x) * max(grad, 0)``;
- deconvnet (Zeiler & Fergus 2014): ``max(grad, 0)``, ignoring the forward mask.

These are Captum's ``GuidedBackprop`` and ``Deconvolution`` semantics.
"""
from __future__ import annotations

from ..core.registry import register
from ..core.rules import DECONV, GUIDED
from .base import Context, MethodResult


@register("guided_backprop", needs=("grad", "relu_override"), family="gradient",
          aliases=("guided_backpropagation", "guided"),
          summary="Gradient with ReLU backward relu'(x)·max(g, 0)",
          reference="Springenberg et al. 2015")
def guided_backprop(ctx: Context) -> MethodResult:
    result = ctx.gradient(wrt=ctx.layer, rule=GUIDED)
    return MethodResult(result.grad, result.outputs, layer=ctx.layer)


@register("deconvnet", needs=("grad", "relu_override"), family="gradient",
          aliases=("deconvolution", "deconv"),
          summary="Gradient with ReLU backward max(g, 0)", reference="Zeiler & Fergus 2014")
def deconvnet(ctx: Context) -> MethodResult:
    result = ctx.gradient(wrt=ctx.layer, rule=DECONV)
    return MethodResult(result.grad, result.outputs, layer=ctx.layer)
