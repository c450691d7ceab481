"""zennit adapter: Layer-wise Relevance Propagation composites on PyTorch models.

``cl.explain(model, x, "lrp", implementation="zennit", composite="epsilon_plus_flat")``
runs zennit's rules under the named composite (any name in
``zennit.composites.COMPOSITES``: ``epsilon_plus``, ``epsilon_plus_flat``,
``epsilon_gamma_box``, ``epsilon_alpha2_beta1``, ``epsilon_alpha2_beta1_flat``,
``excitation_backprop``, ``guided_backprop``, ``beta_smooth``, ...), with the target
class's score as the initial relevance: relevance is in the score's units and, under
conserving rules, sums to it up to what biases and stabilizers absorb (raw and signed, like
every crosslens attribution). Other options are the composite's own (``epsilon``,
``stabilizer``, ``gamma``, ``low``, ``high``, ``zero_params``, ...).
``guided_backprop`` and ``deconvnet`` map to zennit's composites of the same name; they
are gradients, so they start from the one-hot of the target.

Canonization (``canonize=True``, the default), as LRP requires:

- batch norms are merged into the convolution / linear layer whose output they normalize
  (zennit's ``NamedMergeBatchNorm``, made exact: zennit leaves ``x / sqrt(1 + eps)``), the
  pairs found from the data flow of one forward pass, not from registration order;
- every addition of two tensors that both depend on the input (``a + b``, ``a += b``,
  ``torch.add``: the residual additions of ResNets and any hand-written model) is routed
  through a zennit :class:`~zennit.layer.Sum` module during the attribution's forward pass
  (a ``TorchFunctionMode`` scoped to that pass), so the composite's rule for ``Sum``
  splits relevance between the two branches instead of copying it to both;
- zennit's torchvision ResNet block canonizers, which apply where the real torchvision is
  installed (with crosslens' stub they match nothing; the generic routing above covers
  those blocks too).

Every LRP call with a conserving composite reports ``info["conservation"]``, the
per-sample ``sum(relevance) / score``. That ratio alone cannot tell a broken propagation
from biases absorbing relevance (which may leave anything from -10 to 10 times the score on
small random nets), so a second pass checks the structure (``check_conservation=True``,
the default; costs one more forward and backward): bias-free z+ rules under the same
canonization conserve exactly wherever relevance is neither duplicated nor lost, so
``info["structural_conservation"]`` is 1 up to stabilizers on a properly handled model
(0.9999-1.0000 measured) and 2^k on a ResNet whose k residual additions copy relevance
(256 on a ResNet-18). Beyond :data:`CONSERVATION_TOLERANCE` a
:class:`~crosslens.toolsets.ConservationWarning` names the likely causes. The model is
restored exactly afterwards, also when the call raises: canonizers and hooks are undone by
zennit and, as a safety net, every module's parameters, buffers, submodules, hooks and
instance attributes are put back as they were.

zennit imports ``torchvision`` at import time (only for the canonizers of torchvision's
ResNet blocks). Where torchvision cannot be imported, zennit is imported with the same
scoped stub crosslens uses for onnx2torch (see :mod:`crosslens.translate._torchvision`).
"""
from __future__ import annotations

import inspect
import numbers
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

from ..backends.torch import ResidualAdditions
from ..core.errors import ModelError, OptionError, UnsupportedError
from ..core.names import unknown_name_message
from ..core.targets import ClassTarget
from . import ConservationWarning
from .options import flag, number

ALIASES = {"guided_backprop": "guided_backprop", "deconvnet": "deconvnet"}
# Composites whose rules conserve relevance (up to biases and stabilizers).
CONSERVING = ("epsilon_gamma_box", "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1",
              "epsilon_alpha2_beta1_flat", "excitation_backprop")
