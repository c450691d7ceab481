"""The Building Blocks (Olah et al. 2018): neuron groups of a layer by non-negative matrix
factorization of one instance's activations, each group's attribution to a class, and
the attribution from the groups of one layer to the groups of a later one.

A layer's activations ``A (positions, channels)`` (negative values clipped to 0: NMF
needs non-negative data, and the layers worth grouping follow a ReLU) factorize as
``A ≈ W H`` (:func:`crosslens.inspector.nmf.nmf`). Group ``g`` is the rank-one part
``W[:, g] H[g]``: a spatial map and a direction in channel space.

Attribution of a group to a score ``s`` is gradient x activation restricted to the group:
``sum over positions p and channels c of ds/dA[p, c] * W[p, g] H[g, c]``. Groups'
attributions add up to gradient x activation of the whole (factorized) layer, the
Building Blocks' linear approximation.

Group flow from layer 1 to layer 2: the score of a group ``j`` of layer 2 is its
factorized activation read through its own parts, ``s_j = sum_{p,c} W2[p, j] H2[j, c]
A2[p, c]``, and the flow from group ``i`` of layer 1 is its attribution to ``s_j``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError
from ..core.targets import ClassTarget
from . import views
from .images import PALETTE, TILE_SIDE, picture, shrink, tinted, upsample
from .nmf import nmf

#: Most groups (one colour each).
MAX_K = 12


def positions_last(act: np.ndarray, channels_first: bool) -> tuple[np.ndarray, tuple]:
    """One sample's ``(C, h, w)`` / ``(h, w, C)`` / ``(C,)`` values as ``(h*w, C)`` and
    the map's ``(h, w)``."""
    act = np.asarray(act, dtype=np.float64)
    if act.ndim == 1:
        return act[None], (1, 1)
    if channels_first:
        act = np.moveaxis(act, 0, -1)
    return act.reshape(-1, act.shape[-1]), act.shape[:2]


def native_layout(values: np.ndarray, grid: tuple, channels_first: bool,
                  shape: tuple) -> np.ndarray:
    """``(h*w, C)`` values back in the layer's per-sample layout ``shape``."""
    if len(shape) == 1:
        return values.reshape(shape)
    maps = values.reshape(grid + (values.shape[1],))
    return np.moveaxis(maps, -1, 0) if channels_first else maps


