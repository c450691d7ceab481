"""PyTorch backend: any ``torch.nn.Module`` (eager or TorchScript), on its own device.

- Layers are the module's dotted ``named_modules()`` paths (``"blocks.3.conv"``).
- Activations and layer gradients use forward hooks registered for one pass and removed
  in ``finally``. For a gradient w.r.t. a layer the hooked output is detached and made a
  leaf, so the backward pass stops there (cheaper, and it does not need the input or the
  weights to require gradients).
- ReLU rules (guided backprop, deconvnet) use a ``TorchFunctionMode`` that reroutes every
  ReLU call made during the pass, whether from ``nn.ReLU``, ``F.relu``, ``torch.relu``,
  ``Tensor.relu`` or their in-place forms, through an autograd function with the rule's
  backward. The mode is active only inside the pass.
- During a session the model is put in eval mode and its parameters stop requiring
  gradients (only input gradients are computed); each module's ``training`` flag and
  each parameter's ``requires_grad`` are restored afterwards, also after an error.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..core.errors import DisconnectedError, InputError, TargetError, UnsupportedError
from ..core.targets import (ChannelTarget, ClassTarget, NeuronTarget, ObjectiveTarget,
                            PredictedTarget, ScoreTarget, TargetSpec, check_class_range)
from .base import ArrayOps, Backend, GradientResult
from .checks import (check_finite, check_image_input, check_unit, class_output_message,
                     disconnected_message, multiple_outputs_message)

CAPABILITIES = frozenset({"grad", "layer_grad", "activations", "relu_override",
                          "layer_override", "forward"})


class TorchOps(ArrayOps):
    """Array operations on torch tensors on one device and dtype."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype

    def asarray(self, array: Any) -> torch.Tensor:
        if isinstance(array, torch.Tensor):
            return array.detach().to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(array), device=self.device).to(self.dtype)

    def to_numpy(self, array: torch.Tensor) -> np.ndarray:
        return array.detach().cpu().numpy()

    def concat(self, arrays, axis=0):
        return arrays[0] if len(arrays) == 1 else torch.cat(list(arrays), dim=axis)

    def stack(self, arrays, axis=0):
        return torch.stack(list(arrays), dim=axis)

    def sum(self, array, axis=None, keepdims=False):
        return array.sum() if axis is None else array.sum(dim=axis, keepdim=keepdims)

    def mean(self, array, axis=None, keepdims=False):
        return array.mean() if axis is None else array.mean(dim=axis, keepdim=keepdims)

    def reshape(self, array, shape):
        return array.reshape(tuple(shape))

    def zeros_like(self, array):
        return torch.zeros_like(array)

    def abs(self, array):
        return array.abs()

    def sqrt(self, array):
        return array.sqrt()

    def maximum(self, a, b):
        return a.clamp(min=b) if isinstance(b, (int, float)) else torch.maximum(a, b)

    def max(self, array, axis=None, keepdims=False):
        return array.max() if axis is None else array.amax(dim=axis, keepdim=keepdims)

    def min(self, array, axis=None, keepdims=False):
        return array.min() if axis is None else array.amin(dim=axis, keepdim=keepdims)

    def where(self, condition, a, b):
        return torch.where(condition, a, b)

    def argmax(self, array, axis):
        return array.argmax(dim=axis)

    def shape(self, array):
        return tuple(array.shape)

    def transpose(self, array, axes):
        return array.permute(*axes)

    def resize_bilinear(self, array, size):
        out = F.interpolate(array[:, None], size=tuple(int(s) for s in size), mode="bilinear",
                            align_corners=False, antialias=False)
        return out[:, 0]

    def exp(self, array):
        return array.exp()

    def log(self, array):
        return array.log()

    def matmul(self, a, b):
        return torch.matmul(a, b)


# --- ReLU rules ---------------------------------------------------------------------------

class _ReluWithRule(torch.autograd.Function):
    """ReLU (or ReLU6 when ``top`` is set) forward; backward by rule:
    ``guided`` = relu'(x)·max(g, 0), ``deconv`` = max(g, 0)."""

    @staticmethod
    def forward(ctx, x, rule, inplace, top):
        if inplace:
            out = x.clamp_(min=0, max=top)
            ctx.mark_dirty(x)
        else:
            out = x.clamp(min=0, max=top)
        ctx.rule = rule
        ctx.top = top
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        grad = grad.clamp(min=0)
        if ctx.rule == "guided":
            passing = out > 0 if ctx.top is None else (out > 0) & (out < ctx.top)
            grad = grad * passing.to(grad.dtype)
        return grad, None, None, None


# ReLU entry points -> whether they work in place.
_RELU_FUNCS = {F.relu: False, torch.relu: False, torch.Tensor.relu: False,
               torch.relu_: True, torch.Tensor.relu_: True, F.relu_: True}


