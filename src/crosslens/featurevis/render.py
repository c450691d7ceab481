"""The optimization loop of feature visualization, shared by every backend.

One step, for parameters ``p`` (host numpy) and a model wrapped by a backend::

    image = param.forward(p)                       # (N, H, W, C) in [0, 1]
    moved, draw = transforms.forward(image, rng)   # random transforms, then resize
    g_x = backend.gradient(encode(moved), objective).grad     # native, in the model
    g_image = transforms.adjoint(encode_vjp(g_x), draw)       # exact chain rule
    g_image -= penalties' gradients; += prior's grad log p
    p = optimizer.step(p, param.vjp(p, g_image)); operators (blur, clipping); project

The objective is differentiated natively by the model's framework
(:class:`~crosslens.core.targets.ObjectiveTarget`); everything else is numpy with
hand-written adjoints, identical for every backend: with the same seed and the same
weights, a PyTorch and a Keras model produce the same image sequence.
"""
from __future__ import annotations

import inspect
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.chunking import parse_budget
from ..core.errors import InputError, OptionError
from ..core.figures import Drawable, renderer
from .codespace import Generator, GeneratorParam
from ..core.imageops import apply_separable, resize_matrix
from .modelio import ModelIO, image_layout
from ..core.numpy_ops import NumpyOps
from .objectives import Objective, as_objective, build_target
from .optim import make_optimizer
from .params import Parameterization, make_param
from .prior import Prior
from ..core.progress import progress_bar
from .regularizers import OperatorState, split_regularizers
from .transforms import Compose, Resize, make_transforms

_INITS = ("noise", "random", "mean")


@dataclass
class FeatureVisualization(Drawable):
    """The result of :func:`visualize`.

    Attributes
    ----------
    images
        ``(N, H, W, C)`` float64 images in ``[0, 1]``, channels-last (for display).
    inputs
        The images as the model sees them (resized to the model's input size,
        normalized, in the model's layout), as numpy.
    objective
        Description of the maximized objective.
    scores
        ``(steps, N)``: the objective of each image at each step (on the transformed
        images the step saw).
    final_scores
        ``(N,)``: the objective of the final images, without transforms.
    params
        The final parameters (pixels, Fourier coefficients or latent codes).
    history
        ``{step: images}`` for the steps listed in ``record``.
    titles
        Per-image titles for figures.
    info
        Settings and timings (``seconds``, ``backend_seconds`` (the model's passes, with
        transfers), ``host_seconds`` (the rest), per step ``step_seconds`` and
        ``step_backend_seconds``).
    """

    images: np.ndarray
    inputs: np.ndarray
    objective: str
    scores: np.ndarray
    final_scores: np.ndarray
    params: np.ndarray
    history: dict[int, np.ndarray] = field(default_factory=dict)
    titles: list[str] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def figure(self, *, ncols: int | None = None, titles: Any = None, cell_size: float = 2.2):
        """A grid figure of the images (``crosslens.viz.figure_grid``)."""
        titles = titles if titles is not None else self.titles
        if titles is None:
            titles = [f"{s:.3g}" for s in self.final_scores]
        return renderer().figure_grid(list(np.clip(self.images, 0.0, 1.0)), titles=titles,
                           ncols=ncols or min(len(self.images), 8), cell_size=cell_size)

    def caption(self) -> str:
        return f"feature visualization: {self.objective}"

    def __repr__(self) -> str:
        return (f"FeatureVisualization({self.objective}, images {tuple(self.images.shape)}, "
                f"final scores {np.round(self.final_scores, 4).tolist()})")


