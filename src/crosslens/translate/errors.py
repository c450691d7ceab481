"""Exceptions raised by :mod:`crosslens.translate`."""

from __future__ import annotations


class TranslationError(RuntimeError):
    """Base class for translation failures."""


class UnsupportedOpError(TranslationError, NotImplementedError):
    """An ONNX node cannot be converted by the target converter.

    Attributes ``op_type``, ``node_name`` and ``converter`` identify the culprit.
    """

    def __init__(self, op_type: str, node_name: str, converter: str, detail: str = ""):
        self.op_type = op_type
        self.node_name = node_name
        self.converter = converter
        msg = f"{converter} does not support ONNX op {op_type!r} (node {node_name!r})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class TranslationMismatchError(TranslationError):
    """Verification of a translation exceeded the tolerance.

    ``report`` holds the full :class:`~crosslens.translate.report.TranslationReport`.
    """

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class UnknownLayerError(KeyError):
    """A layer name is not known in the original model."""

    def __init__(self, name: str, candidates, kind: str = "layer"):
        import difflib

        self.name = name
        self.close_matches = difflib.get_close_matches(name, list(candidates), n=5, cutoff=0.5)
        msg = f"unknown {kind} {name!r} in the original model"
        if self.close_matches:
            msg += "; closest valid names: " + ", ".join(repr(c) for c in self.close_matches)
        else:
            some = list(candidates)[:10]
            msg += "; valid names include: " + ", ".join(repr(c) for c in some)
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message
