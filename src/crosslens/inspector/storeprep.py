"""The dataset store behind the page: which layers it holds, where it lives, and making
sure it exists (computed with a progress bar when missing, resumed when interrupted,
refused when it belongs to another model or data set)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..dataset import Store, StoreError, explain_dataset, open_store

#: Most layers stored by default (the shallowest levels of the module tree that fit).
MAX_LAYERS = 40
#: Dense layers wider than this are left out by default (a flattened feature map).
MAX_UNITS = 4096
#: The method whose attributions the store keeps (the cheapest: one backward pass).
STORE_METHOD = "saliency"


def candidate_layers(shapes: dict[str, tuple[int, ...]], limit: int = MAX_LAYERS,
                     sequences: bool = False) -> list[str]:
    """Layers worth a column in the matrix, in execution order.

    Parameters
    ----------
    shapes
        ``{layer: per-sample output shape}`` (``Backend.layer_shapes``).
    limit
        Most layers: whole levels of the module tree are added, shallowest first, while
        the total stays within ``limit`` (at least the first level).
    sequences
        Also take sequence outputs ``(T, C)`` / ``(C, T)`` (text and series models).

    Returns
    -------
    list[str]
        Layers with image-like ``(C, H, W)`` / ``(H, W, C)`` or vector ``(C,)`` outputs
        (vectors of at most :data:`MAX_UNITS`), and sequences with ``sequences``, called
        once per pass.
    """
    ranks = (2, 3) if sequences else (3,)
    names = [n for n, s in shapes.items() if "#" not in n and
             (len(s) in ranks or (len(s) == 1 and s[0] <= MAX_UNITS))]

    def depth(name: str) -> int:
        return name.count(".") + name.count("/")

    chosen: list[str] = []
    for level in sorted({depth(n) for n in names}):
        upto = [n for n in names if depth(n) <= level]
        if len(upto) > limit and chosen:
            break
        chosen = upto
    return chosen[:max(limit, 1)]


def default_layer(layers: list[str], shapes: dict[str, tuple[int, ...]],
                  axes: dict[str, int]) -> str:
    """The last layer with a map (or a sequence) of more than one position, else the last.

    ``axes``: each layer's per-sample channel axis (``Backend.channel_axes``)."""
    for name in reversed(layers):
        shape = shapes.get(name, ())
        if len(shape) >= 2 and int(np.prod(shape)) > shape[axes.get(name, 0)]:
            return name
    return layers[-1]


def default_store_dir(weights: str, fingerprint: str) -> Path:
    """``$XDG_CACHE_HOME/crosslens/inspect/<weights>-<data>`` (digests shortened)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    data = fingerprint.split(":")[-1]
    return root / "crosslens" / "inspect" / f"{weights[:12]}-{data[:12]}"


def ensure_store(model: Any, source: Any, path: Path, layers: list[str] | None,
                 weights: str, *, batch_size: int | None = None, seed: int = 0,
                 progress: bool | None = None, modality: Any = None) -> Store:
    """The complete store at ``path`` for ``model`` over ``source``.

    A missing store is computed (:func:`crosslens.explain_dataset`: :data:`STORE_METHOD`
    attributions, pooled activations of ``layers``, top-9 instances per channel) for the
    data's ``modality`` (a :class:`~crosslens.modalities.Modality`; default images); an
    interrupted one is resumed. A store of another model (weights digest), data
    (fingerprint) or modality, or without the requested layers, is refused with a
    :class:`~crosslens.StoreError` naming the difference.
    """
    kind = "image" if modality is None else modality.kind
    path = Path(path)
    if (path / "manifest.json").exists():
        store = open_store(path)
        stored = store.manifest.get("model", {}).get("weights_sha256")
        if stored != weights:
            raise StoreError(f"the store {path} belongs to another model (weights digest "
                             f"{str(stored)[:12]}, this model {weights[:12]}); give another "
                             "--store / store= or delete it")
        have = store.manifest.get("data", {}).get("fingerprint")
        if have != source.fingerprint():
            raise StoreError(f"the store {path} was computed on other data (fingerprint "
                             f"{str(have)[:19]}, this data {source.fingerprint()[:19]}); give "
                             "another --store / store= or delete it")
        if store.modality["kind"] != kind:
            raise StoreError(f"the store {path} holds {store.modality['kind']} data, not "
                             f"{kind}; give another --store / store= or delete it")
        missing = sorted(set(layers or ()) - set(store.layers))
        if missing:
            raise StoreError(f"the store {path} holds the layers {store.layers}, not "
                             f"{missing}; give another --store / store=, or no layers")
        if store.complete:
            return store
        layers = store.layers
        resume = True
    else:
        resume = False
    names = {} if modality is None else {
        "modality": kind, "tokens": modality.tokens, "feature_names": modality.feature_names,
        "channel_names": modality.channel_names, "series_layout": modality.series_layout}
    return explain_dataset(model, source, [STORE_METHOD], list(layers or ()), out=path,
                           batch_size=batch_size, seed=seed, resume=resume,
                           progress=True if progress is None else progress, **names)


def pooled(store: Store, layer: str) -> np.ndarray:
    """``(N, C)`` float32 pooled (spatial mean) activations of ``layer``."""
    return np.asarray(store.activations(layer, "mean"), dtype=np.float32)
