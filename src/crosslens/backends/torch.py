"""PyTorch backend: any ``torch.nn.Module`` (eager or TorchScript), on its own device.

- Layers are the module's dotted ``named_modules()`` paths (``"blocks.3.conv"``; those of
  the original module for a ``torch.compile``'d one), ``"name#k"`` for the ``k``-th call
  of a module that runs several times.
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
  each parameter's ``requires_grad`` are restored afterwards, also after an error. The
  session enables gradients and leaves inference mode, so calls made inside
  ``torch.no_grad()`` or ``torch.inference_mode()`` work; inputs created in inference
  mode are cloned.
- Integer inputs (token ids) are never cast; every model call goes through
  :meth:`TorchBackend._run`, which splits a multi-input batch into the model's arguments
  and reports an exception of the model's own as a :class:`ModelError`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
import functools
import inspect
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.utils.stateless import _reparametrize_module
from torch.overrides import TorchFunctionMode

from ..core.arrays import as_like, framework_of_array
from ..core.errors import (CrosslensError, DisconnectedError, InputError,
                           ModelError, TargetError, UnsupportedError)
from ..core import relevance
from ..core.rules import DECONV, GUIDED, RESCALE, RESCALE_EPS, Rule
from ..core.scoring import score, single_output
from ..core.targets import (ChannelTarget, ClassTarget, NeuronTarget, ObjectiveTarget,
                            PredictedTarget, TargetSpec, predicted_classes)
from ..core.backend import ArrayOps, Backend, GradientResult
from ..core.checks import (CallPicker, check_finite, check_image_input, check_ran,
                           disconnected_message, group_calls, model_error,
                           multiple_outputs_message, not_a_tensor_message)



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

    def all_finite(self, array):
        return bool(torch.isfinite(array).all())

    def as_integer(self, array):
        return torch.as_tensor(np.asarray(array, dtype=np.int64), device=self.device)

    def take_rows(self, array, rows):
        return array.index_select(0, torch.as_tensor(np.asarray(rows, dtype=np.int64),
                                                     device=array.device))

    def gather_rows(self, array, index):
        return array.gather(1, index.to(array.device)[:, None])[:, 0]

    def is_integer(self, array):
        return not array.is_floating_point() and not array.is_complex() \
            and array.dtype != torch.bool

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

    def stop_gradient(self, array):
        return array.detach()

    def halves(self, array):
        first, second = array.chunk(2)
        return first, second

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




class TorchBackend(Backend):
    """Backend for ``torch.nn.Module`` models (see the module docstring)."""

    name = "torch"

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        tensors = list(model.parameters()) + list(model.buffers())
        floating = [t for t in tensors if t.is_floating_point()]
        self.device = tensors[0].device if tensors else torch.device("cpu")
        self.dtype = floating[0].dtype if floating else torch.float32
        self._ops = TorchOps(self.device, self.dtype)
        self.is_script = isinstance(model, torch.jit.ScriptModule)
        # a torch.compile'd model wraps the original as "_orig_mod": address its layers by
        # their own names (hooks on them apply to the compiled model too)
        inner = getattr(model, "_orig_mod", None)
        root = inner if isinstance(inner, torch.nn.Module) else model
        self._modules = {name: module for name, module in root.named_modules() if name}
        self._first = _first_shape_layer(model)
        self._final: dict[tuple, str | None] = {}

    def fingerprint(self) -> Any:
        # Module identities and types (a new head, a replaced layer) and every tensor's
        # dtype and device (.double(), .to()): what the cached names, dtype, device and
        # shape probes depend on. ~0.1 ms on a ResNet50.
        model = self.model
        return (tuple((id(m), type(m)) for m in model.modules()),
                tuple((t.dtype, t.device) for t in model.parameters()),
                tuple((t.dtype, t.device) for t in model.buffers()))

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

    def input_layout(self, shape) -> str | None:
        # PyTorch images are (N, C, H, W) / (N, C, D, H, W) whatever the first layer;
        # a rank-3 batch is (N, C, L) for a Conv1d model, and cannot be known otherwise
        # ((N, T, F) for batch-first recurrent or linear layers).
        rank = len(shape)
        if rank in (4, 5):
            return "channels_first"
        if rank == 3 and self._first is not None and self._first[0] == "Conv1d":
            return "channels_first"
        return None

    @property
    def layer_layout(self) -> str:
        return "channels_first"  # PyTorch layer outputs put channels on axis 1

    def layer_names(self) -> list[str]:
        return list(self._modules)

    def channel_axes(self, x) -> dict[str, int]:
        """Per-sample channel axis of every layer output (see the base class). Maps and
        vectors have channels first; a sequence ``(A, B)`` has them first after a 1-D
        convolution, pooling or batch norm (``(C, L)``), last after a layer with weights of
        its own (Linear, Embedding, LayerNorm, attention blocks: ``(T, D)``), and as its
        input after a weightless one (ReLU, Dropout, a container: the latest output of
        the same shape before it)."""
        counts = self.call_counts(x)
        axes: dict[str, int] = {}
        latest: dict[tuple, int] = {}
        for name, k, shape in self.layer_calls(x):
            if shape is None:
                continue
            if len(shape) != 2:
                axis = 0
            else:
                module = self._modules[name]
                if isinstance(module, _CHANNELS_FIRST_1D):
                    axis = 0
                elif any(True for _ in module.children()) or not any(
                        True for _ in module.parameters(recurse=False)):
                    axis = latest.get(shape, 0)
                else:
                    axis = 1
            latest[shape] = axis
            axes[name if counts[name] == 1 else f"{name}#{k}"] = axis
        return axes

    def layer_object(self, name: str) -> torch.nn.Module:
        """The module called ``name`` (for ``"name#k"``, the module)."""
        return self._modules[self.resolve_layer(name).split("#")[0]]

    def _find_layer_object(self, layer: Any) -> str | None:
        for name, module in self._modules.items():
            if module is layer:
                return name
        return None

    def input_count(self) -> int | None:
        try:
            params = inspect.signature(self.model.forward).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            return None
        return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                   and p.default is p.empty)

    # --- model copies (sanity checks) ---------------------------------------------------
    def _named_weights(self):
        def raw(value: torch.Tensor) -> np.ndarray:  # bfloat16 has no numpy dtype: its bits
            value = value.detach().cpu()
            return (value.view(torch.int16) if value.dtype == torch.bfloat16 else value).numpy()
        return [(name, raw(value)) for name, value in self.model.state_dict().items()
                if isinstance(value, torch.Tensor)]

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
        params = [p for m in modules for p in m._parameters.values() if p is not None]
        _check_parameters(params)
        flags = [p for p in params if p.requires_grad]
        try:
            if training:
                self.model.eval()
            for p in flags:
                p.requires_grad_(False)
            # gradients are needed whatever the caller's context (torch.no_grad(),
            # torch.inference_mode()); both are restored on exit
            with torch.inference_mode(False), torch.enable_grad():
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
    def _prepare_one(self, x: Any) -> torch.Tensor:
        shape = tuple(x.shape) if hasattr(x, "shape") else np.shape(x)
        native = self._native_input(x)
        if self.ops.is_integer(native):
            return self._prepare_ids(native)
        if self._first is not None:
            kind, rank, channels = self._first
            try:
                check_image_input(shape, rank, channels,
                                  "channels_first" if kind.startswith("Conv") else "features",
                                  framework="PyTorch")
            except InputError as mismatch:
                # The first layer is found by registration order, which need not be the
                # order of execution: only report when the model indeed rejects the input,
                # and report the model's own error when it is not about the input's shape.
                rejection = self._rejection(native[:1] if native.ndim else native)
                if isinstance(rejection, ModelError) and isinstance(rejection.__cause__,
                                                                     TypeError):
                    raise rejection
                if rejection is not None:
                    raise mismatch from rejection
        check_finite(bool(torch.isfinite(native).all()), shape)
        return native

    def _prepare_member(self, x: Any) -> torch.Tensor:
        native = self._native_input(x)
        if not self.ops.is_integer(native):
            check_finite(bool(torch.isfinite(native).all()), tuple(native.shape))
        return native

    def _native_input(self, x: Any) -> torch.Tensor:
        """``x`` as a tensor on the model's device: floating inputs in the model's dtype,
        integer inputs (token ids) as they are."""
        if isinstance(x, torch.Tensor):
            if x.device.type == "meta":
                raise InputError("the input is on the 'meta' device, which holds shapes but "
                                 "no values; pass a tensor with data (e.g. created on 'cpu')")
            if x.is_inference():  # inference tensors cannot be saved for backward
                x = x.clone()
        else:
            kind = framework_of_array(x)
            if kind not in ("numpy", "other"):
                from ..core.arrays import to_numpy
                x = to_numpy(x)
            x = np.asarray(x)
            if x.dtype == object:
                raise InputError("the input is not a numeric array (dtype object); give one "
                                 "batch as a numpy array or tensor, or a tuple / dict of them "
                                 "for a model with several inputs")
        dtype = x.dtype
        if dtype in (torch.bool, np.dtype(bool)) or getattr(dtype, "is_complex", False) \
                or (isinstance(dtype, np.dtype) and dtype.kind in "cbSUO"):
            raise InputError(f"the input has dtype {dtype}, which a model cannot be explained "
                             "for; give floating-point values (or integer token ids)")
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                return x.detach().to(self.device)
            return x.detach().to(device=self.device, dtype=self.dtype)
        if x.dtype.kind in "iu":
            return torch.as_tensor(x.astype(np.int64), device=self.device)
        return self.ops.asarray(x)

    def _check_runs(self, native: torch.Tensor) -> None:
        with torch.no_grad():
            self._run(native[:1])

    def _rejection(self, sample: torch.Tensor) -> Exception | None:
        """The error the model raises on ``sample``, or ``None`` when it runs."""
        try:
            self._check_runs(sample)
        except Exception as error:
            return error
        return None

    def _restore_one(self, native: torch.Tensor, like: Any) -> Any:
        native = native.detach()
        if isinstance(like, torch.Tensor):
            dtype = like.dtype if like.is_floating_point() else native.dtype
            return native.to(device=like.device, dtype=dtype)
        array = native.cpu().numpy()
        return as_like(array, like)

    def embedding_sizes(self) -> dict[str, int]:
        return {n: m.num_embeddings for n, m in self._modules.items()
                if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag))}

    # --- running the model --------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> Any:
        """Call the model on a native batch (split into its inputs for a structure); an
        exception of the model's own becomes a :class:`ModelError` naming the call."""
        try:
            if self.structure is None:
                return self.model(x)
            members = self.structure.split(self.ops, x)
            if self.structure.kind == "dict":
                return self.model(**dict(zip(self.structure.keys, members)))
            return self.model(*members)
        except CrosslensError:
            raise
        except Exception as error:
            raise model_error(error, self._describe_input(x), "PyTorch") from error

    def _describe_input(self, x: torch.Tensor) -> str:
        if self.structure is not None:
            return f"inputs {self.structure.describe()} (per sample)"
        return f"an input of shape {tuple(x.shape)} and dtype {x.dtype}"

    # --- primitives ---------------------------------------------------------------------------
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _single_output(self._run(x), "forward")

    def _activations(self, x, layers):
        with torch.no_grad(), self._hooks(layers, {}, None) as store:
            self._run(x)
        check_ran(store, layers)
        return {name: store[name] for name in layers}

    @contextmanager
    def _rescale_rule(self, rule: Rule) -> Iterator[None]:
        if self.is_script:
            raise UnsupportedError("DeepLIFT reroutes the model's nonlinearities through "
                                   "Python dispatch, which TorchScript bypasses. Load the "
                                   "eager nn.Module")
        with _RescaleMode():
            yield

    def _relevance_layers(self, x1):
        if self.is_script:
            raise UnsupportedError("LRP needs forward hooks, which TorchScript modules do not "
                                   "support. Load the eager nn.Module")
        return _find_relevance_layers(self, x1)

    def _layer_calls(self, x1):
        if self.is_script:
            raise UnsupportedError("listing layer shapes needs forward hooks, which "
                                   "TorchScript modules do not support. Load the eager nn.Module")
        calls: list = []
        counts: dict = {}
        last_leaf: list = []

        def record(name, leaf):
            def hook(module, inputs, output):
                k = counts.get(name, 0)
                counts[name] = k + 1
                shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else None
                calls.append((name, k, shape))
                if leaf:
                    last_leaf[:] = [type(module).__name__, output]
            return hook

        out = self._hooked_run(x1, {n: record(n, not any(True for _ in m.children()))
                                    for n, m in self._modules.items()})
        # what the model's last operation is, when its output is that of a known layer
        final = None
        if last_leaf and last_leaf[1] is out:
            final = {"Sigmoid": "sigmoid", "Linear": "linear"}.get(last_leaf[0])
        self._final[(tuple(x1.shape[1:]), self.structure)] = final
        return calls

    def output_activation(self) -> str | None:
        """``"sigmoid"`` / ``"linear"`` when the model's output is that of such a layer."""
        if self._current is None or self.is_script:
            return None
        self.layer_calls(self._current)
        return self._final.get((tuple(self._current.shape[1:]), self.structure))

    def _locate_nonfinite(self, x1):
        if self.is_script:
            return None
        found: list = []

        def check(name):
            def hook(module, inputs, output):
                if found or not isinstance(output, torch.Tensor) or bool(
                        torch.isfinite(output).all()):
                    return
                clean = all(bool(torch.isfinite(t).all()) for t in _tensors(inputs)
                            if t.is_floating_point())
                found.append((name, type(module).__name__ if clean else
                              f"{type(module).__name__}, whose input is already non-finite: "
                              "they arise in the model's code before it"))
            return hook

        self._hooked_run(x1, {n: check(n) for n, m in self._modules.items()
                              if not any(True for _ in m.children())})
        return found[0] if found else None

    def _hooked_run(self, x1: torch.Tensor, hooks: dict[str, Any],
                    pre_hooks: dict[str, Any] | None = None) -> Any:
        """One forward pass without gradients with temporary forward (pre-)hooks on the
        named modules, removed afterwards; the model's outputs."""
        handles = []
        try:
            for name, hook in (pre_hooks or {}).items():
                handles.append(self._modules[name].register_forward_pre_hook(hook))
            for name, hook in hooks.items():
                handles.append(self._modules[name].register_forward_hook(hook))
            with torch.no_grad():
                return self._run(x1)
        finally:
            for handle in handles:
                handle.remove()

    def _gradient(self, x, target, wrt, rule, capture, replace):
        layers = set(capture) | set(replace or {})
        if isinstance(target, (NeuronTarget, ChannelTarget)):
            layers.add(target.layer)
        if isinstance(target, ObjectiveTarget):
            layers.update(target.layers)
        with ExitStack() as stack:
            stack.enter_context(torch.enable_grad())
            if rule is not None:
                stack.enter_context(self.apply_rule(rule))
            store = stack.enter_context(self._hooks(tuple(layers), replace or {}, wrt))
            leaf = x.detach().requires_grad_(wrt is None)
            outputs = self._run(leaf)
            check_ran(store, tuple(layers) + ((wrt,) if wrt else ()))
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
            outputs = _single_output(self._run(leaf), "vector-Jacobian product")
            if tuple(outputs.shape) != tuple(cotangent.shape):
                raise InputError(f"the cotangent has shape {tuple(cotangent.shape)}; the "
                                 f"model's output has shape {tuple(outputs.shape)}")
            (grad,) = torch.autograd.grad(outputs, leaf, grad_outputs=cotangent,
                                          allow_unused=True)
        if grad is None:
            raise DisconnectedError(disconnected_message(None))
        return grad.detach()

    def _score(self, outputs: Any, store: dict, target: TargetSpec, n: int) -> torch.Tensor:
        if isinstance(target, PredictedTarget):  # a binary decision: logit or probability
            logits = _single_output(outputs, "class target")
            if logits.ndim == 2 and logits.shape[1] == 1:
                target = ClassTarget(predicted_classes(
                    logits.detach().float().cpu().numpy(), self.output_activation()))
        value = score(self.ops, target, outputs, store, self.layer_layout)
        if value.shape[0] != n:
            raise TargetError(f"the target must give one score per sample, shape ({n},); "
                              f"got {tuple(value.shape)}")
        return value

    @contextmanager
    def _relu_rule(self, rule: Rule) -> Iterator[None]:
        """Guided backprop / deconvnet: every ReLU call of the pass rerouted by a mode."""
        if self.is_script:
            raise UnsupportedError(
                "ReLU rules (guided backprop, deconvnet) cannot be applied to a TorchScript "
                "module: TorchScript bypasses Python dispatch. Load the eager nn.Module")
        mode = _ReluRuleMode(rule.name)
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
        names = list(dict.fromkeys(list(layers) + ([wrt] if wrt else [])))
        if not names:
            yield store
            return
        if self.is_script:
            raise UnsupportedError(
                "layer access (activations, layer gradients, neuron targets) needs forward "
                "hooks, which TorchScript modules do not support. Load the eager nn.Module")
        handles = []
        try:
            for base, calls in group_calls(names).items():
                handles.append(self._modules[base].register_forward_hook(
                    _make_hook(base, calls, store, replace, wrt)))
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

        leaf = x1.detach()
        if leaf.is_floating_point():
            leaf = leaf.requires_grad_(True)
        try:
            with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = self._run(leaf)
        except Exception:  # an exotic model: fall back to a generous multiple of the input
            return 200 * x1.numel() * x1.element_size()
        out_bytes = sum(t.numel() * t.element_size() for t in _tensors(out))
        # saved tensors + the input, its gradient and the output; 1.25 for backward temporaries
        return int(1.25 * (saved + 2 * x1.numel() * x1.element_size() + out_bytes))


