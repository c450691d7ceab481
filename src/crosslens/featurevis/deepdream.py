"""DeepDream (Mordvintsev et al. 2015): amplify what a layer sees in a photo, octave by
octave (coarse to fine), with normalized gradient ascent and random rolls."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.errors import OptionError
from ..core.imageops import apply_separable, resize_matrix
from .optim import SGD
from .render import FeatureVisualization, run
from .transforms import Roll


def _resize(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    _, h, w, _ = images.shape
    return apply_separable(images, resize_matrix(h, size[0]), resize_matrix(w, size[1]))


def deepdream(model: Any, image: Any, objective: Any, *, octaves: int = 3,
              octave_scale: float = 1.4, steps: int = 10, lr: float = 0.01, roll: int = 16,
              seed: int | None = None, progress: bool = False,
              **options: Any) -> FeatureVisualization:
    """DeepDream from ``image``.

    Parameters
    ----------
    model
        PyTorch or Keras model accepting the octaves' sizes (else pass ``model_size``:
        every octave is then resized to it for the model).
    image
        ``(H, W, C)`` or ``(N, H, W, C)`` channels-last images in ``[0, 1]``.
    objective
        A layer name (mean squared activation), or any objective.
    octaves, octave_scale
        Number of scales; each is ``octave_scale`` times larger than the previous,
        the last is the image's own size.
    steps, lr
        Normalized gradient-ascent steps per octave and their size.
    roll
        Maximum random circular shift per step (DeepDream's jitter).
    seed, progress
        As for :func:`crosslens.visualize`.
    **options
        Other :func:`crosslens.visualize` options (``input_range``, ``mean``, ``std``,
        ``model_size``, ``regularizers``, ...).
    """
    for fixed in ("param", "init", "size", "batch", "optimizer", "transforms"):
        if fixed in options:
            raise OptionError(f"deepdream sets {fixed!r} itself")
    base = np.asarray(to_numpy(image), dtype=np.float64)
    base = base[None] if base.ndim == 3 else base
    if base.ndim != 4:
        raise OptionError(f"deepdream needs (H, W, C) or (N, H, W, C) images; got {base.shape}")
    n, h, w, c = base.shape
    sizes = [(max(8, round(h / octave_scale ** k)), max(8, round(w / octave_scale ** k)))
             for k in reversed(range(octaves))]
    seeds = np.random.SeedSequence(seed).spawn(len(sizes))
    detail = np.zeros((n,) + sizes[0] + (c,))
    result = None
    for size, child in zip(sizes, seeds):
        octave_base = _resize(base, size)
        start = np.clip(octave_base + _resize(detail, size), 0.0, 1.0)
        result = run(model, objective, size=size, batch=n, channels=c, steps=steps,
                     param="pixel", value_range="clip", decorrelate=False, init=start,
                     transforms=[Roll(roll)] if roll else None,
                     optimizer=SGD(lr, normalize=True), seed=int(child.generate_state(1)[0]),
                     progress=progress, **options)
        detail = result.images - octave_base
    result.info["octaves"] = sizes
    return result
