"""Sanity checks: model-parameter randomization (Adebayo et al. 2018).

An explanation that explains the *model* must change when the model's learned weights
are destroyed. The check randomizes the parameters layer by layer, from the top
(output) layer down, each step keeping the earlier layers randomized ("cascading"), or
one layer at a time ("independent"), and reports the Spearman rank correlation between
the original and the randomized attribution maps. A method that ignores the model (an
edge detector) keeps a correlation near 1; a faithful one drops towards 0.

Randomization always works on a copy (:meth:`Backend.randomized_copy`); the model
given is never modified. Random draws are seeded per layer and identical for a PyTorch
and a Keras model with the same weights.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..backends import get_backend
from ..core.errors import OptionError
from ._maps import relevance_maps, spatial_size

#: ``explainer(model, x, target) -> attributions`` (input layout), an alternative to a
#: registered method name: lets third-party or baseline explainers be checked too.
Explainer = Callable[[Any, Any, list], Any]


@dataclass
class RandomizationResult:
    """Outcome of :func:`model_randomization`.

    Attributes
    ----------
    method
        The method checked.
    mode
        ``"cascading"`` or ``"independent"``.
    layers
        The layer randomized at each step (cascading: together with all before it).
    correlations
        Spearman correlation of each sample's randomized map with its original map,
        ``(steps, N)``.
    original
        Original relevance maps ``(N, H, W)`` (absolute values when ``absolute``).
    randomized
        Relevance maps after each step, ``(steps, N, H, W)``.
    target
        Class explained per sample (fixed to the original model's).
    """

    method: str
    mode: str
    layers: list[str]
    correlations: np.ndarray
    original: np.ndarray
    randomized: np.ndarray
    target: list[int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> np.ndarray:
        """Mean correlation over the samples at each step, ``(steps,)``."""
        return self.correlations.mean(axis=1)

    @property
    def final(self) -> float:
        """Mean correlation after the last step (every listed layer randomized)."""
        return float(self.mean[-1])

    def table(self) -> str:
        """A plain-text table: step, layer, mean Spearman correlation."""
        width = max([len(name) for name in self.layers] + [5])
        lines = [f"{'step':>4}  {'layer':<{width}}  spearman"]
        lines += [f"{k + 1:>4}  {name:<{width}}  {value:+.3f}"
                  for k, (name, value) in enumerate(zip(self.layers, self.mean))]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"RandomizationResult(method={self.method!r}, mode={self.mode!r}, "
                f"steps={len(self.layers)}, final_spearman={self.final:+.3f})")


def model_randomization(model: Any, x: Any, method: str | Explainer = "saliency", *,
                        target: Any = "predicted", layers: Sequence[str] | None = None,
                        mode: str = "cascading", seed: int = 0, absolute: bool = True,
                        max_steps: int | None = None, memory_budget: Any = None,
                        **options: Any) -> RandomizationResult:
    """Model-parameter randomization test with Spearman rank correlations.

    Parameters
    ----------
    model
        A PyTorch or Keras model. It is not modified: every step explains a copy.
    x
        Input batch in the model's layout.
    method
        A registered method name, or a callable ``explainer(model, x, target)``
        returning attributions in the input's layout (or ``(N, h, w)`` maps).
    target
        Class index, one per sample, or ``"predicted"``; resolved once on the original
        model and kept for every randomized copy.
    layers
        Layers to randomize, top (output side) first. Default: every layer that owns
        parameters, from the top (``backend.parameter_layers()`` reversed).
    mode
        ``"cascading"`` (step ``k`` randomizes ``layers[:k + 1]``) or ``"independent"``
        (step ``k`` randomizes ``layers[k]`` only).
    seed
        Seed of the random weights and of the method's own randomness (the same seed on
        every step, so only the weights change).
    absolute
        Compare ``|relevance|`` (channels summed first), as Adebayo et al. do for
        gradient maps whose sign flips; ``False`` compares signed maps.
    max_steps
        Stop after this many layers.
    memory_budget
        Passed to :func:`crosslens.explain`.
    **options
        The method's own options.

    Returns
    -------
    RandomizationResult
    """
    from ..api import explain
    from .faithfulness import class_indices

    if mode not in ("cascading", "independent"):
        raise OptionError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    backend = get_backend(model)
    with backend.session():
        native = backend.prepare(x)
        shape = backend.ops.shape(native)
        classes = [int(c) for c in class_indices(backend, native, target)]
        order = [backend.resolve_layer(name) for name in layers] if layers is not None \
            else list(reversed(backend.parameter_layers()))
    if max_steps is not None:
        order = order[:max_steps]
    if not order:
        raise OptionError("no layer to randomize: the model has no parameter layers")
    size = spatial_size(shape, backend.layout)
    name = method if isinstance(method, str) else getattr(method, "__name__", "explainer")

    def maps_of(net: Any) -> np.ndarray:
        if callable(method) and not isinstance(method, str):
            values = relevance_maps(method(net, x, list(classes)), backend.layout, size)
        else:
            values = relevance_maps(explain(net, x, method, target=list(classes), seed=seed,
                                            memory_budget=memory_budget, **options), size=size)
        return np.abs(values) if absolute else values

    original = maps_of(model)
    randomized, correlations = [], []
    for k in range(len(order)):
        chosen = order[:k + 1] if mode == "cascading" else [order[k]]
        copy = backend.randomized_copy(chosen, seed=seed)
        maps = maps_of(copy)
        del copy
        randomized.append(maps)
        correlations.append([spearman(a, b) for a, b in zip(original, maps)])
    return RandomizationResult(name, mode, order, np.asarray(correlations), original,
                               np.stack(randomized), classes,
                               info={"absolute": absolute, "seed": seed})


def rankdata(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a flat array, ties given their average rank (as ``scipy.stats.rankdata``)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def spearman(a: Any, b: Any) -> float:
    """Spearman rank correlation of two arrays (flattened); 0 when either is constant."""
    ra, rb = rankdata(np.asarray(a)), rankdata(np.asarray(b))
    if ra.shape != rb.shape:
        raise OptionError(f"cannot correlate arrays of {ra.size} and {rb.size} values")
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denominator = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denominator) if denominator > 0 else 0.0