def factorize(act: np.ndarray, channels_first: bool, k: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(W (positions, k), H (k, C), (h, w))`` of one sample's activations."""
    flat, grid = positions_last(act, channels_first)
    w, h = nmf(np.maximum(flat, 0.0), k, seed=seed)
    return w, h, grid


def group_attribution(grad: np.ndarray, w: np.ndarray, h: np.ndarray,
                      channels_first: bool) -> np.ndarray:
    """``(k,)``: gradient x activation of each group (see the module docstring)."""
    g, _ = positions_last(grad, channels_first)
    return np.einsum("pc,pg,gc->g", g, w, h)


def layer_gradient(backend: Any, x: np.ndarray, layer: str, target: Any
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(activation, gradient)`` of one sample at ``layer`` for a backend ``target``."""
    with backend.session():
        native = backend.prepare(x)
        result = backend.gradient(native, target, wrt=layer, capture=[layer])
        act = backend.ops.to_numpy(result.activations[layer])[0]
        grad = backend.ops.to_numpy(result.grad)[0]
    return act, grad


def class_target(cls: int) -> ClassTarget:
    return ClassTarget(np.array([int(cls)], dtype=np.int64))


def flow(backend: Any, x: np.ndarray, first: tuple, second: tuple, channels_first: bool
         ) -> np.ndarray:
    """``(k1, k2)`` attribution from the groups of layer 1 to those of layer 2.

    ``first`` / ``second``: ``(layer, W, H, grid, per-sample shape)``.
    """
    from ..featurevis.objectives import build_target, custom

    layer1, w1, h1, _, _ = first
    layer2, w2, h2, grid2, shape2 = second
    columns = []
    for j in range(h2.shape[0]):
        weight = native_layout(np.outer(w2[:, j], h2[j]), grid2, channels_first, shape2)

        def score(ops, acts, outputs, weight=weight[None].astype(np.float32)):
            a = acts[layer2]
            return ops.sum(ops.reshape(a * ops.asarray(weight), (1, -1)), axis=1)

        target = build_target(custom(score, [layer2], name=f"group {j} of {layer2}"),
                              backend.resolve_layer, channels_first, 1)
        _, grad = layer_gradient(backend, x, layer1, target)
        columns.append(group_attribution(grad, w1, h1, channels_first))
    return np.stack(columns, axis=1)


class BlockViews:
    """Mixin of :class:`~.session.Inspector`: neuron groups and group flow as the API
    returns them."""

    def _groups(self, layer: str, index: int, k: int) -> tuple:
        self.require_image("building blocks view (neuron groups)")
        layer = self.check_layer(layer)
        act = self.maps(index, layer)
        positions = int(np.prod(self.channel_maps(act)[1]))
        limit = min(MAX_K, positions, self.channel_count(layer))
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= limit:
            raise InputError(f"k must be an integer in 1..{limit} for layer {layer!r}")
        w, h, grid = factorize(act, self.channels_first, int(k), self.seed)
        return layer, w, h, grid, tuple(np.shape(act))

    def groups(self, layer: str, index: int, k: int = 4, target: Any = "predicted") -> dict:
        """``k`` neuron groups of ``layer`` on instance ``index``: coloured maps, the
        dominant group per position, top channels, direction, attribution to ``target``
        (gradient x activation of the group's rank-one part)."""
        index = self.instances.check(index)
        cls = self.target_class(index, target)
        layer, w, h, grid, _ = self._groups(layer, index, k)
        _, grad = layer_gradient(self.backend, self.instances.sample(index), layer,
                                 class_target(cls))
        attribution = group_attribution(grad, w, h, self.channels_first)
        image = self.instances.display(index)
        size = image.shape[:2]
        heat = np.stack([upsample(w[:, g].reshape(grid), size) for g in range(w.shape[1])])
        peak = heat.max() if heat.size and heat.max() > 0 else 1.0
        dominant = heat.argmax(axis=0)
        blend = image.copy()
        for g in range(w.shape[1]):
            blend = tinted(blend, np.where(dominant == g, heat[g] / peak, 0.0), PALETTE[g])
        items = []
        for g in range(w.shape[1]):
            gmax = heat[g].max() if heat[g].max() > 0 else 1.0
            # The page asks for the group's visualization with the direction it was sent,
            # so the cache key must come from the same rounded numbers.
            direction = [round(float(v), 6) for v in h[g]]
            items.append({
                "id": g, "color": PALETTE[g], "attribution": float(attribution[g]),
                "map": picture(shrink(tinted(image, heat[g] / gmax, PALETTE[g]), TILE_SIDE)),
                "channels": [int(c) for c in views.top_channels(h[g], 5)],
                "direction": direction,
                "featurevis": self.featurevis.status(layer, np.asarray(direction))})
        return {"layer": layer, "index": index, "k": int(w.shape[1]), "target": cls,
                "attribution_rule": "gradient x activation of each group's rank-one part",
                "groups": items, "overlay": picture(blend)}

    def group_flow(self, layer: str, to: str, index: int, k: int = 4) -> dict:
        """The ``(k, k)`` attribution from the groups of ``layer`` to those of the later
        layer ``to`` on instance ``index`` (see :func:`flow`)."""
        index = self.instances.check(index)
        first = self._groups(layer, index, k)
        second = self._groups(to, index, k)
        if self.layers.index(first[0]) >= self.layers.index(second[0]):
            raise InputError(f"group flow goes from an earlier layer to a later one; "
                             f"{layer!r} does not come before {to!r}")
        matrix = flow(self.backend, self.instances.sample(index), first, second,
                      self.channels_first)

        def describe(groups):
            return [{"id": g, "color": PALETTE[g],
                     "channels": [int(c) for c in views.top_channels(groups[2][g], 5)]}
                    for g in range(groups[2].shape[0])]
        return {"from": describe(first), "to": describe(second), "layer": first[0],
                "to_layer": second[0], "index": index,
                "matrix": [[float(v) for v in row] for row in matrix]}