# How far from 1 the structural check (bias-free z+ rules, see _check_composite) may be
# before warning. sum(relevance) / score of the composite itself is no test: biases absorb
# relevance of either sign; on the reference nets of tests/reference it ranges from -2300
# to 520 over all classes with correct canonization. The structural ratio, measured over
# every class of the reference CNN / ResNet (3 seeds) and random ResNet-18s (width 16,
# 3 seeds, uniform and normal inputs): 0.9999-1.0000 when handled; 2.0 per unhandled
# residual addition (256 on ResNet-18), 3.0 / 0.32 for a functional `mean(...) @ w` head.
# Generous, as z+ drops the relevance of units with no positive input (rare, but a
# pretrained net's biases make it possible): any copying of relevance doubles it.
CONSERVATION_TOLERANCE = 0.25
NUMERIC_OPTIONS = ("epsilon", "stabilizer", "gamma", "beta_smooth")
_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
               "_backward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")


def _zennit():
    from ..translate._torchvision import import_with_torchvision
    return import_with_torchvision("zennit")


def methods() -> list[str]:
    return ["lrp", "guided_backprop", "deconvnet"]


def run(model: torch.nn.Module, layer_object: Any, x: torch.Tensor, method: str, target: Any,
        layer: str | None, options: dict[str, Any]) -> tuple[torch.Tensor, dict[str, Any]]:
    """zennit's relevance (or modified gradient) of the target class w.r.t. the input.

    Returns ``(attributions, info)``; ``info`` names the composite and, for LRP,
    the per-sample conservation ``sum(relevance) / score`` and what canonization did.
    """
    _zennit()  # imports zennit (with the torchvision stub where needed)
    from zennit.composites import COMPOSITES

    options = dict(options)
    options.pop("seed", None)  # deterministic: nothing is drawn
    if layer is not None:
        raise UnsupportedError("the zennit adapter attributes to the input only: drop layer= "
                               "(or use implementation='crosslens' for layer attributions)")
    if not isinstance(target, ClassTarget):
        raise UnsupportedError("the zennit adapter takes class targets (an int or one per "
                               "sample, or 'predicted'), not neuron, channel or callable targets")
    if method in ALIASES:
        composite_name = ALIASES[method]
    elif method == "lrp":
        composite_name = options.pop("composite", "epsilon_plus_flat")
    else:
        raise UnsupportedError(unknown_name_message("method for zennit", method, methods()))
    if not isinstance(composite_name, str) or composite_name not in COMPOSITES:
        raise OptionError(unknown_name_message("zennit composite", str(composite_name),
                                               list(COMPOSITES)))
    canonize = flag("zennit", "canonize", options.pop("canonize", True))
    check = flag("zennit", "check_conservation", options.pop("check_conservation", True))
    if composite_name == "epsilon_gamma_box":  # each sample's own bounds, as crosslens' LRP
        axes = tuple(range(1, x.ndim))
        options.setdefault("low", x.detach().amin(dim=axes, keepdim=True).expand_as(x))
        options.setdefault("high", x.detach().amax(dim=axes, keepdim=True).expand_as(x))
    composite_options = _composite_options(COMPOSITES[composite_name], composite_name, options, x)
    lrp = method == "lrp"

    pairs: list[tuple[str, str]] = []
    if canonize:  # one traced forward pass: batch-norm pairs and the outputs
        pairs, outputs = _batch_norm_pairs(model, x)
    else:
        with torch.no_grad():
            outputs = model(x)
    if not torch.is_tensor(outputs):
        raise UnsupportedError(f"zennit explains class scores of a model returning one "
                               f"tensor; this model returns {type(outputs).__name__}")
    n = len(x)
    indices = torch.as_tensor(np.asarray(target.indices), device=x.device)
    if outputs.ndim != 2 or int(indices.max()) >= outputs.shape[1] or int(indices.min()) < 0:
        raise UnsupportedError(
            f"zennit explains class scores of (N, classes) outputs; this model returns "
            f"{tuple(outputs.shape)} and the target is {indices.tolist()}")
    seed = torch.zeros_like(outputs)
    seed[torch.arange(n), indices] = 1.0
    if lrp:  # relevance starts as the target score of the model as it is (not canonized)
        seed = seed * outputs

    conserving = lrp and composite_name in CONSERVING
    with _restored(model):
        canonizers, info = _canonizers(pairs) if canonize else ([], {})
        composite = COMPOSITES[composite_name](canonizers=canonizers, **composite_options)
        relevance, hooked_outputs, sums = _attribute(model, composite, x, seed, canonize)
        structural = None
        if conserving and check:
            structural, _, _ = _attribute(model, _check_composite(canonizers), x, seed, canonize)
    # merging is exact up to rounding (ExactMergeBatchNorm): 1000 ulps of the largest output
    tolerance = 1e3 * torch.finfo(outputs.dtype).eps * float(outputs.abs().max())
    if canonize and not torch.allclose(hooked_outputs, outputs, rtol=0.0, atol=tolerance):
        raise ModelError(
            "canonizing this model for LRP (merging batch norms into the layers before them) "
            "changed its outputs, so a merged layer's output must feed more than its batch "
            "norm; pass canonize=False")
    info = {"composite": composite_name, **info}
    if canonize:
        info["residual_sums"] = sums
    if conserving:
        scores = outputs[torch.arange(n), indices]
        info["conservation"] = _ratios(relevance, scores)
        if structural is not None:
            info["structural_conservation"] = _ratios(structural, scores)
            _warn_unless_conserved(info["structural_conservation"], composite_name, canonize)
    return relevance.detach(), info


