"""SmoothGrad, SquareGrad and VarGrad: one noise wrapper over any gradient method.

For ``samples`` draws of Gaussian noise ``ε``, the base method is run on ``x + ε`` and
its attributions ``A`` aggregated: SmoothGrad = mean(A) (Smilkov et al. 2017),
SquareGrad = mean(A²), VarGrad = mean(A²) - mean(A)² (Adebayo et al. 2018). These are
Captum ``NoiseTunnel``'s ``smoothgrad``, ``smoothgrad_sq`` and ``vargrad``.

The noise standard deviation is ``noise_level · (max(x) - min(x))`` per sample (the
paper's convention) unless ``stdev`` gives it absolutely. Noise is drawn from numpy with
``seed`` in channels-first order, so the same seed perturbs a PyTorch and a Keras model
identically; ``noise=`` takes explicit noise of shape ``(samples, *x.shape)``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.errors import InputError, OptionError
from ..core.registry import get_method, register
from .base import Context, MethodResult
from .batching import points_per_pass


def _noise_method(name: str, aggregate: str, summary: str, reference: str, aliases=()):
    @register(name, needs=("grad",), family="noise", summary=summary, reference=reference,
              batch_coupling="draws",
              aliases=aliases)
    def method(ctx: Context, *, base: str = "saliency", samples: int = 50,
               noise_level: float = 0.15, stdev: float | None = None, noise: Any = None,
               **base_options: Any) -> MethodResult:
        return noise_tunnel(ctx, aggregate, base=base, samples=samples, noise_level=noise_level,
                            stdev=stdev, noise=noise, base_options=base_options)
    method.__name__ = name
    method.__doc__ = (f"{summary}.\n\n    Options: ``base`` (a gradient method name), "
                      "``samples``, ``noise_level`` or ``stdev``, ``noise``, ``seed`` and "
                      "the base method's own options.")
    return method


smoothgrad = _noise_method("smoothgrad", "mean", "Mean of a gradient method over noisy inputs",
                           "Smilkov et al. 2017", aliases=("smooth_grad", "noise_tunnel"))
squaregrad = _noise_method("squaregrad", "square", "Mean of squared attributions over noisy inputs",
                           "Hooker et al. 2019", aliases=("smoothgrad_sq", "square_grad"))
vargrad = _noise_method("vargrad", "variance", "Variance of attributions over noisy inputs",
                        "Adebayo et al. 2018", aliases=("var_grad",))


def noise_tunnel(ctx: Context, aggregate: str, *, base: str, samples: int, noise_level: float,
                 stdev: float | None, noise: Any, base_options: dict) -> MethodResult:
    """Run ``base`` on noisy copies of the input and aggregate (see module docstring)."""
    spec = get_method(base)
    if spec.family != "gradient":
        raise OptionError(f"the noise wrapper needs a gradient method as base, e.g. "
                          f"'saliency', 'integrated_gradients', 'guided_backprop'; got {base!r}")
    unknown = set(base_options) - set(spec.options)
    if unknown:
        raise OptionError(f"unknown options {sorted(unknown)} for base method {spec.name!r}; "
                          f"its options are {list(spec.options)}")
    if samples < 1:
        raise OptionError("samples must be >= 1")
    ops, n = ctx.ops, ctx.n
    shape = ops.shape(ctx.x)
    target = ctx.fixed_target()
    explicit = _explicit_noise(ctx, noise, samples, shape)
    sigma = _sigma(ctx, noise_level, stdev, shape)
    rng = ctx.rng()
    per_pass = points_per_pass(ctx, samples)
    total = squares = None
    layer = None
    for start, stop in ctx.chunks(samples, per_pass, f"{aggregate} of {spec.name}"):
        k = stop - start
        if explicit is not None:
            eps = explicit[start:stop]
        else:
            eps = ctx.canonical_normal((k,) + shape, rng) * sigma
        noisy = ops.repeat_batch(ctx.x, k) + ops.asarray(eps.reshape((k * n,) + shape[1:]))
        result = spec.fn(ctx.derive(x=noisy, target=target.repeat(k), progress=False),
                         **base_options)
        layer = result.layer  # with layer=: the base method's values at that layer
        attr = ops.reshape(result.attributions, (k, n) + ops.shape(result.attributions)[1:])
        part, part_sq = ops.sum(attr, axis=0), ops.sum(attr * attr, axis=0)
        total = part if total is None else total + part
        squares = part_sq if squares is None else squares + part_sq
    mean, mean_sq = total / float(samples), squares / float(samples)
    value = {"mean": mean, "square": mean_sq, "variance": mean_sq - mean * mean}[aggregate]
    return MethodResult(value, layer=layer, info={"base": spec.name, "samples": samples,
                                     "noise": "explicit" if explicit is not None else
                                     (f"stdev={stdev}" if stdev is not None
                                      else f"noise_level={noise_level}")})


def _sigma(ctx: Context, noise_level: float, stdev: float | None, shape: tuple) -> Any:
    """Per-sample noise std, broadcastable to ``(k, N, ...)``; for several inputs, each
    input's own value range sets its noise."""
    if stdev is not None:
        if stdev < 0:
            raise OptionError(f"stdev must be >= 0, got {stdev}")
        return float(stdev)
    if noise_level < 0:
        raise OptionError(f"noise_level must be >= 0, got {noise_level}")
    x = ctx.ops.to_numpy(ctx.x).reshape(shape[0], -1)
    structure = ctx.backend.structure
    if structure is not None:
        sigma = np.empty_like(x, dtype=np.float64)
        for a, b in structure.segments:
            part = x[:, a:b]
            sigma[:, a:b] = noise_level * (part.max(axis=1) - part.min(axis=1))[:, None]
        return sigma[None]
    spread = x.max(axis=1) - x.min(axis=1)
    return (noise_level * spread).reshape((1, shape[0]) + (1,) * (len(shape) - 1))


def _explicit_noise(ctx: Context, noise: Any, samples: int, shape: tuple) -> np.ndarray | None:
    if noise is None:
        return None
    array = to_numpy(noise)
    if array.shape != (samples,) + tuple(shape):
        raise InputError(f"noise must have shape (samples, *x.shape) = "
                         f"{(samples,) + tuple(shape)}; got {array.shape}")
    return array