# --- helpers ----------------------------------------------------------------------------------

def _make_hook(base: str, calls: dict, store: dict, replace: dict, wrt: str | None):
    """Forward hook of module ``base``: record (or replace) the calls named in ``calls``
    (see :func:`~crosslens.core.checks.group_calls`)."""
    pick = CallPicker(base, calls)

    def hook(module, inputs, output):
        name = pick()
        if name is None:
            return None
        if replace.get(name) is not None:
            output = replace[name]
        if not isinstance(output, torch.Tensor):
            raise UnsupportedError(not_a_tensor_message(name, output))
        if name == wrt:  # gradient stops at this layer; it need not be connected upstream
            output = output.detach().requires_grad_(True)
        store[name] = output
        return output
    return hook


def _check_parameters(params: list) -> None:
    for p in params[:1] + params[-1:]:  # cheap: devices are shared by all parameters
        if p.device.type == "meta":
            raise UnsupportedError("the model's parameters are on the 'meta' device (not "
                                   "materialized); load its weights before explaining it, e.g. "
                                   "model.to_empty(device='cpu') then load_state_dict")
    if any(p.is_inference() for p in params):
        raise UnsupportedError("the model's parameters were created inside "
                               "torch.inference_mode(), so no gradient can flow through them; "
                               "build or load the model outside inference_mode (or clone its "
                               "parameters there)")


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
    """The model's one output tensor (a TargetError for several)."""
    output = single_output(outputs, purpose)
    if not isinstance(output, torch.Tensor):
        raise TargetError(multiple_outputs_message(type(outputs).__name__, purpose))
    return output


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


