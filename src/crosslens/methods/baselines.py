"""Baselines (reference inputs) for path and difference methods.

A baseline is given as

- ``"zeros"`` / ``0`` or any number: a constant input;
- ``"blur"``: the input blurred by a Gaussian over its spatial axes (``blur_sigma``
  pixels, :func:`crosslens.core.imageops.gaussian_blur`'s edge mode), a baseline that
  keeps colors but removes edges (Sturmfels et al. 2020);
- ``"uniform"``: uniform noise over the input's value range (seeded);
- an array like one input sample or like the whole batch, in the input's layout;
- a list of any of these: attributions are averaged over the baselines.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError, OptionError
from ..core.imageops import gaussian_blur
from .base import Context


def as_baseline_list(baseline: Any, ctx: Context | None = None) -> list[Any]:
    """Normalize the user's baseline option to a non-empty list of baseline specs.

    For a model with several inputs, a tuple / dict shaped like the input is one
    baseline (one entry per input, as in Captum); a list holds several baselines.
    """
    structure = None if ctx is None else ctx.backend.structure
    if structure is not None and isinstance(baseline, dict):
        return [baseline]
    if structure is not None and isinstance(baseline, tuple) \
            and len(baseline) == len(structure.keys):
        return [baseline]
    if isinstance(baseline, (list, tuple)):
        if not baseline:
            raise OptionError("baseline list is empty")
        return list(baseline)
    return [baseline]


def make_baseline(ctx: Context, spec: Any, blur_sigma: float = 8.0) -> Any:
    """One native baseline batch shaped like ``ctx.x``."""
    shape = ctx.ops.shape(ctx.x)
    if ctx.ops.is_integer(ctx.x):
        return _token_baseline(ctx, spec)
    if isinstance(spec, str):
        if spec == "zeros":
            return ctx.ops.zeros_like(ctx.x)
        if spec == "blur" and ctx.backend.structure is not None:
            raise OptionError("the 'blur' baseline blurs one image; this model takes several "
                              "inputs: give a tuple / dict with one baseline per input")
        if spec == "blur":
            return ctx.ops.asarray(gaussian_blur(ctx.ops.to_numpy(ctx.x), blur_sigma,
                                                 _spatial_axes(len(shape), ctx.layout)))
        if spec == "uniform":
            x = ctx.ops.to_numpy(ctx.x)
            # drawn in channels-first order: a seed gives the same baseline on every framework
            last = ctx.layout == "channels_last" and x.ndim == 4
            size = (x.shape[0], x.shape[3], x.shape[1], x.shape[2]) if last else x.shape
            draw = ctx.rng().uniform(x.min(), x.max(), size=size)
            return ctx.ops.asarray(np.moveaxis(draw, 1, -1) if last else draw)
        raise OptionError(f"unknown baseline {spec!r}: use 'zeros', 'blur', 'uniform', a "
                          "number, an array shaped like the input (or one sample), or a list")
    if isinstance(spec, (int, float, np.number)) and not isinstance(spec, (bool, np.bool_)):
        if not np.isfinite(spec):
            raise OptionError(f"a baseline must be finite, got {spec}")
        return ctx.ops.zeros_like(ctx.x) + float(spec)
    if spec is None or isinstance(spec, (bool, np.bool_)):
        raise OptionError(f"baseline {spec!r} is not a baseline: use 'zeros', a number, "
                          "'blur', 'uniform', or an array shaped like the input")
    array = ctx.backend.prepare_aux(spec)
    got = ctx.ops.shape(array)
    if got == shape:
        return array
    if len(got) == len(shape) and got[0] == 1 and got[1:] == shape[1:]:
        return ctx.ops.repeat_batch(array, shape[0])
    if got == shape[1:]:
        return ctx.ops.repeat_batch(ctx.ops.reshape(array, (1,) + got), shape[0])
    raise InputError(f"baseline of shape {got} fits neither the input batch {shape} nor one "
                     f"sample {shape[1:]}; give it in the input's layout")


def _spatial_axes(rank: int, layout: str | None) -> tuple[int, ...]:
    if rank == 4:
        return (2, 3) if layout == "channels_first" else (1, 2)
    if rank == 3:  # (N, C, L) or (N, L, C)
        return (2,) if layout == "channels_first" else (1,)
    return tuple(range(1, rank))


def _token_baseline(ctx: Context, spec: Any) -> Any:
    """A baseline for integer inputs (token ids): an id (e.g. the padding id) or an array
    of ids shaped like the input or one sample; ``"zeros"`` is id 0."""
    shape = ctx.ops.shape(ctx.x)
    if isinstance(spec, str) and spec == "zeros":
        spec = 0
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, (bool, np.bool_)):
        return ctx.ops.as_integer(np.full(shape, int(spec)))
    if isinstance(spec, (float, np.floating)) and float(spec).is_integer():
        return ctx.ops.as_integer(np.full(shape, int(spec)))
    array = np.asarray(spec if not hasattr(spec, "shape") else _host(spec))
    if array.dtype.kind not in "iu":
        raise OptionError(f"the input holds integer ids, so the baseline must be ids too (e.g. "
                          f"the padding id, or an array of ids); got {spec!r}")
    if array.shape == tuple(shape[1:]):
        array = np.broadcast_to(array, shape)
    if array.shape != tuple(shape):
        raise InputError(f"baseline of shape {array.shape} fits neither the input batch "
                         f"{shape} nor one sample {shape[1:]}")
    return ctx.ops.as_integer(array)


def _host(array: Any) -> np.ndarray:
    from ..core.arrays import to_numpy
    return to_numpy(array)


def cut_baseline(ctx: Context, spec: Any, cut: str | None, values: Any,
                 blur_sigma: float = 8.0) -> Any:
    """A baseline at a cut: the model's values at ``cut`` for an input baseline, or, for
    integer inputs (token ids), ``"zeros"`` / a number as a constant in the cut's own
    space (e.g. the zero embedding; ids cannot be interpolated). ``values`` are the
    input's values at the cut; ``cut=None`` is the input itself."""
    if cut is not None and ctx.ops.is_integer(ctx.x) and (
            (isinstance(spec, str) and spec == "zeros")
            or (isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool))):
        return ctx.ops.zeros_like(values) + float(0 if isinstance(spec, str) else spec)
    base = make_baseline(ctx, spec, blur_sigma)
    return base if cut is None else ctx.backend.activations(base, [cut])[cut]
