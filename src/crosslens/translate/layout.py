"""Tensor layouts (NCHW ↔ NHWC) and the :class:`Translation` bundle.

PyTorch models take ``NCHW`` images, Keras models ``NHWC``.  A translated
model keeps the *target* framework's natural layout, so inputs and
attributions must be converted between the two — always by transposition,
never by reshape.
"""

from __future__ import annotations

import dataclasses
import numpy as np

_ALIASES = {
    "nchw": "NCHW",
    "channels_first": "NCHW",
    "torch": "NCHW",
    "pytorch": "NCHW",
    "chw": "NCHW",
    "nhwc": "NHWC",
    "channels_last": "NHWC",
    "keras": "NHWC",
    "tensorflow": "NHWC",
    "hwc": "NHWC",
}


def normalize_layout(layout: str) -> str:
    try:
        return _ALIASES[str(layout).lower()]
    except KeyError:
        from .errors import TranslationOptionError

        raise TranslationOptionError(
            f"unknown layout {layout!r}; use 'NCHW' / 'NHWC' (or channels_first / channels_last)") from None


def layout_perm(src: str, dst: str, rank: int, batched: bool | None = None) -> tuple | None:
    """Axis permutation taking an array of layout ``src`` to ``dst`` (``None`` = nothing to do).

    Rank 4 is batched (``N,C,H,W`` / ``N,H,W,C``); rank 3 is an unbatched image
    (``C,H,W`` / ``H,W,C``) unless ``batched=True`` (then ``N,C,L`` / ``N,L,C``).
    Ranks 0–2 carry no spatial axes and are returned unchanged.
    """
    if src == dst or rank < 3:
        return None
    src, dst = normalize_layout(src), normalize_layout(dst)
    if src == dst:
        return None
    if batched is None:
        batched = rank >= 4
    lead = 1 if batched else 0
    n_sp = rank - lead - 1
    if src == "NCHW":  # channel right after the lead axes -> move to the end
        perm = tuple(range(lead)) + tuple(range(lead + 1, rank)) + (lead,)
    else:
        perm = tuple(range(lead)) + (rank - 1,) + tuple(range(lead, lead + n_sp))
    return perm


def _transpose(array, perm):
    if perm is None:
        return array
    shape = tuple(getattr(array, "shape", np.shape(array)))
    if len(shape) != len(perm):
        from .errors import TranslationInputError

        raise TranslationInputError(
            f"cannot reorder the axes of an array of shape {shape} with {tuple(perm)}: it needs rank "
            f"{len(perm)} (the layer's or model's activation as the framework returns it)")
    if hasattr(array, "permute") and not isinstance(array, np.ndarray):  # torch.Tensor
        return array.permute(*perm)
    if hasattr(array, "numpy") and not isinstance(array, np.ndarray) and not hasattr(array, "transpose"):
        array = array.numpy()
    if isinstance(array, np.ndarray):
        return np.transpose(array, perm)
    try:  # tf / jax tensors
        from keras import ops

        return ops.transpose(array, perm)
    except Exception:  # pragma: no cover
        return np.transpose(np.asarray(array), perm)


def to_layout(array, src: str, dst: str, *, batched: bool | None = None):
    """Transpose ``array`` (rank 3 or 4, batched or not) from layout ``src`` to ``dst``.

    >>> to_layout(np.zeros((2, 3, 8, 8)), "NCHW", "NHWC").shape
    (2, 8, 8, 3)
    >>> to_layout(np.zeros((8, 8, 3)), "NHWC", "NCHW").shape
    (3, 8, 8)
    """
    rank = len(getattr(array, "shape", np.shape(array)))
    return _transpose(array, layout_perm(src, dst, rank, batched))


def apply_perm(array, perm):
    """``transpose(array, perm)`` for numpy / torch / keras tensors (``perm=None`` = unchanged)."""
    return _transpose(array, perm)


def inverse_perm(perm):
    if perm is None:
        return None
    return tuple(int(i) for i in np.argsort(perm))


