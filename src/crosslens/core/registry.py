"""The method registry.

Each method is a plain function ``fn(ctx, **options) -> MethodResult`` registered with
:func:`register`, declaring what it needs from a backend. The registry is the single
source of ``cl.methods()``, of option validation and of the README's methods table.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import UnknownMethodError
from .names import unknown_name_message

#: Capabilities a method may need from a backend.
CAPABILITIES = {
    "grad": "gradient of a target w.r.t. the input",
    "layer_grad": "gradient w.r.t. a named layer's output",
    "activations": "values of named layers",
    "relu_override": "scoped replacement of ReLU gradients (guided backprop, deconvnet)",
    "layer_override": "replacing a layer's output with given values",
    "forward": "model outputs without gradients (perturbation methods)",
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

    def option_defaults(self) -> dict[str, Any]:
        """The method's own options with their defaults (from its signature)."""
        params = inspect.signature(self.fn).parameters
        return {name: p.default for name, p in params.items()
                if p.kind == p.KEYWORD_ONLY}


_REGISTRY: dict[str, MethodSpec] = {}
_ALIASES: dict[str, str] = {}


def register(name: str, *, needs: tuple[str, ...] | set[str], family: str, summary: str,
             aliases: tuple[str, ...] = (), reference: str = "") -> Callable:
    """Register a method function under ``name`` (decorator)."""
    unknown = set(needs) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"unknown capabilities {sorted(unknown)}")

    def decorate(fn: Callable) -> Callable:
        options = tuple(p.name for p in inspect.signature(fn).parameters.values()
                        if p.kind == p.KEYWORD_ONLY)
        spec = MethodSpec(name, fn, frozenset(needs), family, summary, tuple(aliases),
                          reference, options)
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = spec
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def _ensure_loaded() -> None:
    # Methods register themselves on import; importing them imports no framework.
    from .. import methods  # noqa: F401


def get_method(name: str) -> MethodSpec:
    """Look up a method by name or alias; unknown names list the closest ones."""
    _ensure_loaded()
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    if key not in _REGISTRY:
        raise UnknownMethodError(unknown_name_message(
            "method", name, list(_REGISTRY) + list(_ALIASES)))
    return _REGISTRY[key]


def all_methods() -> list[MethodSpec]:
    """Every registered method, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())
