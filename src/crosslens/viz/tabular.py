"""Feature attributions of tables, drawn in SHAP's conventions (numpy + matplotlib).

- :func:`feature_bars`: one sample's attributions as horizontal bars, largest ``|value|``
  on top, red for positive (raising the target) and blue for negative values, the rest
  summed into one "other features" bar (as ``shap.plots.bar`` / ``waterfall``).
- :func:`summary_plot`: the beeswarm summary of a batch (``shap.summary_plot``): one row
  per feature, sorted by mean ``|value|`` (most important on top), one point per sample
  at its attribution, stacked where points crowd, coloured by the feature's value (blue
  low to red high, clipped to its 5th-95th percentiles).

Matplotlib is imported on call; figures are plain ``Figure`` objects (no pyplot state).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["feature_bars", "summary_plot", "feature_order", "beeswarm_offsets"]

#: SHAP's colours: positive (red) and negative (blue) values.
RED, BLUE = "#ff0051", "#008bfb"


def feature_order(values: Any, max_features: int | None = None) -> np.ndarray:
    """Feature indices sorted by mean ``|value|`` over the rows, largest first.

    Parameters
    ----------
    values
        ``(N, F)`` or ``(F,)`` attributions.
    max_features
        Keep only the first ones.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    order = np.argsort(-np.abs(values).mean(axis=0), kind="stable")
    return order if max_features is None else order[:max_features]


def feature_bars(values: Any, names: Sequence[str], *, data: Any = None,
                 max_features: int = 12, title: str | None = None,
                 width: float = 6.0) -> Any:
    """One sample's attributions as sorted horizontal bars (see the module docstring).

    Parameters
    ----------
    values
        ``(F,)`` signed attributions.
    names
        One name per feature.
    data
        The sample's feature values, shown in the labels (``"name = value"``).
    max_features
        Bars drawn; the remaining features are summed into one bar.
    title
        Figure title.
    width
        Figure width in inches.
    """
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(names) != len(values):
        raise ValueError(f"{len(names)} names for {len(values)} values")
    order = feature_order(values, max_features)
    labels = [names[i] if data is None else f"{names[i]} = {_short(np.ravel(data)[i])}"
              for i in order]
    shown = list(values[order])
    rest = np.setdiff1d(np.arange(len(values)), order)
    if len(rest):
        labels.append(f"{len(rest)} other features")
        shown.append(float(values[rest].sum()))
    fig = Figure(figsize=(width, 0.45 * len(shown) + 1.0))
    ax = fig.add_subplot(1, 1, 1)
    rows = np.arange(len(shown))[::-1]  # first (largest) on top
    colours = [RED if v >= 0 else BLUE for v in shown]
    ax.barh(rows, shown, color=colours, height=0.7)
    span = max(np.abs(shown).max(), 1e-12) if shown else 1.0
    for row, value in zip(rows, shown):
        ax.text(value + (0.02 if value >= 0 else -0.02) * span, row, f"{value:+.3g}",
                va="center", ha="left" if value >= 0 else "right", fontsize=8,
                color=RED if value >= 0 else BLUE)
    ax.set_yticks(rows, labels)
    ax.axvline(0, color="#999", linewidth=0.8)
    ax.set_xlim(-1.25 * span if min(shown) < 0 else 0, 1.25 * span if max(shown) > 0 else 0)
    ax.set_xlabel("attribution (impact on the target)")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _short(value: Any) -> str:
    return f"{float(value):.4g}"


def beeswarm_offsets(values: Any, bins: int = 100, width: float = 0.4) -> np.ndarray:
    """Vertical offsets that stack points of similar value (SHAP's beeswarm layout).

    Values are quantized into ``bins`` bins over their range; within a bin, points
    alternate above and below the row, farther out the more there are, scaled so the
    densest bin spans ``±width``.
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    span = values.max() - values.min() if values.size else 0.0
    quantized = np.round((values - values.min()) / (span if span > 0 else 1.0) * bins)
    offsets = np.zeros(len(values))
    order = np.argsort(quantized + 1e-6 * np.random.default_rng(0).random(len(values)),
                       kind="stable")
    layer, last = 0, None
    for index in order:
        if quantized[index] != last:
            layer, last = 0, quantized[index]
        offsets[index] = np.ceil(layer / 2) * (1 if layer % 2 else -1)
        layer += 1
    top = np.abs(offsets).max()
    return offsets * (width / top) if top > 0 else offsets


def summary_plot(values: Any, data: Any, names: Sequence[str], *, max_features: int = 12,
                 cmap: str | None = None, width: float = 7.0) -> Any:
    """Beeswarm summary of a batch's attributions (see the module docstring).

    Parameters
    ----------
    values
        ``(N, F)`` signed attributions.
    data
        ``(N, F)`` feature values (the colours).
    names
        One name per feature.
    max_features
        Rows drawn (the most important features).
    cmap
        Colormap from low to high feature values (default SHAP-like blue to red).
    width
        Figure width in inches.
    """
    from matplotlib.colors import LinearSegmentedColormap
    from matplotlib.figure import Figure

    values = np.asarray(values, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    if values.shape != data.shape or values.ndim != 2 or len(names) != values.shape[1]:
        raise ValueError(f"values {values.shape}, data {data.shape} and {len(names)} names "
                         "must describe the same (N, F) table")
    order = feature_order(values, max_features)
    colours = LinearSegmentedColormap.from_list("crosslens_shap", [BLUE, "#7b00d4", RED]) \
        if cmap is None else cmap
    fig = Figure(figsize=(width, 0.4 * len(order) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    points = None
    for row, feature in enumerate(order):
        y = len(order) - 1 - row
        low, high = np.nanpercentile(data[:, feature], [5, 95])
        if high <= low:
            low, high = np.nanmin(data[:, feature]), np.nanmax(data[:, feature])
        shade = np.clip((data[:, feature] - low) / (high - low if high > low else 1.0), 0, 1)
        points = ax.scatter(values[:, feature], y + beeswarm_offsets(values[:, feature]),
                            c=shade, cmap=colours, vmin=0, vmax=1, s=12, linewidths=0,
                            alpha=0.9, rasterized=len(values) > 500)
    ax.set_yticks(np.arange(len(order))[::-1], [names[i] for i in order])
    ax.axvline(0, color="#999", linewidth=0.8)
    ax.set_xlabel("attribution (impact on the target)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    bar = fig.colorbar(points, ax=ax, ticks=[0, 1], aspect=40, pad=0.02)
    bar.ax.set_yticklabels(["Low", "High"])
    bar.set_label("Feature value", labelpad=-10)
    bar.outline.set_visible(False)
    fig.tight_layout()
    return fig
