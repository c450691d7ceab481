"""The layer views of :class:`~.session.Inspector`: the activation matrix and the
projection (numpy on the store's pooled activations, :mod:`.views`), the channel view
(Deep Visualization Toolbox) and the semantic dictionary (the model's own maps)."""
from __future__ import annotations

import numpy as np

from ..core.errors import InputError, OptionError
from . import views
from .images import TILE_SIDE, overlay_png, picture, shrink, upsample

TOP = 9
BOX_RULE = ("the 4-connected region around the maximum of the channel's map upsampled "
            "(bilinear) onto the input, where it is at least half its range")


class LayerViews:
    """Mixin of :class:`~.session.Inspector` (uses its store, instances and model)."""

    def matrix(self, layer: str, sort: str = "variance", a: str | None = None,
               b: str | None = None, subsets: list[str] | None = None) -> dict:
        """The activation matrix: per subset (rows; default: all of them) the mean of the
        store's pooled activations of each channel, the channels in ``sort`` order
        (:func:`.views.column_order`; ``difference`` of ``a`` and ``b``, by default
        :meth:`default_pair`)."""
        values = self.pooled(layer)
        if sort not in views.SORTS:
            raise OptionError(f"sort must be one of {', '.join(views.SORTS)}; got {sort!r}")
        if sort == "difference" and (a is None or b is None):
            a, b = (a or self.default_pair()[0]), (b or self.default_pair()[1])
        rows_a = self.subsets.indices(a) if a is not None else None
        rows_b = self.subsets.indices(b) if b is not None else None
        order = views.column_order(values, sort, rows_a, rows_b)
        ids = subsets if subsets is not None else self.subsets.ids()
        rows = []
        for id_ in ids:
            item = self.subsets.get(id_)
            means = views.subset_mean(values, item["indices"])[order]
            rows.append({"subset": id_, "name": item["name"], "size": int(len(item["indices"])),
                         "values": [float(f"{v:.7g}") for v in means]})  # float32 digits
        flat = [v for r in rows for v in r["values"]]
        return {"layer": layer, "sort": sort, "a": a, "b": b,
                "order": [int(c) for c in order], "rows": rows,
                "vmin": float(min(flat)) if flat else 0.0,
                "vmax": float(max(flat)) if flat else 0.0}

    def projection(self, layer: str, method: str = "pca") -> dict:
        """2-D points of every data-set instance's pooled activations (``"pca"``: numpy,
        with the explained variance ratios; ``"umap"``: umap-learn, seeded), cached."""
        values = self.pooled(layer)
        if method not in views.PROJECTIONS:
            raise OptionError(f"method must be one of {', '.join(views.PROJECTIONS)}; got "
                              f"{method!r}")
        key = (layer, method)
        with self._lock:
            if key in self._projections:
                return self._projections[key]
        if method == "pca":
            points, ratio = views.pca(values)
            explained = [float(r) for r in ratio]
        else:  # seconds: computed outside the lock, so other views are not held up
            points, explained = views.umap_points(values, self.seed), None
        labels, preds = self.instances.labels, self.instances.predictions
        result = {"layer": layer, "method": method,
                  "points": np.round(points, 6).tolist(), "label": labels.tolist(),
                  "prediction": preds.tolist(),
                  "correct": ((labels >= 0) & (labels == preds)).tolist(),
                  "explained_variance": explained}
        with self._lock:
            return self._projections.setdefault(key, result)

    def channel(self, layer: str, channel: int, index: int) -> dict:
        """The channel view: the channel's map on instance ``index`` over the input, the
        store's top-9 instances (largest maximum) with the box of their activating region
        (:data:`BOX_RULE`), and the channel's feature visualization status (image data
        only)."""
        self.require_image("channel view")
        layer = self.check_layer(layer)
        channel = self.check_channel(layer, channel)
        maps, _ = self.channel_maps(self.maps(index, layer))
        image = self.instances.display(index)
        size = image.shape[:2]
        ids, values, positions = self.store.top_k(layer, channel, TOP)
        top = []
        if len(ids):
            acts = self.activations(self.instances.samples(ids), layer)
            for j, (i, value, position) in enumerate(zip(ids, values, positions)):
                heat = upsample(self.channel_maps(acts[j])[0][channel], size)
                top.append({"index": int(i), "value": float(value), "position": int(position),
                            "box": views.region_box(heat),
                            "image": picture(shrink(self.instances.display(int(i)),
                                                    TILE_SIDE))})
        return {"layer": layer, "channel": channel, "index": int(index),
                "input_size": list(size), "box_rule": BOX_RULE,
                "activation_map": overlay_png(image, maps[channel], signed=False),
                "value_range": [float(maps[channel].min()), float(maps[channel].max())],
                "top": top, "featurevis": self.featurevis.status(layer, channel)}

    def dictionary(self, layer: str, index: int, y: int, x: int, k: int = 6) -> dict:
        """The semantic dictionary at ``(y, x)`` of the layer's map on instance ``index``:
        the ``k`` channels with the largest activation there, largest first (image data
        only)."""
        self.require_image("semantic dictionary")
        layer = self.check_layer(layer)
        maps, grid = self.channel_maps(self.maps(index, layer))
        if not (0 <= y < grid[0] and 0 <= x < grid[1]):
            raise InputError(f"position (y={y}, x={x}) is outside the {grid[0]}x{grid[1]} "
                             f"map of layer {layer!r}")
        if not 1 <= k <= maps.shape[0]:
            raise InputError(f"k must be in 1..{maps.shape[0]} (the layer's channels)")
        values = maps[:, y, x]
        top = views.top_channels(values, k)
        return {"layer": layer, "index": int(index), "position": [int(y), int(x)],
                "grid": list(grid),
                "channels": [{"channel": int(c), "value": float(values[c]),
                              "featurevis": self.featurevis.status(layer, int(c))}
                             for c in top]}
