"""What every source shares: :class:`_SourceBase` (range checks, empty reads, label
replacement, fingerprint, ``describe``) and the helpers of several kinds: the ``size=``
and ``preprocess=`` checks, the transposition of channels-last images to the model's
layout, the parsing of labels and the stacking of samples into a batch."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

from ...core.arrays import to_numpy
from ...core.errors import InputError, OptionError

LAYOUTS = ("channels_first", "channels_last")
#: Samples hashed into the fingerprint (evenly spaced, first and last included).
FINGERPRINT_SAMPLES = 8


class _SourceBase:
    """Range checks, label replacement, empty reads and :meth:`describe` for every source.

    Subclasses set ``_length``, ``sample_shape``, ``dtype``, ``_has_labels`` (and
    ``class_names``) and implement ``_read(start, stop)`` for ``0 <= start < stop <= len``.
    """

    kind = "source"

    def __init__(self, name: str, path: str | None = None,
                 options: dict[str, Any] | None = None) -> None:
        self.name = name
        self.path = path
        self.options = options or {}
        self.sample_shape: tuple[int, ...] = ()
        self.dtype = np.dtype("float32")
        self.class_names: list[str] | None = None
        self._length = 0
        self._has_labels = False
        self._labels_override: np.ndarray | None = None
        self._drop_labels = False
        self._fingerprint: str | None = None

    def __len__(self) -> int:
        return self._length

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.name!r}: {len(self)} x "
                f"{self.sample_shape} {self.dtype}, labels: {self.has_labels}>")

    @property
    def has_labels(self) -> bool:
        """Whether :meth:`read` returns labels."""
        if self._drop_labels:
            return False
        return self._labels_override is not None or self._has_labels

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples ``[start, stop)`` and their labels (``None`` when there are none).

        Parameters
        ----------
        start, stop
            ``0 <= start <= stop <= len(self)``.

        Returns
        -------
        tuple
            ``(x (stop - start, *sample_shape), labels int64 (stop - start,) or None)``.
        """
        start, stop = self._check_range(start, stop)
        if start == stop:
            x = np.empty((0,) + self.sample_shape, self.dtype)
            y = np.empty(0, np.int64) if self._has_labels else None
        else:
            x, y = self._read(start, stop)
        if self._drop_labels:
            y = None
        elif self._labels_override is not None:
            y = self._labels_override[start:stop].copy()
        return x, y

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def _check_range(self, start: Any, stop: Any) -> tuple[int, int]:
        for value in (start, stop):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"read(start, stop) takes integers, got ({start!r}, {stop!r})")
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= self._length:
            raise InputError(f"read({start}, {stop}) is outside the {self._length} samples "
                             f"of {self.name!r}: use 0 <= start <= stop <= {self._length}")
        return start, stop

    def _set_labels(self, labels: Any) -> None:
        if labels is False:
            self._drop_labels = True
            self.class_names = None
            self._fingerprint = None
            return
        values = _load_labels(labels)
        if len(values) != self._length:
            raise InputError(f"labels has {len(values)} entries but {self.name!r} has "
                             f"{self._length} samples: give one integer label per sample")
        self._labels_override = values
        self.class_names = None  # the source's names need not describe these labels
        self._fingerprint = None

    def _fingerprint_extra(self) -> bytes:
        """Source-specific bytes hashed into the fingerprint (the file list of a folder)."""
        return b""

    def fingerprint(self) -> str:
        """``"sha256:<hex>"`` of the length, sample shape, dtype, and the samples (and
        labels) at :data:`FINGERPRINT_SAMPLES` evenly spaced indices."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            digest.update(json.dumps([self._length, list(self.sample_shape),
                                      self.dtype.str]).encode())
            digest.update(self._fingerprint_extra())
            for index in _spread(self._length, FINGERPRINT_SAMPLES):
                x, y = self.read(index, index + 1)
                x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
                digest.update(b"x%d" % index + x.tobytes())
                if y is not None:
                    digest.update(b"y" + np.asarray(y, np.int64).tobytes())
            self._fingerprint = "sha256:" + digest.hexdigest()
        return self._fingerprint

    def describe(self) -> dict:
        """A JSON-serializable description: ``kind``, ``name``, ``path`` (``None`` unless
        read from a file or folder), ``length``, ``sample_shape``, ``dtype``, ``labels``
        (whether samples have labels), ``class_names``, ``options`` (what shaped the
        samples) and ``fingerprint``."""
        return {"kind": self.kind, "name": self.name, "path": self.path,
                "length": self._length, "sample_shape": list(self.sample_shape),
                "dtype": self.dtype.name, "labels": self.has_labels,
                "class_names": None if self.class_names is None else list(self.class_names),
                "options": _jsonable(self.options), "fingerprint": self.fingerprint()}


def _spread(n: int, count: int) -> list[int]:
    if n <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, count)).round()})


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _check_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = (size, size) if isinstance(size, (int, np.integer)) else size
    try:
        height, width = pair
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                 for v in (height, width))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise OptionError(f"size must be (height, width) in pixels (or one int for a "
                          f"square); got {size!r}")
    return int(height), int(width)


def _normalization(preprocess: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` of a ``--preprocess`` name of the CLI (one table for both)."""
    from ...cli import PREPROCESSING

    if not isinstance(preprocess, str) or preprocess not in PREPROCESSING:
        raise OptionError(f"preprocess must be one of {sorted(PREPROCESSING)} or None; got "
                          f"{preprocess!r}")
    mean, std = (np.asarray(v, dtype=np.float32) for v in PREPROCESSING[preprocess])
    return mean, std


