"""Faithfulness: deletion and insertion curves (Samek et al. 2017; Petsiuk et al. 2018).

Pixels are ranked by relevance (channels summed, most relevant first, ties by position).
The **deletion** curve replaces the top-``k`` pixels of the input by the baseline and
records the target's score; a faithful attribution makes it drop fast (small area). The
**insertion** curve starts from the baseline and puts the top-``k`` input pixels back; a
faithful attribution makes it rise fast (large area). All channels of a pixel move
together. Every perturbed image of every sample goes through the model's forward pass
in chunks sized by the memory budget and the CPU pass cap (``backend.pass_size``),
natively on the model's device; only the masks are built on the host.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import get_backend
from ..core.chunking import chunks, parse_budget
from ..core.errors import OptionError, TargetError
from ..core.targets import ClassTarget, PredictedTarget, UserTarget, resolve_target
from ..methods.base import Context
from ..methods.baselines import make_baseline
from ._maps import relevance_maps, spatial_size

SCORES = ("output", "softmax")


@dataclass
class Curve:
    """A deletion or insertion curve for each sample.

    Attributes
    ----------
    kind
        ``"deletion"`` or ``"insertion"``.
    fractions
        Share of pixels removed (deletion) or inserted (insertion), ``(steps + 1,)``,
        from 0 to 1.
    scores
        Target score after each step, ``(N, steps + 1)``.
    target
        The class explained for each sample.
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    target: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def auc(self) -> np.ndarray:
        """Area under each sample's curve over the pixel fraction (trapezoid rule), ``(N,)``."""
        return area(self.fractions, self.scores)

    @property
    def mean_auc(self) -> float:
        """Mean area over the samples."""
        return float(self.auc.mean())

    def __repr__(self) -> str:
        return (f"Curve(kind={self.kind!r}, samples={self.scores.shape[0]}, "
                f"steps={len(self.fractions) - 1}, mean_auc={self.mean_auc:.4g})")


