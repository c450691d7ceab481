"""Internal influence between two cuts of a model (Leino et al. 2018, as in TruLens).

``cl.explain(model, x, "internal_influence", cut="conv2", qoi=cl.ClassDifference(3, 5),
doi="linear", steps=64)`` attributes the QoI at the to-cut (``to=``, default the
output) to the values at the from-cut (``cut=``, default the input), averaging the
gradient over the DoI; see :mod:`crosslens.core.influence` for the vocabulary and the
special cases (integrated gradients, SmoothGrad, layer integrated gradients, gradient ×
activation), which give the same numbers as those methods.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.influence import (GaussianDoI, LinearDoI, PointDoI, is_input_cut, is_output_cut,
                              make_doi, resolve_qoi)
from ..core.registry import register
from ..core.targets import ChannelTarget, NeuronTarget, PredictedTarget
from .base import Context, MethodResult
from .baselines import as_baseline_list, cut_baseline
from .layer import cut_gradient_sum, path_points
from .quadrature import integration_points


@register("internal_influence", needs=("grad", "layer_grad", "layer_override"),
          family="influence", aliases=("influence", "trulens"),
          summary="Gradient of a quantity of interest at one cut w.r.t. another, averaged "
                  "over a distribution of interest (TruLens)",
          reference="Leino et al. 2018")
def internal_influence(ctx: Context, *, cut: Any = None, to: Any = "output", qoi: Any = None,
                       doi: Any = "linear", multiply: bool = True, baseline: Any = None,
                       steps: int | None = None, rule: str | None = None,
                       samples: int | None = None, noise_level: float | None = None,
                       stdev: float | None = None, blur_sigma: float = 8.0) -> MethodResult:
    """Internal influence of a from-cut on a quantity of interest.

    Parameters
    ----------
    cut
        From-cut, where the attributions live: ``"input"`` (default; also ``None``) or a
        layer. ``layer=`` means the same; giving both differently is an error.
    to
        To-cut, where the QoI is computed: ``"output"`` (default) or a layer.
    qoi
        Quantity of interest; default the call's ``target``. A class index or
        ``cl.ClassQoI(c)``, ``cl.ClassDifference(a, b)`` (or ``(a, b)``), ``"max"``, a
        callable on the outputs, ``cl.ChannelQoI(c)`` (or an int) of a layer to-cut,
        ``cl.Channel(layer, c)`` / ``cl.Neuron(layer, index)``.
    doi
        Distribution of interest: ``"point"``, ``"linear"`` (default), ``"gaussian"``, or
        ``cl.PointDoI()`` / ``cl.LinearDoI(...)`` / ``cl.GaussianDoI(...)``.
    multiply
        Multiply the averaged gradient by ``z - baseline`` (linear) or ``z`` (point,
        Gaussian) at the from-cut (TruLens' ``multiply_activation``, default on).
    baseline, steps, rule
        Linear DoI: input-space baseline (default ``"zeros"``; a list is averaged),
        number of points (50) and Captum-named rule (``"gausslegendre"``).
    samples, noise_level, stdev
        Gaussian DoI: number of samples (50) and noise standard deviation, ``stdev`` or
        ``noise_level`` (0.15) times each sample's value range at the from-cut. Noise is
        drawn from ``seed`` in channels-first order, as SmoothGrad draws it.
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    from_cut = _from_cut(ctx, cut)
    to_cut = None if is_output_cut(to) else ctx.backend.resolve_layer(to)
    distribution = make_doi(doi, baseline=baseline, steps=steps, rule=rule, samples=samples,
                            noise_level=noise_level, stdev=stdev)
    target = _quantity(ctx, qoi, to_cut)
    point = ctx.x if from_cut is None else ctx.backend.activations(ctx.x, [from_cut])[from_cut]
    if isinstance(distribution, PointDoI):
        mean_grad = cut_gradient_sum(ctx, target, from_cut, np.ones(1), lambda a, b: point)
        attributions = point * mean_grad if multiply else mean_grad
    elif isinstance(distribution, LinearDoI):
        attributions = _linear(ctx, target, from_cut, point, distribution, multiply, blur_sigma)
    else:
        attributions = _gaussian(ctx, target, from_cut, point, distribution, multiply)
    info = {"cut": from_cut or "input", "to": to_cut or "output",
            "doi": type(distribution).__name__,
            "multiply": multiply}
    return MethodResult(attributions, layer=from_cut, info=info)


def _from_cut(ctx: Context, cut: Any) -> str | None:
    name = None if is_input_cut(cut) else ctx.backend.resolve_layer(cut)
    if ctx.layer is not None and cut is not None and name != ctx.layer:
        raise OptionError(f"layer={ctx.layer!r} and cut={cut!r} disagree; internal influence "
                          "takes its from-cut from either (they mean the same)")
    return ctx.layer if name is None and cut is None else name


def _quantity(ctx: Context, qoi: Any, to_cut: str | None) -> Any:
    """The fixed backend target for the QoI (default: the call's target)."""
    if qoi is None:
        target = ctx.target
        if isinstance(target, (NeuronTarget, ChannelTarget)):
            if to_cut is not None and target.layer != to_cut:
                raise OptionError(f"the target lives in layer {target.layer!r} but "
                                  f"to={to_cut!r}; make them agree (or drop to=)")
        elif to_cut is not None:
            raise OptionError(f"a layer to-cut ({to_cut!r}) needs a quantity of interest "
                              "there: qoi=cl.ChannelQoI(c) or cl.Neuron(layer, index)")
    else:
        if not isinstance(ctx.target, PredictedTarget):
            raise OptionError("give the quantity of interest once: qoi= or target=, not both")
        ctx.target = resolve_qoi(qoi, to_cut, ctx.n, ctx.backend.resolve_layer)
    return ctx.fixed_target()


def _linear(ctx: Context, target: Any, cut: str | None, point: Any, doi: LinearDoI,
            multiply: bool, blur_sigma: float) -> Any:
    alphas, weights = integration_points(doi.rule, doi.steps)
    total = None
    specs = as_baseline_list(doi.baseline, ctx)
    for spec in specs:
        # an input-space baseline, mapped to the cut by the model (see cut_baseline)
        base = cut_baseline(ctx, spec, cut, point, blur_sigma)
        delta = point - base
        mean_grad = cut_gradient_sum(ctx, target, cut, weights,
                                     path_points(ctx.ops, base, delta, alphas))
        part = delta * mean_grad if multiply else mean_grad
        total = part if total is None else total + part
    return total / float(len(specs))


def _gaussian(ctx: Context, target: Any, cut: str | None, point: Any, doi: GaussianDoI,
              multiply: bool) -> Any:
    if doi.samples < 1:
        raise OptionError("samples must be >= 1")
    ops = ctx.ops
    shape = ops.shape(point)
    if doi.stdev is not None:
        sigma: Any = float(doi.stdev)
    else:  # per-sample value range, as SmoothGrad's noise_level
        flat = ops.to_numpy(point).reshape(shape[0], -1)
        spread = flat.max(axis=1) - flat.min(axis=1)
        sigma = (doi.noise_level * spread).reshape((1, shape[0]) + (1,) * (len(shape) - 1))
    rng = ctx.rng()

    def noisy(a: int, b: int) -> Any:
        k = b - a
        eps = ctx.canonical_normal((k,) + shape, rng) * sigma
        return ops.repeat_batch(point, k) + ops.asarray(eps.reshape((k * shape[0],) + shape[1:]))

    weights = np.full(doi.samples, 1.0 / doi.samples)
    mean_grad = cut_gradient_sum(ctx, target, cut, weights, noisy)
    return point * mean_grad if multiply else mean_grad