# --- DeepLIFT's rescale rule ---------------------------------------------------------------

# elementwise nonlinearities, however called (modules call these too)
_ELEMENTWISE = {F.relu, torch.relu, torch.Tensor.relu, F.relu6, F.hardtanh, F.elu, F.selu,
                F.celu, F.leaky_relu, F.gelu, F.silu, F.mish, F.softplus, F.hardswish,
                F.hardsigmoid, F.logsigmoid, F.softsign, torch.sigmoid, torch.Tensor.sigmoid,
                F.sigmoid, torch.tanh, torch.Tensor.tanh, F.tanh}
_ELEMENTWISE_INPLACE = {torch.relu_, F.relu_, torch.Tensor.relu_, F.hardtanh_, F.elu_,
                        F.leaky_relu_, torch.sigmoid_, torch.Tensor.sigmoid_, torch.tanh_,
                        torch.Tensor.tanh_}


def _in_place(func: Any, args: tuple, kwargs: dict) -> bool:
    if func in _ELEMENTWISE_INPLACE:
        return True
    try:
        bound = inspect.signature(func).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return bool(bound.arguments.get("inplace", False))


class _RescaleMode(TorchFunctionMode):
    """DeepLIFT's rescale rule for every elementwise nonlinearity of one pass, on a batch
    ``[inputs; baselines]``: the inputs' half backward ``g * Δy / Δx``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        elementwise = func in _ELEMENTWISE or func in _ELEMENTWISE_INPLACE
        if not (elementwise and args and torch.is_tensor(args[0]) and args[0].requires_grad):
            return func(*args, **kwargs)
        if len(args[0]) % 2:
            raise UnsupportedError(
                "DeepLIFT pairs each input with its baseline in one pass, but this pass got "
                f"{len(args[0])} rows: the memory budget split a pair. Raise memory_budget")
        if not _in_place(func, args, kwargs):
            return _rescaled(args[0], func(*args, **kwargs))
        # in place: run it on a copy (the input is needed for the secant), then write back
        rescaled = _rescaled(args[0].clone(), func(args[0].clone(), *args[1:], **kwargs))
        return args[0].copy_(rescaled)


def _rescaled(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` in value; in the first half the gradient ``Δy / Δx`` (the function's own
    derivative where ``|Δx| < RESCALE_EPS``), the second half (baselines) unchanged."""
    x1, x0 = x.chunk(2)
    y1, y0 = y.chunk(2)
    dx = (x1 - x0).detach()
    near = dx.abs() < RESCALE_EPS
    slope = ((y1 - y0).detach() / torch.where(near, torch.ones_like(dx), dx))
    first = torch.where(near, y1, y1.detach() + (x1 - x1.detach()) * slope)
    return torch.cat([first, y0])


