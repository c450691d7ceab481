"""Backward rules as objects, in one registry.

A rule changes how the gradient (or relevance) passes backwards through layers of some
types, scoped to one differentiation pass: guided backpropagation and deconvnet are the
two ReLU rules. A rule here is framework-free (a name, what it does, which layer types it
applies to); each backend registers, in its own file, how it applies each rule it
supports (:meth:`crosslens.core.backend.Backend.register_rule`): a PyTorch
``TorchFunctionMode`` rerouting ReLU calls, a TensorFlow gradient override. Methods pass
the rule object (``ctx.gradient(rule=GUIDED)``); a name is accepted wherever a rule is.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import OptionError
from .names import unknown_name_message


@dataclass(frozen=True)
class Rule:
    """A backward rule.

    Attributes
    ----------
    name
        Registry name (``"guided"``).
    summary
        The backward formula, for listings and errors.
    layers
        The layer (operation) types it changes; others keep their gradient.
    reference
        Where it comes from.
    """

    name: str
    summary: str
    layers: tuple[str, ...]
    reference: str = ""

    def __str__(self) -> str:
        return self.name


_RULES: dict[str, Rule] = {}


def register_rule(rule: Rule) -> Rule:
    """Add ``rule`` to the registry (names are unique) and return it."""
    if rule.name in _RULES and _RULES[rule.name] != rule:
        raise ValueError(f"rule {rule.name!r} registered twice")
    _RULES[rule.name] = rule
    return rule


def get_rule(rule: Rule | str) -> Rule:
    """The registered rule for a rule object or name (unknown names list the valid ones)."""
    if isinstance(rule, Rule):
        return rule
    if isinstance(rule, str) and rule in _RULES:
        return _RULES[rule]
    raise OptionError(unknown_name_message("backward rule", str(rule), list(_RULES)))


def all_rules() -> list[Rule]:
    """Every registered rule, in registration order."""
    return list(_RULES.values())


GUIDED = register_rule(Rule(
    "guided", "ReLU backward relu'(x)·max(g, 0): only positive gradients through active "
    "units", ("ReLU", "ReLU6"), "Springenberg et al. 2015 (guided backpropagation)"))
DECONV = register_rule(Rule(
    "deconv", "ReLU backward max(g, 0): positive gradients, ignoring the forward mask",
    ("ReLU", "ReLU6"), "Zeiler & Fergus 2014 (deconvnet)"))
#: The pass's batch is ``[inputs; baselines]`` (two halves, paired row by row); each
#: elementwise nonlinearity's backward in the first half becomes ``g * Δy / Δx`` (its own
#: derivative where ``|Δx| < RESCALE_EPS``), as Captum's DeepLift does.
RESCALE = register_rule(Rule(
    "rescale", "elementwise nonlinearities backward g·(f(x) - f(x0)) / (x - x0) against the "
    "paired baseline rows (the second half of the batch)",
    ("ReLU", "ReLU6", "ELU", "SELU", "CELU", "LeakyReLU", "GELU", "SiLU", "Mish", "Softplus",
     "Hardswish", "Hardsigmoid", "LogSigmoid", "Softsign", "Sigmoid", "Tanh"),
    "Shrikumar et al. 2017 (DeepLIFT, Rescale rule)"))
RESCALE_EPS = 1e-10