def visualize(model: Any, objective: Any, *, size: int | tuple[int, int] | None = None,
              batch: int = 1, channels: int = 3, steps: int = 256, param: Any = "fourier",
              value_range: str | None = None, decorrelate: bool | None = None,
              decay_power: float = 1.0, transforms: Any = "standard", regularizers: Any = (),
              init: Any = "noise", init_scale: float = 0.01, lr: float = 0.05,
              optimizer: Any = "adam", seed: int | None = None,
              model_size: int | tuple[int, int] | None = None,
              input_range: tuple[float, float] = (0.0, 1.0), mean: Any = None, std: Any = None,
              mean_image: Any = None, prior: Prior | None = None,
              generator: Generator | None = None, record: Any = (), progress: bool = False,
              memory_budget: int | str | None = None) -> FeatureVisualization:
    """Feature visualization: images that maximize an objective of the model.

    Parameters
    ----------
    model
        A PyTorch or Keras model (or a path, as for :func:`crosslens.explain`).
    objective
        A :mod:`crosslens.featurevis.objectives` objective (composable with ``+ - * /``),
        a class index (its logit), a layer name (DeepDream), ``cl.Channel`` /
        ``cl.Neuron``, or a callable on the model's native outputs.
    size
        ``(H, W)`` (or one int) of the optimized images; defaults to ``model_size``.
    batch
        Number of images optimized together.
    channels
        Image channels (3 for RGB).
    steps
        Optimization steps.
    param : {"fourier", "pixel"} or Parameterization
        Image parameterization (see :mod:`crosslens.featurevis.params`).
    value_range : {"sigmoid", "clip"}, optional
        Default ``"sigmoid"`` for Fourier, ``"clip"`` for pixels.
    decorrelate
        Color decorrelation (default: on for Fourier RGB, off for pixels).
    decay_power
        Exponent of the Fourier parameterization's ``1/f`` scaling.
    transforms
        ``"standard"`` (Lucid's), ``None`` or a list of
        :mod:`crosslens.featurevis.transforms`; the images are then resized to
        ``model_size``.
    regularizers
        Penalties and operators of :mod:`crosslens.featurevis.regularizers`.
    init : {"noise", "random", "mean"} or array
        Start: small random parameters (Lucid's), a uniformly random image, the mean image,
        or an image (``(H, W, C)`` or ``(N, H, W, C)`` in ``[0, 1]``, channels-last, or
        channels-first when the last axis is not the channel count); for a generator, an
        array of latent codes.
    init_scale
        Standard deviation of the ``"noise"`` start.
    lr, optimizer
        Step size and ``"adam"`` / ``"sgd"`` or an :mod:`crosslens.featurevis.optim`
        instance.
    seed
        Seed of every random draw (start, transforms); same seed, same images, on every
        backend.
    model_size
        The model's input ``(H, W)``; by default the model's declared input size, else
        ``size``, else 224.
    input_range, mean, std
        The model's input preprocessing: ``x = (lo + (hi - lo) * image - mean) / std``.
    mean_image
        The "zero" image (a color or an image in ``[0, 1]``) for ``init="mean"``, the
        L1/L2 centre and the clipping operators; default: ``mean`` mapped to ``[0, 1]``,
        else gray.
    prior
        A :class:`~crosslens.featurevis.prior.Prior` (AM with an expert).
    generator
        A :class:`~crosslens.featurevis.codespace.Generator`: optimize its latent code
        instead of pixels (AM in code space); ``param`` and ``size`` are then ignored.
    record
        Steps (1-based) after which to keep a copy of the images in ``history``.
    progress
        Show a progress bar.
    memory_budget
        Bytes (or ``"2GB"``) one pass may use.

    Returns
    -------
    FeatureVisualization
    """
    return run(model, objective, **{k: v for k, v in locals().items()
                                    if k not in ("model", "objective")})


def run(model: Any, objective: Any, *, bar: Any = None, **options: Any) -> FeatureVisualization:
    """:func:`visualize` with an optional shared progress bar (``bar.update(1)`` per step)."""
    params = inspect.signature(visualize).parameters
    full = {name: p.default for name, p in params.items() if p.kind == p.KEYWORD_ONLY}
    unknown = sorted(set(options) - set(full))
    if unknown:
        raise OptionError(f"visualize has no option {unknown[0]!r}; its options are: "
                          f"{', '.join(full)}")
    full.update(options)
    return _Run(model, objective, full, bar).execute()


