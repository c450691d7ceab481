"""The kind of data a model takes — image, text, tabular or series — and how it is shown.

:func:`resolve_modality` detects the kind from a data set's samples, or checks the one
asked for, and returns a :class:`Modality`: what the dataset store records in its
manifest and what the inspection page shows in its instance view.

Detection (``modality=None``) from one sample's shape and dtype:

- integer ``(T,)`` of a model with an embedding layer: ``"text"`` (token ids);
- ``(F,)``: ``"tabular"`` (one row of a table);
- ``(C, T)`` or ``(T, C)``: ``"series"`` (channels over time);
- anything else: ``"image"``.

A series' layout is ``"channels_first"`` ``(C, T)`` or ``"time_first"`` ``(T, C)``; by
default the model's input layout (Conv1d: channels first, Keras: time first), else the
shorter axis holds the channels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.errors import ModalityError
from .text import token_strings

MODALITIES = ("image", "text", "tabular", "series")
SERIES_LAYOUTS = ("channels_first", "time_first")


class Vocabulary:
    """Token strings by id from a mapping or a list (ids without an entry show as
    numbers); picklable, unlike a closure."""

    def __init__(self, entries: Mapping[int, str] | Sequence[str]) -> None:
        self.entries = dict(entries) if isinstance(entries, Mapping) else dict(
            enumerate(entries))

    def __call__(self, token_id: int) -> str:
        return str(self.entries.get(int(token_id), token_id))


@dataclass(frozen=True, eq=False)
class Modality:
    """What the samples of a data set are, with the names that show them.

    Attributes
    ----------
    kind
        ``"image"``, ``"text"``, ``"tabular"`` or ``"series"``.
    feature_names
        Tabular: one name per feature.
    channel_names
        Series: one name per channel.
    series_layout
        Series: ``"channels_first"`` ``(C, T)`` or ``"time_first"`` ``(T, C)``.
    tokens
        Text: a tokenizer (``convert_ids_to_tokens``), a :class:`Vocabulary` or a
        callable id -> string; ``None`` shows the ids.
    """

    kind: str
    feature_names: tuple[str, ...] | None = None
    channel_names: tuple[str, ...] | None = None
    series_layout: str | None = None
    tokens: Any = None

    def describe(self) -> dict:
        """The JSON entry of the store's manifest (without the vocabulary)."""
        entry: dict[str, Any] = {"kind": self.kind}
        if self.kind == "tabular":
            entry["feature_names"] = list(self.feature_names or ())
        elif self.kind == "series":
            entry.update(layout=self.series_layout, channel_names=list(self.channel_names or ()))
        elif self.kind == "text":
            entry["attributions"] = ("per token: the sum over the embedding dimensions "
                                     "(gradient methods) or the token's own value (token "
                                     "methods), as explain_text's scores")
        return entry

    def token_strings(self, ids: Any) -> list[list[str]]:
        """The strings of token ids ``(N, T)`` (the ids as text without ``tokens``)."""
        ids = np.atleast_2d(np.asarray(ids))
        if self.tokens is None:
            return [[str(int(t)) for t in row] for row in ids]
        return token_strings(self.tokens, ids)

    def vocabulary(self, ids: Any) -> dict[str, str] | None:
        """``{id: token}`` of the ids that occur in ``ids`` (``None`` without tokens)."""
        if self.tokens is None:
            return None
        unique = np.unique(np.asarray(ids))
        return dict(zip((str(int(i)) for i in unique), self.token_strings(unique[None])[0]))

    def series_axes(self) -> tuple[int, int]:
        """Series: the per-sample ``(channel axis, time axis)``."""
        return (0, 1) if self.series_layout == "channels_first" else (1, 0)


