"""Layer-wise relevance propagation: the rules, written once, framework-free.

A rule says how the relevance ``R`` of a layer's outputs is distributed to its inputs.
Every rule of the LRP family (Bach et al. 2015; Montavon et al. 2017, 2019) has one form:
terms ``k``, each the layer's own linear map evaluated with modified inputs ``m_k(x)`` and
modified parameters ``rho_k(W), rho_k(b)`` (``z_k``), gathered in groups ``g`` with a
coefficient ``c_g`` and an optional gate on the sign of the plain output::

    R_in = sum_g c_g sum_{k in g} s_k m_k(x) * J_k^T (gate_g R / stab(sum_{k in g} s_k z_k))

(``s_k`` a term's sign, ``J_k`` the Jacobian of the modified map, ``stab`` the epsilon
stabilizer ``z + eps * sign(z)`` with sign(0) = +1: zennit's ``Stabilizer``).

Backends apply a rule inside one differentiation pass: in place of a layer's output they
put :func:`relevance_output`, whose *value* is the plain output and whose *gradient*
w.r.t. the layer's input is the rule's redistribution, so that the "gradient" flowing back
through the model is the relevance itself (the "gradient trick", built only from
``stop_gradient`` and the layer's own linear map, hence identical on every backend).
Elementwise activations pass relevance unchanged (:func:`passed_through`); sums split it
in proportion to their summands (:func:`split_sum`).

Composites (:data:`COMPOSITES`) assign rules to layer kinds, with a special rule for the
first linear layer, as zennit's composites of the same names do.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .errors import OptionError, UnsupportedError
from .names import unknown_name_message
from .rules import Rule, register_rule

Native = Any

#: Layer kinds a backend reports (:meth:`crosslens.core.backend.Backend.relevance_layers`).
LINEAR = "linear"            # dense and convolution layers: the composite's rules
BATCH_NORM = "batch_norm"    # merged into the linear layer before it (canonization)
AVERAGE = "average"          # average pooling (global too): the sum rule
SUM = "sum"                  # additions of branches (residual connections): the sum rule
ACTIVATION = "activation"    # elementwise activations: relevance passes unchanged
ROUTING = "routing"          # flatten, reshape, dropout, max pooling, padding: the gradient


# --- rules --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Term:
    """One modified evaluation of a layer: inputs ``m(x)``, parameters ``rho`` (applied to
    the weight and, unless ``bias`` is False, to the bias), and its sign."""

    inputs: str = "x"      # "x", "positive", "negative", "ones", "low", "high"
    params: str = "same"   # "same", "positive", "negative", "ones", "square",
    #                        "gamma_positive", "gamma_negative"
    bias: bool = True
    sign: float = 1.0


@dataclass(frozen=True)
class Group:
    """Terms sharing one denominator; ``gate`` keeps only outputs whose plain value is
    ``"positive"`` / ``"negative"``."""

    terms: tuple[Term, ...]
    coefficient: float = 1.0
    gate: str | None = None


@dataclass(frozen=True)
class LayerRule:
    """A relevance rule for linear layers (and pools and sums, which use ``"sum"``)."""

    name: str
    groups: tuple[Group, ...]
    epsilon: float = 1e-6
    gamma: float = 0.0
    low: float | tuple[float, ...] | str = "min"
    high: float | tuple[float, ...] | str = "max"

    def __str__(self) -> str:
        return self.name


def epsilon_rule(epsilon: float = 1e-6) -> LayerRule:
    """LRP-epsilon (LRP-0 at ``epsilon=0``): ``R_i = x_i sum_j w_ij R_j / stab(z_j)``."""
    return LayerRule("epsilon", (Group((Term(),)),), epsilon=epsilon)


def _plus_minus(positive: str, negative: str) -> tuple[Term, Term]:
    # positive inputs through one half of the weights (with its bias), negative inputs
    # through the other half (without bias), as zennit's rules for mixed-sign inputs
    return (Term("positive", positive), Term("negative", negative, bias=False))


def alpha_beta_rule(alpha: float = 2.0, beta: float = 1.0,
                    stabilizer: float = 1e-6) -> LayerRule:
    """LRP-alpha-beta: positive contributions weighted ``alpha``, negative ``beta``
    (``alpha - beta = 1``)."""
    if alpha < 0 or beta < 0 or abs(alpha - beta - 1.0) > 1e-12:
        raise OptionError(f"alpha-beta needs alpha, beta >= 0 and alpha - beta = 1; got "
                          f"alpha={alpha}, beta={beta}")
    groups = [Group(_plus_minus("positive", "negative"), alpha)]
    if beta:
        groups.append(Group(_plus_minus("negative", "positive"), -beta))
    name = "zplus" if beta == 0 else f"alpha{alpha:g}_beta{beta:g}"
    return LayerRule(name, tuple(groups), epsilon=stabilizer)


def zplus_rule(stabilizer: float = 1e-6) -> LayerRule:
    """LRP-z+ (alpha 1, beta 0): only positive contributions."""
    return alpha_beta_rule(1.0, 0.0, stabilizer)


def gamma_rule(gamma: float = 0.25, stabilizer: float = 1e-6) -> LayerRule:
    """Generalized LRP-gamma: positive contributions favoured by ``gamma`` (Montavon et al.
    2019; Andeol et al. 2021 for mixed-sign inputs)."""
    return LayerRule("gamma", (
        Group(_plus_minus("gamma_positive", "gamma_negative"), gate="positive"),
        Group(_plus_minus("gamma_negative", "gamma_positive"), gate="negative")),
        epsilon=stabilizer, gamma=gamma)


def zbox_rule(low: Any = None, high: Any = None, stabilizer: float = 1e-6) -> LayerRule:
    """LRP-z^B for inputs bounded in ``[low, high]``: scalars, one value per channel, or
    ``None`` for each sample's own minimum / maximum."""
    low, high = _bound_option(low, "min"), _bound_option(high, "max")
    return LayerRule("zbox", (Group((Term("x", "same"), Term("low", "positive", sign=-1.0),
                                     Term("high", "negative", sign=-1.0))),),
                     epsilon=stabilizer, low=low, high=high)


