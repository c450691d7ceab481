"""Feature visualizations for the channel and building-block views, cached on disk.

Readable images need many steps: at 512 steps crosslens' images match Lucent's on the
same channels (issue 18), while 32 steps give textures. :data:`DEFAULT_STEPS` is therefore
512, and any image made with fewer steps is marked ``preview: true`` — the page labels
it so, never as the feature. Each cached image records its steps and seconds.

Several channels of one layer are optimized together, one image each in one batch
(:func:`crosslens.featurevis.objectives.channel` with one channel per image), which costs
about as much per step as one image on an accelerator and less than separate runs on a
CPU. The optimization runs on a private copy of the model, so the page's other views
(which use the model) are not blocked for the minutes it takes.
"""
from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.targets import ClassTarget
from .cache import DiskCache, array_digest, digest
from .images import picture

DEFAULT_STEPS = 512
#: Lucid's learning rate for Adam on the Fourier parameterization.
LEARNING_RATE = 0.05
#: Largest optimized image side (larger models' inputs are reached by upsampling, as in
#: the demo: 128 -> 224).
MAX_SIZE = 128


class FeatureVisualizer:
    """Feature visualizations of channels / directions of the model's layers.

    Parameters
    ----------
    model, backend
        The model and its backend.
    cache
        Where images are kept.
    weights
        The model's weights digest (part of every key).
    input_shape
        Per-sample input shape in the model's layout.
    normalization
        ``(mean, std)`` of the model's preprocessing of ``[0, 1]`` pixels (``None``:
        the model takes ``[0, 1]``).
    steps, seed
        Default steps and the seed of every optimization.
    """

    def __init__(self, model: Any, backend: Any, cache: DiskCache, weights: str,
                 input_shape: tuple[int, ...], normalization: Any, steps: int = DEFAULT_STEPS,
                 seed: int = 0) -> None:
        self.model, self.backend, self.cache, self.weights = model, backend, cache, weights
        self.steps, self.seed = int(steps), int(seed)
        self.normalization = normalization
        first = backend.layout == "channels_first"
        self.available = len(input_shape) == 3
        if self.available:
            self.channels = int(input_shape[0] if first else input_shape[2])
            h, w = input_shape[1:] if first else input_shape[:2]
            self.model_size = (int(h), int(w))
            self.size = min(MAX_SIZE, int(h), int(w))
        self._copy: Any = None
        self._seconds_per_step: float | None = None

    # --- settings -----------------------------------------------------------------------
    def settings(self) -> dict:
        """The session's ``featurevis`` entry: default steps, image size, the estimated
        seconds per channel on this machine, and whether the model takes images."""
        return {"steps": self.steps, "size": self.size if self.available else None,
                "seconds_per_channel_estimate": self.seconds_per_channel_estimate(),
                "available": self.available}

    def seconds_per_channel_estimate(self) -> float | None:
        """Steps x the time of one forward-backward pass of one image (measured once)."""
        if not self.available:
            return None
        if self._seconds_per_step is None:
            shape = (1, self.channels) + self.model_size if \
                self.backend.layout == "channels_first" else (1,) + self.model_size \
                + (self.channels,)
            x = np.full(shape, 0.5, dtype=np.float32)
            with self.backend.session():
                native = self.backend.prepare(x)
                self.backend.gradient(native, ClassTarget(np.zeros(1, np.int64)))  # warm-up
                start = time.perf_counter()
                self.backend.gradient(native, ClassTarget(np.zeros(1, np.int64)))
                self._seconds_per_step = time.perf_counter() - start
        return round(self._seconds_per_step * self.steps, 2)

    def check(self) -> None:
        """Refuse (400) feature visualization of a model that does not take images."""
        if not self.available:
            raise OptionError("feature visualization needs an image model (inputs of rank "
                              "3 per sample)")

    # --- cache ----------------------------------------------------------------------------
    def key(self, layer: str, unit: Any, steps: int | None) -> str:
        """Cache key of one image (``steps=None``: of the unit's best image)."""
        unit = ("channel", int(unit)) if np.ndim(unit) == 0 else \
            ("direction", array_digest(np.asarray(unit, np.float64)))
        return digest({"weights": self.weights, "layer": layer, "unit": unit, "steps": steps,
                       "size": self.size, "seed": self.seed, "lr": LEARNING_RATE})

    def status(self, layer: str, unit: Any) -> dict:
        """``{status: "ready", image, steps, seconds, preview}`` of the cached image with
        the most steps (``preview``: fewer than the default), or ``{status: "missing"}``."""
        if not self.available:
            return {"status": "unavailable", "default_steps": self.steps}
        found = self.cache.load("featurevis-best", self.key(layer, unit, None))
        if found is None:
            return {"status": "missing", "default_steps": self.steps}
        return self.ready(found[0])

    def ready(self, meta: dict) -> dict:
        """The API's status of a cached image (``preview`` below the default steps)."""
        return {"status": "ready", "image": meta["image"], "steps": meta["steps"],
                "seconds": meta["seconds"], "preview": meta["steps"] < self.steps,
                "default_steps": self.steps}

    # --- computing ------------------------------------------------------------------------
    def run(self, layer: str, units: list[Any], steps: int,
            progress: Any = None) -> list[dict]:
        """Optimize one image per unit (channels, or one direction) of ``layer``; cache and
        return each status."""
        from ..featurevis.objectives import channel, direction
        from ..featurevis.render import run

        self.check()
        directions = [u for u in units if np.ndim(u) != 0]
        if directions and len(units) != 1:
            raise OptionError("a direction is visualized on its own, not batched")
        objective = direction(layer, directions[0]) if directions else \
            channel(layer, [int(u) for u in units])
        mean, std = self.normalization if self.normalization is not None else (None, None)
        bar = _Progress(steps, progress)
        start = time.perf_counter()
        result = run(self._model_copy(), objective, bar=bar, batch=len(units), steps=steps,
                     size=self.size, model_size=self.model_size, channels=self.channels,
                     lr=LEARNING_RATE, seed=self.seed, mean=mean, std=std)
        seconds = time.perf_counter() - start
        out = []
        for unit, image, score in zip(units, result.images, result.final_scores):
            image = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
            meta = {"image": picture(image), "steps": steps, "seconds": round(seconds, 2),
                    "batch": len(units), "score": float(score), "layer": layer}
            self.cache.save("featurevis", self.key(layer, unit, steps), meta)
            best = self.cache.load("featurevis-best", self.key(layer, unit, None))
            if best is None or best[0]["steps"] <= steps:
                self.cache.save("featurevis-best", self.key(layer, unit, None), meta)
            out.append(self.ready(meta))
        return out

    def _model_copy(self) -> Any:
        """A private copy of the model (its own lock); the model itself when it cannot be
        copied."""
        if self._copy is None:
            # under the model's lock: no other call has hooks or a changed mode on it now
            with self.backend.lock:
                self._copy = _copied(self.model, self.backend.name)
        return self._copy


def _copied(model: Any, framework: str) -> Any:
    """A copy of ``model`` with the same weights; ``model`` itself when it cannot be
    copied (e.g. a subclassed Keras model: the optimization then shares it, slower)."""
    try:
        if framework == "keras":
            import keras
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
            return clone
        return copy.deepcopy(model)
    except Exception:
        return model


class _Progress:
    """A progress bar for :func:`crosslens.featurevis.render.run` feeding a job."""

    def __init__(self, total: int, report: Any) -> None:
        self.total, self.done, self.report = max(int(total), 1), 0, report

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.report is not None:
            self.report(self.done / self.total)

    def close(self) -> None:
        pass
