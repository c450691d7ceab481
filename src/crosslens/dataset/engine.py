"""The local engine: explain a whole data set into a store, shard by shard, resumably.

A shard is ``batch_size`` consecutive samples. For each shard the engine runs one
forward pass (predictions, top-k outputs, the explained class's score), reads the
requested layers (pooled per channel: mean, max and where the max is), and explains it
with every requested method through :func:`crosslens.explain` — so the store equals
``cl.explain`` sample by sample. Methods whose random draws depend on the batch
(registry flag ``batch_coupling="draws"``: SmoothGrad and the noise family, GradientSHAP,
LIME) run one sample at a time with a seed derived from ``(seed, sample id)``, so no
result depends on how the data is cut into shards or which engine runs it; methods that
compare the samples of a batch (feature permutation) are refused.

Any modality (:mod:`crosslens.modalities.kinds`): images, feature tables ``(N, F)``,
series ``(N, C, T)`` / ``(N, T, C)``, and token ids ``(N, T)`` of text models, whose methods
are the text methods of :func:`crosslens.explain_text` (gradient methods attribute at
the embedding) and whose stored attributions are its per-token scores ``(N, T)``. Layer
activations are pooled over every position but the layer's channel axis
(``Backend.channel_axes``: maps, sequences of either layout, vectors).

A shard's arrays are written first and its marker (``shards/<k>.done``) last, atomically:
a run killed at any moment leaves whole shards and at most one shard without its marker,
which ``resume=True`` recomputes. Reductions and the table are written when every shard
is done, from the stored shards, so a resumed run ends with the same store as an
uninterrupted one.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.chunking import parse_budget
from ..core.errors import OptionError, UnsupportedError
from ..core.progress import progress_bar, wanted
from ..core.registry import get_method
from ..core.targets import predicted_classes
from .store import FORMAT, Store, StoreWriter, write_json_atomic

DEFAULT_SHARD = 32


def explain_dataset(model: Any, data: Any, methods: Any = ("saliency",),
                    layers: Sequence[str] = (), *, target: Any = "predicted",
                    out: str | os.PathLike = "runs/run", engine: str = "local",
                    batch_size: int | None = None, seed: int = 0, resume: bool = False,
                    labels: Any = None, size: tuple[int, int] | None = None,
                    preprocess: str | None = None, top_k: int = 5,
                    top_activations: int = 9, float16: bool = False,
                    full_maps: bool = False, memory_budget: Any = None,
                    progress: bool | None = None, address: str | None = None,
                    workers: int = 2, modality: str | None = None, tokens: Any = None,
                    feature_names: Sequence[str] | None = None,
                    channel_names: Sequence[str] | None = None,
                    series_layout: str | None = None) -> Store:
    """Explain every sample of ``data`` with ``methods`` into a store at ``out``.

    Parameters
    ----------
    model
        A PyTorch or Keras model.
    data
        A numpy array or memmap, a ``.npy`` / ``.npz`` path, a PyTorch ``Dataset`` /
        ``DataLoader``, a ``tf.data.Dataset``, an image folder (sub-folders = classes),
        or a bundled set by name: ``"digits"``, ``"clever_hans"``, ``"photos"``
        (:mod:`crosslens.dataset.sources`).
    methods
        Method names, ``(name, options)`` pairs, or a ``{name: options}`` mapping; for
        text, methods of :func:`crosslens.explain_text` (with its options: ``baseline``,
        ``pad_id``, ``keep_ids``, ``embedding``, ...).
    layers
        Layers whose activations are stored (pooled per channel; ``full_maps`` keeps the
        maps too, whose size is printed before the run).
    target
        ``"predicted"`` (each sample's predicted class), ``"label"`` (its label) or a
        class index.
    out
        The store's directory.
    engine
        ``"local"`` (this process) or ``"ray"``: ``workers`` Ray actors, each loading the
        model once, explain shards and write them into the store (which must then be on a
        file system every worker sees). Without ``address`` a local Ray cluster is
        started (127.0.0.1, ``workers`` CPUs) and stopped afterwards; ``address="auto"``
        or ``"ray://host:10001"`` joins an existing one. Needs ``crosslens[ray]``.
    batch_size
        Samples per shard (and per call); default 32. Results do not depend on it.
    seed
        The run's seed; each sample's draws come from ``(seed, sample id)``.
    resume
        Complete an interrupted run at ``out`` (refused if anything differs).
    labels, size, preprocess
        Passed to the data source (labels for an array; image size and normalization
        for folders and photos).
    top_k
        How many of the model's largest outputs to keep per sample.
    top_activations
        How many top-activating samples to keep per channel.
    float16
        Store attributions as float16.
    memory_budget, progress
        As for :func:`crosslens.explain` (the budget applies to every call, in every
        worker).
    address, workers
        The Ray cluster and the number of worker actors (``engine="ray"``).
    modality
        ``"image"``, ``"text"``, ``"tabular"``, ``"series"`` or ``None`` (detected from
        the samples; :func:`crosslens.modalities.resolve_modality`). Recorded in the
        manifest (``manifest["modality"]``) with the names below.
    tokens
        Text: a tokenizer or vocabulary; the manifest then holds the token of every id
        that occurs (``manifest["modality"]["vocabulary"]``), next to the ``token_ids``
        array.
    feature_names, channel_names, series_layout
        Tabular: one name per feature. Series: one name per channel, and the layout
        (``"channels_first"`` ``(C, T)`` or ``"time_first"`` ``(T, C)``).

    Returns
    -------
    Store
        The store, opened for reading.
    """
    from ..backends import get_backend
    from ..modalities.kinds import resolve_modality
    from .sources import open_source

    if engine not in ("local", "ray"):
        raise OptionError(f"engine must be 'local' or 'ray', got {engine!r}")
    shard = DEFAULT_SHARD if batch_size is None else _positive_int(batch_size, "batch_size")
    top_k = _positive_int(top_k, "top_k")
    top_activations = _positive_int(top_activations, "top_activations")
    backend = get_backend(model)
    source = open_source(data, layout=backend.layout, size=size, preprocess=preprocess,
                         labels=labels)
    n = len(source)
    if n == 0:
        raise OptionError("the data set is empty")
    first, first_labels = source.read(0, 1)
    kind = resolve_modality(modality, first.shape[1:], first.dtype, backend, tokens=tokens,
                            feature_names=feature_names, channel_names=channel_names,
                            series_layout=series_layout)
    text = kind.kind == "text"
    plan = _methods(methods, text)
    explain = _explainer(text)
    resolved = [backend.resolve_layer(layer) for layer in layers]
    if target == "label" and first_labels is None:
        raise OptionError("target='label' needs labels: this data set has none (pass "
                          "labels= or use target='predicted')")
    # one sample through everything first: options are checked before anything is
    # written, and every array's shape is known
    probe = _shard(model, backend, explain, first, first_labels, np.arange(1), plan, resolved,
                   target, int(seed), top_k, float16, True, memory_budget, text)
    k_out = probe["top_classes"].shape[1]  # top_k, or fewer outputs
    dtype = "float16" if float16 else "float32"
    specs = {key: ((n,) + value.shape[1:], value.dtype.str) for key, value in probe.items()
             if full_maps or not key.endswith("/maps")}
    specs.update({f"attributions/{p.name}": ((n,) + probe[f"attributions/{p.name}"].shape[1:],
                                             dtype) for p in plan})
    if full_maps:
        total = sum(int(np.prod(specs[f"activations/{nm}/maps"][0])) * 4 for nm in resolved)
        print(f"crosslens: full activation maps of {len(resolved)} layer(s) take "
              f"{total / 2 ** 20:.1f} MiB in {out}", file=sys.stderr)
    manifest = {
        "format": FORMAT, "versions": _versions(backend.name),
        "model": {"framework": backend.name, "weights_sha256": backend.weights_digest()},
        "data": source.describe(), "samples": n, "shards": -(-n // shard),
        "class_names": source.class_names, "modality": kind.describe(),
        "channel_axes": _channel_axes(backend, first, resolved),
        "config": {"methods": [{"name": p.name, "options": _jsonable(p.options)}
                               for p in plan],
                   "layers": resolved, "target": _jsonable(target), "seed": int(seed),
                   "batch_size": shard, "top_k": k_out, "top_activations": top_activations,
                   "float16": bool(float16), "full_maps": bool(full_maps),
                   "modality": kind.kind}}
    path = Path(out)
    writer = StoreWriter(path, manifest, specs, shard, resume)
    pending = [k for k in range(manifest["shards"]) if not writer.done(k)]
    bar = progress_bar(n, f"explain_dataset → {path}", wanted(progress, len(pending)))
    bar.update(n - sum(min(shard, n - k * shard) for k in pending))
    job = Job(source, plan, resolved, target, int(seed), k_out, float16, full_maps,
              memory_budget, shard, n, text)
    try:
        if engine == "ray":
            from .ray_engine import run_shards
            run_shards(model, job, path, pending, bar, address=address, workers=workers)
        else:
            for k in pending:
                writer.write(k, job.shard_values(model, backend, k))
                bar.update(job.size(k))
    finally:
        bar.close()
    if text and kind.tokens is not None:
        manifest["modality"]["vocabulary"] = kind.vocabulary(writer.read("token_ids", 0, n))
    _finalize(writer, manifest, plan, resolved, n, shard, top_activations)
    return Store(path)


@dataclass(frozen=True)
class Planned:
    """One method of a run: its canonical name, options, and how its result depends on
    the rest of its batch (see :attr:`crosslens.core.registry.MethodSpec.batch_coupling`)."""

    name: str
    options: dict
    coupling: str | None
    targetless: bool


class Job:
    """What every shard of a run needs: picklable, so Ray workers get it once."""

    def __init__(self, source, plan, layers, target, seed, k_out, float16, full_maps,
                 memory_budget, shard, n, text=False) -> None:
        self.source, self.plan, self.layers, self.target = source, plan, layers, target
        self.seed, self.k_out, self.float16, self.full_maps = seed, k_out, float16, full_maps
        self.memory_budget, self.shard, self.n, self.text = memory_budget, shard, n, text

    def size(self, k: int) -> int:
        return min(self.n, (k + 1) * self.shard) - k * self.shard

    def shard_values(self, model, backend, k: int) -> dict[str, np.ndarray]:
        a, b = k * self.shard, min(self.n, (k + 1) * self.shard)
        x, y = self.source.read(a, b)
        return _shard(model, backend, _explainer(self.text), x, y, np.arange(a, b),
                      self.plan, self.layers, self.target, self.seed, self.k_out,
                      self.float16, self.full_maps, self.memory_budget, self.text)


def _explainer(text: bool) -> Callable[..., Any]:
    """:func:`crosslens.explain`, or :func:`crosslens.explain_text` for token ids."""
    if text:
        from ..modalities.text import explain_text
        return explain_text
    from ..api import explain
    return explain


def _stored(exp: Any) -> np.ndarray:
    """What the store keeps of an explanation: a text explanation's per-token scores,
    else its attributions."""
    scores = getattr(exp, "scores", None)
    return np.asarray(exp.attributions if scores is None else scores)


def _shard(model, backend, explain, x, y, ids, plan, layers, target, seed, k_out, float16,
           full_maps, memory_budget, text=False) -> dict[str, np.ndarray]:
    """Every array of one shard."""
    labels = np.full(len(x), -1, np.int64) if y is None else np.asarray(y, np.int64)
    if isinstance(target, str) and target in ("predicted", "label"):
        spec_target: Any = "predicted" if target == "predicted" else labels
    elif isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        spec_target = np.full(len(x), int(target), np.int64)
    else:
        raise OptionError(f"target must be 'predicted', 'label' or a class index; got "
                          f"{target!r}")
    done: dict[str, np.ndarray] = {}
    outputs = None
    head = plan[0]
    if head.coupling is None and not head.targetless:
        # the first method's own pass gives the outputs: no extra forward pass
        first = explain(model, x, head.name, target=spec_target, seed=seed, progress=False,
                        memory_budget=memory_budget, **head.options)
        done[head.name] = _stored(first)
        outputs = None if first.outputs is None else np.asarray(first.outputs, np.float64)
    acts: dict[str, np.ndarray] = {}
    axes: dict[str, int] = {}
    with backend.session(parse_budget(memory_budget)):
        if outputs is None or layers:  # one more pass only when something needs it
            native = backend.prepare(x)
            if outputs is None:
                outputs = np.asarray(backend.ops.to_numpy(backend.forward(native)), np.float64)
            if layers:
                acts = {name: np.asarray(backend.ops.to_numpy(value), np.float32)
                        for name, value in backend.activations(native, layers).items()}
                axes = backend.channel_axes(native)
        kind = backend.output_activation()
    predictions = predicted_classes(outputs, kind)
    classes = predictions if isinstance(spec_target, str) else spec_target
    if outputs.shape[1] == 1:  # one output: class 1 scores it, class 0 its negation
        scores = np.where(classes == 0, -outputs[:, 0], outputs[:, 0])
    else:
        scores = outputs[np.arange(len(x)), classes]
    order = np.argsort(-outputs, axis=1, kind="stable")[:, :k_out]
    values = {"ids": ids.astype(np.int64), "labels": labels, "predictions": predictions,
              "target_classes": classes, "target_scores": scores,
              "top_classes": order, "top_scores": np.take_along_axis(outputs, order, axis=1)}
    if text:
        values["token_ids"] = np.asarray(x, np.int64)
    for p in plan:
        target_arg = None if p.targetless else classes
        if p.name in done:
            attributions = done[p.name]
        elif p.coupling == "draws":
            parts = [_stored(explain(model, x[i:i + 1], p.name,
                                     target=None if target_arg is None else target_arg[i:i + 1],
                                     seed=_sample_seed(seed, int(ids[i])),
                                     memory_budget=memory_budget, progress=False, **p.options))
                     for i in range(len(x))]
            attributions = np.concatenate(parts)
        else:
            kwargs = {} if target_arg is None else {"target": target_arg}
            attributions = _stored(explain(model, x, p.name, seed=seed, progress=False,
                                           memory_budget=memory_budget, **kwargs, **p.options))
        values[f"attributions/{p.name}"] = attributions.astype(np.float16 if float16
                                                               else np.float32)
    for name, act in acts.items():
        flat = _positions_last(act, axes.get(name, _default_axis(backend)))
        values[f"activations/{name}/mean"] = flat.mean(axis=2)
        values[f"activations/{name}/max"] = flat.max(axis=2)
        values[f"activations/{name}/argmax"] = flat.argmax(axis=2).astype(np.int64)
        if full_maps:
            values[f"activations/{name}/maps"] = act
    return values


def _finalize(writer: StoreWriter, manifest: dict, plan, layers, n: int, shard: int,
              top: int) -> None:
    """Reductions and the table, streamed from the stored shards."""
    labels = writer.read("labels", 0, n)
    by = labels if (labels >= 0).all() else writer.read("predictions", 0, n)
    classes, rows = np.unique(by, return_inverse=True)  # only the classes that occur
    counts = np.bincount(rows, minlength=len(classes))
    for p in plan:
        key = f"attributions/{p.name}"
        sums = None
        for a in range(0, n, shard):
            block = writer.read(key, a, min(n, a + shard)).astype(np.float64)
            if sums is None:
                sums = np.zeros((len(classes),) + block.shape[1:])
            np.add.at(sums, rows[a:a + len(block)], block)
        mean = sums / counts.reshape((len(classes),) + (1,) * (sums.ndim - 1))
        writer.put(f"reductions/{key}/class_mean", mean.astype(np.float32))
        writer.put(f"reductions/{key}/class_count", counts.astype(np.int64))
        writer.put(f"reductions/{key}/classes", classes.astype(np.int64))
    for name in layers:
        base = f"activations/{name}"
        total = total_sq = None
        best_ids = best_values = best_pos = None
        for a in range(0, n, shard):
            b = min(n, a + shard)
            means = writer.read(f"{base}/mean", a, b).astype(np.float64)
            maxima = writer.read(f"{base}/max", a, b)
            where = writer.read(f"{base}/argmax", a, b)
            total = means.sum(0) if total is None else total + means.sum(0)
            total_sq = (means ** 2).sum(0) if total_sq is None else total_sq + (means ** 2).sum(0)
            ids = np.broadcast_to(np.arange(a, b)[:, None], maxima.shape).T
            cand = (ids, maxima.T, where.T)  # (C, shard)
            if best_ids is not None:
                cand = tuple(np.concatenate([p, c], axis=1)
                             for p, c in zip((best_ids, best_values, best_pos), cand))
            # largest value first, ties to the smaller id: one order whatever the shards
            order = np.lexsort((cand[0], -cand[1].astype(np.float64)), axis=1)[:, :top]
            best_ids, best_values, best_pos = (np.take_along_axis(c, order, axis=1)
                                               for c in cand)
        mean = total / n
        std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
        writer.put(f"reductions/{base}/mean", mean)
        writer.put(f"reductions/{base}/std", std)
        pad = top - best_ids.shape[1]
        if pad > 0:
            best_ids = np.pad(best_ids, ((0, 0), (0, pad)), constant_values=-1)
            best_values = np.pad(best_values, ((0, 0), (0, pad)))
            best_pos = np.pad(best_pos, ((0, 0), (0, pad)), constant_values=-1)
        writer.put(f"reductions/{base}/top_ids", best_ids.astype(np.int64))
        writer.put(f"reductions/{base}/top_values", best_values.astype(np.float32))
        writer.put(f"reductions/{base}/top_positions", best_pos.astype(np.int64))
    _write_table(writer, n, manifest.get("class_names"))
    writer.finish(manifest)


def _write_table(writer: StoreWriter, n: int, class_names: list[str] | None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    columns = {key: writer.read(key, 0, n) for key in
               ("ids", "labels", "predictions", "target_classes", "target_scores")}
    top_classes, top_scores = writer.read("top_classes", 0, n), writer.read("top_scores", 0, n)
    table = pa.table({
        "id": columns["ids"], "label": columns["labels"],
        "prediction": columns["predictions"],
        "correct": np.where(columns["labels"] >= 0, columns["labels"] == columns["predictions"],
                            False),
        "target": columns["target_classes"], "score": columns["target_scores"],
        "top_classes": pa.array(list(top_classes), type=pa.list_(pa.int64())),
        "top_scores": pa.array(list(top_scores), type=pa.list_(pa.float64()))})
    if class_names:
        names = np.asarray(class_names, dtype=object)
        table = table.append_column("label_name", pa.array(
            [names[i] if 0 <= i < len(names) else None for i in columns["labels"]]))
    path = writer.path / "table.parquet"
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


# --- helpers -----------------------------------------------------------------------------

def _methods(methods: Any, text: bool = False) -> list[Planned]:
    """The run's methods from names, pairs or a mapping (text methods for token ids)."""
    if isinstance(methods, str):
        methods = [methods]
    items = methods.items() if isinstance(methods, Mapping) else [
        m if isinstance(m, tuple) else (m, {}) for m in methods]
    plan = []
    for name, options in items:
        options = dict(options or {})
        if text:
            from ..modalities.text import text_method
            name, registered, _ = text_method(name)
            spec = get_method(registered)
            effective = {"doi": "gaussian", **options} if name == "smoothgrad" else options
        else:
            spec = get_method(name)
            name, effective = spec.name, options
        if spec.batch_coupling == "samples":
            raise UnsupportedError(f"{spec.name} compares the samples of a batch, so a data "
                                   "set's result would depend on its shards; run it on a "
                                   "batch with cl.explain")
        plan.append(Planned(name, options, _coupling(spec.batch_coupling, effective),
                            spec.targetless))
    if not plan:
        raise OptionError("explain_dataset needs at least one method")
    return plan


def _coupling(registered: str | None, options: dict) -> str | None:
    """The registry's batch coupling, or ``"draws"`` for a Gaussian distribution of
    interest (its noise is drawn for the whole batch)."""
    doi = options.get("doi")
    if registered is None and (doi == "gaussian" or type(doi).__name__ == "GaussianDoI"):
        return "draws"
    return registered


def _channel_axes(backend: Any, x: np.ndarray, layers: list[str]) -> dict[str, int]:
    """Per-sample channel axis of each stored layer (``Backend.channel_axes``)."""
    if not layers:
        return {}
    with backend.session():
        axes = backend.channel_axes(backend.prepare(x))
    return {name: int(axes.get(name, _default_axis(backend))) for name in layers}


def _default_axis(backend: Any) -> int:
    """The channel axis of a layer output ``channel_axes`` does not list (the
    framework's convention)."""
    return 0 if backend.layer_layout == "channels_first" else -1


def _positions_last(act: np.ndarray, axis: int) -> np.ndarray:
    """``(N, C, positions)`` from a layer's values whose per-sample channel axis is
    ``axis``."""
    if act.ndim == 2:
        return act[:, :, None]
    act = np.moveaxis(act, axis % (act.ndim - 1) + 1, 1)
    return act.reshape(act.shape[0], act.shape[1], -1)


def _sample_seed(seed: int, sample: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(sample)]).generate_state(1)[0])


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise OptionError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _jsonable(value: Any) -> Any:
    """Options as JSON: arrays by shape, dtype and digest (the manifest compares them)."""
    import hashlib
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, bool, type(None))):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    array = np.ascontiguousarray(np.asarray(value))
    return {"array": list(array.shape), "dtype": array.dtype.str,
            "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def _versions(framework: str) -> dict[str, str]:
    from .. import __version__
    versions = {"crosslens": __version__, "numpy": np.__version__}
    module = {"torch": "torch", "keras": "keras"}.get(framework)
    if module:
        versions[module] = sys.modules[module].__version__ if module in sys.modules else "?"
    return versions