def _bound_option(value: Any, default: str) -> float | tuple[float, ...] | str:
    if value is None:
        return default
    if isinstance(value, str) or not isinstance(value, (Sequence, float, int)) and not hasattr(
            value, "__len__") and not hasattr(value, "__float__"):
        raise OptionError(f"z^B bounds are numbers, one number per channel, or None (each "
                          f"sample's minimum / maximum); got {value!r}")
    if hasattr(value, "__len__"):
        return tuple(float(v) for v in value)
    return float(value)


def flat_rule(stabilizer: float = 1e-6) -> LayerRule:
    """Flat: relevance spread uniformly over each output's receptive field."""
    return LayerRule("flat", (Group((Term("ones", "ones", bias=False),)),), epsilon=stabilizer)


def wsquare_rule(stabilizer: float = 1e-6) -> LayerRule:
    """w^2: relevance spread in proportion to the squared weights (unbounded inputs)."""
    return LayerRule("wsquare", (Group((Term("ones", "square"),)),), epsilon=stabilizer)


def sum_rule(stabilizer: float = 1e-6) -> LayerRule:
    """The sum ("norm") rule of pools and residual additions: ``R_i = x_i R / stab(z)``."""
    return LayerRule("sum", (Group((Term(),)),), epsilon=stabilizer)


#: Rule constructors by name (for user mappings: ``rules={"fc": "epsilon"}``).
LAYER_RULES: dict[str, Callable[..., LayerRule]] = {
    "epsilon": epsilon_rule, "zplus": zplus_rule, "alpha_beta": alpha_beta_rule,
    "alpha1_beta0": zplus_rule, "alpha2_beta1": lambda **k: alpha_beta_rule(2.0, 1.0, **k),
    "gamma": gamma_rule, "zbox": zbox_rule, "flat": flat_rule, "wsquare": wsquare_rule,
    "sum": sum_rule, "norm": sum_rule}

#: Rule names that are not linear-layer rules but say how a layer passes relevance.
PASS = "pass"          # relevance passes unchanged (activations; also a user choice)
GRADIENT = "gradient"  # the plain gradient (routing layers; max pooling)
MERGED = "merged"      # a batch norm merged into the linear layer before it: the identity


# --- applying a rule ----------------------------------------------------------------------

class LayerCall(Protocol):
    """What a backend gives a rule about one call of a linear layer (or pool)."""

    inputs: Native         # the layer's input x
    output: Native         # its linear (pre-activation) output z, batch norm merged in
    weight: Native | None  # None for parameter-free maps (pools)
    bias: Native | None
    channel_axis: int      # of the input (per-channel bounds of z^B)

    def linear(self, x: Native, weight: Native | None, bias: Native | None) -> Native:
        """The layer's linear map of ``x`` with these parameters."""


