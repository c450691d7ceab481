"""Perturbation methods: occlusion, feature ablation and RISE (forward passes only).

Each method evaluates the target score on many modified copies of the input. The
copies are built natively and evaluated in batches sized by the memory budget
(``backend.max_batch(x, backward=False, total=...)``), never one forward pass per perturbation;
scores are combined on the host in float64, so the result does not depend on the
chunk size. Results are raw, signed and in the input's layout.

- **Occlusion** (Zeiler & Fergus 2014; Captum ``Occlusion``): a window slides over the
  input and is replaced by a baseline; each element gets ``score(x) - score(occluded)``
  averaged over the windows that cover it.
- **Feature ablation** (Captum ``FeatureAblation``): each feature of a user-supplied
  integer mask (e.g. superpixels) is replaced by the baseline in turn; its elements get
  ``score(x) - score(ablated)``.
- **RISE** (Petsiuk et al. 2018): random low-resolution binary grids, upsampled
  bilinearly and randomly shifted, mask the input; the map is the score-weighted mean
  of the masks, divided by the keep probability ``p``.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.errors import InputError, OptionError
from ..core.registry import register
from ..core.imageops import resize_bilinear
from .base import Context, MethodResult
from .baselines import make_baseline
from .batching import points_per_pass
from .scoring import forward_scores


@register("occlusion", needs=("forward",), family="perturbation",
          aliases=("sliding_window",),
          summary="Score drop when a sliding window is replaced by a baseline (Captum "
                  "Occlusion)",
          reference="Zeiler & Fergus 2014")
def occlusion(ctx: Context, *, patch: Any = 8, stride: Any = None, baseline: Any = 0.0,
              blur_sigma: float = 8.0) -> MethodResult:
    """Occlusion with a sliding window, averaged over overlapping windows.

    Parameters
    ----------
    patch
        Window size. An int or ``(h, w)`` spans the spatial axes and every channel; a
        tuple with one entry per non-batch axis of the input (in its layout) is a full
        window shape, as Captum's ``sliding_window_shapes``.
    stride
        Step between windows, same forms as ``patch``; default half the window
        (at least 1). A stride larger than the window would leave gaps and is an error.
    baseline
        What occluded elements become: a number, ``"blur"``, ``"uniform"`` or an array
        shaped like the input or one sample (see :mod:`crosslens.methods.baselines`).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.

    Notes
    -----
    As in Captum, windows start at 0 and step by ``stride`` until the axis is covered;
    the last window along an axis may be cut off at the border. Each element's value is
    the mean of ``score(x) - score(x with the window occluded)`` over the windows
    covering it.
    """
    _reject_layer(ctx, "occlusion")
    _reject_structure(ctx, "occlusion", "windows slide over one input's axes")
    ops, n = ctx.ops, ctx.n
    sample_shape = ops.shape(ctx.x)[1:]
    window = _window_shape(patch, sample_shape, ctx.layout, "patch")
    steps = _stride_shape(stride, window, sample_shape, ctx.layout)
    counts = [math.ceil((d - w) / s) + 1 for d, w, s in zip(sample_shape, window, steps)]
    # Axes the window covers entirely need no mask axis: it broadcasts.
    mask_shape = tuple(1 if w == d else d for w, d in zip(window, sample_shape))
    windows = [tuple(slice(j * s, j * s + w) if m > 1 else slice(None)
                     for j, s, w, m in zip(position, steps, window, mask_shape))
               for position in np.ndindex(*counts)]

    target = ctx.fixed_target()
    base = make_baseline(ctx, baseline, blur_sigma)
    reference = forward_scores(ctx, ctx.x, target)
    total = np.zeros((n,) + mask_shape)
    covered = np.zeros(mask_shape)
    for start, stop, _, scores in _evaluate(
            ctx, base, target, len(windows), lambda a, b: _window_masks(windows[a:b], mask_shape),
            desc="occlusion windows"):
        drops = reference[None, :] - scores  # (k, n)
        for j, region in enumerate(windows[start:stop]):
            total[(slice(None),) + region] += drops[j].reshape((n,) + (1,) * len(mask_shape))
            covered[region] += 1.0
    attributions = np.broadcast_to(total / covered, (n,) + tuple(sample_shape)).copy()
    info = {"patch": window, "stride": steps, "windows": len(windows)}
    return MethodResult(ops.asarray(attributions), info=info)


@register("feature_ablation", needs=("forward",), family="perturbation",
          aliases=("ablation",),
          summary="Score drop when each feature of a mask (e.g. superpixels) is replaced "
                  "by a baseline (Captum FeatureAblation)",
          reference="Captum FeatureAblation")
def feature_ablation(ctx: Context, *, feature_mask: Any = None, baseline: Any = 0.0,
                     blur_sigma: float = 8.0) -> MethodResult:
    """Ablate each feature of an integer mask in turn.

    Parameters
    ----------
    feature_mask
        Integer array whose equal values form one feature; it must broadcast to the
        input (in the input's layout), e.g. ``(N, 1, H, W)`` / ``(N, H, W, 1)`` per
        sample, ``(1, ...)`` shared by the batch, or ``(H, W)`` superpixels (spatial in
        either layout). Required.
    baseline
        What ablated elements become (as for :func:`occlusion`).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.
    """
    _reject_layer(ctx, "feature_ablation")
    if feature_mask is None:
        raise OptionError("feature_ablation needs feature_mask=: an integer array (e.g. "
                          "superpixel labels of shape (H, W)) whose equal values form a feature")
    ops, n = ctx.ops, ctx.n
    shape = ops.shape(ctx.x)
    mask = _feature_mask(_flat_mask(ctx, feature_mask), shape, ctx.layout)
    features = np.unique(mask)

    target = ctx.fixed_target()
    base = make_baseline(ctx, baseline, blur_sigma)
    reference = forward_scores(ctx, ctx.x, target)
    total = np.zeros(shape)
    def masks(a: int, b: int) -> np.ndarray:
        return mask[None] == features[a:b].reshape((-1,) + (1,) * mask.ndim)

    for start, stop, _, scores in _evaluate(ctx, base, target, len(features), masks,
                                            desc="ablated features"):
        drops = reference[None, :] - scores  # (k, n)
        for j, feature in enumerate(features[start:stop]):
            total += drops[j].reshape((n,) + (1,) * (len(shape) - 1)) * (mask == feature)
    return MethodResult(ops.asarray(total), info={"features": len(features)})


@register("rise", needs=("forward",), family="perturbation",
          summary="Score-weighted mean of random smooth masks (randomized input sampling)",
          reference="Petsiuk et al. 2018")
def rise(ctx: Context, *, samples: int = 2000, p: float = 0.5, cell: Any = None,
         baseline: Any = 0.0, blur_sigma: float = 8.0) -> MethodResult:
    """RISE saliency: ``S = Σ_i score(b + (x - b) ⊙ M_i) · M_i / (samples · p)``.

    Parameters
    ----------
    samples
        Number of random masks.
    p
        Probability that a grid cell is kept.
    cell
        Cell size in pixels, an int or ``(h, w)``; default ``ceil(size / 8)`` (an 8×8
        grid, the paper's setting). The grid has ``ceil(size / cell)`` cells per axis,
        is upsampled bilinearly (half-pixel centers, borders clamped) to
        ``(cells + 1) · cell`` and cropped at a random shift in ``[0, cell)``.
    baseline
        Value of the masked-out input (the paper uses 0).
    blur_sigma
        Gaussian sigma in pixels of the ``"blur"`` baseline.

    Masks are drawn with numpy from ``seed`` over the spatial axes only, so the same
    seed gives the same masks for a PyTorch and a Keras model.
    """
    _reject_layer(ctx, "rise")
    _reject_structure(ctx, "rise", "its masks cover one image")
    if ctx.ops.is_integer(ctx.x):
        raise OptionError("rise blends the input with a baseline through soft masks, which "
                          "integer ids (tokens) cannot be; use occlusion or feature_ablation "
                          "with an integer baseline (e.g. the padding id)")
    if samples < 1:
        raise OptionError("samples must be >= 1")
    if not 0.0 < p <= 1.0:
        raise OptionError(f"p is the probability of keeping a cell and must be in (0, 1]; "
                          f"got {p}")
    ops, n = ctx.ops, ctx.n
    shape = ops.shape(ctx.x)
    spatial = _spatial_axes(len(shape), ctx.layout)
    if len(spatial) != 2:
        raise InputError(f"RISE needs image inputs (N, C, H, W) or (N, H, W, C); got shape "
                         f"{shape}")
    height, width = shape[spatial[0]], shape[spatial[1]]
    cells = _pair(cell, "cell") if cell is not None else (
        math.ceil(height / 8), math.ceil(width / 8))
    if min(cells) < 1:
        raise OptionError(f"cell must be >= 1 pixel; got {cell}")
    grid = (math.ceil(height / cells[0]), math.ceil(width / cells[1]))
    rng = ctx.rng()
    grids = (rng.random((samples,) + grid) < p).astype(np.float64)
    shifts = np.stack([rng.integers(0, cells[0], samples),
                       rng.integers(0, cells[1], samples)], axis=1)
    upsampled = ((grid[0] + 1) * cells[0], (grid[1] + 1) * cells[1])
    mask_shape = tuple(d if axis + 1 in spatial else 1 for axis, d in enumerate(shape[1:]))

    def masks(a: int, b: int) -> np.ndarray:
        big = resize_bilinear(np.moveaxis(grids[a:b], 0, -1), upsampled)  # (H', W', k)
        crops = np.stack([big[dy:dy + height, dx:dx + width, j]
                          for j, (dy, dx) in enumerate(shifts[a:b])])
        return crops.reshape((b - a,) + mask_shape)

    target = ctx.fixed_target()
    base = make_baseline(ctx, baseline, blur_sigma)
    saliency = np.zeros((n, height, width))
    for start, stop, kept, scores in _evaluate(ctx, base, target, samples, masks, soft=True,
                                               desc="rise masks"):
        saliency += np.tensordot(scores.T, kept.reshape(stop - start, height, width),
                                 axes=(1, 0))
    saliency /= samples * p
    channel = [axis for axis in range(1, len(shape)) if axis not in spatial]
    values = np.expand_dims(saliency, tuple(channel)) if channel else saliency
    attributions = np.broadcast_to(values, shape).copy()
    info = {"samples": samples, "p": p, "cell": cells, "grid": grid}
    return MethodResult(ops.asarray(attributions), info=info)


# --- shared machinery ---------------------------------------------------------------------

def _evaluate(ctx: Context, base: Any, target: Any, count: int, make_masks,
              soft: bool = False, desc: str = "perturbations"
              ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Score ``count`` perturbations of the batch, as many per forward pass as fit.

    ``make_masks(a, b)`` gives masks ``(b - a, 1 or N, ...)`` broadcastable to the batch.
    Binary masks mark what is replaced by ``base``; with ``soft`` the masks are weights
    of the input (``base + (x - base) · m``).
    Yields ``(a, b, masks, scores)`` with scores of shape ``(b - a, N)``.
    """
    ops, n = ctx.ops, ctx.n
    shape = ops.shape(ctx.x)
    x5 = ops.reshape(ctx.x, (1,) + shape)
    base5 = ops.reshape(base, (1,) + shape)
    change5 = x5 - base5 if soft else None  # once, so a soft pass makes two temporaries
    for a, b in ctx.chunks(count, points_per_pass(ctx, count, backward=False), desc):
        k = b - a
        masks = make_masks(a, b)
        masks = masks.reshape(masks.shape[:1] + (1,) * (len(shape) + 1 - masks.ndim)
                              + masks.shape[1:])
        m = ops.asarray(masks.astype(np.float64) if soft else masks)
        if soft:
            points = base5 + change5 * m
        else:
            points = ops.where(m > 0.5, base5, x5)
        points = ops.reshape(points, (k * n,) + shape[1:])
        scores = forward_scores(ctx, points, target.repeat(k))
        yield a, b, masks, scores.reshape(k, n)


def _reject_structure(ctx: Context, method: str, why: str) -> None:
    if ctx.backend.structure is not None:
        raise OptionError(f"{method} needs one input ({why}); this model takes several. "
                          "Use feature_ablation with one feature_mask per input, or a "
                          "gradient method")


def _window_masks(regions: list[tuple[slice, ...]], mask_shape: tuple[int, ...]) -> np.ndarray:
    masks = np.zeros((len(regions),) + mask_shape, dtype=bool)
    for j, region in enumerate(regions):
        masks[(j,) + region] = True
    return masks


def _reject_layer(ctx: Context, method: str) -> None:
    if ctx.layer is not None:
        raise OptionError(f"{method} perturbs the input and takes no layer=; to explain a "
                          "unit inside the model pass target=cl.Neuron(layer, index) or "
                          "cl.Channel(layer, c)")


def _spatial_axes(rank: int, layout: str | None) -> tuple[int, ...]:
    """Spatial axes of a batch (everything but batch and channels for image layouts)."""
    if layout == "channels_first" and rank >= 3:
        return tuple(range(2, rank))
    if layout == "channels_last" and rank >= 3:
        return tuple(range(1, rank - 1))
    return tuple(range(1, rank))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _ints(value: Any, name: str) -> list[int]:
    """``value`` as a list of ints (an int or a sequence of ints), else an OptionError."""
    if _is_int(value):
        return [int(value)]
    if isinstance(value, (tuple, list)) and value and all(_is_int(v) for v in value):
        return [int(v) for v in value]
    raise OptionError(f"{name} must be an int or a tuple of ints (one per axis); got "
                      f"{value!r}")


def _pair(value: Any, name: str) -> tuple[int, ...]:
    values = _ints(value, name)
    values = values * 2 if len(values) == 1 and _is_int(value) else values
    if len(values) != 2:
        raise OptionError(f"{name} must be an int or (h, w); got {value!r}")
    return tuple(values)


def _axis_values(spec: Any, rank: int, layout: str | None) -> tuple[list[int], list[int]]:
    """Per-sample spatial axes, and ``spec`` as sizes: an int repeated per spatial axis, or
    the given sequence."""
    spatial = [a - 1 for a in _spatial_axes(rank + 1, layout)]
    if _is_int(spec):
        return spatial, [int(spec)] * len(spatial)
    return spatial, _ints(spec, "patch / stride")


def _window_shape(spec: Any, sample_shape: tuple[int, ...], layout: str | None,
                  name: str) -> tuple[int, ...]:
    """Full per-sample window shape from an int, a spatial tuple or a full tuple."""
    rank = len(sample_shape)
    spatial, values = _axis_values(spec, rank, layout)
    if len(values) == rank:
        shape = tuple(values)
    elif len(values) == len(spatial):
        shape = list(sample_shape)
        for axis, v in zip(spatial, values):
            shape[axis] = v
        shape = tuple(shape)
    else:
        raise OptionError(f"{name} {spec!r} must be an int, one size per spatial axis "
                          f"({len(spatial)}), or one per non-batch axis of the input "
                          f"{sample_shape}")
    bad = [(w, d) for w, d in zip(shape, sample_shape) if not 1 <= w <= d]
    if bad:
        raise OptionError(f"{name} {shape} does not fit one input sample of shape "
                          f"{sample_shape}: every size must be between 1 and the axis length")
    return shape


def _stride_shape(spec: Any, window: tuple[int, ...], sample_shape: tuple[int, ...],
                  layout: str | None) -> tuple[int, ...]:
    if spec is None:
        return tuple(max(1, w // 2) if w < d else 1 for w, d in zip(window, sample_shape))
    rank = len(sample_shape)
    spatial, values = _axis_values(spec, rank, layout)
    if len(values) == len(spatial) and len(values) != rank:
        full = [1] * rank
        for axis, v in zip(spatial, values):
            full[axis] = v
        values = full
    if len(values) != rank:
        raise OptionError(f"stride {spec!r} must be an int, one step per spatial axis, or "
                          f"one per non-batch axis of the input {sample_shape}")
    gaps = [(s, w) for s, w, d in zip(values, window, sample_shape) if w < d and s > w]
    if any(s < 1 for s in values) or gaps:
        raise OptionError(f"stride {tuple(values)} must be >= 1 and not larger than the "
                          f"window {window} (a larger step leaves elements uncovered)")
    return tuple(values)


def _flat_mask(ctx: Context, feature_mask: Any) -> Any:
    """For several inputs, one mask per input (each in its input's layout, broadcastable to
    it) flattened like the inputs; equal ids across inputs form one feature, as in Captum."""
    structure = ctx.backend.structure
    if structure is None:
        return feature_mask
    if not isinstance(feature_mask, (tuple, list, dict)):
        raise OptionError("this model takes several inputs: give feature_mask as a "
                          f"{structure.kind} with one integer mask per input")
    parts = []
    for key, mask, shape in zip(structure.keys, structure.members(feature_mask),
                                structure.shapes):
        mask = to_numpy(mask)
        if mask.dtype.kind not in "iub":
            raise InputError(f"feature_mask for input {key!r} must hold integer feature ids; "
                             f"got dtype {mask.dtype}")
        full = mask if mask.ndim == len(shape) + 1 else mask[None]
        try:
            full = np.broadcast_to(full, (full.shape[0],) + tuple(shape))
        except ValueError:
            raise InputError(f"feature_mask for input {key!r} has shape {mask.shape}, which "
                             f"does not broadcast to that input's samples {tuple(shape)}") from None
        parts.append(full.reshape(full.shape[0], -1).astype(np.int64))
    rows = {p.shape[0] for p in parts}
    if len(rows) > 1:
        rows.discard(1)
        n = rows.pop()
        parts = [np.broadcast_to(p, (n, p.shape[1])) if p.shape[0] == 1 else p for p in parts]
    return np.concatenate(parts, axis=1)


def _feature_mask(feature_mask: Any, shape: tuple[int, ...], layout: str | None) -> np.ndarray:
    """The mask as an integer array of the input's rank that broadcasts to ``shape``."""
    mask = to_numpy(feature_mask)
    if mask.dtype == bool:
        mask = mask.astype(np.int64)
    if mask.dtype.kind not in "iu":
        raise InputError(f"feature_mask must hold integer feature ids; got dtype {mask.dtype}")
    spatial = _spatial_axes(len(shape), layout)
    if mask.ndim == len(spatial) and mask.ndim < len(shape) - 1 and \
            mask.shape == tuple(shape[a] for a in spatial):
        # A spatial mask, e.g. (H, W) superpixels: place it on the spatial axes.
        full = [1] * len(shape)
        for axis, size in zip(spatial, mask.shape):
            full[axis] = size
        return mask.reshape(full)
    try:
        fits = mask.ndim <= len(shape) and np.broadcast_shapes(mask.shape, shape) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        spatial_shape = tuple(shape[a] for a in spatial)
        raise InputError(f"feature_mask of shape {mask.shape} does not broadcast to the input "
                         f"of shape {tuple(shape)}; give it in the input's layout with size-1 "
                         f"axes to share (e.g. {_example(shape, layout)}) or as a spatial "
                         f"mask of shape {spatial_shape}")
    return mask.reshape((1,) * (len(shape) - mask.ndim) + mask.shape)


def _example(shape: tuple[int, ...], layout: str | None) -> tuple[int, ...]:
    if layout == "channels_first" and len(shape) == 4:
        return (1, 1) + tuple(shape[2:])
    if layout == "channels_last" and len(shape) == 4:
        return (1,) + tuple(shape[1:3]) + (1,)
    return (1,) + tuple(shape[1:])
