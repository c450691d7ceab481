"""ArrayOps on numpy arrays: the host side of feature visualization (parameters, Adam)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .backend import ArrayOps


class NumpyOps(ArrayOps):
    """:class:`~crosslens.core.backend.ArrayOps` for numpy arrays of one float dtype."""

    def __init__(self, dtype: Any = np.float64) -> None:
        self.dtype = np.dtype(dtype)

    def asarray(self, array):
        return np.asarray(array, dtype=self.dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def concat(self, arrays, axis=0):
        return np.concatenate(list(arrays), axis=axis)

    def stack(self, arrays, axis=0):
        return np.stack(list(arrays), axis=axis)

    def sum(self, array, axis=None, keepdims=False):
        return np.sum(array, axis=axis, keepdims=keepdims)

    def mean(self, array, axis=None, keepdims=False):
        return np.mean(array, axis=axis, keepdims=keepdims)

    def reshape(self, array, shape):
        return np.reshape(array, tuple(shape))

    def zeros_like(self, array):
        return np.zeros_like(array)

    def stop_gradient(self, array):
        return array

    def halves(self, array):
        first, second = np.split(array, 2)
        return first, second

    def abs(self, array):
        return np.abs(array)

    def sqrt(self, array):
        return np.sqrt(array)

    def maximum(self, a, b):
        return np.maximum(a, b)

    def max(self, array, axis=None, keepdims=False):
        return np.max(array, axis=axis, keepdims=keepdims)

    def min(self, array, axis=None, keepdims=False):
        return np.min(array, axis=axis, keepdims=keepdims)

    def where(self, condition, a, b):
        return np.where(condition, a, b)

    def as_integer(self, array):
        return np.asarray(array, dtype=np.int64)

    def take_rows(self, array, rows):
        return array[np.asarray(rows, dtype=np.int64)]

    def gather_rows(self, array, index):
        return np.take_along_axis(array, np.asarray(index)[:, None], axis=1)[:, 0]

    def argmax(self, array, axis):
        return np.argmax(array, axis=axis)

    def shape(self, array):
        return tuple(np.shape(array))

    def transpose(self, array, axes: Sequence[int]):
        return np.transpose(array, tuple(axes))

    def resize_bilinear(self, array, size):
        from .imageops import resize_bilinear
        return np.stack([resize_bilinear(a, tuple(size)) for a in np.asarray(array)])

    def exp(self, array):
        return np.exp(array)

    def log(self, array):
        return np.log(array)

    def matmul(self, a, b):
        return np.matmul(a, b)
