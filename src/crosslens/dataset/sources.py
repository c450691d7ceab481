"""Data sources: one random-access view of every kind of data set crosslens explains.

:func:`open_source` turns what the user gives into a :class:`Source`: ``len(source)``
samples, ``source.read(start, stop)`` returning the samples ``[start, stop)`` as one
numpy batch in the layout the model expects (and their integer labels), and
``source.describe()`` (JSON) with a content fingerprint, so a resumed run can refuse
data that changed. Reads are deterministic: the same range always gives the same arrays.

Accepted data
-------------
numpy arrays and memmaps ``(N, ...)``, other framework arrays (converted to numpy once)
    Given to the model as they are: the user gives the model's layout and dtype (integer
    token arrays stay integer; the backend casts floats). Labels only through ``labels=``.
``.npy`` files
    Opened with ``mmap_mode="r"`` (only the rows read are loaded).
``.npz`` files
    The array ``x`` (else the first array of the file) and, when present, ``y`` as
    labels. Loaded into memory (``.npz`` members cannot be memory-mapped): use ``.npy``
    for large data.
PyTorch ``Dataset`` (map-style) or ``DataLoader``
    ``ds[i]`` gives ``x`` or ``(x, y, ...)``; tensors become numpy, no layout change (the
    dataset's transforms make the model's input). A ``DataLoader`` stands for its
    ``.dataset``: its sampler / shuffling, batch size and ``collate_fn`` are ignored (the
    store is in dataset order, the engine chooses the batch size).
``tf.data.Dataset``
    Elements ``x`` or ``(x, y, ...)``, batched or not: a dataset is batched when its
    pipeline has a ``batch`` / ``padded_batch`` step after the last ``unbatch``, else
    (pipelines tf.data cannot show) when its labels are vectors, or when ``x``'s leading
    dimension is unknown (``None``). Batches must be of one size but the last. Length
    from ``cardinality()``; random access by ``skip`` / ``take`` (consecutive reads
    continue one iterator, so a whole run reads the pipeline once). The pipeline must be
    deterministic: a ``shuffle`` is refused unless seeded with
    ``reshuffle_each_iteration=False``.
An image folder
    Sub-folders are the classes (sorted names -> label ids 0, 1, ...; files in each, in
    nested folders too, sorted by relative path), or a folder of images only (no labels).
    ``.png .jpg .jpeg .bmp .gif .webp`` (any case; GIFs: the first frame), other files
    are skipped. Loaded with PIL as RGB, resized to ``size`` (bilinear, antialiased when
    shrinking; required unless all images share one size), scaled to ``[0, 1]``
    float32, normalized by ``preprocess``, then transposed to ``layout``.
Bundled sets by name (nothing is downloaded)
    ``"digits"``: scikit-learn's 1797 8x8 digits in ``[0, 1]``, ``(N, 8, 8, 1)`` float32,
    labels 0-9. ``"clever_hans"``: the test split of :func:`crosslens.datasets.clever_hans`
    (defaults: seed 0, 150 watermarked-digit images ``(16, 16, 1)``; ``size=s`` builds it
    at ``s x s``), labels 1 for digits 5-9. ``"photos"``: scikit-image's cat and coffee
    photos of the demo, squeezed to ``size`` (square, default 224, bicubic as
    :func:`crosslens.zoo.load_image`), ``[0, 1]`` unless ``preprocess``, no labels.
    Image-like sets are transposed to ``layout``. A name wins over a folder of the same
    name in the working directory: write ``"./digits"`` for the folder.

``labels=`` gives (or replaces) the labels of any source: an integer array-like of
length N or a ``.npy`` path; ``labels=False`` drops the source's own labels. Replaced
labels drop the source's ``class_names``.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..core.arrays import framework_of_array, to_numpy
from ..core.errors import InputError, OptionError

__all__ = ["Source", "open_source", "ArraySource", "FolderSource", "TorchSource",
           "TensorFlowSource", "LAYOUTS", "IMAGE_EXTENSIONS", "BUNDLED", "PHOTOS"]

LAYOUTS = ("channels_first", "channels_last")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
BUNDLED = ("digits", "clever_hans", "photos")
#: The scikit-image photos of the demo (:func:`crosslens.zoo.sample_images`).
PHOTOS = ("chelsea", "coffee")
PHOTO_SIZE = 224
#: Samples hashed into the fingerprint (evenly spaced, first and last included).
FINGERPRINT_SAMPLES = 8
ACCEPTED = ("a numpy array or memmap (N, ...), a .npy / .npz path, a PyTorch Dataset or "
            "DataLoader, a tf.data.Dataset, an image folder, or a bundled set: "
            + ", ".join(repr(name) for name in BUNDLED))


@runtime_checkable
class Source(Protocol):
    """A random-access data set: what the engine reads, shard by shard."""

    sample_shape: tuple[int, ...]
    class_names: list[str] | None

    def __len__(self) -> int: ...

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Samples ``[start, stop)`` as a numpy batch in the layout the model expects,
        and their integer labels (``None`` when the source has none). Deterministic."""
        ...

    def describe(self) -> dict:
        """JSON-serializable: kind, name, path, length, sample shape, dtype, labels,
        class names, options and a content fingerprint."""
        ...