def _composite_options(cls: type, name: str, options: dict[str, Any],
                       x: torch.Tensor) -> dict[str, Any]:
    """The composite's own options, checked (zennit would fail late, inside the backward)."""
    valid = [p for p in inspect.signature(cls.__init__).parameters
             if p not in ("self", "canonizers")]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise OptionError(f"zennit composite {name!r} has no option {unknown[0]!r}; its "
                          f"options are: {', '.join(valid) or 'none'} (plus composite, "
                          "canonize, check_conservation)")
    out = dict(options)
    for key in NUMERIC_OPTIONS:
        if key in out:
            out[key] = number(f"zennit {name}", key, out[key], minimum=0.0)
    for key in ("low", "high"):
        if key in out:
            value = out[key]
            if isinstance(value, numbers.Real) and not isinstance(value, bool):
                out[key] = float(value)
            else:
                try:
                    array = np.asarray(value.detach().cpu() if torch.is_tensor(value) else value,
                                       dtype=np.float64)
                except (TypeError, ValueError):
                    array = None
                if array is None or array.shape not in ((), tuple(x.shape), tuple(x.shape[1:])):
                    raise OptionError(f"zennit option {key}= takes a number or an array shaped "
                                      f"like the input {tuple(x.shape)}, not {value!r}")
                if array.shape == tuple(x.shape[1:]):
                    array = array[None]  # zennit expands a batch of one to the input's batch
                out[key] = torch.as_tensor(array, dtype=x.dtype, device=x.device)
    for key in ("layer_map", "first_map"):
        value = out.get(key)
        if value is not None and not (isinstance(value, list) and all(
                isinstance(e, tuple) and len(e) == 2 for e in value)):
            raise OptionError(f"zennit option {key}= takes a list of (module types, zennit "
                              f"rule) pairs, e.g. [(torch.nn.Conv2d, zennit.rules.ZPlus())], "
                              f"not {value!r}")
    zero = out.get("zero_params")
    if zero is not None and not (isinstance(zero, str) or (
            isinstance(zero, (list, tuple)) and all(isinstance(z, str) for z in zero))):
        raise OptionError(f"zennit option zero_params= takes a parameter name or a list of "
                          f"them (e.g. 'bias'), not {zero!r}")
    return out