class _Run:
    """One call of :func:`visualize` (state and steps kept apart for readability)."""

    def __init__(self, model: Any, objective: Any, options: dict, bar: Any) -> None:
        from ..backends import get_backend
        self.o = options
        self.backend = get_backend(model)
        self.model = model
        self.objective: Objective = as_objective(objective)
        self.batch = int(options["batch"])
        self.steps = int(options["steps"])
        if self.batch < 1 or self.steps < 0:
            raise OptionError("batch must be >= 1 and steps >= 0")
        self.layout = image_layout(self.backend)
        self.bar = bar
        self.record = {int(s) for s in (options["record"] or ())}

    # --- setup ---------------------------------------------------------------------------
    def _image_size(self) -> tuple[int, int]:
        """The optimized images' size: given, else the model's input size, else 224."""
        return (_pair(self.o["size"]) or _pair(self.o["model_size"])
                or _declared_size(self.model, self.layout) or (224, 224))

    def _model_size(self, param: Parameterization) -> tuple[int, int]:
        """The model's input size: given, declared, else the parameterization's size."""
        return (_pair(self.o["model_size"]) or _declared_size(self.model, self.layout)
                or tuple(param.size))

    def _param(self, size: tuple[int, int]) -> Parameterization:
        if self.o["generator"] is not None:
            generator = self.o["generator"]
            if not isinstance(generator, Generator):
                raise OptionError("generator= takes a crosslens.featurevis.Generator(model, "
                                  "latent_shape)")
            return generator.bind(self.batch)
        return make_param(self.o["param"], self.batch, size, int(self.o["channels"]),
                          self.o["value_range"], self.o["decorrelate"], self.o["decay_power"])

    def _initial(self, param: Parameterization, rng: np.random.Generator,
                 zero: np.ndarray) -> np.ndarray:
        init = self.o["init"]
        if isinstance(init, str):
            if init not in _INITS:
                raise OptionError(f"init must be one of {_INITS} or an array, got {init!r}")
            if isinstance(param, GeneratorParam):
                return np.zeros(param.shape) if init == "mean" else param.noise(rng, 1.0)
            if init == "noise":
                return param.noise(rng, float(self.o["init_scale"]))
            if init == "random":
                return param.from_image(rng.uniform(0.0, 1.0, zero.shape))
            return param.from_image(zero)
        array = np.asarray(to_numpy(init), dtype=np.float64)
        if isinstance(param, GeneratorParam):
            return np.broadcast_to(array, param.shape).copy()
        return param.from_image(_canonical_images(array, param.size, param.channels,
                                                  self.batch))

    # --- the loop ------------------------------------------------------------------------
    def execute(self) -> FeatureVisualization:
        o = self.o
        size = self._image_size()
        rng = np.random.default_rng(o["seed"])
        nops = NumpyOps()
        optimizer = make_optimizer(o["optimizer"], float(o["lr"]))
        with ExitStack() as stack:
            stack.enter_context(self.backend.session(parse_budget(o["memory_budget"])))
            param = self._param(size)
            if isinstance(param, GeneratorParam):
                stack.enter_context(param.backend.session())
                param.setup()
            model_size = self._model_size(param)
            channels = param.channels
            penalties, operators = split_regularizers(o["regularizers"], param)
            prior = None
            if o["prior"] is not None:
                if not isinstance(o["prior"], Prior):
                    raise OptionError("prior= takes a crosslens.featurevis.Prior(model, ...)")
                prior = o["prior"].bind(channels)
                stack.enter_context(prior.backend.session())
            io = ModelIO(self.layout, channels, o["input_range"], o["mean"], o["std"])
            zero = self._zero(io, param)
            pipeline = Compose(make_transforms(o["transforms"]) + [Resize(model_size)])
            target = build_target(self.objective, self.backend.resolve_layer,
                                  self.layout == "channels_first", self.batch)
            p = self._initial(param, rng, zero)
            p = param.project(p)

            scores, step_seconds, step_backend = [], [], []
            history: dict[int, np.ndarray] = {}
            bar = self.bar or progress_bar(self.steps, "featurevis", bool(o["progress"]))
            start = time.perf_counter()
            try:
                for step in range(1, self.steps + 1):
                    t0 = time.perf_counter()
                    image = param.forward(p)
                    moved, draw = pipeline.forward(image, rng)
                    t1 = time.perf_counter()
                    grad_x, score = self._gradient(io.encode(moved), target, first=step == 1)
                    step_backend.append(time.perf_counter() - t1)
                    g_objective = pipeline.adjoint(io.encode_vjp(grad_x), draw)
                    g_image = g_objective
                    for penalty in penalties:
                        g_image = g_image - penalty.grad(image, zero)
                    if prior is not None:
                        g_image = g_image + prior.grad(image)
                    p = optimizer.step(nops, p, param.vjp(p, g_image))
                    for op in operators:
                        if step % int(op.every) == 0:
                            state = OperatorState(param, param.forward(p), zero, g_objective)
                            p = op.apply(p, state)
                    p = param.project(p)
                    scores.append(score)
                    if step in self.record:
                        history[step] = param.forward(p)
                    step_seconds.append(time.perf_counter() - t0)
                    bar.update(1)
            finally:
                if self.bar is None:
                    bar.close()
            seconds = time.perf_counter() - start
            images = param.forward(p)
            final_inputs = io.encode(Resize(model_size).forward(images, rng)[0])
            _, final_scores = self._gradient(final_inputs, target, first=self.steps == 0)
        info = {"steps": self.steps, "size": tuple(param.size), "model_size": model_size, "batch": self.batch,
                "param": repr(param), "transforms": repr(pipeline.transforms[:-1]),
                "regularizers": [repr(r) for r in penalties + operators],
                "optimizer": repr(optimizer), "seed": o["seed"], "backend": self.backend.name,
                "seconds": seconds, "backend_seconds": sum(step_backend),
                "host_seconds": seconds - sum(step_backend), "step_seconds": step_seconds,
                "step_backend_seconds": step_backend,
                "penalty_values": {repr(pen): pen.value(images, zero).tolist()
                                   for pen in penalties}}
        return FeatureVisualization(
            images=np.clip(images, 0.0, 1.0), inputs=final_inputs, objective=str(self.objective),
            scores=np.array(scores).reshape(len(scores), self.batch), final_scores=final_scores,
            params=p, history=history, info=info)

    def _zero(self, io: ModelIO, param: Parameterization) -> np.ndarray:
        value = self.o["mean_image"]
        shape = (self.batch,) + tuple(param.size) + (param.channels,)
        if value is None:
            return np.broadcast_to(io.mean_image(), shape).copy()
        value = np.asarray(to_numpy(value), dtype=np.float64)
        if value.ndim <= 1:
            return np.broadcast_to(value, shape).copy()
        return _canonical_images(value, param.size, param.channels, self.batch)

    def _gradient(self, x: np.ndarray, target: Any, first: bool) -> tuple[np.ndarray, np.ndarray]:
        backend, ops = self.backend, self.backend.ops
        if first:
            try:
                native = backend.prepare(x)
            except InputError as error:
                raise InputError(f"{error}. For feature visualization pass model_size=(H, W), "
                                 "the model's input size: images are resized to it") from error
            if self.objective.couples_batch and backend.max_batch(native) < len(x):
                raise OptionError("the objective compares the images of the batch (diversity),"
                                  " which then must fit in one pass: raise memory_budget or "
                                  "visualize fewer images")
        else:
            native = ops.asarray(x)
        result = backend.gradient(native, target)
        return (ops.to_numpy(result.grad).astype(np.float64),
                ops.to_numpy(result.scores).astype(np.float64).reshape(-1))