class _ReluRuleMode(TorchFunctionMode):
    """Reroutes ReLU and ReLU6 (``F.relu6``, ``nn.ReLU6`` = ``hardtanh(0, 6)``) calls."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU_FUNCS:
            inplace = _RELU_FUNCS[func] or bool(kwargs.get("inplace", False)) or (
                func is F.relu and len(args) > 1 and bool(args[1]))
            self.calls += 1
            return _ReluWithRule.apply(args[0], self.rule, inplace, None)
        if func is F.relu6 or (func is F.hardtanh and _is_relu6(args, kwargs)):
            inplace = bool(kwargs.get("inplace", args[3] if len(args) > 3 else False)) \
                if func is F.hardtanh else bool(kwargs.get("inplace", args[1] if len(args) > 1
                                                             else False))
            self.calls += 1
            return _ReluWithRule.apply(args[0], self.rule, inplace, 6.0)
        return func(*args, **kwargs)


def _is_relu6(args: tuple, kwargs: dict) -> bool:
    low = kwargs.get("min_val", args[1] if len(args) > 1 else -1.0)
    high = kwargs.get("max_val", args[2] if len(args) > 2 else 1.0)
    return float(low) == 0.0 and float(high) == 6.0


RULES = ("guided", "deconv")


class TorchBackend(Backend):
    """Backend for ``torch.nn.Module`` models (see the module docstring)."""

    name = "torch"
    capabilities = CAPABILITIES

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        tensors = list(model.parameters()) + list(model.buffers())
        floating = [t for t in tensors if t.is_floating_point()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.dtype = floating[0].dtype if floating else torch.float32
        self._ops = TorchOps(self.device, self.dtype)
        self.is_script = isinstance(model, torch.jit.ScriptModule)
        self._modules = {name: module for name, module in model.named_modules() if name}
        self._first = _first_shape_layer(model)

    @property
    def ops(self) -> TorchOps:
        return self._ops

    def runs_on_cpu(self) -> bool:
        return self.device.type == "cpu"

    @property
    def layout(self) -> str | None:
        if self._first is None:
            return None
        kind = self._first[0]
        return "channels_first" if kind.startswith("Conv") else None

    def layer_names(self) -> list[str]:
        return list(self._modules)

    def layer_object(self, name: str) -> torch.nn.Module:
        """The module called ``name``."""
        return self._modules[self.resolve_layer(name)]

    def _find_layer_object(self, layer: Any) -> str | None:
        for name, module in self._modules.items():
            if module is layer:
                return name
        return None

    # --- model copies (sanity checks) ---------------------------------------------------
    def parameter_layers(self) -> list[str]:
        return [name for name, module in self._modules.items()
                if any(True for _ in module.parameters(recurse=False))]

    def randomized_copy(self, layers: Sequence[str], seed: int | None = None) -> torch.nn.Module:
        if self.is_script:
            raise UnsupportedError("randomized copies need the eager nn.Module, not TorchScript")
        import copy

        from .randomize import layer_rng, random_like
        clone = copy.deepcopy(self.model)  # the user's model is never touched
        modules = dict(clone.named_modules())
        with torch.no_grad():
            for name in layers:
                rng = layer_rng(seed, name)
                for param in modules[self.resolve_layer(name)].parameters():
                    values = random_like(param.detach().cpu().numpy(), rng)
                    param.copy_(torch.as_tensor(values, dtype=param.dtype))
        return clone

    # --- session ----------------------------------------------------------------------
    @contextmanager
    def _model_state(self) -> Iterator[None]:
        # Only what must change is touched and put back: on a ResNet50 a blanket
        # eval() + parameters() walk costs ~3 ms per call, a GPU pass about as much.
        modules = list(self.model.modules())
        training = [m for m in modules if m.training]
        flags = [p for m in modules for p in m._parameters.values()
                 if p is not None and p.requires_grad]
        try:
            if training:
                self.model.eval()
            for p in flags:
                p.requires_grad_(False)
            yield
        finally:
            for m in training:
                m.training = True
            for p in flags:
                p.requires_grad_(True)

    def max_batch(self, x, backward=True, total=None):
        if self.device.type == "cuda":  # never plan past what the device has free
            free, _ = torch.cuda.mem_get_info(self.device)
            budget = self.budget
            self.budget = min(budget, int(free * 0.8))
            try:
                return super().max_batch(x, backward, total)
            finally:
                self.budget = budget
        return super().max_batch(x, backward, total)

    # --- data -----------------------------------------------------------------------------
    def prepare(self, x: Any) -> torch.Tensor:
        shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
        native = self.ops.asarray(x)
        if self._first is not None:
            kind, rank, channels = self._first
            try:
                check_image_input(shape, rank, channels,
                                  "channels_first" if kind.startswith("Conv") else "features",
                                  framework="PyTorch")
            except InputError:
                # The first layer is found by registration order, which need not be the
                # order of execution: only report when the model indeed rejects the input.
                if not self._accepts(native[:1] if native.ndim else native):
                    raise
        check_finite(bool(torch.isfinite(native).all()), shape)
        return native

    def _accepts(self, sample: torch.Tensor) -> bool:
        try:
            with torch.no_grad():
                self.model(sample)
        except Exception:
            return False
        return True

    def restore(self, native: torch.Tensor, like: Any) -> Any:
        native = native.detach()
        if isinstance(like, torch.Tensor):
            dtype = like.dtype if like.is_floating_point() else native.dtype
            return native.to(device=like.device, dtype=dtype)
        array = native.cpu().numpy()
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None and np.dtype(like_dtype).kind == "f":
            array = array.astype(like_dtype, copy=False)
        return array

    # --- primitives ---------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _single_output(self.model(x), "forward")

    def _activations(self, x, layers):
        with torch.no_grad(), self._hooks(layers, {}, None) as store:
            self.model(x)
        return {name: store[name] for name in layers}

    def _layer_shapes(self, x1):
        if self.is_script:
            raise UnsupportedError("listing layer shapes needs forward hooks, which "
                                   "TorchScript modules do not support. Load the eager nn.Module")
        shapes: dict = {}
        calls: dict = {}

        def record(name):
            def hook(module, inputs, output):
                calls[name] = calls.get(name, 0) + 1
                if isinstance(output, torch.Tensor) and name not in shapes:
                    shapes[name] = tuple(output.shape[1:])
            return hook

        handles = [m.register_forward_hook(record(n)) for n, m in self._modules.items()]
        try:
            with torch.no_grad():
                self.model(x1)
        finally:
            for handle in handles:
                handle.remove()
        # a module that runs several times (a shared ReLU) has no single output to address
        return {name: shape for name, shape in shapes.items() if calls[name] == 1}

    def _gradient(self, x, target, wrt, rule, capture, replace):
        layers = set(capture) | set(replace or {})
        if isinstance(target, (NeuronTarget, ChannelTarget)):
            layers.add(target.layer)
        if isinstance(target, ObjectiveTarget):
            layers.update(target.layers)
        with ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            if rule is not None:
                stack.enter_context(self._relu_rule(rule))
            store = stack.enter_context(self._hooks(tuple(layers), replace or {}, wrt))
            leaf = x.detach().requires_grad_(wrt is None)
            outputs = self.model(leaf)
            score = self._score(outputs, store, target, len(x))
        of = leaf if wrt is None else store[wrt]
        if not score.requires_grad:
            raise DisconnectedError(disconnected_message(wrt))
        (grad,) = torch.autograd.grad(score.sum(), of, allow_unused=True)
        if grad is None:
            raise DisconnectedError(disconnected_message(wrt))
        return GradientResult(
            grad.detach(),
            outputs.detach() if isinstance(outputs, torch.Tensor) else None,
            score.detach(),
            {name: store[name].detach() for name in capture})

    def _vjp(self, x, cotangent):
        with torch.enable_grad():
            leaf = x.detach().requires_grad_(True)
            outputs = _single_output(self.model(leaf), "vector-Jacobian product")
            if tuple(outputs.shape) != tuple(cotangent.shape):
                raise InputError(f"the cotangent has shape {tuple(cotangent.shape)}; the "
                                 f"model's output has shape {tuple(outputs.shape)}")
            (grad,) = torch.autograd.grad(outputs, leaf, grad_outputs=cotangent,
                                          allow_unused=True)
        if grad is None:
            raise DisconnectedError(disconnected_message(None))
        return grad.detach()

    def _score(self, outputs: Any, store: dict, target: TargetSpec, n: int) -> torch.Tensor:
        if isinstance(target, ScoreTarget):
            return _per_sample(target.fn(outputs), n)
        if isinstance(target, ObjectiveTarget):
            acts = {name: store[name] for name in target.layers}
            return _per_sample(target.fn(self.ops, acts, outputs), n)
        if isinstance(target, (NeuronTarget, ChannelTarget)):
            return _unit_score(store[target.layer], target)
        outputs = _single_output(outputs, "class target")
        if outputs.ndim != 2:
            raise TargetError(class_output_message(tuple(outputs.shape)))
        if isinstance(target, PredictedTarget):
            index = outputs.detach().argmax(dim=1)
        else:
            check_class_range(target.indices, outputs.shape[1])
            index = torch.as_tensor(target.indices, device=outputs.device)
        return outputs.gather(1, index[:, None])[:, 0]

    @contextmanager
    def _relu_rule(self, rule: str) -> Iterator[None]:
        if rule not in RULES:
            raise UnsupportedError(f"unknown ReLU rule {rule!r}; valid rules: {RULES}")
        if self.is_script:
            raise UnsupportedError(
                "ReLU rules (guided backprop, deconvnet) cannot be applied to a TorchScript "
                "module: TorchScript bypasses Python dispatch. Load the eager nn.Module")
        mode = _ReluRuleMode(rule)
        with mode:
            yield
        if mode.calls == 0:
            raise UnsupportedError(
                f"the {rule} rule changes the backward pass of ReLUs, but this model ran no "
                "ReLU or ReLU6; the result would silently equal the plain gradient. Use "
                "saliency for this model")

    @contextmanager
    def _hooks(self, layers: Sequence[str], replace: dict, wrt: str | None
               ) -> Iterator[dict[str, torch.Tensor]]:
        store: dict[str, torch.Tensor] = {}
        if not layers and wrt is None:
            yield store
            return
        if self.is_script:
            raise UnsupportedError(
                "layer access (activations, layer gradients, neuron targets) needs forward "
                "hooks, which TorchScript modules do not support. Load the eager nn.Module")
        handles = []
        try:
            for name in dict.fromkeys(list(layers) + ([wrt] if wrt else [])):
                handles.append(self._modules[name].register_forward_hook(
                    _make_hook(name, store, replace.get(name), make_leaf=(name == wrt))))
            yield store
        finally:
            for handle in handles:
                handle.remove()

    def _estimate_bytes_per_sample(self, x1: torch.Tensor) -> int:
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = self.model(x1.detach().requires_grad_(True))
        except Exception:  # an exotic model: fall back to a generous multiple of the input
            return 200 * x1.numel() * x1.element_size()
        out_bytes = sum(t.numel() * t.element_size() for t in _tensors(out))
        # saved tensors + the input, its gradient and the output; 1.25 for backward temporaries
        return int(1.25 * (saved + 2 * x1.numel() * x1.element_size() + out_bytes))


# --- helpers ----------------------------------------------------------------------------------

def _make_hook(name: str, store: dict, replacement: Any, make_leaf: bool):
    def hook(module, inputs, output):
        if name in store:
            raise UnsupportedError(
                f"layer {name!r} runs more than once in one forward pass (a shared module); "
                "address a layer that is used once")
        if replacement is not None:
            output = replacement
        if not isinstance(output, torch.Tensor):
            raise UnsupportedError(
                f"layer {name!r} returns {type(output).__name__}, not a tensor; address a "
                "layer (or submodule) whose output is a single tensor")
        if make_leaf:  # gradient stops at this layer; it need not be connected upstream
            output = output.detach().requires_grad_(True)
        store[name] = output
        return output
    return hook


def _first_shape_layer(model: torch.nn.Module) -> tuple[str, int, int] | None:
    """(kind, expected input rank, channels/features) of the first conv or linear layer."""
    ranks = {"Conv1d": 3, "Conv2d": 4, "Conv3d": 5, "Linear": 2}
    classes = {torch.nn.Conv1d: "Conv1d", torch.nn.Conv2d: "Conv2d", torch.nn.Conv3d: "Conv3d"}
    modules = list(model.modules())
    # Prefer convolutions: a dense head is often registered before the conv stem.
    for wanted in (("Conv1d", "Conv2d", "Conv3d"), ("Linear",)):
        for module in modules:
            kind = next((name for cls, name in classes.items() if isinstance(module, cls)),
                        "Linear" if isinstance(module, torch.nn.Linear) else
                        getattr(module, "original_name", type(module).__name__))
            if kind not in wanted:
                continue
            count = getattr(module, "in_channels", getattr(module, "in_features", None))
            return (kind, ranks[kind], count) if isinstance(count, int) else None
    return None


def _single_output(outputs: Any, purpose: str) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    raise TargetError(multiple_outputs_message(type(outputs).__name__, purpose))


def _per_sample(score: Any, n: int) -> torch.Tensor:
    if not isinstance(score, torch.Tensor):
        raise TargetError("a callable target must return a torch tensor with one score per sample")
    if score.ndim == 2 and score.shape[1] == 1:
        score = score[:, 0]
    if score.ndim != 1 or score.shape[0] != n:
        raise TargetError(
            f"a callable target must return one score per sample, shape ({n},); "
            f"got {tuple(score.shape)}")
    return score


def _unit_score(activation: torch.Tensor, target: NeuronTarget | ChannelTarget) -> torch.Tensor:
    check_unit(target, tuple(activation.shape[1:]), channel_axis=0)
    if isinstance(target, ChannelTarget):
        return activation[:, target.channel].reshape(activation.shape[0], -1).mean(dim=1)
    return activation[(slice(None),) + tuple(target.index)]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []
