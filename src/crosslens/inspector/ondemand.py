"""On-demand work of :class:`~.session.Inspector`: attributions (any registered method,
or for token ids any text method of :func:`crosslens.explain_text`; validated, cached in
the store's ``inspector/attributions``, shown by the data's view, :mod:`.modal`) and
feature visualizations (cached in ``inspector/featurevis``), run as jobs on the worker
thread or directly."""
from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..core.errors import OptionError
from ..core.registry import check_options, get_method
from .cache import array_digest, digest
from .jobs import Job

JSON_KINDS = (bool, int, float, str, type(None))
#: Options of :func:`crosslens.explain_text` itself (the others are the method's).
TEXT_SETTINGS = ("baseline", "pad_id", "mask_id", "embedding", "window")


class OnDemand:
    """Mixin of :class:`~.session.Inspector` (uses its model, instances and cache)."""

    def attribution_request(self, index: Any, method: Any, options: Any, target: Any
                            ) -> tuple[dict, str]:
        """The validated request and its cache key (400 naming an unknown method / option,
        a bad target or index)."""
        index = self.instances.check(index)
        if not isinstance(method, str):
            raise OptionError("method must be a method name (see /api/session methods)")
        text = self.modality.kind == "text"
        if text:
            from ..modalities.text import text_method
            name, registered, _ = text_method(method)
            spec = get_method(registered)
        else:
            spec = get_method(method)
            name = spec.name
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise OptionError("options must be an object of option: value")
        options = dict(options)
        layer = options.pop("layer", None)
        if layer is not None:
            layer = self.backend.resolve_layer(layer) if isinstance(layer, str) else \
                self.check_layer(layer)
        for key, value in options.items():
            if not isinstance(value, JSON_KINDS):
                raise OptionError(f"option {key!r} must be a number, string, bool or null")
        check_options(spec, {k: v for k, v in options.items()
                             if not (text and k in TEXT_SETTINGS)})
        cls = None if spec.targetless else self.target_class(index, target)
        request = {"index": index, "method": name, "options": options, "layer": layer,
                   "target": cls}
        key = digest({"request": {**request, "index": None},
                      "input": array_digest(self.instances.sample(index)),
                      "weights": self.weights, "seed": self.seed})
        return request, key

    def attribution(self, request: dict, key: str) -> dict:
        """Compute (or read from the cache) one attribution, shown by the data's view
        (an image's overlay and heatmap, coloured tokens, sorted feature bars, a shaded
        series plot); see :meth:`attribution_map`."""
        cached = self.cache.load("attributions", key)
        if cached is not None:
            return {**cached[0], "cached": True}
        values, seconds = self._explain(request)
        sample = self.instances.sample(request["index"])[0]
        result = {"method": request["method"], "options": request["options"],
                  "layer": request["layer"], "target": request["target"],
                  "modality": self.view.kind, **self.view.result(sample, values),
                  "seconds": round(seconds, 4), "cached": False}
        self.cache.save("attributions", key, result, {"map": values.astype(np.float32)})
        return result

    def attribution_map(self, request: dict, key: str) -> np.ndarray:
        """The values behind an attribution result: an image's ``(H, W)`` map (channels
        summed, as ``Explanation.image_maps()``), a text's per-token scores ``(T,)``
        (``explain_text(...).scores``), a table row's ``(F,)`` or a series' sample-shaped
        attributions."""
        self.attribution(request, key)
        return self.cache.load("attributions", key, arrays=True)[1]["map"]

    def _explain(self, request: dict) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        values = self.view.explain(
            self.model, self.instances.sample(request["index"]), request["method"],
            target=request["target"] if request["target"] is not None else "predicted",
            layer=request["layer"], seed=self.seed, progress=False, **request["options"])
        return np.asarray(values), time.perf_counter() - start

    def submit_attribution(self, index: Any, method: Any, options: Any, target: Any) -> Job:
        request, key = self.attribution_request(index, method, options, target)
        job = Job(id=f"attribution-{key}", kind="attribution", params=request,
                  run=lambda jobs, progress: [self.attribution(request, key)])
        cached = self.cache.load("attributions", key)
        if cached is not None:
            job.status, job.progress, job.result = "done", 1.0, {**cached[0], "cached": True}
        return self.jobs.submit(job)

    def submit_featurevis(self, layer: Any, channel: Any = None, direction: Any = None,
                          steps: Any = None) -> Job:
        self.require_image("feature visualization")
        layer = self.check_layer(layer)
        steps = self.featurevis.steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 4096:
            raise OptionError("steps must be an integer in 1..4096")
        if (channel is None) == (direction is None):
            raise OptionError("a featurevis job takes a channel or a direction")
        if channel is not None:
            unit: Any = self.check_channel(layer, channel)
        else:
            if not isinstance(direction, list) or len(direction) != self.channel_count(layer) \
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                               and math.isfinite(v) for v in direction):
                raise OptionError(f"direction must be {self.channel_count(layer)} finite "
                                  f"numbers (one per channel of {layer!r})")
            unit = np.asarray(direction, dtype=np.float64)
        self.featurevis.check()
        key = self.featurevis.key(layer, unit, steps)
        job = Job(id=f"featurevis-{key}", kind="featurevis",
                  params={"layer": layer, "steps": steps,
                          "channel": channel if channel is not None else None},
                  batch_key=("featurevis", layer, steps) if channel is not None else None,
                  run=lambda jobs, progress: self.featurevis.run(
                      layer, [j.params.get("unit") for j in jobs], steps, progress))
        job.params["unit"] = unit
        cached = self.featurevis.cache.load("featurevis", key)
        if cached is not None:
            job.status, job.progress, job.result = "done", 1.0, \
                self.featurevis.ready(cached[0])
        return self.jobs.submit(job)


    def precompute_featurevis(self, channels: int = 8, layers: list[str] | None = None,
                              progress: bool = True) -> int:
        """Feature visualizations (default steps) of the ``channels`` most varying
        channels of each spatial layer, cached for the channel and dictionary views, with
        a progress bar; returns how many were computed (cached ones are skipped)."""
        from ..core.progress import progress_bar
        from .jobs import MAX_BATCH

        plan = []
        for layer in layers or self.layers:
            if len(self.shapes[self.check_layer(layer)]) == 3:
                order = self.matrix(layer, "variance", subsets=["all"])["order"][:channels]
                todo = [c for c in order if self.featurevis.cache.load(
                    "featurevis", self.featurevis.key(layer, c, self.featurevis.steps)) is None]
                plan += [(layer, todo[i:i + MAX_BATCH]) for i in range(0, len(todo), MAX_BATCH)]
        bar = progress_bar(len(plan), "feature visualizations (batches)", progress)
        try:
            for layer, group in plan:
                self.featurevis.run(layer, group, self.featurevis.steps)
                bar.update(1)
        finally:
            bar.close()
        return sum(len(group) for _, group in plan)
