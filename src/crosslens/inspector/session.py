"""The data layer of the inspection page: one model, one data set, one store.

:class:`Inspector` makes sure the dataset store exists (pooled activations per layer,
top-9 instances per channel, predictions and labels), and computes every view of the
JSON API (notes/inspect_api.md) as plain JSON-able dicts: subsets, the activation matrix,
the projection, instances, attributions (cached in the store's ``inspector/`` folder),
channel views, semantic dictionaries, neuron groups and group flow. Images, token ids
(text), tables and series are shown by their view (:mod:`.modal`); the views that need a
spatial map of an image input (channel, building blocks, feature visualization, uploads)
answer other modalities with a :class:`~crosslens.ModalityError` (422). The web app
(:mod:`crosslens.inspector.app`) and the static export call these methods and nothing
else. All model work holds the model's lock; numbers come from numpy on the store's
arrays or from the model's own passes.
"""
from __future__ import annotations

import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import get_backend
from ..core.errors import InputError, LayerNotFoundError, ModalityError, TargetError
from ..core.names import unknown_name_message
from ..core.targets import predicted_classes
from ..dataset.sources import open_source
from ..modalities.kinds import Vocabulary, resolve_modality
from .blocks import BlockViews, positions_last
from .cache import DiskCache
from .fvis import DEFAULT_STEPS, FeatureVisualizer
from .frames import read_frames
from .instances import Instances, decode_image
from .jobs import JobQueue
from .layerviews import LayerViews
from .modal import make_view, method_table  # noqa: F401  (method_table: kept importable)
from .ondemand import OnDemand
from .storeprep import (candidate_layers, default_layer, default_store_dir, ensure_store,
                        pooled)
from .subsets import Subsets