def _pair(value: Any) -> tuple[int, int] | None:
    if value is None:
        return None
    if np.ndim(value) == 0:
        return int(value), int(value)
    h, w = value
    return int(h), int(w)


def _declared_size(model: Any, layout: str) -> tuple[int, int] | None:
    """The fixed spatial input size a model declares (Keras ``model.inputs``), if any."""
    try:
        inputs = getattr(model, "inputs", None)
        shape = tuple(inputs[0].shape) if inputs and len(inputs) == 1 else None
    except Exception:  # a model without a defined input
        return None
    if shape is None or len(shape) != 4:
        return None
    h, w = shape[2:4] if layout == "channels_first" else shape[1:3]
    return (int(h), int(w)) if h is not None and w is not None else None


def _canonical_images(array: np.ndarray, size: tuple[int, int], channels: int,
                      batch: int) -> np.ndarray:
    """A user image or batch -> ``(batch, H, W, C)`` channels-last, resized to ``size``."""
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4:
        raise OptionError(f"an image needs shape (H, W, C) or (N, H, W, C); got {array.shape}")
    if array.shape[-1] != channels and array.shape[1] == channels:
        array = np.transpose(array, (0, 2, 3, 1))
    if array.shape[-1] != channels:
        raise OptionError(f"the image has shape {array.shape}; expected {channels} channels")
    if array.shape[0] not in (1, batch):
        raise OptionError(f"got {array.shape[0]} images for a batch of {batch}")
    h, w = array.shape[1:3]
    if (h, w) != tuple(size):
        array = apply_separable(array, resize_matrix(h, size[0]), resize_matrix(w, size[1]))
    return np.broadcast_to(array, (batch,) + tuple(size) + (channels,)).copy()
