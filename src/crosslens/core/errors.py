"""Exceptions raised by crosslens.

Every error names the problem and, where there is one, the fix. They derive from the
built-in exception a caller would naturally catch (``ValueError`` for bad input,
``LookupError`` for unknown names, ``NotImplementedError`` for a missing capability).
"""
from __future__ import annotations


class CrosslensError(Exception):
    """Base class of every error crosslens raises on purpose."""


class InputError(CrosslensError, ValueError):
    """The input array cannot be explained as given (layout, rank, values)."""


class TargetError(CrosslensError, ValueError):
    """The explanation target does not fit the model's outputs."""


class LayerNotFoundError(CrosslensError, LookupError):
    """A layer name or object does not exist in the model."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class UnknownMethodError(CrosslensError, LookupError):
    """A method name is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedError(CrosslensError, NotImplementedError):
    """The model's backend lacks a capability the method needs."""


class DisconnectedError(CrosslensError, ValueError):
    """The explained score does not depend on the input (or on the named layer)."""


class OptionError(CrosslensError, TypeError):
    """A method was given an option it does not have, or a bad value for one."""


class NonFiniteError(CrosslensError, ArithmeticError):
    """NaN or infinity appeared in the model's outputs, a score, a gradient or a result.

    The message says where the non-finite values first appeared (the layer, when it can
    be found) and for which samples.
    """


class ModelError(CrosslensError, RuntimeError):
    """The model itself raised while crosslens ran it; the message keeps the model's own
    error, says what crosslens passed in, and how to fix the call."""


class LoadError(CrosslensError, ValueError):
    """A model could not be loaded from a path or a ``module:callable`` reference."""


class ModalityError(CrosslensError, ValueError):
    """Data that do not fit the modality asked for (image, text, tabular, series), or a
    view that the data's modality does not have (a channel's spatial map of a table)."""