def open_source(data: Any, *, layout: str | None = None,
                size: int | tuple[int, int] | None = None, preprocess: str | None = None,
                labels: Any = None) -> Source:
    """The :class:`Source` reading ``data`` (see the module docstring for every kind).

    Parameters
    ----------
    data
        A numpy array or memmap ``(N, ...)`` (or a torch / tf / jax array), a path to a
        ``.npy`` / ``.npz`` file or an image folder, a PyTorch ``Dataset`` /
        ``DataLoader``, a ``tf.data.Dataset``, or ``"digits"``, ``"clever_hans"``,
        ``"photos"``. A :class:`Source` is returned as it is.
    layout
        The model's input layout, ``"channels_first"``, ``"channels_last"`` or ``None``
        (keep channels last). Image folders and the bundled sets are transposed to it;
        arrays and framework datasets are already in the model's layout.
    size
        ``(height, width)`` (or one int for a square) the images of a folder or
        ``"photos"`` are resized to; the side of ``"clever_hans"``.
    preprocess
        Normalization of ``[0, 1]`` pixels for folders and ``"photos"``: a name of the
        CLI's ``--preprocess`` (``"imagenet"``, ``"lite"``, ``"unit"``, ``"symmetric"``,
        ``"255"``); ``None`` keeps ``[0, 1]``.
    labels
        Integer labels ``(N,)`` (array-like or ``.npy`` path) replacing the source's own;
        ``False`` drops the source's labels.

    Returns
    -------
    Source

    Raises
    ------
    InputError
        ``data`` is of no accepted kind, cannot be read, or ``labels`` do not fit it.
    OptionError
        A bad ``layout`` / ``size`` / ``preprocess``, or one given to a source it does not
        apply to.
    """
    if layout is not None and layout not in LAYOUTS:
        raise OptionError(f"layout must be 'channels_first', 'channels_last' or None; got "
                          f"{layout!r}")
    size = _check_size(size)
    if preprocess is not None:
        _normalization(preprocess)  # checks the name
    if isinstance(data, _SourceBase) or (isinstance(data, Source)
                                         and not isinstance(data, (str, os.PathLike))):
        if size is not None or preprocess is not None or labels is not None:
            raise OptionError("data is already a Source: size=, preprocess= and labels= "
                              "apply when a source is opened")
        return data
    # labels= replaces the dataset's own, which are then not even parsed
    source = _open(data, layout, size, preprocess, own_labels=labels is None)
    if labels is not None:
        source._set_labels(labels)
    return source


# -- the common part -----------------------------------------------------------------

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
    from ..cli import PREPROCESSING

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


# -- dispatch --------------------------------------------------------------------------