# --- relevance propagation (crosslens.core.relevance) --------------------------------------

#: Modules whose ``(N, A, B)`` outputs are ``(N, C, L)``, channels first.
_CHANNELS_FIRST_1D = tuple(getattr(torch.nn, n) for n in (
    "Conv1d", "ConvTranspose1d", "BatchNorm1d", "InstanceNorm1d", "GroupNorm", "MaxPool1d",
    "AvgPool1d", "AdaptiveAvgPool1d", "AdaptiveMaxPool1d", "LPPool1d", "Dropout1d",
    "ConstantPad1d", "ReflectionPad1d", "ReplicationPad1d", "ZeroPad1d", "CircularPad1d",
    "Upsample", "MaxUnpool1d") if hasattr(torch.nn, n))
_LINEAR = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
_BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
_AVERAGES = (torch.nn.AvgPool1d, torch.nn.AvgPool2d, torch.nn.AvgPool3d,
             torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool3d)
# elementwise activation modules (zennit's Activation types): relevance passes unchanged
_ACTIVATIONS = tuple(getattr(torch.nn, n) for n in (
    "ELU", "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LeakyReLU", "LogSigmoid",
    "Mish", "PReLU", "ReLU", "ReLU6", "RReLU", "SELU", "CELU", "GELU", "Sigmoid", "SiLU",
    "Softplus", "Softshrink", "Softsign", "Tanh", "Tanhshrink", "Threshold", "Softmax",
    "LogSoftmax"))
