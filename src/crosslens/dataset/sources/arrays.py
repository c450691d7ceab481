"""Arrays ``(N, ...)`` in memory or memory-mapped, read by slicing: numpy arrays and
memmaps, other framework arrays (converted to numpy once, when opened), and ``.npy``
(memory-mapped) / ``.npz`` (loaded) files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...core.errors import InputError
from .common import _load_labels, _SourceBase


class ArraySource(_SourceBase):
    """An array ``(N, ...)`` (in memory or memory-mapped), read by slicing.

    ``read`` returns copies, so the caller cannot change the data through them.
    """

    kind = "array"

    def __init__(self, x: np.ndarray, *, name: str = "array", path: str | None = None,
                 kind: str = "array", labels: np.ndarray | None = None,
                 class_names: list[str] | None = None,
                 options: dict[str, Any] | None = None) -> None:
        super().__init__(name, path, options)
        self.kind = kind
        if x.ndim == 0:
            raise InputError("data must be an array of samples (N, ...); got a scalar")
        if x.dtype.kind not in "biufc":
            raise InputError(f"data must be numeric; got dtype {x.dtype}")
        self._x = x
        self._length = int(x.shape[0])
        self.sample_shape = tuple(int(s) for s in x.shape[1:])
        self.dtype = x.dtype
        self._own_labels = labels
        self._has_labels = labels is not None
        self.class_names = class_names

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        x = np.array(self._x[start:stop])
        y = None if self._own_labels is None else self._own_labels[start:stop].copy()
        return x, y


def _open_array_file(path: Path, suffix: str) -> ArraySource:
    """The :class:`ArraySource` of an existing ``.npy`` (memory-mapped) or ``.npz`` file
    (``x``, else its first array, and ``y`` as labels); ``suffix`` is lower case."""
    where = str(path.resolve())
    try:
        if suffix == ".npy":
            return ArraySource(np.load(where, mmap_mode="r", allow_pickle=False), name=path.name,
                               path=where, kind="npy")
        with np.load(where, allow_pickle=False) as archive:
            if not archive.files:
                raise InputError(f"{where!r} holds no arrays")
            key = "x" if "x" in archive.files else archive.files[0]
            x = archive[key]
            y = archive["y"] if "y" in archive.files and key != "y" else None
    except (OSError, ValueError, EOFError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"cannot read {where!r} as {suffix} ({error}); object arrays are "
                         "refused (nothing is unpickled)") from error
    if y is not None:
        y = _load_labels(y)
        if x.ndim == 0 or len(y) != len(x):
            raise InputError(f"{where!r}: 'y' has {len(y)} labels but {key!r} has "
                             f"{len(x) if x.ndim else 0} samples: give one label per sample")
    return ArraySource(x, name=path.name, path=where, kind="npz", labels=y,
                       options={"x": key, "y": "y" if y is not None else None})