def _open(data: Any, layout: str | None, size: tuple[int, int] | None,
          preprocess: str | None, own_labels: bool) -> _SourceBase:
    if isinstance(data, str) and data in BUNDLED:
        return _bundled(data, layout, size, preprocess)
    if isinstance(data, (str, os.PathLike)):
        return _open_path(Path(os.fspath(data)), layout, size, preprocess)
    torch_kind = _torch_kind(data)
    tf_dataset = _is_tf_dataset(data)
    if torch_kind or tf_dataset or isinstance(data, np.ndarray) \
            or framework_of_array(data) != "other":
        if size is not None or preprocess is not None:
            raise OptionError("size= and preprocess= apply to image folders and the bundled "
                              "'photos' (and size= to 'clever_hans'); give arrays and "
                              "datasets already resized and normalized for the model")
    if torch_kind in ("loader", "dataset"):
        dataset = data.dataset if torch_kind == "loader" else data
        return TorchSource(dataset, loader=torch_kind == "loader", own_labels=own_labels)
    if torch_kind == "iterable":
        raise InputError(f"{type(data).__name__} is an IterableDataset: it has no random "
                         "access, which resuming a run needs; give a map-style Dataset "
                         "(ds[i]) or the data as an array")
    if tf_dataset:
        return TensorFlowSource(data, own_labels=own_labels)
    if isinstance(data, np.memmap):
        filename = getattr(data, "filename", None)
        return ArraySource(data, name=Path(filename).name if filename else "memmap",
                           path=None if filename is None else str(filename), kind="memmap")
    if isinstance(data, np.ndarray):
        return ArraySource(data)
    if framework_of_array(data) != "other" and hasattr(data, "shape"):
        return ArraySource(np.asarray(to_numpy(data)), name=f"{framework_of_array(data)} array")
    raise InputError(f"cannot read a data set from {type(data).__name__}"
                     f"{' ' + repr(data)[:60] if isinstance(data, (str, list, tuple)) else ''}"
                     f"; give {ACCEPTED}")


def _torch_kind(data: Any) -> str | None:
    """``"loader"``, ``"dataset"``, ``"iterable"`` or None, by class (no torch import)."""
    names = {cls.__name__ for cls in type(data).__mro__
             if cls.__module__.startswith("torch.utils.data")}
    if "DataLoader" in names:
        return "loader" if _torch_kind(data.dataset) != "iterable" else "iterable"
    if "IterableDataset" in names:
        return "iterable"
    if "Dataset" in names:
        return "dataset"
    return None


def _is_tf_dataset(data: Any) -> bool:
    return any(cls.__module__.startswith("tensorflow") and cls.__name__ == "DatasetV2"
               for cls in type(data).__mro__)


def _open_path(path: Path, layout: str | None, size: tuple[int, int] | None,
               preprocess: str | None) -> _SourceBase:
    if path.is_dir():
        return FolderSource(path, layout=layout, size=size, preprocess=preprocess)
    if not path.exists():
        raise InputError(f"no file or folder {str(path)!r}; give {ACCEPTED}")
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".npz"):
        raise InputError(f"cannot read a data set from the file {str(path)!r}: give a .npy "
                         "or .npz file, an image folder, or an array")
    if size is not None or preprocess is not None:
        raise OptionError("size= and preprocess= apply to image folders and the bundled "
                          "'photos'; give .npy / .npz data resized and normalized for the "
                          "model")
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


# -- arrays and bundled sets -----------------------------------------------------------

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


