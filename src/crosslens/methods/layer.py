"""Layer and neuron attribution: layer integrated gradients and conductance.

- **Layer integrated gradients** (Captum ``LayerIntegratedGradients``), reached with
  ``cl.explain(model, x, "integrated_gradients", layer=...)``: the layer's output is
  interpolated between its values for the baseline and for the input, replaced by
  those values in the forward pass, and differentiated:
  ``(a(x) - a(b)) · Σ_k w_k ∂f/∂a |_{a = a(b) + α_k (a(x) - a(b))}``.
- **Layer conductance** (Dhamdhere et al. 2018; Captum ``LayerConductance``): the flow
  of integrated gradients through each unit of a layer along the input path
  ``x_α = b + α(x - b)``: ``Σ_k ∂f/∂a(x_{α_k}) · (a(x_{α_{k+1}}) - a(x_{α_k}))`` over
  ``steps + 1`` points of the rule, as Captum computes it.
- **Neuron conductance** (Captum ``NeuronConductance``), ``neuron=cl.Neuron(layer, i)``:
  the input attributions of the target that flow through one unit,
  ``(x - b) · Σ_k w_k ∂f/∂a_i · ∂a_i/∂x`` at the path points.

Gradient w.r.t. a layer is ``saliency`` with ``layer=``; gradient × activation is
``gradient_x_input`` with ``layer=``; neuron integrated gradients is
``integrated_gradients`` with ``target=cl.Neuron(...)``.

All path points are evaluated in as few passes as the memory budget allows
(:func:`cut_gradient_sum`).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import register
from ..core.targets import Neuron, NeuronTarget, TargetSpec, resolve_target
from .base import Context, MethodResult, require_layer
from .baselines import as_baseline_list, cut_baseline, make_baseline
from .batching import points_per_pass
from .quadrature import integration_points


def cut_gradient_sum(ctx: Context, target: TargetSpec, cut: str | None, weights: np.ndarray,
                     make_points: Callable[[int, int], Any]) -> Any:
    """``Σ_k w_k ∂target/∂z_k`` over points ``z_k`` at a cut, batched to the budget.

    Parameters
    ----------
    ctx
        The call (its input ``x`` is fed to the model when the cut is a layer).
    target
        Fixed target aligned with ``ctx.x``.
    cut
        ``None``: the points are inputs. A layer name: the points replace that layer's
        output while the model runs on ``x``.
    weights
        One weight per point.
    make_points
        ``make_points(a, b)`` returns points ``a..b-1`` stacked point-major as a native
        ``((b - a) · N, ...)`` batch; it is called once per chunk, in order.
    """
    ops, n = ctx.ops, ctx.n
    total = None
    for a, b in ctx.chunks(len(weights), points_per_pass(ctx, len(weights)), "path points"):
        k = b - a
        points = make_points(a, b)
        if cut is None:
            grads = ctx.gradient(points, target.repeat(k)).grad
        else:
            grads = ctx.gradient(ops.repeat_batch(ctx.x, k), target.repeat(k), wrt=cut,
                                 replace={cut: points}).grad
        shape = ops.shape(grads)[1:]
        w = ops.asarray(weights[a:b].reshape((k, 1) + (1,) * len(shape)))
        part = ops.sum(ops.reshape(grads, (k, n) + shape) * w, axis=0)
        total = part if total is None else total + part
    return total


def path_points(ops: Any, start: Any, delta: Any, alphas: np.ndarray
                ) -> Callable[[int, int], Any]:
    """``make_points`` for the straight path ``start + α · delta``."""
    return lambda a, b: ops.concat([start + float(alpha) * delta for alpha in alphas[a:b]])


def layer_integrated_gradients(ctx: Context, *, baseline: Any = "zeros", steps: int = 50,
                               rule: str = "gausslegendre", blur_sigma: float = 8.0,
                               completeness: bool = False) -> MethodResult:
    """Integrated gradients w.r.t. ``ctx.layer`` (Captum ``LayerIntegratedGradients``).

    Called by ``integrated_gradients`` when a layer is named; the options are its
    options. Baselines are inputs (mapped to the layer by the model); several are
    averaged. For integer inputs (token ids), ``"zeros"`` and numbers are constants in
    the layer's space (e.g. the zero embedding) and integer arrays are ids (e.g. padding)
    mapped to the layer by the model (:func:`~crosslens.methods.baselines.cut_baseline`).
    """
    layer = require_layer(ctx, "layer integrated gradients")
    target = ctx.fixed_target()
    alphas, weights = integration_points(rule, steps)
    values = ctx.backend.activations(ctx.x, [layer])[layer]
    starts = [cut_baseline(ctx, spec, layer, values, blur_sigma)
              for spec in as_baseline_list(baseline, ctx)]
    total = None
    for start in starts:
        delta = values - start
        integral = cut_gradient_sum(ctx, target, layer, weights,
                                    path_points(ctx.ops, start, delta, alphas))
        total = delta * integral if total is None else total + delta * integral
    total = total / float(len(starts))
    info: dict[str, Any] = {"rule": rule, "steps": steps, "baselines": len(starts)}
    if completeness:  # sum over the layer ≈ f(x) - f(b), as for input IG
        from .integrated import completeness_report
        base_scores = [ctx.ops.to_numpy(ctx.gradient(ctx.x, target, wrt=layer,
                                                     replace={layer: start}).scores)
                       for start in starts]
        info.update(completeness_report(ctx, total, [], target, base_scores))
    return MethodResult(total, layer=layer, info=info)


@register("conductance", needs=("grad", "layer_grad"), family="layer",
          aliases=("layer_conductance",),
          summary="Integrated-gradients flow through each unit of a layer (or, with "
                  "neuron=, the input attributions through one unit)",
          reference="Dhamdhere et al. 2018")
def conductance(ctx: Context, *, baseline: Any = "zeros", steps: int = 50,
                rule: str = "gausslegendre", blur_sigma: float = 8.0,
                neuron: Any = None) -> MethodResult:
    """Layer conductance (``layer=``) or neuron conductance (``neuron=``).

    Parameters
    ----------
    baseline
        Input baseline (see :mod:`crosslens.methods.baselines`); a list is averaged.
    steps
        Number of integration steps (layer conductance evaluates ``steps + 1`` points,
        as Captum's ``LayerConductance``).
    rule
        Captum-named integration rule (Captum's defaults: ``"gausslegendre"`` for both
        ``LayerConductance`` and this method; ``NeuronConductance`` uses
        ``"riemann_trapezoid"``).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    neuron
        ``cl.Neuron(layer, index)``: attribute the target to the input through that one
        unit (Captum ``NeuronConductance``); the result is in the input's layout.
        Without it, ``layer=`` is required and the result is in the layer's layout.
    """
    if ctx.ops.is_integer(ctx.x):
        raise OptionError("conductance interpolates between the input and a baseline, which "
                          "integer ids (tokens) cannot be; use integrated_gradients with "
                          "layer=<embedding> (a path in embedding space)")
    if steps < 1:
        raise OptionError(f"conductance needs steps >= 1, got {steps}")
    target = ctx.fixed_target()
    baselines = [make_baseline(ctx, spec, blur_sigma)
                 for spec in as_baseline_list(baseline, ctx)]
    if neuron is not None:
        unit = _neuron_target(ctx, neuron)
        total = None
        for base in baselines:
            part = _neuron_conductance(ctx, target, unit, base, steps, rule)
            total = part if total is None else total + part
        return MethodResult(total / float(len(baselines)),
                            info={"rule": rule, "steps": steps, "neuron": unit.layer,
                                  "index": unit.index})
    layer = require_layer(ctx, "conductance")
    total = None
    for base in baselines:
        part = _layer_conductance(ctx, target, layer, base, steps, rule)
        total = part if total is None else total + part
    return MethodResult(total / float(len(baselines)), layer=layer,
                        info={"rule": rule, "steps": steps, "baselines": len(baselines)})


def _layer_conductance(ctx: Context, target: TargetSpec, layer: str, base: Any, steps: int,
                       rule: str) -> Any:
    ops, n = ctx.ops, ctx.n
    alphas, _ = integration_points(rule, steps + 1)
    make = path_points(ops, base, ctx.x - base, alphas)
    total = previous = None
    for a, b in ctx.chunks(len(alphas), points_per_pass(ctx, len(alphas)), "conductance"):
        k = b - a
        result = ctx.gradient(make(a, b), target.repeat(k), wrt=layer)
        shape = ops.shape(result.grad)[1:]
        grads = ops.reshape(result.grad, (k, n) + shape)
        values = ops.reshape(result.activations[layer], (k, n) + shape)
        parts = []
        if previous is not None:  # the step that crosses the chunk boundary
            parts.append(previous[0] * (values[0] - previous[1]))
        if k > 1:
            parts.append(ops.sum(grads[:-1] * (values[1:] - values[:-1]), axis=0))
        for part in parts:
            total = part if total is None else total + part
        previous = (grads[k - 1], values[k - 1])
    return total


def _neuron_conductance(ctx: Context, target: TargetSpec, unit: NeuronTarget, base: Any,
                        steps: int, rule: str) -> Any:
    ops, n = ctx.ops, ctx.n
    alphas, weights = integration_points(rule, steps)
    delta = ctx.x - base
    make = path_points(ops, base, delta, alphas)
    sample_shape = ops.shape(ctx.x)[1:]
    total = None
    for a, b in ctx.chunks(len(alphas), points_per_pass(ctx, len(alphas)), "conductance"):
        k = b - a
        points = make(a, b)
        # ∂f/∂a_i at each point (one pass), times ∂a_i/∂x (a second pass).
        inner = ctx.gradient(points, unit).grad
        through = ctx.gradient(points, target.repeat(k), wrt=unit.layer).grad
        through = through[(slice(None),) + unit.index]
        w = ops.asarray(np.repeat(weights[a:b], n))
        scale = ops.reshape(through * w, (k * n,) + (1,) * len(sample_shape))
        part = ops.sum(ops.reshape(inner * scale, (k, n) + sample_shape), axis=0)
        total = part if total is None else total + part
    return delta * total


def _neuron_target(ctx: Context, neuron: Any) -> NeuronTarget:
    if not isinstance(neuron, Neuron):
        raise OptionError(f"neuron= takes cl.Neuron(layer, index); got {neuron!r}")
    unit = resolve_target(neuron, ctx.n, ctx.backend.resolve_layer)
    if ctx.layer is not None and ctx.layer != unit.layer:
        raise OptionError(f"neuron {neuron!r} is in layer {unit.layer!r} but layer="
                          f"{ctx.layer!r}; drop layer= (the neuron names its layer)")
    return unit
