"""Exceptions raised by :mod:`crosslens.translate`.

Every one is a :class:`crosslens.core.errors.CrosslensError` (so the ``crosslens`` command
prints it without a traceback) and a :class:`TranslationError`; each also derives from the
matching ``crosslens.core.errors`` class and from the built-in exception earlier versions
raised (``ValueError``, ``TypeError``, ``KeyError``, ``ImportError``), so existing ``except``
clauses keep working.

The first line of a message names the user's own layer (module path / Keras layer name)
and the cause; details (the converter's own message, the ONNX node, the source line) follow
on the next lines.
"""

from __future__ import annotations

import re

from ..core.errors import (
    CrosslensError,
    DisconnectedError,
    InputError,
    LayerNotFoundError,
    LoadError,
    OptionError,
    UnsupportedError,
)

_FRAMEWORK = {"onnx2torch": "PyTorch", "crosslens.onnx_to_keras": "Keras"}


class TranslationError(CrosslensError, RuntimeError):
    """Base class for translation failures.

    ``layer`` / ``layer_type`` name the user's layer the failure was traced to (``None``
    when it could not be), ``stage`` is ``"export"``, ``"convert"`` or ``"verify"`` where
    it applies.
    """

    layer: str | None = None
    layer_type: str | None = None
    stage: str | None = None


class TranslationInputError(TranslationError, InputError):
    """The ``example`` given to ``translate()`` does not fit the model (layout, rank, type)."""


class TranslationOptionError(TranslationError, OptionError, ValueError):
    """A bad argument to ``translate()`` / ``to_layout()`` (``to=``, ``tolerance=``, ``probes=`` ...)."""


class UnsupportedModelError(TranslationError, UnsupportedError, TypeError):
    """The object given to ``translate()`` is not a model crosslens can translate."""


class TranslationUnsupportedError(TranslationError, UnsupportedError):
    """A capability translation needs is missing (Keras backend other than TensorFlow, ...)."""


class MissingDependencyError(TranslationError, UnsupportedError, ImportError):
    """An optional converter package (onnx, tf2onnx, onnxscript, onnx2torch) is not installed;
    the message gives the install command."""


class OnnxLoadError(TranslationError, LoadError):
    """An ONNX file could not be read (missing, not ONNX, corrupt)."""


class ConversionError(TranslationError):
    """An exporter or converter (torch.onnx, tf2onnx, onnx2torch, crosslens.onnx_to_keras)
    raised; the original exception is chained (``__cause__``)."""

    def __init__(self, message: str, *, layer=None, layer_type=None, stage=None):
        super().__init__(message)
        self.layer, self.layer_type, self.stage = layer, layer_type, stage


def layer_phrase(layer: str | None, layer_type: str | None, where: str | None = None) -> str:
    """``"layer 'lstm' (LSTM)"``, or the code location when the op is in no layer."""
    if layer:
        return f"layer {layer!r}" + (f" ({layer_type})" if layer_type else "")
    if where:
        return f"the model code {where}"  # `y = x.cumsum(3)` (net.py:12, in forward)
    return ""


class UnsupportedOpError(TranslationError, UnsupportedError):
    """An ONNX node cannot be converted by the target converter.

    Attributes ``op_type``, ``node_name`` and ``converter`` identify the culprit;
    ``layer`` / ``layer_type`` the user's layer it belongs to (when known) and ``where``
    the source line (torch) it comes from.
    """

    def __init__(self, op_type: str, node_name: str, converter: str, detail: str = "", *,
                 layer: str | None = None, layer_type: str | None = None, where: str | None = None,
                 hint: str | None = None):
        self.op_type = op_type
        self.node_name = node_name
        self.converter = converter
        self.detail = detail
        self.layer, self.layer_type, self.where, self.hint = layer, layer_type, where, hint
        self.stage = "convert"
        framework = _FRAMEWORK.get(converter, converter)
        cause = f"ONNX op {op_type!r} (node {node_name!r}) is not supported by {converter}"
        subject = layer_phrase(layer, layer_type, where)
        if subject:
            msg = f"{subject} cannot be translated to {framework}: {cause}"
        else:
            msg = f"{converter} does not support ONNX op {op_type!r} (node {node_name!r})"
        lines = [msg]
        if detail:
            lines.append(f"  detail: {_short(detail)}")
        if where and layer:
            lines.append(f"  source: {where}")
        if hint:
            lines.append(f"  fix: {hint}")
        super().__init__("\n".join(lines) if subject else msg + (f": {_short(detail)}" if detail else ""))

    def with_layer(self, layer, layer_type, where=None, hint=None) -> "UnsupportedOpError":
        """A copy naming the user's layer (raise it ``from`` this one)."""
        return UnsupportedOpError(self.op_type, self.node_name, self.converter, self.detail,
                                  layer=layer, layer_type=layer_type, where=where, hint=hint)


class TranslationMismatchError(TranslationError):
    """Verification of a translation exceeded the tolerance.

    ``report`` holds the full :class:`~crosslens.translate.report.TranslationReport`.
    """

    def __init__(self, message: str, report=None, *, layer=None, layer_type=None):
        super().__init__(message)
        self.report = report
        self.layer, self.layer_type, self.stage = layer, layer_type, "verify"


class PrunedLayerError(TranslationError, DisconnectedError):
    """The layer exists but does not influence the output, so the translation has no counterpart."""


class UnknownLayerError(TranslationError, LayerNotFoundError, KeyError):
    """A layer name is not known in the original model."""

    def __init__(self, name: str, candidates, kind: str = "layer"):
        import difflib

        self.name = name
        self.layer = name
        candidates = [str(c) for c in candidates]
        self.close_matches = difflib.get_close_matches(str(name), candidates, n=5, cutoff=0.5)
        msg = f"unknown {kind} {name!r} in the original model"
        if self.close_matches:
            msg += "; closest valid names: " + ", ".join(repr(c) for c in self.close_matches)
        else:
            some = candidates[:10]
            msg += "; valid names include: " + ", ".join(repr(c) for c in some)
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # torch.onnx colours its messages


def _short(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (converter messages can be kilobytes)."""
    text = " ".join(_ANSI.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "TranslationError",
    "TranslationInputError",
    "TranslationOptionError",
    "UnsupportedModelError",
    "TranslationUnsupportedError",
    "MissingDependencyError",
    "ConversionError",
    "OnnxLoadError",
    "UnsupportedOpError",
    "TranslationMismatchError",
    "UnknownLayerError",
    "PrunedLayerError",
]