def _bundled(name: str, layout: str | None, size: tuple[int, int] | None,
             preprocess: str | None) -> ArraySource:
    options: dict[str, Any] = {"layout": layout}
    if name in ("digits", "clever_hans") and preprocess is not None:
        raise OptionError(f"preprocess= applies to image folders and 'photos'; {name!r} is "
                          "already in [0, 1] as its models are trained")
    if name == "digits":
        if size is not None:
            raise OptionError("'digits' are 8x8 images: size= does not apply")
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - scikit-learn is a dev dependency
            raise InputError("'digits' needs scikit-learn (pip install scikit-learn)") \
                from error
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        return ArraySource(_to_layout(x, layout), name=name, kind="bundled",
                           labels=digits.target.astype(np.int64),
                           class_names=[str(d) for d in range(10)], options=options)
    if name == "clever_hans":
        from ..datasets import clever_hans

        if size is not None and size[0] != size[1]:
            raise OptionError(f"'clever_hans' images are square: give size=s; got {size}")
        data = clever_hans() if size is None else clever_hans(size=size[0])
        options.update(split="test", seed=0, size=int(data.x_test.shape[1]),
                       patch_class=data.patch_class)
        return ArraySource(_to_layout(data.x_test, layout), name=name, kind="bundled",
                           labels=data.y_test.astype(np.int64),
                           class_names=["0-4", "5-9"], options=options)
    from ..zoo import load_image

    size = size or (PHOTO_SIZE, PHOTO_SIZE)
    if size[0] != size[1]:
        raise OptionError(f"'photos' are squeezed to a square, as in the demo: give size=s; "
                          f"got {size}")
    x = np.stack([load_image(photo, size[0]) for photo in PHOTOS])
    if preprocess is not None:
        mean, std = _normalization(preprocess)
        x = ((x - mean) / std).astype(np.float32)
    options.update(photos=list(PHOTOS), size=list(size), preprocess=preprocess)
    return ArraySource(_to_layout(x, layout), name=name, kind="bundled", options=options)


# -- image folders ---------------------------------------------------------------------

class FolderSource(_SourceBase):
    """Images under a folder: one sub-folder per class, or images only (no labels)."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike, *, layout: str | None = None,
                 size: tuple[int, int] | None = None, preprocess: str | None = None) -> None:
        root = Path(root).resolve()
        super().__init__(root.name, str(root), {"layout": layout,
                                                "size": None if size is None else list(size),
                                                "preprocess": preprocess})
        self._root = root
        self._files, labels, self.class_names = _scan_folder(root)
        self._labels = labels
        self._has_labels = labels is not None
        self._length = len(self._files)
        self._layout = layout
        self._norm = None if preprocess is None else _normalization(preprocess)
        self._size = size if size is not None else self._common_size()
        height, width = self._size
        self.sample_shape = (3, height, width) if layout == "channels_first" \
            else (height, width, 3)
        self.dtype = np.dtype("float32")

    def _common_size(self) -> tuple[int, int]:
        """The one ``(height, width)`` of every image (header reads), or an InputError."""
        from PIL import Image, UnidentifiedImageError

        first: tuple[int, int] | None = None
        for path in self._files:
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except (UnidentifiedImageError, OSError) as error:
                raise _unreadable(path, error) from error
            if first is None:
                first, first_path = (height, width), path
            elif (height, width) != first:
                raise InputError(f"images differ in size ({self._relative(first_path)} is "
                                 f"{first[0]}x{first[1]}, {self._relative(path)} is "
                                 f"{height}x{width}, height x width): pass size=(height, "
                                 "width) to resize them all")
        assert first is not None
        return first

    def _relative(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix()

    def _load(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        height, width = self._size
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # palette, grey and RGBA -> RGB; GIF frame 0
        except (UnidentifiedImageError, OSError) as error:
            raise _unreadable(path, error) from error
        if rgb.size != (width, height):
            if self.options["size"] is None:
                raise InputError(f"{self._relative(path)} is {rgb.size[1]}x{rgb.size[0]} but "
                                 f"the images were {height}x{width} (height x width): pass "
                                 "size=(height, width) to resize them all")
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        if self._norm is not None:
            pixels = ((pixels - self._norm[0]) / self._norm[1]).astype(np.float32)
        return pixels

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        images = np.stack([self._load(path) for path in self._files[start:stop]])
        y = None if self._labels is None else self._labels[start:stop].copy()
        return _to_layout(images, self._layout), y

    def _fingerprint_extra(self) -> bytes:
        # renamed, added or moved files change the data even where sampled pixels do not
        names = [self._relative(path) for path in self._files]
        return json.dumps([names, self.class_names]).encode()


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(f"cannot read {str(path)!r} as an image ({error}); remove it or "
                      "convert it to PNG / JPEG")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _scan_folder(root: Path) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Image files (sorted), their labels and the class names of a folder."""
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    direct = [p for p in entries if p.is_file() and _is_image(p)]
    if classes and direct:
        raise InputError(f"{str(root)!r} holds images ({direct[0].name}, ...) next to class "
                         f"folders ({classes[0].name}, ...): move the images into a class "
                         "folder, or point at a folder of images only")
    if not classes:
        files, labels, names = direct, None, None
    else:
        files, ids = [], []
        for label, folder in enumerate(classes):
            found = sorted((p for p in folder.rglob("*") if p.is_file() and _is_image(p)
                            and not any(part.startswith(".")
                                        for part in p.relative_to(folder).parts)),
                           key=lambda p: p.relative_to(folder).as_posix())
            files += found
            ids += [label] * len(found)
        labels = np.asarray(ids, dtype=np.int64)
        names = [folder.name for folder in classes]
    if not files:
        others = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        if not others:
            raise InputError(f"the folder {str(root)!r} is empty: put images in it, one "
                             "sub-folder per class")
        raise InputError(f"the folder {str(root)!r} holds no images ({len(others)} other "
                         f"files, e.g. {others[:3]}); images are "
                         f"{', '.join(IMAGE_EXTENSIONS)} files (any case)")
    return files, labels, names


