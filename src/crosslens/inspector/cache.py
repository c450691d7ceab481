"""Results cached on disk in the store's ``inspector/`` folder: a JSON document and
optional numpy arrays per key, written atomically (a crash never leaves half a result)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np


def digest(value: Any) -> str:
    """SHA-256 (hex, 24 characters) of a JSON-serializable value (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def array_digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return hashlib.sha256(f"{array.dtype.str}{array.shape}".encode()
                          + array.tobytes()).hexdigest()[:24]


class DiskCache:
    """``root/<kind>/<key>.json`` (+ ``.npz``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"

    def load(self, kind: str, key: str, arrays: bool = False
             ) -> tuple[dict, dict[str, np.ndarray]] | None:
        meta = self._path(kind, key, ".json")
        if not meta.exists():
            return None
        values: dict[str, np.ndarray] = {}
        if arrays:
            data = self._path(kind, key, ".npz")
            if not data.exists():
                return None
            with np.load(data, allow_pickle=False) as archive:
                values = {name: archive[name] for name in archive.files}
        return json.loads(meta.read_text()), values

    def save(self, kind: str, key: str, meta: dict, arrays: dict[str, np.ndarray] | None = None
             ) -> None:
        folder = self.root / kind
        folder.mkdir(parents=True, exist_ok=True)
        if arrays:
            target = self._path(kind, key, ".npz")
            tmp = target.with_name(f".{target.stem}.{os.getpid()}.tmp.npz")
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, target)
        target = self._path(kind, key, ".json")
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, target)  # the JSON last: it marks the entry complete
