"""Comparing implementations of the same method on the same model.

``cl.compare(model, x, "integrated_gradients", implementations=["crosslens", "captum"])``
runs each implementation (translating the model where a toolset needs another
framework), then reports the pairwise agreement of the attributions — max relative
difference (``max|a - b| / max|b|``), cosine similarity and Spearman rank correlation —
with a figure of the maps and their differences.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from .core.explanation import Explanation
from .core.figures import Drawable


@dataclass
class Agreement:
    """How closely two implementations agree (over the whole batch)."""

    first: str
    second: str
    max_relative_difference: float
    cosine: float
    spearman: float

    def row(self) -> str:
        return (f"{self.first:>14} vs {self.second:<14} max rel diff "
                f"{self.max_relative_difference:9.2e}  cosine {self.cosine:8.6f}  "
                f"spearman {self.spearman:8.6f}")


@dataclass
class Comparison(Drawable):
    """Explanations per implementation and their pairwise agreement."""

    method: str
    explanations: dict[str, Explanation]
    agreements: list[Agreement] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join([f"{self.method}: {len(self.explanations)} implementations"]
                         + [a.row() for a in self.agreements])

    def figure(self):
        """Maps of each implementation (rows: samples) and their differences."""
        from .viz import figure_grid

        names = list(self.explanations)
        first = self.explanations[names[0]]
        images = first.images()
        maps = {name: exp.image_maps() for name, exp in self.explanations.items()}
        rows, col_titles = [], ["input"] + names + [f"{a} − {b}" for a, b in combinations(names, 2)]
        for i, image in enumerate(images):
            row = [image] + [(image, maps[name][i]) for name in names]
            row += [maps[a][i] - maps[b][i] for a, b in combinations(names, 2)]
            rows.append(row)
        return figure_grid(rows, col_titles=col_titles, colorbar=True)

    def caption(self) -> str:
        return f"{self.method}: " + "; ".join(a.row().strip() for a in self.agreements)


def agreement(first: str, a: np.ndarray, second: str, b: np.ndarray) -> Agreement:
    """Agreement metrics of two attribution arrays of the same shape."""
    from .evaluate.sanity import spearman

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{first} gave shape {a.shape}, {second} gave {b.shape}")
    scale = max(np.abs(b).max(), 1e-300)
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float((a * b).sum() / norms) if norms > 0 else float(np.array_equal(a, b))
    return Agreement(first, second, float(np.abs(a - b).max() / scale), cosine, spearman(a, b))


def compare(model: Any, x: Any, method: str, implementations: tuple[str, ...] | list[str] = (
        "crosslens", "captum"), **options: Any) -> Comparison:
    """Run ``method`` with each implementation and compare the results pairwise.

    Parameters
    ----------
    model, x, method, **options
        As for :func:`crosslens.explain` (``target``, ``layer``, method options).
    implementations
        ``"crosslens"``, ``"captum"``, ``"tf-keras-vis"``, ``"zennit"``.
    """
    from .api import explain

    explanations = {name: explain(model, x, method, implementation=name, **options)
                    for name in implementations}
    arrays = {name: exp.numpy() for name, exp in explanations.items()}
    pairs = [agreement(a, arrays[a], b, arrays[b]) for a, b in combinations(arrays, 2)]
    return Comparison(explanations[implementations[0]].method, explanations, pairs)