# -- PyTorch ---------------------------------------------------------------------------

_TORCH_FIX = ("make the dataset return x or (x, int label), or pass labels= (an array) / "
              "labels=False")


class TorchSource(_SourceBase):
    """A map-style PyTorch ``Dataset``: ``ds[i]`` is ``x`` or ``(x, y, ...)``.

    Tensors become numpy with their dtype; no layout change. Labels are read when
    ``ds[0]`` is a tuple / list: its second item must be an integer class id.
    """

    kind = "torch"

    def __init__(self, dataset: Any, *, loader: bool = False, own_labels: bool = True) -> None:
        super().__init__(type(dataset).__name__,
                         options={"from": "DataLoader" if loader else "Dataset"})
        self._dataset = dataset
        self._own = own_labels  # False: labels= replaces them, the dataset's y is not read
        try:
            self._length = int(len(dataset))
        except TypeError as error:
            raise InputError(f"the {type(dataset).__name__} has no len(): a map-style Dataset "
                             "needs __len__ (and __getitem__) for random access") from error
        if self._length == 0:
            return
        x, y = self._sample(0)
        self.sample_shape = x.shape
        self.dtype = x.dtype
        self._has_labels = y is not None

    def _sample(self, index: int) -> tuple[np.ndarray, int | None]:
        where = f"{self.name}[{index}]"
        element = self._dataset[index]
        if isinstance(element, dict):
            raise InputError(f"{where} is a dict ({sorted(element)[:4]}); {_TORCH_FIX}")
        x, y = (element[0], element[1] if len(element) > 1 else None) \
            if isinstance(element, (tuple, list)) and len(element) > 0 else (element, None)
        if type(x).__module__.startswith("PIL"):
            raise InputError(f"{where} is a PIL image: add a transform that makes the model's "
                             "input tensor (e.g. torchvision's ToTensor())")
        x = np.asarray(to_numpy(x))
        label = None
        if y is not None and self._own:
            label = _check_label(y, where, _TORCH_FIX)
        return x, label

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        samples = [self._sample(i) for i in range(start, stop)]
        x = _stack([s[0] for s in samples], self.sample_shape, self.dtype, self.name, start,
                   "resize in the dataset's transform")
        if not self._has_labels:
            return x, None
        if any(s[1] is None for s in samples):
            raise InputError(f"{self.name} gives labels for some samples but not for others "
                             f"(in [{start}, {stop})); {_TORCH_FIX}")
        return x, np.asarray([s[1] for s in samples], dtype=np.int64)


# -- TensorFlow ------------------------------------------------------------------------