_ROUTING = (torch.nn.Flatten, torch.nn.Unflatten, torch.nn.Identity, torch.nn.Dropout,
            torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d, torch.nn.AlphaDropout,
            torch.nn.MaxPool1d, torch.nn.MaxPool2d, torch.nn.MaxPool3d,
            torch.nn.AdaptiveMaxPool1d, torch.nn.AdaptiveMaxPool2d, torch.nn.AdaptiveMaxPool3d,
            torch.nn.ZeroPad1d, torch.nn.ZeroPad2d, torch.nn.ZeroPad3d,
            torch.nn.ConstantPad1d, torch.nn.ConstantPad2d, torch.nn.ConstantPad3d,
            torch.nn.Upsample)


def _relevance_kind(module: torch.nn.Module) -> str | None:
    if isinstance(module, _BATCH_NORMS) and module.running_mean is None:
        return None  # normalizes by each batch's statistics: not a fixed affine map
    for types, kind in ((_LINEAR, relevance.LINEAR), (_BATCH_NORMS, relevance.BATCH_NORM),
                        (_AVERAGES, relevance.AVERAGE), (_ACTIVATIONS, relevance.ACTIVATION),
                        (_ROUTING, relevance.ROUTING)):
        if isinstance(module, types):
            return kind
    # an unknown parameter-free module: its gradient routes relevance (as in zennit)
    return None if any(True for _ in module.parameters(recurse=False)) else relevance.ROUTING