def _canonizers(pairs: list[tuple[str, str]]) -> tuple[list, dict[str, Any]]:
    """zennit canonizers: batch norms merged along the data flow (``pairs`` of names), plus
    zennit's torchvision ResNet block canonizers (effective with the real torchvision)."""
    from zennit.canonizers import NamedMergeBatchNorm
    from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

    class ExactMergeBatchNorm(NamedMergeBatchNorm):
        """zennit's merge leaves each batch norm computing ``x / sqrt(1 + eps)``, not ``x``
        (the merged scale already holds ``1 / sqrt(var + eps)``): 2.4e-4 relative on the
        float64 logits of the reference ResNet. A variance of ``1 - eps`` makes the merged
        batch norm the identity, so LRP explains the model's own function."""

        @staticmethod
        def merge_batch_norm(modules, batch_norm):
            NamedMergeBatchNorm.merge_batch_norm(modules, batch_norm)
            if batch_norm.eps < 1.0:
                batch_norm.running_var.data = torch.full_like(batch_norm.running_var.data,
                                                              1.0 - batch_norm.eps)

    canonizers = [ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()]
    if pairs:
        canonizers.insert(0, ExactMergeBatchNorm([((linear,), bn) for linear, bn in pairs]))
    return canonizers, {"merged_batch_norms": len(pairs)}


def _batch_norm_pairs(model: torch.nn.Module, x: torch.Tensor
                      ) -> tuple[list[tuple[str, str]], Any]:
    """``(linear name, batch norm name)`` pairs where the batch norm's input is exactly
    the linear layer's output (same tensor, not modified in place since), each run once;
    and the model's outputs.

    Found by one forward pass with temporary hooks, so registration order (which zennit's
    ``SequentialMergeBatchNorm`` relies on) does not matter."""
    from zennit.types import BatchNorm, Linear

    names = {}
    for name, module in model.named_modules():
        if isinstance(module, (Linear, BatchNorm)):
            names.setdefault(module, name)
    produced: dict[int, tuple[torch.Tensor, int, str]] = {}
    calls: dict[str, int] = {}
    found: dict[str, str] = {}

    def after_linear(module, inputs, output):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if torch.is_tensor(output):
            produced[id(output)] = (output, output._version, name)

    def before_norm(module, inputs):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if not inputs or not torch.is_tensor(inputs[0]):
            return
        entry = produced.get(id(inputs[0]))
        if entry is not None and entry[0] is inputs[0] and entry[1] == inputs[0]._version:
            found[name] = entry[2]

    handles = []
    try:
        for module, name in names.items():
            if isinstance(module, BatchNorm):
                handles.append(module.register_forward_pre_hook(before_norm))
            else:
                handles.append(module.register_forward_hook(after_linear))
        with torch.no_grad():
            outputs = model(x)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    pairs = []
    for bn, linear in found.items():
        norm = modules[bn]
        mergeable = norm.affine and norm.running_mean is not None
        if mergeable and calls.get(bn) == 1 and calls.get(linear) == 1 \
                and list(found.values()).count(linear) == 1:
            pairs.append((linear, bn))
    return pairs, outputs


class _ResidualSums(ResidualAdditions):
    """Routes residual additions (see :class:`~crosslens.backends.torch.ResidualAdditions`)
    through a fresh zennit ``Sum`` module hooked with the composite's rule for ``Sum``.

    Active only during the attribution's forward pass (the rules' own backward arithmetic
    must stay plain). One module per addition: zennit's hooks keep per-call state."""

    def __init__(self, composite: Any) -> None:
        super().__init__()
        from zennit.layer import Sum

        self.sum_type = Sum
        self.composite = composite
        # Sum is no linear layer, so a special first-layer rule never applies to it
        self.template = composite.module_map({"first_layer_visited": True},
                                             "crosslens.residual_sum", Sum())

    def _sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        module = self.sum_type(dim=-1)
        hook = self.template.copy()
        self.composite.hook_refs.add(hook)
        self.composite.handles.append(hook.register(module))  # removed with the composite
        return module(torch.stack([a, b], dim=-1))