def _zero_with_gradient(ops: Any, value: Native) -> Native:
    """Exactly zero in value, the identity in gradient."""
    return value - ops.stop_gradient(value)


def _stabilized(ops: Any, z: Native, epsilon: float) -> Native:
    return ops.where(z >= 0, z + epsilon, z - epsilon)


def _positive(ops: Any, a: Native) -> Native:
    return ops.maximum(a, ops.zeros_like(a))


def _negative(ops: Any, a: Native) -> Native:
    return a - _positive(ops, a)


def _bound(ops: Any, value: float | tuple[float, ...] | str, like: Native,
           channel_axis: int) -> Native:
    if isinstance(value, str):  # "min" / "max": each sample's own bound
        axes = tuple(range(1, len(like.shape)))
        reduce = ops.min if value == "min" else ops.max
        return ops.zeros_like(like) + reduce(like, axis=axes, keepdims=True)
    if isinstance(value, tuple):
        shape = [1] * len(like.shape)
        shape[channel_axis] = len(value)
        return ops.zeros_like(like) + ops.reshape(ops.asarray(value), tuple(shape))
    return ops.zeros_like(like) + value


def _modified_inputs(ops: Any, kind: str, x: Native, rule: LayerRule, axis: int) -> Native:
    if kind == "x":
        return x
    if kind == "positive":
        return _positive(ops, x)
    if kind == "negative":
        return _negative(ops, x)
    if kind == "ones":
        return ops.zeros_like(x) + 1.0
    return _bound(ops, rule.low if kind == "low" else rule.high, x, axis)


def _modified_param(ops: Any, kind: str, p: Native, gamma: float) -> Native:
    if kind == "same":
        return p
    if kind == "positive":
        return _positive(ops, p)
    if kind == "negative":
        return _negative(ops, p)
    if kind == "ones":
        return ops.zeros_like(p) + 1.0
    if kind == "square":
        return p * p
    if kind == "gamma_positive":
        return p + gamma * _positive(ops, p)
    return p + gamma * _negative(ops, p)  # gamma_negative


def relevance_output(rule: LayerRule, call: LayerCall, ops: Any) -> Native:
    """The layer's output for the relevance pass: the value of ``call.output``, with the
    rule's redistribution as its gradient w.r.t. ``call.inputs`` (see the module
    docstring). One evaluation of the layer's linear map per term: its input
    ``m + (x - sg(x)) * m`` has the value ``m`` and the gradient ``m`` (elementwise), so
    the same evaluation gives the term's denominator and its backward pass."""
    sg = ops.stop_gradient
    x_value = sg(call.inputs)
    carrier = _zero_with_gradient(ops, call.inputs)  # 0 in value, identity in gradient
    out = sg(call.output)
    for group in rule.groups:
        moved = []  # (sign, zero-valued term carrying m_k(x) * J_k^T)
        denominator = None
        for term in group.terms:
            m = _modified_inputs(ops, term.inputs, x_value, rule, call.channel_axis)
            w = None if call.weight is None else _modified_param(ops, term.params, call.weight,
                                                                 rule.gamma)
            b = None if call.bias is None or not term.bias else _modified_param(
                ops, term.params, call.bias, rule.gamma)
            z_k = call.linear(m + carrier * m, w, b)
            value = sg(z_k)
            denominator = term.sign * value if denominator is None \
                else denominator + term.sign * value
            moved.append((term.sign, z_k - value))
        scale = group.coefficient / _stabilized(ops, denominator, rule.epsilon)
        if group.gate is not None:
            plain_z = sg(call.output)
            keep = plain_z > 0 if group.gate == "positive" else plain_z < 0
            scale = ops.where(keep, scale, ops.zeros_like(scale))
        scale = sg(scale)
        for sign, term_moved in moved:
            out = out + (sign * term_moved) * scale
    return out


def passed_through(ops: Any, x: Native, y: Native) -> Native:
    """``y`` in value, the identity in gradient: relevance passes an activation unchanged."""
    return ops.stop_gradient(y) + _zero_with_gradient(ops, x)


def split_sum(ops: Any, parts: Sequence[Native], total: Native, epsilon: float) -> Native:
    """``total`` (= the sum of ``parts``) in value; its relevance split in proportion to
    the parts: ``R_i = a_i R / stab(sum a)``."""
    scale = ops.stop_gradient(1.0 / _stabilized(ops, ops.stop_gradient(total), epsilon))
    out = ops.stop_gradient(total)
    for part in parts:
        out = out + _zero_with_gradient(ops, part) * ops.stop_gradient(part) * scale
    return out