_TF_FIX = ("map it to (x, integer label), e.g. ds.map(lambda x, y: (x, tf.argmax(y, -1))) "
           "for one-hot labels, or pass labels= (an array) / labels=False")


class TensorFlowSource(_SourceBase):
    """A ``tf.data.Dataset`` of ``x`` or ``(x, y, ...)`` elements, batched or not.

    Reads continue one iterator while they are consecutive; any other read starts a new
    one at ``ds.skip(...)`` (one batch at a time for batched datasets).
    """

    kind = "tensorflow"

    def __init__(self, dataset: Any, *, own_labels: bool = True) -> None:
        super().__init__(type(dataset).__name__.lstrip("_"))
        tf = sys.modules["tensorflow"]
        _check_tf_deterministic(dataset)
        self._dataset = dataset
        x_spec, y_spec = _tf_split(dataset.element_spec, tf)
        self._batched = _tf_batched(dataset, x_spec, y_spec)
        self.options = {"batched": self._batched}
        count = int(dataset.cardinality())
        if count < 0:
            kind = "infinite" if count == int(tf.data.INFINITE_CARDINALITY) else "unknown"
            raise InputError(f"the tf.data.Dataset's length is {kind} (after filter, "
                             "unbatch, repeat, or from a generator / files): declare it with "
                             "ds = ds.apply(tf.data.experimental.assert_cardinality(n)), n "
                             "the number of elements (batches, for a batched dataset), and "
                             "no repeat()")
        self._elements = count
        self._iterator: Any = None
        self._next = -1  # element index the live iterator gives next
        self._cached: tuple[int, np.ndarray, np.ndarray | None] | None = None
        if count == 0:
            return
        self._has_labels = own_labels and y_spec is not None
        if self._has_labels and y_spec.shape.rank is not None:
            per_sample = tuple(y_spec.shape[1:] if self._batched else y_spec.shape)
            if per_sample != () or not (y_spec.dtype.is_integer or y_spec.dtype.is_bool):
                raise InputError(f"the tf.data.Dataset's labels are {y_spec.dtype.name} of "
                                 f"shape {per_sample} per sample, not integer class ids; "
                                 f"{_TF_FIX}")
        x, _ = self._element(0)
        self._batch = len(x) if self._batched else 1
        self.sample_shape = tuple(int(s) for s in x.shape[1:])
        self.dtype = x.dtype
        self._length = self._count_samples(count) if self._batched else count

    def _count_samples(self, batches: int) -> int:
        node = _tf_batch_node(self._dataset)
        try:  # the batch step's input length, when nothing after it changed the count
            if node is not None and int(node.cardinality()) == batches:
                inner = int(node._input_dataset.cardinality())
                size = int(node._batch_size)
                if inner >= 0 and size == self._batch:
                    return (inner // size) * size if bool(node._drop_remainder) else inner
        except (AttributeError, TypeError):
            pass
        last, _ = self._element(batches - 1)  # reads through the pipeline once
        return (batches - 1) * self._batch + len(last)

    def _element(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Element ``index`` (a batch, or one sample with a leading axis of 1)."""
        if self._cached is not None and self._cached[0] == index:
            return self._cached[1], self._cached[2]
        if self._iterator is None or self._next != index:
            self._iterator = iter(self._dataset.skip(index))
        try:
            element = next(self._iterator)
        except StopIteration:
            self._iterator = None
            raise InputError(f"the tf.data.Dataset ended at element {index} but its "
                             f"cardinality is {self._elements}") from None
        self._next = index + 1
        if isinstance(element, (tuple, list)):
            x, y = element[0], element[1] if len(element) > 1 else None
        else:
            x, y = element, None
        x = np.asarray(x.numpy())
        if not self._has_labels or y is None:
            y = None
        else:
            y = np.asarray(y.numpy())
            y = y if self._batched else y[None]
            if y.ndim != 1 or y.dtype.kind not in "iub":
                raise InputError(f"element {index} of the tf.data.Dataset has labels of "
                                 f"dtype {y.dtype}, shape {y.shape[1:]} per sample, not "
                                 f"integer class ids; {_TF_FIX}")
            y = y.astype(np.int64)
        if not self._batched:
            x = x[None]
        self._cached = (index, x, y)
        return x, y

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        first, last = start // self._batch, (stop - 1) // self._batch
        parts = [self._element(b) for b in range(first, last + 1)]
        for b, (x, _) in zip(range(first, last + 1), parts):
            if x.shape[1:] != self.sample_shape:
                raise InputError(f"element {b} of the tf.data.Dataset has samples of shape "
                                 f"{x.shape[1:]}, element 0 {self.sample_shape}: samples must "
                                 "share one shape (resize in the pipeline)")
            if b < last and len(x) != self._batch:
                raise InputError(f"batch {b} of the tf.data.Dataset has {len(x)} samples, "
                                 f"batch 0 {self._batch}: batches must be of one size but "
                                 "the last (use ds.batch(n), or ds.unbatch() with "
                                 "assert_cardinality)")
        offset = start - first * self._batch
        x = np.concatenate([p[0] for p in parts])[offset:offset + stop - start]
        if len(x) != stop - start:
            raise InputError(f"the tf.data.Dataset gave {len(x)} samples for [{start}, {stop})"
                             f" but has {self._length}: batches must be of one size but the "
                             "last")
        y = None
        if self._has_labels:
            y = np.concatenate([p[1] for p in parts])[offset:offset + stop - start]
        return x.astype(self.dtype, copy=False), y


def _tf_split(spec: Any, tf: Any) -> tuple[Any, Any]:
    """``(x spec, y spec or None)`` of an element ``x`` or ``(x, y, ...)``."""
    if isinstance(spec, dict):
        raise InputError(f"the tf.data.Dataset's elements are dicts ({sorted(spec)[:4]}); "
                         "map them to (x, y), e.g. ds.map(lambda d: (d['image'], d['label']))")
    if isinstance(spec, (tuple, list)):
        x_spec, y_spec = spec[0], spec[1] if len(spec) > 1 else None
    else:
        x_spec, y_spec = spec, None
    for part, what in ((x_spec, "inputs"), (y_spec, "labels")):
        if part is not None and not isinstance(part, tf.TensorSpec):
            raise InputError(f"the tf.data.Dataset's {what} are {type(part).__name__}; "
                             "elements must be dense tensors x or (x, y) (one model input)")
    return x_spec, y_spec


def _tf_chain(dataset: Any) -> list[Any]:
    """The dataset and its single-input ancestors, outermost first (private attributes of
    tf.data; unknown pipelines just end the chain)."""
    chain, node = [], dataset
    while node is not None and len(chain) < 1000:
        chain.append(node)
        node = getattr(node, "_input_dataset", None)
    return chain


def _tf_batch_node(dataset: Any) -> Any:
    for node in _tf_chain(dataset):
        name = type(node).__name__.lower()
        if "unbatch" in name:
            return None
        if "batch" in name:
            return node
    return None


def _tf_batched(dataset: Any, x_spec: Any, y_spec: Any) -> bool:
    for node in _tf_chain(dataset):
        name = type(node).__name__.lower()
        if "unbatch" in name:
            return False
        if "batch" in name:
            return True
    if y_spec is not None and y_spec.dtype.is_integer and y_spec.shape.rank in (0, 1):
        return y_spec.shape.rank == 1
    return bool(x_spec.shape.rank) and x_spec.shape[0] is None


def _check_tf_deterministic(dataset: Any) -> None:
    for node in _tf_chain(dataset):
        if "shuffle" not in type(node).__name__.lower():
            continue
        reshuffle = getattr(node, "_reshuffle_each_iteration", True)
        seeded = any(int(getattr(node, attr, 0)) != 0 for attr in ("_seed", "_seed2"))
        if reshuffle or not seeded:
            raise InputError("the tf.data.Dataset shuffles, so the same range would not give "
                             "the same samples (which resuming needs): remove .shuffle(...) "
                             "(the order does not matter for explanations) or use "
                             ".shuffle(n, seed=s, reshuffle_each_iteration=False)")