_ADDS = {torch.add, torch.Tensor.add, torch.Tensor.__add__, torch.Tensor.__radd__}
_INPLACE_ADDS = {torch.Tensor.add_, torch.Tensor.__iadd__}


class ResidualAdditions(TorchFunctionMode):
    """Reroutes every ``a + b`` (``torch.add``, ``+``, ``+=``, ``add_``) of two same-shaped
    float tensors that both carry gradient, the residual additions of any model, through
    :meth:`_sum`; ``paused`` lets the rules' own arithmetic run plain."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.paused = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inplace = func in _INPLACE_ADDS
        if (inplace or func in _ADDS) and not self.paused and self._routes(args, kwargs):
            a, b = args[0], args[1]
            self.count += 1
            summed = self._sum(a, b)
            if inplace:
                a.copy_(summed)  # keeps in-place semantics; copy_'s gradient goes to summed
                return a
            return summed
        return func(*args, **kwargs)

    @staticmethod
    def _routes(args: tuple, kwargs: dict) -> bool:
        if len(args) != 2 or kwargs.get("alpha", 1) != 1 or "out" in kwargs:
            return False
        a, b = args
        return (torch.is_tensor(a) and torch.is_tensor(b) and torch.is_grad_enabled()
                and a.requires_grad and b.requires_grad
                and not isinstance(a, torch.nn.Parameter) and not isinstance(b, torch.nn.Parameter)
                and a.shape == b.shape and a.dtype == b.dtype and a.is_floating_point())

    def _sum(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


# dense / conv classes whose forward is the plain linear map (others, e.g. a conv with
# static "same" padding, run their own forward with the rule's parameters swapped in)
_PLAIN_FORWARD = {torch.nn.Linear.forward, torch.nn.Conv1d.forward, torch.nn.Conv2d.forward,
                  torch.nn.Conv3d.forward}


def _affine(norm: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch norm in eval mode as ``x * scale + shift`` per channel."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = norm.weight * scale
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    return scale, shift


def _channels(values: torch.Tensor, ndim: int) -> torch.Tensor:
    return values.reshape((1, -1) + (1,) * (ndim - 2))


class _TorchLayerCall:
    """One call of a dense / conv module (or an average pool) for a rule: its input, its
    parameters with the batch norm after it merged in, its output, and the same call
    with other parameters."""

    channel_axis = 1

    def __init__(self, module: torch.nn.Module, x: torch.Tensor, output: torch.Tensor,
                 norm: torch.nn.Module | None) -> None:
        self.module, self.inputs = module, x
        self.weight = self.bias = None
        if isinstance(module, _LINEAR):
            self.weight, self.bias = module.weight, module.bias
            if norm is not None:  # exactly: w * s, (b - mean) * s + beta
                scale, shift = _affine(norm)
                self.weight = self.weight * scale.reshape((-1,) + (1,) * (self.weight.ndim - 1))
                self.bias = shift if self.bias is None else self.bias * scale + shift
                output = output * _channels(scale, output.ndim) + _channels(shift, output.ndim)
        self.output = output

    def linear(self, x, weight, bias):
        module = self.module
        if weight is None:
            return module.forward(x)  # an average pool
        if type(module).forward in _PLAIN_FORWARD:
            if isinstance(module, torch.nn.Linear):
                return F.linear(x, weight, bias)
            return module._conv_forward(x, weight, bias)
        # its own forward (the map is linear: the bias is added after)
        swapped = {"weight": weight}
        if module.bias is not None:
            swapped["bias"] = torch.zeros_like(module.bias)
        with _reparametrize_module(module, swapped):
            out = module.forward(x)
        return out if bias is None else out + _channels(bias, out.ndim)


class _SplitSums(ResidualAdditions):
    """Residual additions split by the sum rule; ``paused`` while a rule computes."""

    def __init__(self, rule: relevance.LayerRule | None, ops: ArrayOps) -> None:
        super().__init__()
        self.rule, self.ops = rule, ops

    def _routes(self, args, kwargs):
        return self.rule is not None and super()._routes(args, kwargs)

    def _sum(self, a, b):
        self.paused = True
        try:
            return relevance.split_sum(self.ops, [a, b], a.detach() + b.detach(),
                                       self.rule.epsilon)
        finally:
            self.paused = False


def _rule_hook(apply: Any, norm: torch.nn.Module | None, mode: _SplitSums):
    """Forward hook: ``apply(call)`` replaces the module's output (the mode paused)."""
    def hook(module, inputs, output):
        if not inputs or not torch.is_tensor(inputs[0]) or not torch.is_tensor(output):
            raise UnsupportedError(f"LRP: {type(module).__name__} takes or gives something "
                                   "other than one tensor; give it rule 'gradient'")
        mode.paused = True
        try:
            return apply(_TorchLayerCall(module, inputs[0], output, norm))
        finally:
            mode.paused = False
    return hook


