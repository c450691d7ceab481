"""Instance subsets: everything, each true class, each predicted class, correct,
misclassified, and those the user makes (kept in the store's ``inspector/subsets.json``)."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError
from .errors import NotFoundError

KINDS = ("all", "label", "prediction", "correct", "wrong", "user")
MAX_NAME = 80


class Subsets:
    """Subsets of the data set's ``N`` instances, by id (``all``, ``label:<c>``,
    ``pred:<c>``, ``correct``, ``wrong``, ``user:<n>``)."""

    def __init__(self, labels: np.ndarray, predictions: np.ndarray, class_name: Any,
                 path: Path | None = None) -> None:
        self.n = len(labels)
        self.path = path
        self._lock = threading.Lock()
        self._items: dict[str, dict] = {}
        self._add("all", "all", "all", np.arange(self.n))
        has_labels = bool((labels >= 0).all()) and self.n > 0
        if has_labels:
            for c in np.unique(labels):
                self._add(f"label:{c}", f"label {class_name(int(c))}", "label",
                          np.flatnonzero(labels == c))
        for c in np.unique(predictions):
            self._add(f"pred:{c}", f"predicted {class_name(int(c))}", "prediction",
                      np.flatnonzero(predictions == c))
        if has_labels:
            self._add("correct", "correct", "correct", np.flatnonzero(labels == predictions))
            self._add("wrong", "misclassified", "wrong", np.flatnonzero(labels != predictions))
        self._user = 0
        if path is not None and path.exists():
            for entry in json.loads(path.read_text()):
                self.create(entry["name"], entry["indices"], save=False)

    def _add(self, id_: str, name: str, kind: str, indices: np.ndarray) -> dict:
        item = {"id": id_, "name": name, "kind": kind,
                "indices": np.asarray(indices, dtype=np.int64)}
        self._items[id_] = item
        return item

    def list(self) -> list[dict]:
        with self._lock:
            return [self.describe(item) for item in self._items.values()]

    @staticmethod
    def describe(item: dict) -> dict:
        return {"id": item["id"], "name": item["name"], "kind": item["kind"],
                "size": int(len(item["indices"]))}

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._items)

    def get(self, id_: str) -> dict:
        with self._lock:
            item = self._items.get(id_)
        if item is None:
            raise NotFoundError(f"no subset {id_!r}; subsets are: {', '.join(self.ids())}")
        return item

    def indices(self, id_: str) -> np.ndarray:
        return self.get(id_)["indices"]

    def create(self, name: Any, indices: Any, save: bool = True) -> dict:
        """A user subset of data-set instances (400 on an empty or out-of-range list)."""
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise InputError(f"a subset needs a name of 1..{MAX_NAME} characters; got "
                             f"{name!r}")
        if not isinstance(indices, list) or not indices:
            raise InputError("a subset needs a non-empty list of instance indices")
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
            raise InputError("subset indices must be integers")
        values = np.unique(np.asarray(indices, dtype=np.int64))
        if values[0] < 0 or values[-1] >= self.n:
            bad = int(values[0] if values[0] < 0 else values[-1])
            raise InputError(f"subset index {bad} is out of range: data-set instances are "
                             f"0..{self.n - 1}")
        with self._lock:
            self._user += 1
            item = self._add(f"user:{self._user}", name.strip(), "user", values)
            if save and self.path is not None:
                users = [{"name": i["name"], "indices": i["indices"].tolist()}
                         for i in self._items.values() if i["kind"] == "user"]
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps(users))
        return self.describe(item)
