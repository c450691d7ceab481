"""The Clever-Hans benchmark: does each attribution method find the watermark?

:func:`crosslens.datasets.clever_hans` gives a data set whose watermarked class can be
read off a corner patch; :func:`train_models` trains the same small CNN on it in PyTorch
and in Keras; :func:`clever_hans_benchmark` explains watermarked test images with every
registered method each backend supports and scores the share of positive relevance
inside the patch (:func:`~crosslens.evaluate.relevance_mass`) and the pointing game.
Methods are taken from the registry when the benchmark runs, so new methods are
covered without changes here.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.errors import CrosslensError, OptionError, UnsupportedError
from ..datasets import CleverHans, clever_hans
from ._maps import relevance_maps
from .localization import pointing_game, relevance_mass
from .models import CAM_LAYER, accuracy, train_small_cnn

FRAMEWORKS = ("torch", "keras")


def _grid_features(data: CleverHans) -> dict[str, Any]:
    """Superpixels for feature ablation: square blocks the size of the watermark."""
    side = int(np.sqrt(data.mask.sum()))
    size = data.mask.shape[0]
    rows = np.arange(size) // side
    return {"feature_mask": rows[:, None] * (size // side + 1) + rows[None, :]}


#: Options a method needs and has no default for, derived from the data set.
REQUIRED_OPTIONS = {"feature_ablation": _grid_features}

#: Registered methods that do not localize evidence in one image, left out of the default
#: set (they still run when named in ``methods``), with the reason shown in the table.
NOT_PER_IMAGE = {
    "feature_permutation": "global importance over the explained batch: every explained "
                           "image carries the same watermark, so permuting it across them "
                           "changes nothing (run it by name to see)",
}


@dataclass
class MethodScore:
    """One method on one framework."""

    framework: str
    method: str
    status: str  # "ok", "skipped" or "error"
    relevance_mass: float = float("nan")  # mean share of positive relevance in the patch
    pointing_game: float = float("nan")  # share of samples whose maximum is in the patch
    seconds: float = float("nan")
    note: str = ""
    maps: np.ndarray | None = field(default=None, repr=False)  # (N, H, W)


@dataclass
class CleverHansResult:
    """Scores of every method on every framework, with what the report shows."""

    data: CleverHans
    images: np.ndarray  # explained images (N, H, W, C), channels-last
    scores: list[MethodScore]
    accuracy: dict[str, dict[str, float]]  # framework -> {"test", "patch_removed"}
    train_seconds: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict, repr=False)

    def score(self, framework: str, method: str) -> MethodScore:
        """The entry of one method on one framework."""
        for entry in self.scores:
            if entry.framework == framework and entry.method == method:
                return entry
        raise KeyError(f"no score for {method!r} on {framework!r}")

    @property
    def methods(self) -> list[str]:
        return list(dict.fromkeys(s.method for s in self.scores))

    @property
    def frameworks(self) -> list[str]:
        return list(dict.fromkeys(s.framework for s in self.scores))

    def rows(self) -> list[dict[str, Any]]:
        """Plain rows (for JSON): one per method and framework, without the maps."""
        return [{"framework": s.framework, "method": s.method, "status": s.status,
                 "relevance_mass": _plain(s.relevance_mass),
                 "pointing_game": _plain(s.pointing_game), "seconds": _plain(s.seconds),
                 "note": s.note} for s in self.scores]

    def table(self) -> str:
        """Plain-text table: per method, mass in patch and pointing game per framework."""
        frameworks = self.frameworks
        width = max([len(m) for m in self.methods] + [6])
        head = f"{'method':<{width}}" + "".join(
            f"  {fw + ' mass':>11} {fw + ' point':>12}" for fw in frameworks)
        lines = [head, "-" * len(head)]
        for method in self.methods:
            cells = []
            for fw in frameworks:
                s = self.score(fw, method)
                cells.append(f"  {_fmt(s.relevance_mass):>11} {_fmt(s.pointing_game):>12}"
                             if s.status == "ok" else f"  {s.status:>11} {'':>12}")
            lines.append(f"{method:<{width}}" + "".join(cells))
        chance = float(self.data.mask.mean())
        lines.append("")
        lines.append(f"mass = share of positive relevance inside the watermark (chance: "
                     f"{chance:.3f}, its share of the pixels); point = pointing game")
        for fw in frameworks:
            acc = self.accuracy[fw]
            lines.append(f"{fw}: test accuracy {acc['test']:.3f}, with the watermark removed "
                         f"{acc['patch_removed']:.3f} (trained in "
                         f"{self.train_seconds[fw]:.1f} s)")
        notes = [f"{s.framework}/{s.method}: {s.note}" for s in self.scores if s.note]
        if notes:
            lines += ["", "notes:"] + [f"  {note}" for note in notes]
        return "\n".join(lines)

    def html(self, columns: int = 6) -> str:
        """A self-contained HTML report (table and maps as data URIs)."""
        from .report import clever_hans_html
        return clever_hans_html(self, columns=columns)

    def save_html(self, path: str, columns: int = 6) -> str:
        """Write :meth:`html` to ``path``; returns the path."""
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(self.html(columns))
        return path


def available_frameworks() -> list[str]:
    """The frameworks of :data:`FRAMEWORKS` that are installed."""
    found = {"torch": "torch", "keras": "keras"}
    return [fw for fw in FRAMEWORKS if importlib.util.find_spec(found[fw]) is not None
            and (fw != "keras" or importlib.util.find_spec("tensorflow") is not None)]


def train_models(data: CleverHans, frameworks: tuple[str, ...] | list[str] = FRAMEWORKS, *,
                 seed: int = 0, epochs: int = 5) -> tuple[dict[str, Any], dict[str, float]]:
    """Train the small CNN on ``data`` in each framework: ``(models, seconds)``."""
    models, seconds = {}, {}
    for fw in frameworks:
        start = time.perf_counter()
        models[fw] = train_small_cnn(fw, data.x_train, data.y_train, seed=seed, epochs=epochs)
        seconds[fw] = time.perf_counter() - start
    return models, seconds


def attribution_methods(framework: str, methods: list[str] | None = None
                        ) -> list[tuple[str, str]]:
    """``(method, reason_to_skip)`` for the registry's methods (or ``methods``) on a framework.

    ``reason_to_skip`` is ``""`` for methods to run. The default set (``methods=None``)
    skips :data:`NOT_PER_IMAGE`.
    """
    from ..api import methods as registered
    from ..core.registry import get_method

    table = {row["name"]: row for row in registered()}
    names = list(table) if methods is None else [get_method(m).name for m in methods]
    out = []
    for name in names:
        row = table[name]
        if framework not in row["backends"]:
            out.append((name, f"needs {row['needs']}, which the {framework} backend lacks"))
        elif methods is None and name in NOT_PER_IMAGE:
            out.append((name, NOT_PER_IMAGE[name]))
        else:
            out.append((name, ""))
    return out


def explain_for_benchmark(model: Any, x: Any, method: str, target: int, *, seed: int = 0,
                          layer: str = CAM_LAYER, **options: Any) -> Any:
    """``cl.explain`` that retries with ``layer=`` when a method needs one (CAMs)."""
    from ..api import explain
    try:
        return explain(model, x, method, target=target, seed=seed, **options)
    except OptionError as error:
        if "layer" not in str(error):
            raise
        return explain(model, x, method, target=target, seed=seed, layer=layer, **options)


def clever_hans_benchmark(seed: int = 0, *, frameworks: list[str] | None = None,
                          methods: list[str] | None = None, source: str = "digits",
                          n: int = 600, samples: int = 8, epochs: int = 5,
                          models: dict[str, Any] | None = None,
                          data: CleverHans | None = None,
                          method_options: dict[str, dict] | None = None) -> CleverHansResult:
    """Score every attribution method on the watermark task, on each framework.

    Parameters
    ----------
    seed
        Seed of the data, the training and the methods' randomness.
    frameworks
        ``["torch", "keras"]`` by default (those installed).
    methods
        Method names; default: every registered method the backend supports, except
        those explaining a batch rather than an image (:data:`NOT_PER_IMAGE`, reported as
        skipped). Methods that need a layer get the last convolutional block (``relu3``);
        their maps (layer values for ``activations``) are summed over channels and
        upsampled.
    source, n
        Passed to :func:`crosslens.datasets.clever_hans`.
    samples
        Number of watermarked test images explained.
    epochs
        Training epochs.
    models
        Already trained models per framework (skips training), e.g. from
        :func:`train_models` on the same ``data``.
    data
        The data set (default: ``clever_hans(seed, n=n, source=source)``).
    method_options
        Extra options per method name, e.g. ``{"integrated_gradients": {"steps": 16}}``.
        ``feature_ablation`` gets watermark-sized square superpixels unless given.

    Returns
    -------
    CleverHansResult
        ``.table()`` prints, ``.save_html(path)`` writes the report with the maps.
    """
    data = data if data is not None else clever_hans(seed, n=n, source=source)
    frameworks = list(frameworks) if frameworks is not None else available_frameworks()
    train_seconds: dict[str, float] = {}
    if models is None:
        models, train_seconds = train_models(data, frameworks, seed=seed, epochs=epochs)
    index = data.watermarked_test(samples)
    images = data.x_test[index]
    size = images.shape[1:3]
    scores, accuracies = [], {}
    for fw in frameworks:
        model = models[fw]
        accuracies[fw] = {"test": accuracy(model, data.x_test, data.y_test),
                          "patch_removed": accuracy(model, data.remove_patch(data.x_test),
                                                    data.y_test)}
        train_seconds.setdefault(fw, float("nan"))
        layout = "channels_first" if fw == "torch" else "channels_last"
        x = data.to_layout(images, layout)
        for method, skip in attribution_methods(fw, methods):
            if skip:
                scores.append(MethodScore(fw, method, "skipped", note=skip))
                continue
            options = dict(REQUIRED_OPTIONS[method](data)) if method in REQUIRED_OPTIONS \
                else {}
            options.update((method_options or {}).get(method, {}))
            start = time.perf_counter()
            try:
                exp = explain_for_benchmark(model, x, method, data.patch_class, seed=seed,
                                            **options)
                maps = relevance_maps(exp, size=size)
            except (CrosslensError, UnsupportedError) as error:
                scores.append(MethodScore(fw, method, "skipped", note=_short(error)))
                continue
            except Exception as error:  # a broken method must not hide the others
                scores.append(MethodScore(fw, method, "error",
                                          note=f"{type(error).__name__}: {_short(error)}"))
                continue
            seconds = time.perf_counter() - start
            scores.append(MethodScore(
                fw, method, "ok", float(np.nanmean(relevance_mass(maps, data.mask))),
                float(pointing_game(maps, data.mask).mean()), seconds,
                note=f"layer={exp.layer}" if exp.layer else "", maps=maps))
    return CleverHansResult(data, images, scores, accuracies, train_seconds,
                            info={"seed": seed, "samples": len(index), "epochs": epochs,
                                  "source": data.source}, models=dict(models))


def _short(error: BaseException, limit: int = 160) -> str:
    text = str(error).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _fmt(value: float) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def _plain(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