def _to_layout(images: np.ndarray, layout: str | None) -> np.ndarray:
    """Channels-last images ``(N, H, W, C)`` in ``layout`` (transposed, never reshaped)."""
    if layout == "channels_first" and images.ndim == 4:
        return np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)))
    return images


def _load_labels(labels: Any) -> np.ndarray:
    if isinstance(labels, (str, os.PathLike)):
        try:
            labels = np.load(os.fspath(labels), allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"cannot read labels from {os.fspath(labels)!r} ({error}); give "
                             "a .npy file of integer labels or an array") from error
    try:
        values = np.asarray(to_numpy(labels))
    except (TypeError, ValueError) as error:
        raise InputError(f"labels must be integer class ids, one per sample; got "
                         f"{type(labels).__name__}") from error
    if values.ndim != 1:
        raise InputError(f"labels must be one integer per sample (shape (N,)); got shape "
                         f"{values.shape}" + (" (one-hot? use labels.argmax(-1))"
                                              if values.ndim == 2 else ""))
    if values.dtype.kind not in "iub":
        if values.dtype.kind == "f" and np.all(np.isfinite(values)) \
                and np.array_equal(values, np.round(values)):
            return values.astype(np.int64)
        raise InputError(f"labels must be integer class ids; got dtype {values.dtype}")
    return values.astype(np.int64)


def _check_label(y: Any, where: str, fix: str) -> int:
    """One sample's label as an int, or an InputError saying what it was and ``fix``."""
    value = np.asarray(to_numpy(y))
    if value.ndim != 0 or value.dtype.kind not in "iub":
        raise InputError(f"{where} gives a label of shape {value.shape} and dtype "
                         f"{value.dtype}, not an integer class id; {fix}")
    return int(value)


def _stack(samples: list[np.ndarray], shape: tuple[int, ...], dtype: np.dtype, where: str,
           start: int, fix: str) -> np.ndarray:
    for offset, sample in enumerate(samples):
        if sample.shape != shape:
            raise InputError(f"sample {start + offset} of {where} has shape {sample.shape} "
                             f"but sample 0 has {shape}: samples must share one shape "
                             f"({fix})")
    return np.stack(samples).astype(dtype, copy=False)

