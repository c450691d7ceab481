"""The framework-neutral training monitor: what is measured at a logging step.

:class:`Monitor` explains a fixed probe set with the model as it is at an epoch and hands
an :class:`~crosslens.monitor.entry.Entry` to each sink. Everything runs through
``cl.explain`` / ``cl.activations`` / ``cl.visualize``, so one monitor serves PyTorch,
Lightning and Keras; the adapters in :mod:`crosslens.callbacks` only decide when to call
:meth:`Monitor.step`.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core.arrays import to_numpy
from ..core.errors import CrosslensError, OptionError
from .entry import Entry
from .images import overlay_strip, strip, to_uint8
from .measures import channel_means, dead_share, is_rectified, runner_up, spearman
from .options import channels_last, featurevis_plan, method_plan, targets_plan
from .state import untouched

#: Most images of a pipeline stage shown in the log.
STAGE_IMAGES = 16


class Monitor:
    """Explain a fixed probe set during training and log what changes.

    At each logging step (every ``every``-th epoch) the monitor computes, on the probes:
    attribution maps for every method and target (overlay images and histograms); the
    drift of each map since the previous logged step (Spearman rank correlation per
    probe, ``drift/...``: 1 = same ranking of pixels); the class similarity of each method
    (rank correlation between the map for the first target's class and the map for the
    runner-up class, ``class_similarity/...``: near 1 = the map ignores the class, the
    cheap form of the randomization sanity check); per layer, the activations' histogram,
    the per-channel means and, for non-negative (ReLU-like) layers, the share of dead
    channels (zero for every probe everywhere); optional small feature visualizations;
    the probes' accuracy when ``probe_y`` is given.

    Parameters
    ----------
    probe_x
        Probe images in the model's layout (NCHW for PyTorch, NHWC for Keras), numpy or
        the framework's tensors; a handful (4-16) keeps a step cheap.
    probe_y
        Their labels; enables the ``"label"`` target and ``probe/accuracy``.
    methods
        Method names, or ``(name, options)`` pairs (options of ``cl.explain``, e.g.
        ``("grad_cam", {"layer": "relu3"})``, ``("integrated_gradients", {"steps": 16})``).
    layers
        Layers whose activation statistics are logged.
    every
        Log at epochs divisible by ``every``.
    time_budget
        Seconds one logging step may take (measuring and writing the logs). The first
        step always runs and measures the cost; a later step is skipped, with a note in
        the log, when the last step that ran took longer than the budget (so training is
        held up by at most one over-budget step). ``None``: no limit.
    log_dir
        Shorthand for ``sinks=[TensorBoardSink(log_dir), HtmlLog(log_dir/"visual_log.html")]``
        (added to ``sinks``).
    sinks
        Objects with ``write(entry)`` and ``close()``.
    targets
        What each method explains: ``"label"``, ``"predicted"`` or a class index; default
        ``("label",)`` with ``probe_y``, else ``("predicted",)``.
    featurevis
        ``{"layer": name, "channels": [c, ...], "steps": 32, **visualize options}`` to log a
        small feature visualization per channel, or ``None``.
    seed
        Seed of every random draw of the methods and visualizations (the same at every
        step, so drift measures the model, not the noise).
    measures
        Extra map measures: name to a function of the ``(N, H, W)`` maps returning one
        value per probe; logged as ``name/method/target`` (the mean) for every map, e.g.
        ``{"patch_share": lambda maps: mass_share(maps, mask)}``.

    Attributes
    ----------
    scalars
        Epoch to the scalars logged at it (what the sinks got), for quick checks.
    """

    def __init__(self, probe_x: Any, probe_y: Any = None, methods: Sequence[Any] = ("saliency",),
                 layers: Sequence[str] = (), every: int = 1, time_budget: float | None = None,
                 log_dir: str | Path | None = None, sinks: Sequence[Any] = (),
                 targets: Sequence[Any] | None = None, featurevis: dict[str, Any] | None = None,
                 seed: int = 0, measures: dict[str, Any] | None = None) -> None:
        if not isinstance(every, (int, np.integer)) or isinstance(every, bool) or every < 1:
            raise OptionError(f"every must be a positive integer (log every n-th epoch), "
                              f"got {every!r}")
        if time_budget is not None and not time_budget > 0:
            raise OptionError(f"time_budget is seconds per logging step (> 0) or None, "
                              f"got {time_budget!r}")
        self.probe_x = probe_x
        self.probe_y = None if probe_y is None else np.asarray(to_numpy(probe_y)).astype(np.int64)
        self.methods = method_plan(methods)
        self.layers = list(layers)
        self.every, self.time_budget, self.seed = int(every), time_budget, seed
        self.targets = targets_plan(targets, self.probe_y)
        self.featurevis = featurevis_plan(featurevis)
        self.sinks = list(sinks)
        if log_dir is not None:
            from .html_log import HtmlLog
            from .tensorboard import TensorBoardSink
            self.sinks += [TensorBoardSink(log_dir), HtmlLog(Path(log_dir) / "visual_log.html")]
        self.measures = dict(measures or {})
        self.scalars: dict[int, dict[str, float]] = {}
        self._previous: dict[str, np.ndarray] = {}
        self._last_cost: float | None = None
        self._epoch = 0

    # --- logging ------------------------------------------------------------------------
    def step(self, model: Any, epoch: int) -> Entry | None:
        """Log the probes' explanations for ``model`` at ``epoch``.

        Call it where an epoch ends (after the optimizer step). The model's modes,
        parameters, gradients and the global random streams are left as they were.

        Returns
        -------
        Entry or None
            What was logged (``skipped=True`` with a note when over the time budget), or
            ``None`` when ``epoch`` is not a logging epoch.
        """
        self._epoch = int(epoch)
        if epoch % self.every:
            return None
        if self.time_budget is not None and self._last_cost is not None \
                and self._last_cost > self.time_budget:
            entry = Entry("step", f"epoch {epoch}", int(epoch), skipped=True, notes=[
                f"skipped: the last logging step took {self._last_cost:.2f} s, over the "
                f"time budget of {self.time_budget:g} s per step; log fewer methods, "
                "layers or probes, or raise time_budget"])
            self._write(entry)
            return entry
        start = time.perf_counter()
        with untouched(model):
            entry = self._measure(model, int(epoch))
        entry.seconds = time.perf_counter() - start
        entry.scalars["monitor/seconds"] = entry.seconds
        self.scalars[int(epoch)] = dict(entry.scalars)
        self._write(entry)
        self._last_cost = time.perf_counter() - start  # what training waited, writing included
        return entry

    def log_images(self, stage: str, batch: Any, *, step: int | None = None,
                   layout: str | None = None) -> Entry:
        """Log what goes into the network at a pipeline stage (the visual log).

        Parameters
        ----------
        stage
            Name of the stage, e.g. ``"raw"``, ``"after augmentation"``.
        batch
            Images ``(N, H, W, C)`` or ``(N, C, H, W)`` (1 or 3 channels), numpy or
            tensors; the first :data:`STAGE_IMAGES` are shown, each min-max scaled.
        step
            Step axis of the entry; default: the last epoch given to :meth:`step`.
        layout
            ``"channels_first"`` / ``"channels_last"``; default: guessed from the axis of
            size 1 or 3.
        """
        images = channels_last(np.asarray(to_numpy(batch)), layout)
        entry = Entry("stage", stage, self._epoch if step is None else int(step))
        tag = f"stage/{stage}"
        entry.images[tag] = strip([to_uint8(image) for image in images[:STAGE_IMAGES]])
        entry.captions[tag] = (f"{min(len(images), STAGE_IMAGES)} of {len(images)} images "
                               f"{images.shape[1:]}")
        entry.scalars[f"{tag}/mean"] = float(images.mean())
        entry.scalars[f"{tag}/std"] = float(images.std())
        entry.histograms[tag] = images
        self._write(entry)
        return entry

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()

    def __enter__(self) -> "Monitor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _write(self, entry: Entry) -> None:
        for sink in self.sinks:
            sink.write(entry)

    # --- measuring ----------------------------------------------------------------------
    def _measure(self, model: Any, epoch: int) -> Entry:
        from ..api import activations
        from ..backends import get_backend

        entry = Entry("step", f"epoch {epoch}", epoch)
        backend = get_backend(model)
        outputs = _outputs(backend, self.probe_x)
        classes = {t: self._classes(t, outputs) for t in self.targets}
        if self.probe_y is not None:
            entry.scalars["probe/accuracy"] = float((outputs.argmax(1) == self.probe_y).mean())
        for label, name, options in self.methods:
            try:
                self._log_method(entry, model, label, name, options, outputs, classes)
            except CrosslensError as error:  # e.g. a zero-initialized head: no gradient yet
                entry.notes.append(f"{label}: not logged at this step: {error}")
        if self.layers:
            axis = 1 if backend.layout == "channels_first" else -1
            for layer, values in activations(model, self.probe_x, self.layers).items():
                entry.histograms[f"activations/{layer}"] = values
                entry.histograms[f"channel_mean/{layer}"] = channel_means(values, axis)
                if is_rectified(values):
                    entry.scalars[f"dead_share/{layer}"] = dead_share(values, axis)
        if self.featurevis is not None:
            self._log_featurevis(entry, model, backend.layout)
        return entry

    def _log_method(self, entry: Entry, model: Any, label: str, name: str,
                    options: dict[str, Any], outputs: np.ndarray,
                    classes: dict[Any, np.ndarray]) -> None:
        """One method's maps for every target, their drift and the class similarity."""
        from ..api import explain

        def maps_for(target_classes: np.ndarray) -> Any:
            return explain(model, self.probe_x, name, target=target_classes.tolist(),
                           seed=self.seed, **options)

        for target in self.targets:
            exp = maps_for(classes[target])
            self._log_maps(entry, f"{label}/{target}", exp.images(), exp.image_maps(),
                           classes[target])
        first = self.targets[0]
        if outputs.ndim != 2 or outputs.shape[1] < 2:
            return  # one output: no other class to contrast with
        other = maps_for(runner_up(outputs, classes[first])).image_maps()
        similarity = spearman(entry.maps[f"{label}/{first}"], other)
        entry.scalars[f"class_similarity/{label}"] = _nanmean(similarity)
        entry.histograms[f"class_similarity/{label}"] = similarity

    def _log_maps(self, entry: Entry, key: str, images: np.ndarray, maps: np.ndarray,
                  classes: np.ndarray) -> None:
        entry.maps[key] = maps
        entry.histograms[f"attribution/{key}"] = maps
        entry.images[f"attribution/{key}"] = overlay_strip(images, maps)
        entry.captions[f"attribution/{key}"] = "classes " + ", ".join(map(str, classes))
        for name, measure in self.measures.items():
            entry.scalars[f"{name}/{key}"] = _nanmean(np.asarray(measure(maps), dtype=float))
        previous = self._previous.get(key)
        if previous is not None and previous.shape == maps.shape:
            drift = spearman(previous, maps)
            entry.scalars[f"drift/{key}"] = _nanmean(drift)
            entry.histograms[f"drift/{key}"] = drift
        self._previous[key] = maps

    def _log_featurevis(self, entry: Entry, model: Any, layout: str | None) -> None:
        from ..api import visualize
        from ..core.targets import Channel

        plan = dict(self.featurevis)
        layer, channels, steps = plan.pop("layer"), plan.pop("channels"), plan.pop("steps")
        x = np.asarray(to_numpy(self.probe_x))
        shape = channels_last(x[:1], layout).shape  # (1, H, W, C)
        plan.setdefault("size", shape[1:3])
        plan.setdefault("channels", shape[3])
        plan.setdefault("transforms", None)  # probes may be tiny: no jitter / scaling
        for c in channels:
            result = visualize(model, Channel(layer, int(c)), steps=steps, seed=self.seed,
                               **plan)
            tag = f"featurevis/{layer}/channel {c} ({steps} steps)"
            entry.images[tag] = to_uint8(result.images[0])
            entry.captions[tag] = (f"after {steps} optimization steps: a short run, the "
                                   "pattern forming, not a converged visualization")

    def _classes(self, target: Any, outputs: np.ndarray) -> np.ndarray:
        if target == "label":
            return self.probe_y
        if target == "predicted":
            return outputs.argmax(axis=1)
        return np.full(len(outputs), int(target), dtype=np.int64)


def _outputs(backend: Any, x: Any) -> np.ndarray:
    """The model's outputs on the probes, ``(N, classes)``, with the backend's
    mode-restoring session."""
    with backend.session():
        return np.asarray(backend.ops.to_numpy(backend.forward(backend.prepare(x))))


def _nanmean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")