def _pass(ops: ArrayOps):
    def apply(call):
        return relevance.passed_through(ops, call.inputs, call.output)
    return apply


def _identity(call):
    return call.inputs


@contextmanager
def _applied(backend: TorchBackend, mode: _SplitSums, hooks: dict[str, Any]) -> Iterator[None]:
    """``mode`` and the forward ``hooks`` (by module name) for one pass, removed after."""
    if backend.is_script:
        raise UnsupportedError("LRP and DeepLIFT's RevealCancel need forward hooks, which "
                               "TorchScript modules do not support. Load the eager nn.Module")
    handles = []
    try:
        for name, hook in hooks.items():
            handles.append(backend._modules[name].register_forward_hook(hook))
        with mode:
            yield
    finally:
        for handle in handles:
            handle.remove()


def _relevance_rules(backend: TorchBackend, rules: relevance.RelevanceRules):
    """Relevance propagation for one pass: each assigned module's output replaced by its
    rule's (forward hooks; modules with children of their own too), batch norms merged
    into the layer before them, residual additions split (a function mode)."""
    norms = {linear: backend._modules[bn] for linear, bn in rules.merges}
    mode, ops = _SplitSums(rules.sum, backend.ops), backend.ops
    hooks = {}
    for name, rule in rules.assignments:
        if rule == relevance.GRADIENT:
            continue
        apply = _identity if rule == relevance.MERGED else _pass(ops) \
            if rule == relevance.PASS else functools.partial(relevance.relevance_output, rule,
                                                              ops=ops)
        hooks[name] = _rule_hook(apply, norms.get(name), mode)
    return _applied(backend, mode, hooks)


