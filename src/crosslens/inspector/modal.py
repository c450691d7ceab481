"""How each modality shows on the page: the methods offered, an instance's payload, and
an attribution's result.

- image: the picture, overlays and heatmaps (:mod:`.images`);
- text: the tokens (a tokenizer's or vocabulary's strings, else the ids), coloured by
  their signed scores with :func:`crosslens.viz.token_colors` (the front end writes them
  as text, never as HTML); the methods are :func:`crosslens.explain_text`'s;
- tabular: the features with their values, and the attribution per feature sorted by
  ``|attribution|`` (:func:`crosslens.viz.feature_order`, SHAP's colours);
- series: a line per channel (:func:`crosslens.viz.series_figure`, as PNG), shaded by the
  attribution at each time step.

Each view's :meth:`explain` returns one sample's values as the page keeps them: an image's
``(H, W)`` map (channels summed, ``Explanation.image_maps``), a text's per-token scores
``(T,)``, a table's ``(F,)`` and a series' ``(C, T)`` / ``(T, C)`` attributions.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core.registry import all_methods, get_method
from ..modalities.kinds import Modality
from .images import display_image, heatmap_png, overlay_png, picture, thumbnail
from .ondemand import JSON_KINDS

#: Text options the page shows instead of the underlying method's (explain_text sets
#: those, or names them differently): hidden ones map to None.
TEXT_OPTIONS = {"baseline": "pad", "feature_mask": None, "cut": None, "doi": None,
                "patch": None, "blur_sigma": None}
#: Series plots: width in inches and resolution.
SERIES_WIDTH, SERIES_DPI = 6.0, 80


def method_table(capabilities: frozenset[str], text: bool = False) -> list[dict]:
    """The methods a backend with ``capabilities`` runs, with their options (defaults as
    JSON, else their text); for token ids the text methods of
    :func:`crosslens.explain_text`."""
    if text:
        from ..modalities.text import TEXT_METHODS
        specs = [(name, get_method(registered)) for name, (registered, _) in
                 TEXT_METHODS.items()]
    else:
        specs = [(spec.name, spec) for spec in all_methods()]
    rows = []
    for name, spec in specs:
        if not spec.needs <= capabilities:
            continue
        defaults = spec.option_defaults()
        if text:
            defaults = {k: TEXT_OPTIONS.get(k, v) for k, v in defaults.items()
                        if k not in TEXT_OPTIONS or TEXT_OPTIONS[k] is not None}
            if name == "occlusion":
                defaults["window"] = 1
        rows.append({"name": name, "family": spec.family, "summary": spec.summary,
                     "targetless": spec.targetless,
                     "options": [_option(k, v) for k, v in defaults.items()]})
    return rows


def _option(name: str, default: Any) -> dict:
    kind = type(default).__name__ if isinstance(default, JSON_KINDS) else "other"
    shown = default if isinstance(default, JSON_KINDS) and not (
        isinstance(default, float) and not math.isfinite(default)) else repr(default)
    return {"name": name, "kind": kind, "default": shown}


def _explain(model: Any, x: np.ndarray, method: str, **settings: Any) -> Any:
    from ..api import explain
    return explain(model, x, method, **settings)


def _png(fig: Any) -> str:
    from ..viz.grid import figure_to_png_bytes
    from ..viz.html import png_data_uri
    return png_data_uri(figure_to_png_bytes(fig, dpi=SERIES_DPI))


def _range(values: np.ndarray) -> dict:
    return {"vmin": float(values.min()), "vmax": float(values.max())}


class ImageView:
    """Images: pictures, overlays and heatmaps."""

    kind = "image"

    def __init__(self, layout: str | None) -> None:
        self.layout = layout

    def display(self, sample: np.ndarray) -> np.ndarray:
        """One sample as an RGB ``(H, W, 3)`` image in ``[0, 1]``."""
        return display_image(sample, self.layout)

    def instance(self, sample: np.ndarray) -> dict:
        image = self.display(sample)
        return {"image": picture(image), "input_size": list(image.shape[:2])}

    def thumb(self, sample: np.ndarray) -> str | None:
        return thumbnail(self.display(sample))

    def methods(self, capabilities: frozenset[str]) -> list[dict]:
        return method_table(capabilities)

    def explain(self, model: Any, x: np.ndarray, method: str, **settings: Any) -> np.ndarray:
        return _explain(model, x, method, **settings).image_maps()[0]

    def result(self, sample: np.ndarray, values: np.ndarray) -> dict:
        image = self.display(sample)
        signed = bool(values.min() < 0 < values.max())
        return {"image": overlay_png(image, values, signed=signed),
                "heatmap": heatmap_png(values, signed=signed), **_range(values)}


class TextView:
    """Token ids: the tokens, coloured by their scores."""

    kind = "text"

    def __init__(self, modality: Modality) -> None:
        self.modality = modality

    def instance(self, sample: np.ndarray) -> dict:
        ids = np.asarray(sample).reshape(-1)
        return {"tokens": self.modality.token_strings(ids[None])[0],
                "token_ids": [int(t) for t in ids]}

    def thumb(self, sample: np.ndarray) -> str | None:
        return None

    def methods(self, capabilities: frozenset[str]) -> list[dict]:
        return method_table(capabilities, text=True)

    def explain(self, model: Any, x: np.ndarray, method: str, *, layer: Any = None,
                **settings: Any) -> np.ndarray:
        from ..modalities.text import explain_text
        return explain_text(model, x, method, layer=layer, **settings).scores[0]

    def result(self, sample: np.ndarray, values: np.ndarray) -> dict:
        from ..viz.tokens import token_colors
        tokens = self.modality.token_strings(np.asarray(sample).reshape(1, -1))[0]
        scale = float(np.abs(values).max()) or 1.0
        return {"tokens": [{"token": t, "score": float(v), "color": c} for t, v, c in
                           zip(tokens, values, token_colors(values, scale))],
                "scale": scale, **_range(values)}


class TabularView:
    """Feature rows: names, values and the attribution per feature."""

    kind = "tabular"

    def __init__(self, modality: Modality) -> None:
        self.names = list(modality.feature_names or ())

    def instance(self, sample: np.ndarray) -> dict:
        return {"features": [{"name": n, "value": float(v)} for n, v in
                             zip(self.names, np.asarray(sample, np.float64).reshape(-1))]}

    def thumb(self, sample: np.ndarray) -> str | None:
        return None

    def methods(self, capabilities: frozenset[str]) -> list[dict]:
        return method_table(capabilities)

    def explain(self, model: Any, x: np.ndarray, method: str, **settings: Any) -> np.ndarray:
        return np.asarray(_explain(model, x, method, **settings).numpy()[0], np.float64)

    def result(self, sample: np.ndarray, values: np.ndarray) -> dict:
        from ..viz.tabular import BLUE, RED, feature_order
        row = np.asarray(sample, np.float64).reshape(-1)
        values = np.asarray(values, np.float64).reshape(-1)
        return {"features": [{"index": int(i), "name": self.names[i], "value": float(row[i]),
                              "attribution": float(values[i]),
                              "color": RED if values[i] >= 0 else BLUE}
                             for i in feature_order(values)], **_range(values)}


class SeriesView:
    """Channels over time: line plots, shaded by the attribution."""

    kind = "series"

    def __init__(self, modality: Modality) -> None:
        self.modality = modality

    def _figure(self, sample: np.ndarray, values: np.ndarray | None) -> str:
        from ..viz.series import series_figure
        return _png(series_figure(sample, values, layout=self.modality.series_layout,
                                  channel_names=list(self.modality.channel_names or ()),
                                  width=SERIES_WIDTH))

    def instance(self, sample: np.ndarray) -> dict:
        _, steps = self.modality.series_axes()
        return {"image": self._figure(sample, None), "layout": self.modality.series_layout,
                "channel_names": list(self.modality.channel_names or ()),
                "steps": int(np.shape(sample)[steps])}

    def thumb(self, sample: np.ndarray) -> str | None:
        return None

    def methods(self, capabilities: frozenset[str]) -> list[dict]:
        return method_table(capabilities)

    def explain(self, model: Any, x: np.ndarray, method: str, **settings: Any) -> np.ndarray:
        return np.asarray(_explain(model, x, method, **settings).numpy()[0], np.float64)

    def result(self, sample: np.ndarray, values: np.ndarray) -> dict:
        return {"image": self._figure(sample, values), **_range(values)}


def make_view(modality: Modality, layout: str | None) -> Any:
    """The view of ``modality`` (``layout``: the model's image layout)."""
    if modality.kind == "text":
        return TextView(modality)
    if modality.kind == "tabular":
        return TabularView(modality)
    if modality.kind == "series":
        return SeriesView(modality)
    return ImageView(layout)
