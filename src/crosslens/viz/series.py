"""Time series with their attributions: one line per channel over a shaded band whose
colour at each time step is the signed attribution there (red positive, blue negative,
white 0, symmetric scale shared by the channels); without attributions, the lines alone.
Numpy + matplotlib (imported on call).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["series_figure"]


def series_figure(series: Any, attributions: Any, *, layout: str = "time_first",
                  channel_names: Sequence[str] | None = None, time: Any = None,
                  title: str | None = None, scale: float | None = None,
                  width: float = 8.0) -> Any:
    """One subplot per channel: the series as a line over its attribution as shading.

    Parameters
    ----------
    series, attributions
        One sample, ``(T, C)`` (``layout="time_first"``, Keras) or ``(C, T)``
        (``"channels_first"``, PyTorch Conv1d); ``(T,)`` for one channel. ``attributions``
        ``None`` draws the series alone (no shading, no colour bar).
    layout
        Which axis is time (see above).
    channel_names
        One name per channel.
    time
        The time stamps (default ``0..T-1``).
    title
        Figure title.
    scale
        ``|attribution|`` of the strongest colour (default the largest shown).
    width
        Figure width in inches.
    """
    from matplotlib.figure import Figure

    values = _time_first(series, layout)
    plain = attributions is None
    attr = np.zeros_like(values) if plain else _time_first(attributions, layout)
    if values.shape != attr.shape:
        raise ValueError(f"series {values.shape} and attributions {attr.shape} differ")
    steps, channels = values.shape
    stamps = np.arange(steps) if time is None else np.asarray(time, dtype=np.float64)
    names = channel_names or [f"channel {c}" for c in range(channels)]
    if scale is None:
        scale = float(np.abs(attr).max()) or 1.0
    edges = _edges(stamps)
    fig = Figure(figsize=(width, 1.3 * channels + 0.6), layout="constrained")
    axes = fig.subplots(channels, 1, sharex=True, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        low, high = values[:, c].min(), values[:, c].max()
        pad = 0.1 * (high - low) or 1.0
        if not plain:
            shading = ax.pcolormesh(edges, [low - pad, high + pad], attr[None, :, c],
                                    cmap="bwr", vmin=-scale, vmax=scale, shading="flat")
        ax.plot(stamps, values[:, c], color="black", linewidth=1.2)
        ax.set_ylabel(names[c], fontsize=8)
        ax.set_ylim(low - pad, high + pad)
    axes[-1].set_xlabel("time")
    if title:
        axes[0].set_title(title, fontsize=10)
    if not plain:
        fig.colorbar(shading, ax=list(axes), label="attribution", aspect=30)
    return fig


def _time_first(array: Any, layout: str) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    if values.ndim == 1:
        return values[:, None]
    if values.ndim != 2:
        raise ValueError(f"one sample (T, C) or (C, T) is expected; got shape {values.shape}")
    if layout not in ("time_first", "channels_first"):
        raise ValueError(f"layout must be 'time_first' or 'channels_first'; got {layout!r}")
    return values if layout == "time_first" else values.T


def _edges(stamps: np.ndarray) -> np.ndarray:
    """Cell edges around each time stamp (midpoints; half a step beyond the ends)."""
    if len(stamps) == 1:
        return np.array([stamps[0] - 0.5, stamps[0] + 0.5])
    mid = (stamps[1:] + stamps[:-1]) / 2
    return np.concatenate([[2 * stamps[0] - mid[0]], mid, [2 * stamps[-1] - mid[-1]]])
