"""PyTorch map-style ``Dataset`` / ``DataLoader`` sources, recognized by class (torch is
never imported here)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...core.arrays import to_numpy
from ...core.errors import InputError
from .common import _check_label, _SourceBase, _stack

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
