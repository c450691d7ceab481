"""Several inputs at once: tuples, lists and dicts of arrays for multi-input models.

A model taking several inputs (``forward(a, b)`` in PyTorch, a Keras model with two
``Input``\\ s) is explained with ``x`` given as a tuple, list or dict of batches, as in
Captum; attributions come back in the same structure, each in its input's layout and
array type.

Inside crosslens the members are flattened per sample and concatenated into one native
``(N, D)`` batch, and the backend splits that batch back into the structure whenever it
calls the model. Every method written for one input — gradients, paths, noise, feature
ablation, layer methods — then runs on multi-input models unchanged, and the result is
split back here. Methods that need an image layout (CAMs' upsampling, occlusion windows,
RISE masks) refuse structures with a clear error.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError


@dataclass(frozen=True)
class InputStructure:
    """How a structure of inputs maps to the flat ``(N, D)`` batch.

    Attributes
    ----------
    kind
        ``"tuple"``, ``"list"`` or ``"dict"``.
    keys
        Dict keys in the user's order, or the positions ``0..k-1``.
    shapes
        Per-sample shape of each member.
    """

    kind: str
    keys: tuple
    shapes: tuple[tuple[int, ...], ...]

    @property
    def sizes(self) -> list[int]:
        return [int(np.prod(shape, dtype=np.int64)) for shape in self.shapes]

    @property
    def segments(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of each member along the flat axis."""
        stops = np.cumsum(self.sizes).tolist()
        return list(zip([0] + stops[:-1], stops))

    @property
    def width(self) -> int:
        return sum(self.sizes)

    def members(self, value: Any) -> list[Any]:
        """The members of a user structure (or of a matching one) in order."""
        if self.kind == "dict":
            if not isinstance(value, dict) or set(value) != set(self.keys):
                raise InputError(f"expected a dict with keys {list(self.keys)}; got "
                                 f"{_describe(value)}")
            return [value[k] for k in self.keys]
        if not isinstance(value, (tuple, list)) or len(value) != len(self.keys):
            raise InputError(f"expected a {self.kind} of {len(self.keys)} arrays, one per "
                             f"input; got {_describe(value)}")
        return list(value)

    def pack(self, values: Sequence[Any]) -> Any:
        """Values in the user's structure (tuple, list or dict)."""
        if self.kind == "dict":
            return dict(zip(self.keys, values))
        return tuple(values) if self.kind == "tuple" else list(values)

    def flatten(self, ops: Any, natives: Sequence[Any]) -> Any:
        """Native members, each ``(N, *shape)``, as one ``(N, D)`` native batch."""
        n = ops.shape(natives[0])[0]
        return ops.concat([ops.reshape(m, (n, size)) for m, size in zip(natives, self.sizes)],
                          axis=1)

    def split(self, ops: Any, flat: Any) -> list[Any]:
        """A native ``(N, D)`` batch as the native members ``(N, *shape)``."""
        return [ops.reshape(flat[:, a:b], (-1,) + tuple(shape))
                for (a, b), shape in zip(self.segments, self.shapes)]

    def describe(self) -> str:
        names = [repr(k) if self.kind == "dict" else f"#{k}" for k in self.keys]
        return ", ".join(f"{name} {shape}" for name, shape in zip(names, self.shapes))


def structure_of(x: Any, input_count: int | None) -> InputStructure | None:
    """The structure of ``x``, or ``None`` for a single array.

    Tuples and dicts are always structures; a list is one when its members are arrays
    and the model takes that many inputs (a plain nested list is one array).
    """
    if isinstance(x, dict):
        keys = tuple(x)
        members = [x[k] for k in keys]
        kind = "dict"
    elif isinstance(x, tuple) or (
            isinstance(x, list) and input_count is not None and input_count > 1
            and len(x) == input_count and all(hasattr(m, "shape") for m in x)):
        keys = tuple(range(len(x)))
        members = list(x)
        kind = "tuple" if isinstance(x, tuple) else "list"
    else:
        return None
    if not members:
        raise InputError("the input structure is empty; give one array per model input")
    shapes = []
    for key, member in zip(keys, members):
        shape = tuple(int(s) for s in getattr(member, "shape", np.shape(member)))
        if len(shape) < 1:
            raise InputError(f"input {key!r} of the structure is a scalar; every input needs "
                             "a batch axis")
        shapes.append(shape)
    batch = {shape[0] for shape in shapes}
    if len(batch) != 1:
        raise InputError("the inputs of the structure have different batch sizes: "
                         + ", ".join(f"{k!r}: {s[0]}" for k, s in zip(keys, shapes))
                         + "; every input needs one row per sample")
    return InputStructure(kind, keys, tuple(shape[1:] for shape in shapes))


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return f"a dict with keys {list(value)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__} of shape {getattr(value, 'shape', '?')}"
