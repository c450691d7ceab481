"""The result of :func:`crosslens.explain`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import to_channels_last, to_numpy
from .errors import UnsupportedError
from .figures import Drawable, renderer


@dataclass
class Explanation(Drawable):
    """Attributions for a batch, with what is needed to show them.

    Attributes
    ----------
    attributions
        Raw, signed attributions in the input's own layout and array type (a torch
        tensor in gives a torch tensor out on the same device; numpy gives numpy). For
        layer methods (``layer=...``) they are in the layer's layout.
    inputs
        The input batch as given.
    method
        Registered name of the method that produced the attributions.
    target
        The explained target: class indices per sample (``"predicted"`` is resolved),
        or a description of a neuron / channel / callable target.
    layout
        ``"channels_first"``, ``"channels_last"`` or ``None`` (non-image input).
    layer
        Name of the layer whose values are attributed / shown, if any.
    outputs
        The model's outputs on ``inputs`` as numpy, when the method computed them.
    info
        Method-specific extras (e.g. integration rule, steps, noise level).
    """

    attributions: Any
    inputs: Any
    method: str
    target: Any = None
    layout: str | None = None
    layer: str | None = None
    outputs: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    # --- data ---------------------------------------------------------------------
    def numpy(self) -> Any:
        """Attributions as a numpy array, in the input's layout (for several inputs, the
        same tuple / list / dict of numpy arrays)."""
        if isinstance(self.attributions, dict):
            return {k: to_numpy(v) for k, v in self.attributions.items()}
        if isinstance(self.attributions, (tuple, list)):
            return type(self.attributions)(to_numpy(v) for v in self.attributions)
        return to_numpy(self.attributions)

    def image_maps(self, reduce: str = "sum") -> np.ndarray:
        """Attributions as ``(N, H, W)`` maps for display, channels reduced by ``reduce``.

        Maps that are already 2-D per sample (CAMs, or attributions computed with
        ``reduce_channels=``) are returned as they are. Attributions that are exactly
        equal in every channel, for every sample, are one map broadcast over the
        channels (RISE, occlusion and feature ablation with full-depth windows): they
        are reduced as that single channel, so ``"sum"`` gives the map itself, not
        ``C`` times it (``"l2"`` / ``"abs_sum"`` give its absolute value).
        """
        from .imageops import is_channel_broadcast, reduce_channels

        if isinstance(self.attributions, (tuple, list, dict)):
            raise UnsupportedError("these attributions are for several inputs; draw one "
                                   "input's maps from exp.numpy() (a tuple / dict per input)")
        attr = to_numpy(self.attributions).astype(np.float64)
        if attr.ndim == 3:
            return attr  # (N, H, W) maps
        if attr.ndim == 4:
            attr = to_channels_last(attr, self.layout)
            if is_channel_broadcast(attr):  # one map per sample, copied over channels
                attr = attr[..., :1]
            return np.stack([reduce_channels(a, reduce) for a in attr])
        raise UnsupportedError(f"attributions of shape {attr.shape} are not image maps; use "
                               "exp.numpy() for the values")

    def images(self) -> np.ndarray:
        """The inputs as ``(N, H, W, C)`` numpy images (layout converted by transpose)."""
        return to_channels_last(to_numpy(self.inputs), self.layout)

    # --- seeing -------------------------------------------------------------------
    def figure(self, *, reduce: str = "sum", signed: bool | None = None,
               cmap: str | None = None, alpha: float = 0.6, labels: Any = None,
               scale: str = "auto", outlier_perc: float = 2.0, colorbar: bool = True):
        """A matplotlib figure: each input next to its attribution overlay.

        Parameters
        ----------
        reduce
            Channel reduction of :meth:`image_maps`.
        signed
            Diverging (True: zero at the neutral colour) or sequential (False)
            colours; None decides from each map.
        cmap
            Colormap name (default ``"bwr"`` signed, ``"inferno"`` unsigned).
        alpha
            Opacity of the overlay where the display saturates.
        labels
            Class names, indexed by target class, for the row titles.
        scale
            Display scaling per map (``crosslens.viz.display_scale``): ``"auto"``
            (min-max for a map with an offset, such as RISE's, else
            ``"percentile"``), ``"percentile"`` (Captum's ``outlier_perc`` clipping),
            ``"max_abs"`` or ``"minmax"``. Only the display changes, never
            :attr:`attributions`.
        outlier_perc
            Percent of the ``|a|`` mass that saturates with ``"percentile"``
            (Captum's default 2).
        colorbar
            Show a colour bar with the value range mapped to colours.
        """
        if self.method == "activations":
            return self._activation_figure()
        viz = renderer()

        maps, images = self.image_maps(reduce), self.images()
        cells, row_titles = [], []
        for i, (image, amap) in enumerate(zip(images, maps)):
            cells.append([image, viz.Cell("overlay", image=image, attribution=amap, signed=signed,
                                      cmap=cmap, alpha=alpha, scale=scale,
                                      outlier_perc=outlier_perc)])
            row_titles.append(_label(self.target, i, labels))
        return viz.figure_grid(cells, titles=None, row_titles=row_titles,
                           col_titles=["input", self.method], colorbar=colorbar)

    def _activation_figure(self):
        viz = renderer()

        acts = to_numpy(self.attributions)
        acts = to_channels_last(acts, self.layout) if acts.ndim in (3, 4) else acts
        cells = [[viz.activation_grid(a)] for a in acts]
        return viz.figure_grid(cells, titles=None, col_titles=[f"activations of {self.layer}"])

    def caption(self) -> str:
        return f"{self.method} — target {self.target}"

    def __repr__(self) -> str:
        def describe(value: Any) -> str:
            kind = type(value).__module__.split(".")[0]
            return f"{kind} array of shape {tuple(getattr(value, 'shape', ()))}"

        values = self.attributions
        if isinstance(values, dict):
            text = "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in values.items()) + "}"
        elif isinstance(values, (tuple, list)):
            text = "(" + ", ".join(describe(v) for v in values) + ")"
        else:
            text = describe(values)
        return (f"Explanation(method={self.method!r}, target={self.target!r}, "
                f"attributions={text}"
                + (f", layer={self.layer!r}" if self.layer else "") + ")")


def _label(target: Any, i: int, labels: Any) -> str:
    value = target[i] if isinstance(target, (list, tuple)) else target
    if labels is not None and isinstance(value, (int, np.integer)):
        return f"{value}: {labels[int(value)]}"
    return f"target {value}"