def resolve_modality(kind: str | None, sample_shape: Sequence[int], dtype: Any,
                     backend: Any = None, *, tokens: Any = None,
                     feature_names: Sequence[str] | None = None,
                     channel_names: Sequence[str] | None = None,
                     series_layout: str | None = None) -> Modality:
    """The :class:`Modality` of samples of ``sample_shape`` and ``dtype``.

    Parameters
    ----------
    kind
        ``"image"``, ``"text"``, ``"tabular"``, ``"series"``, or ``None`` (detected, see
        the module docstring).
    sample_shape, dtype
        One sample's shape (without the batch axis) and the data's dtype.
    backend
        The model's backend (its embedding layers and input layout), when known.
    tokens
        Text: a tokenizer, a vocabulary (a dict id -> token, or a list indexed by id) or
        a callable id -> token.
    feature_names
        Tabular: one name per feature (default ``x0``, ``x1``, ...).
    channel_names
        Series: one name per channel (default ``channel 0``, ...).
    series_layout
        Series: ``"channels_first"`` or ``"time_first"`` (default: see the module
        docstring).

    Raises
    ------
    ModalityError
        An unknown kind, samples that do not fit it, or names for another kind.
    """
    shape = tuple(int(s) for s in sample_shape)
    integer = np.dtype(dtype).kind in "iu"
    if kind is None:
        kind = _detect(shape, integer, backend)
    elif kind not in MODALITIES:
        raise ModalityError(f"modality must be one of {', '.join(MODALITIES)} (or None to "
                            f"detect it); got {kind!r}")
    _check_fit(kind, shape, integer)
    given = {"tokens": (tokens, "text"), "feature_names": (feature_names, "tabular"),
             "channel_names": (channel_names, "series"),
             "series_layout": (series_layout, "series")}
    for name, (value, owner) in given.items():
        if value is not None and kind != owner:
            raise ModalityError(f"{name}= applies to {owner} data; these samples {shape} "
                                f"are {kind} (pass modality={owner!r} if they are {owner})")
    if kind == "tabular":
        return Modality(kind, feature_names=_names(feature_names, shape[0], "x{}",
                                                   "feature_names", "features"))
    if kind == "series":
        layout = _series_layout(series_layout, shape, backend)
        count = shape[0] if layout == "channels_first" else shape[1]
        return Modality(kind, channel_names=_names(channel_names, count, "channel {}",
                                                   "channel_names", "channels"),
                        series_layout=layout)
    if kind == "text":
        return Modality(kind, tokens=_tokens(tokens))
    return Modality(kind)


def _detect(shape: tuple[int, ...], integer: bool, backend: Any) -> str:
    embeds = backend is not None and bool(backend.embedding_layers())
    if len(shape) == 1:
        return "text" if integer and embeds else "tabular"
    if len(shape) == 2 and not integer:
        return "series"
    return "image"


def _check_fit(kind: str, shape: tuple[int, ...], integer: bool) -> None:
    wanted = {"text": (1, True, "integer token ids (N, T)"),
              "tabular": (1, False, "a table (N, F) of numbers"),
              "series": (2, False, "series (N, C, T) or (N, T, C) of numbers")}
    if kind not in wanted:
        return
    rank, ids, what = wanted[kind]
    if len(shape) != rank or (ids and not integer):
        raise ModalityError(f"{kind} data are {what}; these samples have shape {shape}"
                            f"{' and are not integers' if ids and not integer else ''}")


def _names(names: Sequence[str] | None, count: int, pattern: str, option: str,
           what: str) -> tuple[str, ...]:
    if names is None:
        return tuple(pattern.format(i) for i in range(count))
    if isinstance(names, str) or len(names) != count:
        got = "a string" if isinstance(names, str) else f"{len(names)} names"
        raise ModalityError(f"{option}= gives {got} for {count} {what}; give one name per "
                            f"{what[:-1]}")
    return tuple(str(n) for n in names)


def _series_layout(layout: str | None, shape: tuple[int, int], backend: Any) -> str:
    if layout is not None:
        if layout not in SERIES_LAYOUTS:
            raise ModalityError(f"series_layout must be one of {', '.join(SERIES_LAYOUTS)}; "
                                f"got {layout!r}")
        return layout
    known = backend.input_layout((1,) + shape) if backend is not None else None
    if known is not None:
        return "channels_first" if known == "channels_first" else "time_first"
    return "channels_first" if shape[0] <= shape[1] else "time_first"


def _tokens(tokens: Any) -> Any:
    if tokens is None or hasattr(tokens, "convert_ids_to_tokens") or isinstance(
            tokens, Vocabulary):
        return tokens
    if isinstance(tokens, Mapping):
        return Vocabulary(tokens)
    if isinstance(tokens, Sequence) and not isinstance(tokens, str) and all(
            isinstance(t, str) for t in tokens):
        return Vocabulary(tokens)
    if callable(tokens):
        return tokens
    raise ModalityError("tokens= is a tokenizer (convert_ids_to_tokens), a vocabulary (a "
                        "dict id -> token, or a list of tokens indexed by id) or a callable "
                        f"id -> token; got {type(tokens).__name__}")