class Inspector(LayerViews, BlockViews, OnDemand):
    """Everything the inspection page shows about ``model`` over ``data``.

    Parameters
    ----------
    model
        A PyTorch or Keras model, or a path / ``module:callable`` (as for
        :func:`crosslens.explain`; an ``.onnx`` file shows the ONNX graph).
    data
        Anything :func:`crosslens.dataset.sources.open_source` reads (arrays, ``.npy``,
        image folders, ``"digits"``, ...), in the model's layout.
    store
        The store's directory; default ``~/.cache/crosslens/inspect/<weights>-<data>``.
        Computed (with a progress bar) when missing.
    layers
        Layers kept in the store (default: :func:`~.storeprep.candidate_layers`).
    labels, size, preprocess
        As for :func:`crosslens.explain_dataset`. ``preprocess`` (a ``--preprocess``
        name) also normalizes uploaded images and frames, and the feature visualizations.
    class_names
        Names of the model's classes (default: the data set's, else the indices).
    frames
        A folder of images, an animated image or a short video file, whose frames are
        appended as instances for the Live view.
    seed
        Seed of NMF, UMAP, feature visualization and the random methods.
    featurevis_steps
        Steps of a feature visualization that is not a preview.
    progress
        Progress bar while the store is computed (default: shown).
    modality
        ``"image"``, ``"text"`` (token ids ``(N, T)``), ``"tabular"`` (``(N, F)``),
        ``"series"`` (``(N, C, T)`` / ``(N, T, C)``), or ``None``: detected from the
        samples (:func:`crosslens.modalities.resolve_modality`).
    tokens
        Text: a tokenizer or a vocabulary (a dict id -> token, a list indexed by id) to
        show the ids (default the store's vocabulary, else the ids).
    feature_names, channel_names, series_layout
        Tabular: one name per feature. Series: one name per channel, and
        ``"channels_first"`` / ``"time_first"`` (default from the model).
    """

    def __init__(self, model: Any, data: Any, store: str | Path | None = None, *,
                 layers: list[str] | None = None, labels: Any = None,
                 size: int | tuple[int, int] | None = None, preprocess: str | None = None,
                 class_names: list[str] | None = None, frames: str | Path | None = None,
                 seed: int = 0, featurevis_steps: int = DEFAULT_STEPS,
                 batch_size: int | None = None, progress: bool | None = None,
                 name: str | None = None, modality: str | None = None, tokens: Any = None,
                 feature_names: list[str] | None = None,
                 channel_names: list[str] | None = None,
                 series_layout: str | None = None) -> None:
        from ..api import _model
        self.onnx_path = model if isinstance(model, str) and model.lower().endswith(".onnx") \
            else None
        self.name = name or (Path(model).name if isinstance(model, str) else
                             type(model).__name__)
        self.model = _model(model)
        self.backend = get_backend(self.model)
        self.framework = "onnx" if self.onnx_path else self.backend.name
        self.seed = int(seed)
        self.channels_first = self.backend.layer_layout == "channels_first"
        self.source = open_source(data, layout=self.backend.layout, labels=labels,
                                  size=(size, size) if isinstance(size, int) else size,
                                  preprocess=preprocess)
        self.data_name = getattr(self.source, "name", "data")
        self.normalization = None
        if preprocess is not None:
            from ..dataset.sources.common import _normalization
            self.normalization = _normalization(preprocess)
        self.weights = self.backend.weights_digest()
        x1 = self.source.read(0, 1)[0]
        self.modality = resolve_modality(modality, x1.shape[1:], x1.dtype, self.backend,
                                         tokens=tokens, feature_names=feature_names,
                                         channel_names=channel_names,
                                         series_layout=series_layout)
        with self.backend.session():
            native = self.backend.prepare(x1)
            self.shapes = self.backend.layer_shapes(native)
            self.axes = self.backend.channel_axes(native)
            self.n_outputs = int(self.backend.ops.shape(self.backend.forward(native))[1])
        path = Path(store) if store is not None else default_store_dir(
            self.weights, self.source.fingerprint())
        wanted = list(layers) if layers else None
        if wanted is None and not (path / "manifest.json").exists():
            wanted = candidate_layers(self.shapes,
                                      sequences=self.modality.kind in ("text", "series"))
        self.store = ensure_store(self.model, self.source, path, wanted, self.weights,
                                  batch_size=batch_size, seed=self.seed, progress=progress,
                                  modality=self.modality)
        vocabulary = self.store.modality.get("vocabulary")
        if self.modality.kind == "text" and tokens is None and vocabulary:
            self.modality = resolve_modality("text", x1.shape[1:], x1.dtype,
                                             tokens=Vocabulary({int(k): v for k, v in
                                                                vocabulary.items()}))
        self.view = make_view(self.modality, self.backend.layout)
        self.layers = list(self.store.layers)
        self.default_layer = default_layer(self.layers, self.shapes, self.axes)
        self.cache = DiskCache(self.store.path / "inspector")
        names = class_names or self.store.manifest.get("class_names") or None
        self.class_names = [str(n) for n in names] if names else None
        self.instances = Instances(self.source, self.store.column("labels"),
                                   self.store.column("predictions"), self.backend.layout,
                                   self.normalization, self.view)
        self.subsets = Subsets(self.instances.labels, self.instances.predictions,
                               self.class_name, self.store.path / "inspector" / "subsets.json")
        self.featurevis = FeatureVisualizer(self.model, self.backend, self.cache, self.weights,
                                            tuple(self.source.sample_shape),
                                            self.normalization, featurevis_steps, self.seed)
        self.jobs = JobQueue()
        self._pooled: dict[str, np.ndarray] = {}
        self._projections: dict[tuple, dict] = {}
        self._maps: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self._graph: dict | None = None
        if frames is not None:
            self.require_image("Live view's frames (--frames)")
            for name, pixels in read_frames(frames):
                self.instances.add(pixels, name, "frame", self.predict)

    # --- names and checks -----------------------------------------------------------------
    def class_name(self, c: int) -> str:
        if self.class_names and 0 <= c < len(self.class_names):
            return self.class_names[c]
        return str(c)

    def check_layer(self, layer: Any) -> str:
        if not isinstance(layer, str) or layer not in self.layers:
            raise LayerNotFoundError(unknown_name_message("layer", str(layer), self.layers)
                                     + " (the layers in the store)")
        return layer

    def channel_count(self, layer: str) -> int:
        shape = self.shapes[layer]
        return int(shape[self.axes.get(layer, 0)]) if shape else 1

    def require_image(self, view: str) -> None:
        """Refuse (:class:`~crosslens.ModalityError`, 422) a view that needs image inputs
        (a spatial map on the input) for text, tabular or series data."""
        if self.modality.kind != "image":
            raise ModalityError(f"the {view} needs image inputs (a channel's spatial map "
                                f"on the input); this data set is {self.modality.kind}: use "
                                "the instance view, the activation matrix and the projection")

    def check_channel(self, layer: str, channel: Any) -> int:
        count = self.channel_count(layer)
        if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) \
                or not 0 <= channel < count:
            raise InputError(f"channel {channel!r} is out of range: layer {layer!r} has "
                             f"channels 0..{count - 1}")
        return int(channel)

    def check_class(self, c: Any) -> int:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) \
                or not 0 <= c < self.n_outputs:
            raise TargetError(f"class {c!r} is out of range: the model has classes "
                              f"0..{self.n_outputs - 1}")
        return int(c)

    def target_class(self, index: int, target: Any) -> int:
        """The class explained for instance ``index``: ``"predicted"``, ``"label"`` or an
        int."""
        if target is None or target == "predicted":
            return self.instances.prediction(index)
        if target == "label":
            label = self.instances.label(index)
            if label < 0:
                raise TargetError(f"instance {index} has no label; use target='predicted' "
                                  "or a class index")
            return label
        if isinstance(target, str) and target.lstrip("-").isdigit():
            target = int(target)
        if isinstance(target, str):
            raise TargetError(f"target must be 'predicted', 'label' or a class index; got "
                              f"{target!r}")
        return self.check_class(target)

    # --- session, graph ---------------------------------------------------------------------
    def session(self) -> dict:
        """``GET /api/session``: model, data set, layers, methods, store, settings."""
        layers = []
        for name in self.layers:
            obj_type = type(self.backend.layer_object(name)).__name__
            layers.append({"name": name, "type": obj_type, "shape": list(self.shapes[name]),
                           "channels": self.channel_count(name)})
        classes = [self.class_name(c) for c in range(self.n_outputs)]
        a, b = self.default_pair()
        return {
            "model": {"name": self.name, "framework": self.framework,
                      "input_shape": list(self.source.sample_shape), "classes": classes},
            "dataset": {"name": self.data_name, "size": self.instances.size,
                        "has_labels": bool((self.instances.labels >= 0).all()),
                        "modality": self.modality.kind},
            "modality": self.modality.describe(),
            "layers": layers, "default_layer": self.default_layer,
            "default_difference": [a, b],
            "methods": self.view.methods(self.backend.capabilities()),
            "store": str(self.store.path), "export": False,
            "featurevis": self.featurevis.settings()}

    def graph(self) -> dict:
        """``GET /api/graph`` (:func:`.graph.model_graph`, computed once)."""
        if self._graph is None:
            from .graph import model_graph
            self._graph = model_graph(self.model, self.backend, self.source.read(0, 1)[0],
                                      self.onnx_path)
        return self._graph

    # --- instances and subsets ----------------------------------------------------------------
    def default_pair(self) -> tuple[str, str]:
        """The two subsets the difference sort compares by default: the first two true
        classes (else predicted classes, else everything twice)."""
        ids = self.subsets.ids()
        for prefix in ("label:", "pred:"):
            found = [i for i in ids if i.startswith(prefix)]
            if len(found) >= 2:
                return found[0], found[1]
        return "all", "all"

    def instance_list(self, subset: str = "all", offset: int = 0, limit: int = 100) -> dict:
        """One page of a subset's instances (index, label, prediction, thumbnail)."""
        indices = self.subsets.indices(subset)
        if offset < 0 or not 1 <= limit <= 1000:
            raise InputError("offset must be >= 0 and limit in 1..1000")
        page = indices[offset:offset + limit]
        return {"total": int(len(indices)), "offset": offset,
                "items": [self.instances.item(int(i)) for i in page]}

    def instance(self, index: int) -> dict:
        """Instance ``index``: label, top-5 classes (model probabilities) and how it shows
        (an image's picture, a text's tokens, a table row's features, a series' plot:
        :mod:`.modal`)."""
        index = self.instances.check(index)
        sample = self.instances.sample(index)
        outputs, final = self.outputs(sample)
        probabilities = probabilities_of(outputs[0], final)
        top = np.argsort(-probabilities, kind="stable")[:5]
        label = self.instances.label(index)
        return {"index": index, "modality": self.modality.kind,
                "name": self.instances.name(index),
                "label": label, "label_name": self.class_name(label) if label >= 0 else None,
                "prediction": self.instances.prediction(index),
                "top5": [{"class": int(c), "name": self.class_name(int(c)),
                          "p": float(probabilities[c])} for c in top],
                **self.view.instance(sample[0])}

    def outputs(self, x: np.ndarray) -> tuple[np.ndarray, str | None]:
        """The model's outputs on ``x`` and what its last operation is (``"sigmoid"``,
        ``"linear"`` or ``None``, :meth:`Backend.output_activation`)."""
        with self.backend.session():
            native = self.backend.prepare(x)
            outputs = self.backend.ops.to_numpy(self.backend.forward(native))
            return np.asarray(outputs, np.float64), self.backend.output_activation()

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted classes of a batch, as the store computes them."""
        return predicted_classes(*self.outputs(x))

    def add_image(self, data: bytes, name: str, kind: str = "upload") -> int:
        """Decode an image file (Pillow, images only) and append it as an instance."""
        self.require_image("upload of an image")
        return self.instances.add(decode_image(data), name, kind, self.predict)

    # --- layer views ------------------------------------------------------------------------
    def pooled(self, layer: str) -> np.ndarray:
        layer = self.check_layer(layer)
        with self._lock:
            if layer not in self._pooled:
                self._pooled[layer] = pooled(self.store, layer)
            return self._pooled[layer]

    def maps(self, index: int, layer: str) -> np.ndarray:
        """Instance ``index``'s values at ``layer``, per sample, in the layer's layout."""
        index, layer = self.instances.check(index), self.check_layer(layer)
        key = (index, layer)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
        value = self.activations(self.instances.sample(index), layer)[0]
        with self._lock:
            self._maps[key] = value
            while len(self._maps) > 256:
                self._maps.popitem(last=False)
        return value

    def activations(self, x: np.ndarray, layer: str) -> np.ndarray:
        with self.backend.session():
            native = self.backend.prepare(x)
            values = self.backend.activations(native, [layer])[layer]
            return np.asarray(self.backend.ops.to_numpy(values), np.float32)

    def channel_maps(self, act: np.ndarray) -> tuple[np.ndarray, tuple]:
        """``(C, h, w)`` maps of one sample's layer values (``(C, 1, 1)`` for vectors)."""
        flat, grid = positions_last(act, self.channels_first)
        return flat.T.reshape((flat.shape[1],) + tuple(grid)), tuple(grid)

def probabilities_of(outputs: np.ndarray, final: str | None) -> np.ndarray:
    """Class probabilities from one sample's outputs: the outputs themselves when they
    already are (non-negative, summing to 1), else their softmax; one sigmoid output
    gives ``[1 - p, p]``."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(-1)
    if outputs.size == 1:
        p = float(outputs[0]) if final == "sigmoid" else 1.0 / (1.0 + math.exp(-outputs[0]))
        return np.array([1.0 - p, p])
    if (outputs >= 0).all() and abs(outputs.sum() - 1.0) < 1e-4:
        return outputs
    shifted = np.exp(outputs - outputs.max())
    return shifted / shifted.sum()