def _attribute(model: torch.nn.Module, composite: Any, x: torch.Tensor, seed: torch.Tensor,
               route_sums: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Forward under the composite (and the residual routing), backward from the seed."""
    inputs = x.detach().clone().requires_grad_(True)  # never the caller's tensor
    mode = None
    with torch.enable_grad():
        try:
            composite.register(model)  # inside: a half-done registration is removed too
            mode = _ResidualSums(composite) if route_sums else None
            if mode is not None and mode.template is None:
                mode = None  # the composite has no rule for sums: nothing to route
            if mode is not None:
                with mode:
                    outputs = model(inputs)
            else:
                outputs = model(inputs)
            relevance, = torch.autograd.grad(outputs, inputs, grad_outputs=seed)
        finally:
            composite.remove()
    return relevance, outputs.detach(), 0 if mode is None else mode.count


def _check_composite(canonizers: list) -> Any:
    """The structural check: zennit's layer map with the bias-free z+ rule (``AlphaBeta(1,
    0)`` without biases) on every linear layer. Its relevance is a ratio of same-signed
    sums at every layer, so it conserves the score exactly (no bias absorbs anything, no
    cancellation) unless the model's structure duplicates or drops relevance: an unrouted
    residual addition, a module run twice, an operation without a rule."""
    from zennit.composites import LayerMapComposite, layer_map_base
    from zennit.rules import AlphaBeta
    from zennit.types import Linear

    rule = AlphaBeta(alpha=1.0, beta=0.0, zero_params=["bias"])
    return LayerMapComposite(layer_map=layer_map_base() + [(Linear, rule)],
                             canonizers=canonizers)


def _ratios(relevance: torch.Tensor, scores: torch.Tensor) -> list[float]:
    """Per-sample ``sum(relevance) / score`` (NaN where the score is 0)."""
    total = relevance.detach().reshape(len(relevance), -1).sum(1).double()
    scores = scores.detach().double()
    safe = torch.where(scores != 0, scores, torch.ones_like(scores))
    ratio = torch.where(scores != 0, total / safe, torch.full_like(total, float("nan")))
    return [float(r) for r in ratio.cpu()]


def _warn_unless_conserved(ratios: list[float], composite: str, canonize: bool) -> None:
    """Warn when the structural check is off by more than :data:`CONSERVATION_TOLERANCE`."""
    bad = [i for i, r in enumerate(ratios)
           if np.isfinite(r) and abs(r - 1.0) > CONSERVATION_TOLERANCE]
    if not bad:
        return
    hint = ("" if canonize else "; canonize=False was passed, so batch norms and residual "
            "additions are not handled: drop it")
    warnings.warn(
        f"LRP ({composite}) does not conserve relevance on this model: with bias-free z+ "
        f"rules, which conserve exactly, sum(relevance) / score is "
        f"{', '.join(f'{ratios[i]:.3g}' for i in bad[:4])} for sample(s) {bad[:4]}, not 1. "
        "Relevance is duplicated or lost by the model's structure: a module run more than "
        "once, or an operation zennit has no rule for (subtraction or product of two "
        f"activations, normalization layers other than batch norm){hint}. The ratios are in "
        "info['structural_conservation']", ConservationWarning, stacklevel=4)


@contextmanager
def _restored(model: torch.nn.Module) -> Iterator[None]:
    """Put every module back as it was: parameter and buffer data, the parameter / buffer /
    submodule dicts, hook dicts and instance attributes. zennit undoes its canonizers itself;
    this also covers a canonizer or hook that fails half-way."""
    modules = list(model.modules())
    saved = [(m, dict(m._parameters), dict(m._buffers), dict(m._modules), set(vars(m)),
              {h: dict(getattr(m, h)) for h in _HOOK_DICTS
               if isinstance(getattr(m, h, None), dict)})
             for m in modules]
    data = [(t, t.data) for m in modules for t in list(m._parameters.values())
            + list(m._buffers.values()) if t is not None]
    try:
        yield
    finally:
        for module, params, buffers, children, keys, hooks in saved:
            for store, before in ((module._parameters, params), (module._buffers, buffers),
                                  (module._modules, children), *((getattr(module, name), hook)
                                                                 for name, hook in hooks.items())):
                if _changed(store, before):
                    store.clear()
                    store.update(before)
            for key in set(vars(module)) - keys:
                del module.__dict__[key]
        with torch.no_grad():
            for tensor, original in data:
                tensor.data = original


def _changed(store: dict, before: dict) -> bool:
    """Whether ``store`` differs from ``before`` in keys, order or value identity (tensors
    are compared by identity: ``==`` on tensors is elementwise)."""
    return list(store) != list(before) or any(store[k] is not v for k, v in before.items())