def _slope(ops: Any, dy: Native, dx: Native, eps: float) -> Native:
    near = ops.abs(dx) < eps
    return ops.where(near, ops.zeros_like(dx), dy / ops.where(near, ops.zeros_like(dx) + 1.0,
                                                              dx))


def reveal_cancel_output(call: LayerCall, activation: Callable[[Native], Native], ops: Any,
                         eps: float = 1e-10) -> Native:
    """DeepLIFT's RevealCancel rule (Shrikumar et al. 2017, section 3.5.3) for a dense or
    convolution layer followed by the elementwise ``activation``, on a batch
    ``[inputs; baselines]``: the layer's output in value, with, in the inputs' half, the
    gradient that sends positive contributions ``w_i Δa_i > 0`` through
    ``m+ = Δy+ / Δz+`` and negative ones through ``m- = Δy- / Δz-``, where

        Δy+ = (f(z0 + Δz+) - f(z0)) / 2 + (f(z) - f(z0 + Δz-)) / 2,
        Δy- = (f(z0 + Δz-) - f(z0)) / 2 + (f(z) - f(z0 + Δz+)) / 2,

    so that ``m+ Δz+ + m- Δz- = f(z) - f(z0)`` exactly. The activation itself must pass
    the gradient unchanged (:func:`passed_through`). Inputs with ``Δa_i = 0`` get the mean
    multiplier."""
    sg = ops.stop_gradient
    a1, a0 = ops.halves(sg(call.inputs))
    z1, z0 = ops.halves(sg(call.output))
    da = a1 - a0
    w_up, w_down = _positive(ops, call.weight), _negative(ops, call.weight)
    rising, falling = _positive(ops, da), _negative(ops, da)

    def lin(u: Native, w: Native) -> Native:
        return call.linear(u, w, None)

    def f(v: Native) -> Native:
        return sg(activation(v))

    first_inputs, _ = ops.halves(call.inputs)
    carrier = _zero_with_gradient(ops, first_inputs)
    zero = ops.zeros_like(da)
    is_up = ops.where(da > 0, zero + 1.0, zero)
    is_down = ops.where(da < 0, zero + 1.0, zero)
    # one evaluation per term gives Δz± in value and, through the carrier, the gradient
    # (the same inputs as in relevance_output: value Δa±, gradient the sign's mask)
    rising, falling = rising + carrier * is_up, falling + carrier * is_down
    up_terms = lin(rising, w_up) + lin(falling, w_down)      # Δz+
    down_terms = lin(rising, w_down) + lin(falling, w_up)    # Δz-
    up, down = sg(up_terms), sg(down_terms)
    y0, y1 = f(z0), f(z1)
    m_up = _slope(ops, 0.5 * (f(z0 + up) - y0) + 0.5 * (y1 - f(z0 + down)), up, eps)
    m_down = _slope(ops, 0.5 * (f(z0 + down) - y0) + 0.5 * (y1 - f(z0 + up)), down, eps)
    still = 1.0 - is_up - is_down
    moved = ((up_terms - up) * sg(m_up) + (down_terms - down) * sg(m_down)
             + lin(carrier * still, call.weight) * sg(0.5 * (m_up + m_down)))
    return ops.concat([z1 + moved, z0])


# --- composites ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LayerInfo:
    """A layer as a backend reports it for relevance propagation."""

    name: str
    kind: str | None  # LINEAR, ..., ROUTING above; None: no rule applies (an error unless mapped)
    type: str         # the framework's class name ("Conv2d", "Dense")
    #: the dense / conv layer whose output this batch norm or activation takes directly
    #: (through a batch norm merged into it, for an activation): merges and pairings
    follows: str | None = None
    fused: bool = False  # a dense / conv layer with a nonlinear activation of its own


def layer_infos(order: Sequence[str], kinds: Mapping[str, tuple[str | None, str]],
                follows: Mapping[str, str], fused: Sequence[str] = ()) -> list[LayerInfo]:
    """:class:`LayerInfo` of the layers in ``order`` (name -> (kind, type name)), keeping
    a ``follows`` pairing only where the linear layer feeds one batch norm and one
    activation (each layer running once): anything else reads its plain output.
    ``fused``: linear layers with a nonlinear activation of their own."""
    def count(kind: str, linear: str) -> int:
        return sum(1 for name, of in follows.items() if of == linear and kinds[name][0] == kind)
    infos = []
    for name in order:
        kind, type_name = kinds[name]
        of = follows.get(name)
        if of is not None and (kind not in (BATCH_NORM, ACTIVATION) or count(kind, of) != 1
                               or order.count(of) != 1):
            of = None
        infos.append(LayerInfo(name, kind, type_name, of, name in fused))
    return infos