@contextmanager
def _reveal_cancel_rules(backend: TorchBackend, rules: relevance.RevealCancelRules
                         ) -> Iterator[None]:
    """DeepLIFT RevealCancel for one pass on ``[inputs; baselines]``: each paired dense /
    conv module's output replaced by the rule's (batch norms merged), its activation
    passing the gradient; every other nonlinearity rescaled."""
    norms = {linear: backend._modules[bn] for linear, bn in rules.merges}
    mode, ops = _SplitSums(None, backend.ops), backend.ops
    hooks = {}
    for linear, activation in rules.pairs:
        apply = functools.partial(relevance.reveal_cancel_output,
                                  activation=backend._modules[activation].forward, ops=ops)
        hooks[linear] = _rule_hook(apply, norms.get(linear), mode)
        hooks[activation] = _rule_hook(_pass(ops), None, mode)
    for _, bn in rules.merges:
        hooks[bn] = _rule_hook(_identity, None, mode)
    with _applied(backend, mode, hooks), backend._rescale_rule(RESCALE):
        yield


def _find_relevance_layers(backend: TorchBackend, x1: torch.Tensor) -> list:
    """Leaf modules in execution order with their kinds; a batch norm or activation that
    takes a linear layer's output (the same tensor, not modified since; through a batch
    norm merged into it, for an activation) follows that layer."""
    order: list[str] = []
    produced: dict[int, tuple[torch.Tensor, int, str]] = {}
    follows: dict[str, str] = {}
    kinds = {relevance.BATCH_NORM, relevance.ACTIVATION}

    def before(name):
        def hook(module, inputs):
            if _relevance_kind(module) in kinds and inputs and torch.is_tensor(inputs[0]):
                entry = produced.get(id(inputs[0]))
                if entry is not None and entry[0] is inputs[0] and entry[1] == inputs[0]._version:
                    follows[name] = entry[2]
        return hook

    def after(name):
        def hook(module, inputs, output):
            if name not in order:
                order.append(name)
            if torch.is_tensor(output) and (isinstance(module, _LINEAR) or (
                    isinstance(module, _BATCH_NORMS) and name in follows)):
                produced[id(output)] = (output, output._version, follows.get(name, name))
        return hook

    # leaves, and layers of a known kind with children of their own (a conv with a
    # "same"-padding submodule)
    known = (relevance.LINEAR, relevance.BATCH_NORM, relevance.AVERAGE, relevance.ACTIVATION)
    leaves = {n: m for n, m in backend._modules.items()
              if not any(True for _ in m.children()) or _relevance_kind(m) in known}
    backend._hooked_run(x1, {n: after(n) for n in leaves}, {n: before(n) for n in leaves})
    return relevance.layer_infos(order, {n: (_relevance_kind(m), type(m).__name__)
                                for n, m in leaves.items()}, follows)


# The backward rules this backend applies (crosslens.core.rules), and how.
for _rule in (GUIDED, DECONV):
    TorchBackend.register_rule(_rule, TorchBackend._relu_rule)
TorchBackend.register_rule(relevance.LRP, _relevance_rules)
TorchBackend.register_rule(RESCALE, TorchBackend._rescale_rule)
TorchBackend.register_rule(relevance.REVEAL_CANCEL, _reveal_cancel_rules)