def area(fractions: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Trapezoid area of ``scores`` (``(..., K)``) over ``fractions`` (``(K,)``)."""
    widths = np.diff(np.asarray(fractions, dtype=np.float64))
    scores = np.asarray(scores, dtype=np.float64)
    return (0.5 * (scores[..., 1:] + scores[..., :-1]) * widths).sum(axis=-1)


def deletion(model: Any, x: Any, attributions: Any, *, target: UserTarget = "predicted",
             baseline: Any = 0.0, steps: int = 32, score: str = "output",
             blur_sigma: float = 8.0, seed: int | None = 0,
             memory_budget: int | str | None = None) -> Curve:
    """Deletion curve: remove the most relevant pixels first, replacing them by ``baseline``.

    Parameters
    ----------
    model
        A PyTorch or Keras model (what :func:`crosslens.explain` takes).
    x
        The input batch in the model's layout.
    attributions
        An :class:`~crosslens.Explanation` or an array: input-space attributions in the
        input's layout, or ``(N, h, w)`` maps (upsampled bilinearly to the input).
    target
        Class index, one per sample, or ``"predicted"`` (the class predicted for ``x``).
    baseline
        What removed pixels become: a number, ``"zeros"``, ``"blur"`` (Gaussian blur of
        the input, ``blur_sigma`` pixels), ``"mean"`` (each image's per-channel mean),
        ``"uniform"`` (seeded noise), or an array shaped like ``x`` or one sample.
    steps
        Number of steps; the curve has ``steps + 1`` points, step ``k`` moving
        ``round(k · H·W / steps)`` pixels.
    score
        ``"output"`` (the model output of the target class, e.g. a logit) or
        ``"softmax"`` (its softmax probability).
    seed
        Seed of the ``"uniform"`` baseline.
    memory_budget
        Bytes (or ``"2GB"``) one forward pass may use.

    Returns
    -------
    Curve
        Per-sample scores along the curve; ``.auc`` is the area (lower is better).
    """
    return perturbation_curve(model, x, attributions, "deletion", target=target,
                              baseline=baseline, steps=steps, score=score,
                              blur_sigma=blur_sigma, seed=seed, memory_budget=memory_budget)


def insertion(model: Any, x: Any, attributions: Any, *, target: UserTarget = "predicted",
              baseline: Any = "blur", steps: int = 32, score: str = "output",
              blur_sigma: float = 8.0, seed: int | None = 0,
              memory_budget: int | str | None = None) -> Curve:
    """Insertion curve: start from ``baseline`` and put the most relevant pixels back first.

    Parameters are those of :func:`deletion`; the default baseline is ``"blur"`` (Petsiuk
    et al. 2018). ``.auc`` of the result is the area (higher is better).
    """
    return perturbation_curve(model, x, attributions, "insertion", target=target,
                              baseline=baseline, steps=steps, score=score,
                              blur_sigma=blur_sigma, seed=seed, memory_budget=memory_budget)


def perturbation_curve(model: Any, x: Any, attributions: Any, kind: str, *,
                       target: UserTarget = "predicted", baseline: Any = 0.0, steps: int = 32,
                       score: str = "output", blur_sigma: float = 8.0, seed: int | None = 0,
                       memory_budget: int | str | None = None) -> Curve:
    """The curve of :func:`deletion` (``kind="deletion"``) or :func:`insertion`."""
    if kind not in ("deletion", "insertion"):
        raise OptionError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    if score not in SCORES:
        raise OptionError(f"score must be one of {SCORES}, got {score!r}")
    if int(steps) < 1:
        raise OptionError("steps must be >= 1")
    steps = int(steps)
    backend = get_backend(model)
    with backend.session(parse_budget(memory_budget)):
        native = backend.prepare(x)
        ops, layout = backend.ops, backend.layout
        shape = ops.shape(native)
        n, size = shape[0], spatial_size(shape, layout)
        maps = relevance_maps(attributions, layout, size)
        if maps.shape[0] != n:
            raise OptionError(f"{maps.shape[0]} attribution maps for {n} inputs")
        classes = class_indices(backend, native, target)
        ctx = Context(backend, native, ClassTarget(classes), seed=seed)
        base = _baseline(ctx, baseline, blur_sigma)
        start, end = (native, base) if kind == "deletion" else (base, native)
        delta = end - start

        pixels = size[0] * size[1]
        counts = np.rint(np.linspace(0, pixels, steps + 1)).astype(np.int64)
        order = np.argsort(-maps.reshape(n, -1), axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(pixels)[None, :], axis=1)

        pairs = [(i, k) for i in range(n) for k in range(steps + 1)]
        per_pass = backend.pass_size(native, backward=False)
        scores = np.empty((n, steps + 1))
        for a, b in chunks(len(pairs), per_pass):
            images = []
            for i in sorted({i for i, _ in pairs[a:b]}):
                ks = [k for j, k in pairs[a:b] if j == i]
                moved = rank[i][None, :] < counts[ks][:, None]  # (len(ks), H*W)
                mask = ops.asarray(_mask_shape(moved, size, shape, layout))
                images.append(start[i:i + 1] + mask * delta[i:i + 1])
            outputs = ops.to_numpy(backend.forward(ops.concat(images))).astype(np.float64)
            values = _scores(outputs, score)
            for row, (i, k) in enumerate(pairs[a:b]):
                scores[i, k] = values[row, classes[i]]
    return Curve(kind, counts / pixels, scores, [int(c) for c in classes],
                 info={"baseline": baseline if isinstance(baseline, (str, int, float))
                       else "array", "score": score, "steps": steps})


def class_indices(backend: Any, native: Any, target: UserTarget) -> np.ndarray:
    """Class index per sample; ``"predicted"`` is the top class of ``native``."""
    n = backend.ops.shape(native)[0]
    resolved = resolve_target(target, n, backend.resolve_layer)
    if isinstance(resolved, PredictedTarget):
        outputs = backend.ops.to_numpy(backend.forward(native))
        if outputs.ndim != 2:
            raise TargetError("'predicted' needs a classifier with (N, classes) outputs; "
                              "pass the class index per sample")
        return outputs.argmax(axis=1).astype(np.int64)
    if not isinstance(resolved, ClassTarget):
        raise TargetError("evaluation metrics explain classes: pass a class index, one per "
                          "sample, or 'predicted'")
    return resolved.indices


def _baseline(ctx: Context, baseline: Any, blur_sigma: float) -> Any:
    if isinstance(baseline, str) and baseline == "mean":
        x = ctx.ops.to_numpy(ctx.x)
        axes = _spatial_axes(x.ndim, ctx.backend.layout)
        mean = np.broadcast_to(x.mean(axis=axes, keepdims=True), x.shape)
        return ctx.ops.asarray(mean.copy())
    return make_baseline(ctx, baseline, blur_sigma)


def _spatial_axes(rank: int, layout: str | None) -> tuple[int, ...]:
    if rank == 4:
        return (2, 3) if layout == "channels_first" else (1, 2)
    return tuple(range(1, rank))


def _mask_shape(moved: np.ndarray, size: tuple[int, int], shape: tuple[int, ...],
                layout: str | None) -> np.ndarray:
    """``(m, H*W)`` booleans -> float masks broadcastable against ``(m, *shape[1:])``."""
    m = moved.shape[0]
    values = moved.astype(np.float64)
    if len(shape) == 2:
        return values.reshape(m, size[1])
    if layout == "channels_first":
        return values.reshape(m, 1, size[0], size[1])
    return values.reshape(m, size[0], size[1], 1)


def _scores(outputs: np.ndarray, score: str) -> np.ndarray:
    if outputs.ndim != 2:
        raise TargetError(f"deletion/insertion need (N, classes) outputs; got {outputs.shape}")
    if score == "softmax":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)
    return outputs
