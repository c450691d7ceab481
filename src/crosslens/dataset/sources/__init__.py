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

One module per kind (``arrays``, ``bundled``, ``folder``, ``torch``, ``tfdata``) builds on
``common`` (range checks, labels, layouts, fingerprints); this module dispatches. Nothing
is imported for a kind before data of that kind is opened (PIL for folders, scikit-learn
for ``"digits"``); torch and TensorFlow never are: their datasets are recognized by class.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...core.arrays import framework_of_array, to_numpy
from ...core.errors import InputError, OptionError
from .arrays import ArraySource, _open_array_file
from .bundled import BUNDLED, PHOTOS, _bundled
from .common import LAYOUTS, _check_size, _normalization, _SourceBase
from .folder import IMAGE_EXTENSIONS, FolderSource
from .tfdata import TensorFlowSource, _is_tf_dataset
from .torch import TorchSource, _torch_kind

__all__ = ["Source", "open_source", "ArraySource", "FolderSource", "TorchSource",
           "TensorFlowSource", "LAYOUTS", "IMAGE_EXTENSIONS", "BUNDLED", "PHOTOS"]

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
    """The :class:`Source` reading ``data`` (see the package docstring for every kind).

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
    return _open_array_file(path, suffix)