@dataclass(frozen=True)
class Composite:
    """Rules by layer kind: ``dense`` and ``conv`` for linear layers (by their type
    name), ``first`` for the first linear layer of the forward pass (None: no special
    rule), ``sum`` for pools and additions."""

    name: str
    dense: LayerRule
    conv: LayerRule
    first: LayerRule | None = None
    sum: LayerRule = field(default_factory=sum_rule)
    first_conv_only: bool = False  # z^B goes to the first convolution (zennit's choice)
    activation: str = PASS  # GRADIENT: activations keep their derivative (zennit's choice
    #                         for excitation backprop; equal to PASS for ReLU)


def _composites(epsilon: float, stabilizer: float, gamma: float, low: Any, high: Any
                ) -> dict[str, Composite]:
    eps = epsilon_rule(epsilon)
    plus, ab = zplus_rule(stabilizer), alpha_beta_rule(2.0, 1.0, stabilizer)
    flat, norm = flat_rule(stabilizer), sum_rule(stabilizer)
    return {
        "epsilon_plus": Composite("epsilon_plus", eps, plus, None, norm),
        "epsilon_plus_flat": Composite("epsilon_plus_flat", eps, plus, flat, norm),
        "epsilon_alpha2_beta1": Composite("epsilon_alpha2_beta1", eps, ab, None, norm),
        "epsilon_alpha2_beta1_flat": Composite("epsilon_alpha2_beta1_flat", eps, ab, flat, norm),
        "epsilon_gamma_box": Composite("epsilon_gamma_box", eps, gamma_rule(gamma, stabilizer),
                                       zbox_rule(low, high, stabilizer), norm, True),
        "excitation_backprop": Composite("excitation_backprop", plus, plus, None, norm,
                                         activation=GRADIENT),
        "deep_taylor": Composite("deep_taylor", plus, plus, zbox_rule(low, high, stabilizer),
                                 norm),
        "epsilon": Composite("epsilon", eps, eps, None, norm),
    }


COMPOSITES = tuple(_composites(1e-6, 1e-6, 0.25, None, None))


def composite(name: str, *, epsilon: float = 1e-6, stabilizer: float = 1e-6,
              gamma: float = 0.25, low: Any = None, high: Any = None) -> Composite:
    """The named composite with these parameters (``low`` / ``high``: z^B's input
    bounds, see :func:`zbox_rule`)."""
    table = _composites(epsilon, stabilizer, gamma, low, high)
    if name not in table:
        raise OptionError(unknown_name_message("LRP composite", str(name), list(table)))
    return table[name]


def layer_rule(spec: LayerRule | str, stabilizer: float = 1e-6) -> LayerRule | str:
    """A rule object, or one by name (``"epsilon"``, ``"zplus"``, ..., ``"pass"``,
    ``"gradient"``)."""
    if isinstance(spec, LayerRule) or spec in (PASS, GRADIENT):
        return spec
    if isinstance(spec, str) and spec in LAYER_RULES:
        ctor = LAYER_RULES[spec]
        return ctor(epsilon=stabilizer) if spec == "epsilon" else ctor(stabilizer=stabilizer)
    raise OptionError(unknown_name_message("LRP rule", str(spec),
                                           list(LAYER_RULES) + [PASS, GRADIENT]))


@dataclass(frozen=True)
class RelevanceRules(Rule):
    """LRP resolved for one model: the rule of each layer (name -> rule, ``"pass"`` or
    ``"gradient"``) and the batch norms merged into linear layers. The backward rule a
    backend applies for :func:`crosslens.methods.lrp.lrp` (registered as ``"lrp"``)."""

    assignments: tuple[tuple[str, LayerRule | str], ...] = ()
    merges: tuple[tuple[str, str], ...] = ()  # (linear layer, batch norm)
    sum: LayerRule = field(default_factory=sum_rule)  # for additions found while running
    activation: str = PASS  # for activations fused into dense / conv layers

    def rule_of(self, layer: str) -> LayerRule | str | None:
        return dict(self.assignments).get(layer)


