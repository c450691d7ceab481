"""The explanation store: one directory, readable without crosslens.

Layout of ``DIR``::

    manifest.json        format, versions, model digest, data description, configuration,
                         modality, channel axis of each layer
    arrays.zarr/         Zarr v3 group (chunks of one shard each)
        ids, labels, predictions          (N,) int64 (labels -1 where unknown)
        target_classes, target_scores     (N,) the explained class and its score
        top_classes, top_scores           (N, k) the model's k largest outputs
        attributions/<method>             (N, *sample) float32 (float16 on request);
                                          text: (N, T) per-token scores
        token_ids                         (N, T) int64, text only: the explained ids
        activations/<layer>/mean          (N, C) mean over positions per channel
        activations/<layer>/max, argmax   (N, C) maximum over positions and where (flat)
        activations/<layer>/maps          (N, *layer) full maps, on request
        reductions/...                    written when the run completes (see below)
    shards/<k>.done      one empty marker per completed shard (written last, atomically)
    table.parquet        id, label, prediction, correct, target, score, top-k (Parquet)

Reductions (computed from the shards when the run completes, so a resumed run writes the
same): ``reductions/attributions/<method>/classes``, ``class_mean`` (classes, *sample) and
``class_count`` for the classes that occur (by true label where every sample has one, else
by prediction);
``reductions/activations/<layer>/{mean,std}`` (C,) over samples of the pooled means,
``top_ids``, ``top_values``, ``top_positions`` (C, K): the samples whose channel maximum is
largest, and where in the map it is.

The manifest's ``modality`` says what the samples are: ``{"kind": "image"}``,
``{"kind": "tabular", "feature_names": [...]}``, ``{"kind": "series", "layout":
"channels_first" | "time_first", "channel_names": [...]}`` or ``{"kind": "text",
"vocabulary": {id: token}}`` (the vocabulary of the ids that occur, when tokens were
given). ``channel_axes`` gives each layer's per-sample channel axis (the axis the
pooled activations keep; positions are the flattened other axes, so a sequence's top
position is its token or time step).

Zarr v3 (``zarr.open_group(DIR + "/arrays.zarr")``) and Parquet (``pyarrow.parquet``)
are read by any tool of those ecosystems; arrays are chunked by shard so a shard is
written by itself and a reader can stream them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import CrosslensError, InputError

FORMAT = "crosslens-store/1"


class StoreError(CrosslensError):
    """A store that does not exist, is incomplete, or belongs to another configuration."""


def _zarr():
    try:
        import zarr
    except ImportError as error:  # pragma: no cover - the dataset extra is missing
        raise StoreError("the dataset store needs zarr and pyarrow: pip install "
                         "'crosslens[dataset]'") from error
    return zarr


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _sync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Store:
    """A store on disk, opened for reading (:func:`open_store`)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        manifest = self.path / "manifest.json"
        if not manifest.exists():
            raise StoreError(f"{self.path} is not a crosslens store (no manifest.json); "
                             "create one with cl.explain_dataset(...) or `crosslens run`")
        self.manifest = json.loads(manifest.read_text())
        self._group = _zarr().open_group(str(self.path / "arrays.zarr"), mode="r")

    # --- what it holds -----------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return bool(self.manifest.get("complete"))

    @property
    def methods(self) -> list[str]:
        return [m["name"] for m in self.manifest["config"]["methods"]]

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["config"]["layers"])

    @property
    def modality(self) -> dict:
        """What the samples are (``{"kind": "image"}`` for stores of earlier versions);
        see the module docstring."""
        return dict(self.manifest.get("modality") or {"kind": "image"})

    def __len__(self) -> int:
        return int(self.manifest["samples"])

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete (resume with resume=True)"
        return (f"Store({str(self.path)!r}: {len(self)} samples, methods {self.methods}, "
                f"layers {self.layers}, {state})")

    def _array(self, key: str) -> np.ndarray:
        if key not in self._group:
            raise InputError(f"the store has no array {key!r}; methods: {self.methods}, "
                             f"layers: {self.layers}")
        return np.asarray(self._group[key][...])

    # --- reading ---------------------------------------------------------------------------
    def attributions(self, method: str) -> np.ndarray:
        """Attributions of ``method`` for every sample, in sample order."""
        if method not in self.methods:
            raise InputError(f"the store holds no attributions of {method!r}; it holds "
                             f"{self.methods}")
        return self._array(f"attributions/{method}")

    def activations(self, layer: str, kind: str = "mean") -> np.ndarray:
        """Per-channel activations ``(N, C)`` of ``layer``: ``"mean"`` over positions,
        ``"max"``, ``"argmax"`` (flat position of the maximum) or ``"maps"`` (the full
        maps, when the run kept them)."""
        if layer not in self.layers:
            raise InputError(f"the store holds no activations of {layer!r}; it holds "
                             f"{self.layers}")
        return self._array(f"activations/{layer}/{kind}")

    def column(self, name: str) -> np.ndarray:
        """One per-sample array: ``ids``, ``labels``, ``predictions``, ``target_classes``,
        ``target_scores``, ``top_classes``, ``top_scores`` (and ``token_ids`` for text)."""
        return self._array(name)

    def table(self, kind: str = "arrow") -> Any:
        """The per-sample table: a ``pyarrow.Table`` (``kind="pandas"``: a DataFrame)."""
        import pyarrow.parquet as pq
        self._require_complete("table()")
        table = pq.read_table(self.path / "table.parquet")
        return table.to_pandas() if kind == "pandas" else table

    def top_k(self, layer: str, channel: int, k: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ids of the samples that activate ``channel`` of ``layer`` most (by the
        channel's maximum over positions), their maxima, and the flat positions of those
        maxima; ``k`` at most the run's ``top_activations``."""
        self._require_complete("top_k()")
        base = f"reductions/activations/{layer}"
        if layer not in self.layers:
            raise InputError(f"the store holds no activations of {layer!r}; it holds "
                             f"{self.layers}")
        ids, values, positions = (self._array(f"{base}/top_{n}")[channel]
                                  for n in ("ids", "values", "positions"))
        keep = ids >= 0
        ids, values, positions = ids[keep], values[keep], positions[keep]
        return (ids[:k], values[:k], positions[:k]) if k else (ids, values, positions)

    def class_mean(self, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The classes that occur (by label where every sample has one, else by
        prediction), the mean attribution of ``method`` over each class's samples, and
        their counts."""
        self._require_complete("class_mean()")
        base = f"reductions/attributions/{method}"
        return (self._array(f"{base}/classes"), self._array(f"{base}/class_mean"),
                self._array(f"{base}/class_count"))

    def channel_stats(self, layer: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation over samples of each channel's pooled mean."""
        self._require_complete("channel_stats()")
        base = f"reductions/activations/{layer}"
        return self._array(f"{base}/mean"), self._array(f"{base}/std")

    def _require_complete(self, what: str) -> None:
        if not self.complete:
            raise StoreError(f"{what} needs a complete run; {self.path} is incomplete "
                             "(interrupted?): resume it with resume=True / --resume")


def open_store(path: str | os.PathLike) -> Store:
    """Open a store written by :func:`crosslens.explain_dataset` (or ``crosslens run``)."""
    return Store(path)


# --- writing -----------------------------------------------------------------------------

class StoreWriter:
    """Creates (or reopens, to resume) the store's arrays and writes shards into them."""

    def __init__(self, path: Path, manifest: dict, specs: dict[str, tuple[tuple, str]],
                 shard: int, resume: bool) -> None:
        zarr = _zarr()
        self.path, self.shard = path, shard
        (path / "shards").mkdir(parents=True, exist_ok=True)
        existing = path / "manifest.json"
        if existing.exists():
            old = json.loads(existing.read_text())
            if not resume:
                raise StoreError(f"{path} already holds a store; pass resume=True (--resume) "
                                 "to complete it, or choose another out=")
            mismatch = _mismatch(old, manifest)
            if mismatch:
                raise StoreError(f"cannot resume {path}: its {mismatch}. Resume with the "
                                 "same model, data and configuration, or choose another out=")
            self.group = zarr.open_group(str(path / "arrays.zarr"), mode="r+")
        else:
            self.group = zarr.open_group(str(path / "arrays.zarr"), mode="w")
            for key, (shape, dtype) in specs.items():
                chunks = (shard,) + tuple(shape[1:])
                self.group.create_array(key, shape=shape, chunks=chunks, dtype=dtype,
                                        fill_value=0)
            write_json_atomic(existing, {**manifest, "complete": False})

    @classmethod
    def attach(cls, path: Path, shard: int) -> "StoreWriter":
        """The writer of an existing store, for a worker process writing its shards."""
        writer = cls.__new__(cls)
        writer.path, writer.shard = Path(path), shard
        writer.group = _zarr().open_group(str(Path(path) / "arrays.zarr"), mode="r+")
        return writer

    def done(self, k: int) -> bool:
        return (self.path / "shards" / f"{k}.done").exists()

    def write(self, k: int, values: dict[str, np.ndarray]) -> None:
        """Shard ``k``'s arrays, then its marker: a shard without a marker is rewritten."""
        a = k * self.shard
        for key, value in values.items():
            self.group[key][a:a + len(value)] = value
        marker = self.path / "shards" / f"{k}.done"
        tmp = marker.with_name(f".{marker.name}.tmp")
        tmp.write_bytes(b"")
        os.replace(tmp, marker)
        _sync_dir(marker.parent)

    def put(self, key: str, value: np.ndarray) -> None:
        """A whole array (reductions), replacing any earlier one."""
        if key in self.group:
            del self.group[key]
        self.group.create_array(key, shape=value.shape, dtype=value.dtype, fill_value=0,
                                chunks=value.shape if value.ndim else ())
        self.group[key][...] = value

    def read(self, key: str, a: int, b: int) -> np.ndarray:
        return np.asarray(self.group[key][a:b])

    def finish(self, manifest: dict) -> None:
        write_json_atomic(self.path / "manifest.json", {**manifest, "complete": True})


def _mismatch(old: dict, new: dict) -> str | None:
    """What differs between two manifests' identities (model, data, configuration)."""
    for key, what in (("format", "format"), ("versions", "versions"),
                      ("model", "model (weights digest)"),
                      ("data", "data"), ("config", "configuration"),
                      ("samples", "sample count")):
        if old.get(key) != new.get(key):
            return f"{what} differs: {old.get(key)!r} != {new.get(key)!r}"
    return None