@dataclasses.dataclass
class LayerRef:
    """Where a layer of the original model lives in the translation.

    ``target``: module name (torch) / layer name (Keras) in the translation,
    ``None`` if the layer does not influence the output (pruned).
    ``perm``: ``translated_activation = transpose(original_activation, perm)``
    (``None`` = same layout).  ``value``: the ONNX value name.
    """

    target: str | None
    perm: tuple | None = None
    value: str | None = None

    def to_dict(self):
        return {"target": self.target, "perm": None if self.perm is None else list(self.perm), "value": self.value}

    @classmethod
    def from_dict(cls, d):
        return cls(d.get("target"), None if d.get("perm") is None else tuple(d["perm"]), d.get("value"))


class Translation:
    """A translated model with everything needed to use it in place of the original.

    Unpacks as ``(translated_model, report)``::

        model_k, report = translate(torch_model, to="keras", example=x)
        tr = translate(torch_model, to="keras", example=x)
        tr.layer("layer4.1.conv2")     # -> name of the Keras layer
        tr.convert_input(x_nchw)       # -> NHWC
        tr.convert_back(attr_nhwc)     # -> NCHW
    """

    def __init__(
        self,
        original,
        translated,
        report,
        layer_map: dict,
        src_layout: str,
        dst_layout: str,
        src_framework: str,
        dst_framework: str,
    ):
        self.original = original
        self.translated = translated
        self.report = report
        self.layer_map = {k: (v if isinstance(v, LayerRef) else LayerRef(*v)) for k, v in layer_map.items()}
        self.src_layout = src_layout
        self.dst_layout = dst_layout
        self.src_framework = src_framework
        self.dst_framework = dst_framework

    # -- unpacking as (model, report) ----------------------------------------------
    def __iter__(self):
        yield self.translated
        yield self.report

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return (self.translated, self.report)[i]

    def __repr__(self):
        return (
            f"<Translation {self.src_framework}({self.src_layout}) -> {self.dst_framework}({self.dst_layout}), "
            f"{len(self.layer_map)} mapped layers>"
        )

    # -- layouts ---------------------------------------------------------------------
    def convert_input(self, x, *, batched: bool | None = None):
        """Original layout → translation layout (transpose)."""
        return to_layout(x, self.src_layout, self.dst_layout, batched=batched)

    def convert_back(self, attr, *, batched: bool | None = None):
        """Translation layout → original layout (transpose), e.g. for attributions."""
        return to_layout(attr, self.dst_layout, self.src_layout, batched=batched)

    # -- layers ----------------------------------------------------------------------
    def _ref(self, name: str) -> LayerRef:
        from .errors import PrunedLayerError, UnknownLayerError

        if not isinstance(name, str) or name not in self.layer_map:
            raise UnknownLayerError(name, list(self.layer_map))
        ref = self.layer_map[name]
        if ref.target is None:
            raise PrunedLayerError(
                f"layer {name!r} does not influence the model output, so it has no counterpart in the "
                "translation; choose a layer on the path to the output"
            )
        return ref

    def layer(self, name: str) -> str:
        """Name of the module (torch) / layer (Keras) in the translation that corresponds to ``name``."""
        return self._ref(name).target

    def layer_perm(self, name: str):
        """``perm`` with ``translated_activation = transpose(original_activation, perm)`` (``None`` = same)."""
        return self._ref(name).perm

    def get_layer(self, name: str):
        """The translated module / Keras layer object for the original layer ``name``."""
        target = self.layer(name)
        if self.dst_framework == "torch":
            return dict(self.translated.named_modules())[target]
        return self.translated.get_layer(target)

    def activation_to_original(self, name: str, activation):
        """Bring an activation captured at ``self.layer(name)`` into the original layer's layout."""
        return apply_perm(activation, inverse_perm(self.layer_perm(name)))

    def activation_to_translation(self, name: str, activation):
        return apply_perm(activation, self.layer_perm(name))

    @property
    def layer_names(self) -> list:
        return [k for k, v in self.layer_map.items() if v.target is not None]


__all__ = ["to_layout", "layout_perm", "normalize_layout", "apply_perm", "inverse_perm", "LayerRef", "Translation"]