@dataclass(frozen=True)
class RevealCancelRules(Rule):
    """DeepLIFT's RevealCancel resolved for one model: the (linear layer, activation)
    pairs it applies to (a backend adds dense / conv layers with a fused activation of
    their own), and batch norms merged into those linear layers; every other
    nonlinearity gets the rescale rule."""

    pairs: tuple[tuple[str, str], ...] = ()
    merges: tuple[tuple[str, str], ...] = ()


REVEAL_CANCEL = register_rule(Rule(
    "reveal_cancel", "DeepLIFT RevealCancel: positive and negative contributions to each "
    "dense / conv unit through separate multipliers of the activation after it",
    ("Linear", "Conv", "Dense", "activations"), "Shrikumar et al. 2017, section 3.5.3"))


def reveal_cancel_rules(layers: Sequence[LayerInfo]) -> RevealCancelRules:
    """The pairs and merges of :class:`RevealCancelRules` from a backend's layers."""
    pairs = tuple((i.follows, i.name) for i in layers if i.kind == ACTIVATION and i.follows)
    paired = {linear for linear, _ in pairs}
    merges = tuple((i.follows, i.name) for i in layers
                   if i.kind == BATCH_NORM and i.follows in paired)
    return RevealCancelRules(REVEAL_CANCEL.name, REVEAL_CANCEL.summary, REVEAL_CANCEL.layers,
                             REVEAL_CANCEL.reference, pairs=pairs, merges=merges)


LRP = register_rule(Rule(
    "lrp", "relevance propagated layer by layer by each layer's LRP rule",
    ("Linear", "Conv", "Dense", "BatchNorm", "AvgPool", "Add", "activations"),
    "Bach et al. 2015; Montavon et al. 2017, 2019"))


def resolve(layers: Sequence[LayerInfo], chosen: Composite,
            mapping: Mapping[str, LayerRule | str] | None = None) -> RelevanceRules:
    """Assign a rule to every layer: ``mapping`` (layer name or type name -> rule) first,
    then the composite by kind. A layer with no applicable rule raises an error naming
    it and its type."""
    mapping = dict(mapping or {})
    stabilizer = chosen.sum.epsilon
    assignments: list[tuple[str, LayerRule | str]] = []
    first_done = False
    for info in layers:
        conv = "conv" in info.type.lower()
        first = (info.kind == LINEAR and chosen.first is not None and not first_done
                 and (conv or not chosen.first_conv_only))
        if first:
            rule: LayerRule | str | None = chosen.first
        elif info.kind == LINEAR:
            rule = chosen.conv if conv else chosen.dense
        elif info.kind in (AVERAGE, SUM):
            rule = chosen.sum
        elif info.kind == ACTIVATION:
            rule = chosen.activation
        elif info.kind == BATCH_NORM and info.follows:
            rule = MERGED
        elif info.kind == ROUTING:
            rule = GRADIENT
        else:
            rule = None
        first_done = first_done or first
        for key in (info.name, info.type):
            if key in mapping:
                rule = layer_rule(mapping[key], stabilizer)
                if isinstance(rule, LayerRule) and info.kind not in (LINEAR, AVERAGE):
                    raise OptionError(f"LRP: rule {rule} applies to dense, convolution and "
                                      f"average-pooling layers; {info.name!r} is a "
                                      f"{info.type}. Give it 'pass' or 'gradient'")
                break
        if rule is None:
            why = ("a batch norm that does not directly follow a dense or convolution layer "
                   "cannot be merged into one" if info.kind == BATCH_NORM else
                   "no LRP rule is defined for this layer type")
            raise UnsupportedError(
                f"LRP: layer {info.name!r} ({info.type}) has no rule: {why}. Give it one "
                f"with rules={{{info.name!r}: 'epsilon'}} (or by type, rules={{"
                f"{info.type!r}: ...}}; 'pass' passes relevance unchanged, 'gradient' uses "
                "the plain gradient)")
        if not (rule == GRADIENT and info.kind == ROUTING):  # routing needs no hook
            assignments.append((info.name, rule))
    unknown = set(mapping) - {i.name for i in layers} - {i.type for i in layers}
    if unknown:
        raise OptionError(unknown_name_message(
            "layer (or layer type) in rules=", sorted(unknown)[0],
            [i.name for i in layers] + sorted({i.type for i in layers})))
    merges = tuple((i.follows, i.name) for i in layers
                   if dict(assignments).get(i.name) == MERGED)
    return RelevanceRules(LRP.name, LRP.summary, LRP.layers, LRP.reference,
                          assignments=tuple(assignments), merges=merges, sum=chosen.sum,
                          activation=chosen.activation)
