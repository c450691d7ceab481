"""Plain gradient methods: saliency and gradient × input (and their layer variants)."""
from __future__ import annotations

from ..core.registry import register
from .base import Context, MethodResult


@register("saliency", needs=("grad",), family="gradient", aliases=("gradient", "vanilla_gradient"),
          summary="Gradient of the target w.r.t. the input (signed; abs=True for |grad|)",
          reference="Simonyan et al. 2014")
def saliency(ctx: Context) -> MethodResult:
    """Vanilla gradient. With ``layer=...``: gradient w.r.t. that layer's output."""
    result = ctx.gradient(wrt=ctx.layer)
    return MethodResult(result.grad, result.outputs, layer=ctx.layer)


@register("gradient_x_input", needs=("grad",), family="gradient",
          aliases=("input_x_gradient", "gradient_input", "gxi"),
          summary="Gradient × input (with layer=: gradient × activation)",
          reference="Shrikumar et al. 2016")
def gradient_x_input(ctx: Context) -> MethodResult:
    """Elementwise gradient × input; with ``layer=...``, gradient × layer activation."""
    result = ctx.gradient(wrt=ctx.layer)
    values = ctx.x if ctx.layer is None else result.activations[ctx.layer]
    return MethodResult(result.grad * values, result.outputs, layer=ctx.layer)
