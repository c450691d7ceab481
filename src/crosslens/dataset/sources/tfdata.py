"""``tf.data.Dataset`` sources, batched or not, read by ``skip`` and one iterator per run
of consecutive reads (TensorFlow is taken from ``sys.modules``, never imported here: the
user's dataset has imported it)."""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ...core.errors import InputError
from .common import _SourceBase

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


def _tf_last_batching(dataset: Any) -> tuple[str | None, Any]:
    """``("batch", node)`` or ``("unbatch", node)`` for the pipeline's last (un)batch
    step, ``(None, None)`` when it shows none."""
    for node in _tf_chain(dataset):
        name = type(node).__name__.lower()
        if "unbatch" in name:
            return "unbatch", node
        if "batch" in name:
            return "batch", node
    return None, None


def _tf_batch_node(dataset: Any) -> Any:
    """The batch step after the last unbatch, or ``None``."""
    step, node = _tf_last_batching(dataset)
    return node if step == "batch" else None


def _tf_batched(dataset: Any, x_spec: Any, y_spec: Any) -> bool:
    step, _ = _tf_last_batching(dataset)
    if step is not None:
        return step == "batch"
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


def _is_tf_dataset(data: Any) -> bool:
    return any(cls.__module__.startswith("tensorflow") and cls.__name__ == "DatasetV2"
               for cls in type(data).__mro__)
