"""Layer activations: the values a named layer outputs for the input."""
from __future__ import annotations

from ..core.registry import register
from .base import Context, MethodResult, require_layer


@register("activations", needs=("activations",), family="layer",
          aliases=("layer_activations", "activation"),
          summary="Values of a named layer (shown as a channel grid)",
          reference="tf-explain ExtractActivations", targetless=True)
def activations(ctx: Context) -> MethodResult:
    layer = require_layer(ctx, "activations")
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    return MethodResult(values, None, layer=layer)
