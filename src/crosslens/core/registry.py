"""The method registry.

Each method is a plain function ``fn(ctx, **options) -> MethodResult`` registered with
:func:`register`, declaring what it needs from a backend. Methods register themselves when
:mod:`crosslens.methods` is imported (``import crosslens`` does); this module imports
nothing above ``core``. The registry is the single
source of ``cl.methods()``, of option validation and of the README's methods table.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import OptionError, UnknownMethodError
from .names import unknown_name_message

#: Capabilities a method may need from a backend.
CAPABILITIES = {
    "grad": "gradient of a target w.r.t. the input",
    "layer_grad": "gradient w.r.t. a named layer's output",
    "activations": "values of named layers",
    "relu_override": "scoped replacement of ReLU gradients (guided backprop, deconvnet)",
    "layer_override": "replacing a layer's output with given values",
    "forward": "model outputs without gradients (perturbation methods)",
    "relevance": "layer-wise relevance propagation rules applied to one pass (LRP)",
    "rescale": "DeepLIFT's secant rule for the elementwise nonlinearities of one pass",
}


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function and what it needs."""

    name: str
    fn: Callable[..., Any]
    needs: frozenset[str]
    family: str
    summary: str
    aliases: tuple[str, ...] = ()
    reference: str = ""
    options: tuple[str, ...] = field(default=())
    #: The result does not depend on the target (layer values, class-agnostic maps).
    targetless: bool = False
    #: How a sample's result depends on the rest of its batch: ``None`` (it does not),
    #: ``"draws"`` (its random draws are shaped by the batch: the dataset engine explains
    #: it one sample at a time, with per-sample seeds) or ``"samples"`` (it compares the
    #: samples by definition, e.g. feature permutation).
    batch_coupling: str | None = None

    def option_defaults(self) -> dict[str, Any]:
        """The method's own options with their defaults (from its signature)."""
        params = inspect.signature(self.fn).parameters
        return {name: p.default for name, p in params.items()
                if p.kind == p.KEYWORD_ONLY}


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *, needs: tuple[str, ...] | set[str], family: str, summary: str,
             aliases: tuple[str, ...] = (), reference: str = "",
             targetless: bool = False, batch_coupling: str | None = None) -> Callable:
    """Register a method function under ``name`` (decorator)."""
    unknown = set(needs) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")

    def decorate(fn: Callable) -> Callable:
        options = tuple(p.name for p in inspect.signature(fn).parameters.values()
                        if p.kind == p.KEYWORD_ONLY)
        spec = MethodSpec(name, fn, frozenset(needs), family, summary, tuple(aliases),
                          reference, options, targetless, batch_coupling)
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def get_method(name: str) -> MethodSpec:
    """Look up a method by name or alias; unknown names list the closest ones."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownMethodError(unknown_name_message(
            "method", name, list(_REGISTRY) + list(_ALIASES)))
    return _REGISTRY[key]


def all_methods() -> list[MethodSpec]:
    """Every registered method, in registration order."""
    return list(_REGISTRY.values())


# --- option validation ------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, (float, np.floating))) and math.isfinite(
        float(value))


_KINDS = {"int": ("an int", _is_int), "float": ("a finite number", _is_real),
          "bool": ("True or False", lambda v: isinstance(v, (bool, np.bool_))),
          "str": ("a string", lambda v: isinstance(v, str)),
          "None": ("None", lambda v: v is None)}


def check_option_type(method: str, name: str, annotation: Any, value: Any) -> None:
    """Raise :class:`OptionError` when ``value`` does not have the type the option's
    annotation declares (simple annotations only: int, float, bool, str, ``| None``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [part.strip() for part in text.split("|")]
    if not parts or any(part not in _KINDS for part in parts):
        return  # Any, unions of structures...: the method checks those itself
    if any(_KINDS[part][1](value) for part in parts):
        return
    wanted = " or ".join(_KINDS[part][0] for part in parts)
    hint = f"; e.g. {name}={int(value)}" if "int" in parts and isinstance(
        value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer() \
        else ""
    raise OptionError(f"{method}'s option {name} must be {wanted}, got {value!r} "
                      f"({type(value).__name__}){hint}")


def check_options(spec: MethodSpec, options: dict[str, Any]) -> None:
    """Unknown option names and values of the wrong type are errors naming the fix."""
    params = inspect.signature(spec.fn).parameters
    accepts_more = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = set(options) - set(spec.options)
    if unknown and not accepts_more:
        valid = ", ".join(spec.options) or "none"
        raise OptionError(f"{spec.name} has no option {sorted(unknown)[0]!r}; its options "
                          f"are: {valid} (plus target, layer, seed, memory_budget, abs, "
                          "reduce_channels, normalize)")
    for name, value in options.items():
        if name in params:
            check_option_type(spec.name, name, params[name].annotation, value)


def check_settings(*, seed: Any, progress: Any, abs: Any) -> None:
    """The options every method shares, checked once in :func:`crosslens.explain`."""
    if seed is not None and not _is_int(seed):
        raise OptionError(f"seed must be an int or None, got {seed!r} ({type(seed).__name__})")
    if seed is not None and int(seed) < 0:
        raise OptionError(f"seed must be >= 0 (numpy's generators take non-negative seeds), "
                          f"got {seed}")
    for name, value in (("progress", progress), ("abs", abs)):
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise OptionError(f"{name} must be True or False, got {value!r}")
