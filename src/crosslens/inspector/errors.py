"""Errors of the inspection server, and the HTTP status of every crosslens error.

Each maps to a 4xx answer ``{"error": message}``; the message names the problem and the
fix, as every crosslens error does.
"""
from __future__ import annotations

from ..core.errors import (CrosslensError, InputError, LayerNotFoundError, ModalityError,
                           OptionError, TargetError, UnknownMethodError, UnsupportedError)


class NotFoundError(CrosslensError, LookupError):
    """An instance, subset, job, frame or static file that does not exist (404)."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class PayloadTooLargeError(CrosslensError, ValueError):
    """An upload over the size limit (413)."""


class MediaTypeError(CrosslensError, ValueError):
    """An upload that is not an image Pillow can decode (415)."""


class ServerError(CrosslensError, RuntimeError):
    """The inspection server could not start (e.g. its port is in use)."""


#: HTTP status per error class; the first match in this order wins.
STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (NotFoundError, 404),
    (PayloadTooLargeError, 413),
    (MediaTypeError, 415),
    (UnsupportedError, 422),
    (ModalityError, 422),
    (LayerNotFoundError, 400),
    (UnknownMethodError, 400),
    (OptionError, 400),
    (TargetError, 400),
    (InputError, 400),
    (CrosslensError, 400),
)


def status_of(error: BaseException) -> int:
    """The HTTP status answering ``error`` (400 for any other crosslens error)."""
    for cls, status in STATUS:
        if isinstance(error, cls):
            return status
    return 400
