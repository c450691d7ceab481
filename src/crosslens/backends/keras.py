"""Keras 3 backend (TensorFlow backend): Sequential, Functional, subclassed and nested models.

- Layers are Keras layer names; a layer inside a nested model is ``"outer/inner"``.
- Every primitive runs as a compiled ``tf.function`` with a batch-polymorphic input
  signature, cached per (input shape, target kind, layer, rule): repeated calls and
  chunks of different sizes never retrace.
- Activations and layer gradients come from patching the ``call`` of the hooked layers
  *while tracing only*: the patched ``call`` records (or replaces) the layer output in
  the graph, and the original ``call`` is put back in ``finally`` before the trace ends,
  so the model object is never left modified.
- ReLU rules map every ``Relu`` op created while tracing to a registered gradient with
  ``gradient_override_map``, and the gradient is taken with graph-mode ``tf.gradients``
  (which honours the override). This catches ``keras.layers.ReLU``, ``Activation("relu")``,
  fused ``activation="relu"`` and ``tf.nn.relu`` inside subclassed models alike.
- Models are always called with ``training=False``.
- Traces that depend on a user callable (a callable target) live for one outermost
  call only: the callable's closure may change between calls, and a cache must never
  change an answer. The backend itself is rebuilt when the model's layers, activations
  or dtype policies change (:meth:`KerasBackend.fingerprint`).
- Integer inputs (token ids) are never cast; several inputs (a list or dict) are split
  from one flat batch inside the trace (:mod:`crosslens.core.structure`).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
import functools
from contextlib import ExitStack, contextmanager
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from ..core.arrays import as_like, framework_of_array, to_numpy
from ..core.errors import (CrosslensError, DisconnectedError, InputError, TargetError,
                           UnsupportedError)
from ..core import relevance
from ..core.rules import DECONV, GUIDED, RESCALE, RESCALE_EPS, Rule
from ..core.scoring import score
from ..core.scoring import single_output as _single_output
from ..core.targets import (ChannelTarget, ClassTarget, NeuronTarget, ObjectiveTarget,
                            PredictedTarget, ScoreTarget, TargetSpec, check_class_range,
                            class_output_message, predicted_classes)
from ..core.backend import ArrayOps, Backend, GradientResult
from ..core.checks import (CallPicker, check_finite, check_image_input, check_ran,
                           disconnected_message, group_calls, model_error,
                           not_a_tensor_message)

_RELU_OPS = ("Relu", "Relu6")


def _override_name(rule: str, op_type: str) -> str:
    return f"Crosslens{rule.capitalize()}{op_type}"


def _register_relu_gradients() -> None:
    # New gradient names only; nothing existing in TensorFlow's registry is changed.
    def guided(op, grad):
        out = op.outputs[0]
        passing = out > 0 if op.type == "Relu" else tf.logical_and(out > 0, out < 6)
        return tf.nn.relu(grad) * tf.cast(passing, grad.dtype)

    def deconv(op, grad):
        return tf.nn.relu(grad)

    for rule, fn in ((GUIDED.name, guided), (DECONV.name, deconv)):
        for op_type in _RELU_OPS:
            try:
                tf.RegisterGradient(_override_name(rule, op_type))(fn)
            except KeyError:  # already registered (module re-imported)
                pass


_register_relu_gradients()


class KerasOps(ArrayOps):
    """Array operations on ``tf.Tensor`` values of one dtype."""

    def __init__(self, dtype: tf.DType) -> None:
        self.dtype = dtype

    def asarray(self, array):
        if isinstance(array, tf.Tensor):
            return tf.cast(array, self.dtype)
        return tf.convert_to_tensor(np.asarray(array), dtype=self.dtype) if np.asarray(
            array).dtype == self.dtype.as_numpy_dtype else tf.cast(np.asarray(array), self.dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def all_finite(self, array):
        if not array.dtype.is_floating:
            return True
        return bool(tf.reduce_all(tf.math.is_finite(array)))

    def is_integer(self, array):
        return array.dtype.is_integer

    def as_integer(self, array):
        return tf.convert_to_tensor(np.asarray(array, dtype=np.int64))

    def take_rows(self, array, rows):
        return tf.gather(array, np.asarray(rows, dtype=np.int64))

    def gather_rows(self, array, index):
        return tf.gather(array, index, axis=1, batch_dims=1)

    def concat(self, arrays, axis=0):
        return arrays[0] if len(arrays) == 1 else tf.concat(list(arrays), axis=axis)

    def stack(self, arrays, axis=0):
        return tf.stack(list(arrays), axis=axis)

    def sum(self, array, axis=None, keepdims=False):
        return tf.reduce_sum(array, axis=axis, keepdims=keepdims)

    def mean(self, array, axis=None, keepdims=False):
        return tf.reduce_mean(array, axis=axis, keepdims=keepdims)

    def reshape(self, array, shape):
        return tf.reshape(array, tuple(shape))

    def zeros_like(self, array):
        return tf.zeros_like(array)

    def stop_gradient(self, array):
        return tf.stop_gradient(array)

    def halves(self, array):
        first, second = tf.split(array, 2)
        return first, second

    def abs(self, array):
        return tf.abs(array)

    def sqrt(self, array):
        return tf.sqrt(array)

    def maximum(self, a, b):
        return tf.maximum(a, tf.cast(b, a.dtype) if isinstance(b, (int, float)) else b)

    def max(self, array, axis=None, keepdims=False):
        return tf.reduce_max(array, axis=axis, keepdims=keepdims)

    def min(self, array, axis=None, keepdims=False):
        return tf.reduce_min(array, axis=axis, keepdims=keepdims)

    def where(self, condition, a, b):
        return tf.where(condition, a, b)

    def argmax(self, array, axis):
        return tf.argmax(array, axis=axis)

    def shape(self, array):
        return tuple(int(s) for s in array.shape)

    def transpose(self, array, axes):
        return tf.transpose(array, perm=list(axes))

    def resize_bilinear(self, array, size):
        # tf.image.resize(method="bilinear") samples the same half-pixel points but always
        # returns float32; separable gathers with core.imageops' axis weights keep the
        # dtype (float64 models stay exact) and give the same values.
        from ..core.imageops import axis_weights
        out = array
        for axis, n_out in ((1, int(size[0])), (2, int(size[1]))):
            i0, i1, w1 = axis_weights(int(out.shape[axis]), n_out)
            shape = [1, 1, 1]
            shape[axis] = n_out
            w = tf.constant(w1.reshape(shape), dtype=out.dtype)
            out = tf.gather(out, i0, axis=axis) * (1.0 - w) + tf.gather(out, i1, axis=axis) * w
        return out

    def exp(self, array):
        return tf.exp(array)

    def log(self, array):
        return tf.math.log(array)

    def matmul(self, a, b):
        return tf.linalg.matmul(a, b)


class KerasBackend(Backend):
    """Backend for Keras 3 models on the TensorFlow backend (see the module docstring)."""

    name = "keras"

    def __init__(self, model: keras.Model) -> None:
        if keras.backend.backend() != "tensorflow":
            raise UnsupportedError(
                f"the Keras backend is {keras.backend.backend()!r}; crosslens runs Keras 3 "
                "models on TensorFlow (set KERAS_BACKEND=tensorflow)")
        super().__init__(model)
        self._layers = dict(_walk_layers(model))
        self._format = next(
            (layer.data_format for layer in self._layers.values()
             if getattr(layer, "data_format", None) in ("channels_first", "channels_last")
             and "conv" in type(layer).__name__.lower()), None)
        self._ops = KerasOps(tf.as_dtype(_input_dtype(model)))
        self._fns: dict[tuple, Any] = {}
        self._call_fns: dict[tuple, Any] = {}  # traces of user callables: one call only
        self._n_outputs: dict[tuple, int] = {}

    def fingerprint(self) -> Any:
        # Traces capture each layer's call, activation and dtype policy when they are
        # made: a replaced layer or activation must retrace (a new backend).
        layers = list(_walk_layers(self.model))
        return tuple((name, id(layer), id(getattr(layer, "activation", None)),
                      getattr(getattr(layer, "dtype_policy", None), "name", None))
                     for name, layer in layers)

    def _end_call(self) -> None:
        self._call_fns.clear()

    @property
    def ops(self) -> KerasOps:
        return self._ops

    def runs_on_cpu(self) -> bool:
        # TensorFlow places the model's ops on the first GPU when there is one
        return not tf.config.list_logical_devices("GPU")

    @property
    def layout(self) -> str | None:
        fmt = self._conv_format()
        if fmt is not None:
            return fmt
        shape = self._input_shape()
        return "channels_last" if shape is not None and len(shape) == 4 else None

    def input_layout(self, shape) -> str | None:
        # Keras puts channels / features last everywhere unless a convolution says
        # otherwise (Conv1D, Dense and recurrent layers on (N, T, F) alike).
        if len(shape) < 3:
            return None
        return self._conv_format() or "channels_last"

    @property
    def layer_layout(self) -> str:
        return self._conv_format() or "channels_last"

    def layer_output_layout(self, rank: int) -> str | None:
        return self.layer_layout if rank >= 3 else None

    def _conv_format(self) -> str | None:
        """The data format of the model's convolutions (``None`` without any)."""
        return self._format

    def layer_names(self) -> list[str]:
        return list(self._layers)

    def layer_object(self, name: str) -> Any:
        """The Keras layer called ``name`` (for ``"name#k"``, the layer)."""
        return self._layers[self.resolve_layer(name).split("#")[0]]

    def _find_layer_object(self, layer: Any) -> str | None:
        for name, candidate in self._layers.items():
            if candidate is layer:
                return name
        return None

    def _input_shape(self) -> tuple | None:
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        if not inputs or len(inputs) != 1:
            return None
        return tuple(inputs[0].shape)

    def input_count(self) -> int | None:
        try:
            inputs = self.model.inputs
        except (AttributeError, ValueError):
            return None
        return len(inputs) if inputs else None

    def embedding_sizes(self) -> dict[str, int]:
        return {n: int(layer.input_dim) for n, layer in self._layers.items()
                if isinstance(layer, keras.layers.Embedding)}

    # --- model copies (sanity checks) ---------------------------------------------------
    def _named_weights(self):
        return [(weight.path, np.asarray(weight)) for weight in self.model.weights]

    def parameter_layers(self) -> list[str]:
        return [name for name, layer in self._layers.items()
                if not getattr(layer, "layers", None) and _parameters(layer)]

    def randomized_copy(self, layers: Sequence[str], seed: int | None = None) -> keras.Model:
        from .randomize import layer_rng, random_like
        try:  # the user's model is never touched: clone, then copy its weights over
            clone = keras.models.clone_model(self.model)
            clone.set_weights(self.model.get_weights())
        except Exception as error:
            raise UnsupportedError(
                f"cannot copy this Keras model with keras.models.clone_model ({error}); "
                "randomization checks need a Functional or Sequential model") from error
        cloned = dict(_walk_layers(clone))
        for name in layers:
            rng = layer_rng(seed, name)
            layer = cloned[self.resolve_layer(name)]
            for variable in _parameters(layer):
                values = np.asarray(variable.numpy())
                # drawn in PyTorch's layout, so both frameworks get the same weights
                perm = {4: (2, 3, 1, 0), 2: (1, 0)}.get(values.ndim) \
                    if "kernel" in variable.path and "Depthwise" not in type(layer).__name__ \
                    else None
                variable.assign(random_like(values, rng, perm).astype(values.dtype))
        return clone

    # --- data -------------------------------------------------------------------------
    def _prepare_one(self, x: Any) -> tf.Tensor:
        native = self._native_input(x)
        shape = tuple(int(s) for s in native.shape)
        if self.ops.is_integer(native):
            return self._prepare_ids(native)
        expected = self._input_shape()
        if expected is not None:
            layout = self.layout or "channels_last"
            channel_axis = 1 if layout == "channels_first" else -1
            if len(expected) == 2:
                check_image_input(shape, 2, expected[-1], "features", "Keras")
            else:
                check_image_input(shape, len(expected), expected[channel_axis], layout, "Keras")
                fixed = [(i, e) for i, e in enumerate(expected) if i > 0 and e is not None]
                wrong = [(i, e) for i, e in fixed if shape[i] != e]
                if wrong:
                    raise _shape_error(shape, expected)
        check_finite(bool(tf.reduce_all(tf.math.is_finite(native))), shape)
        return native

    def _prepare_member(self, x: Any) -> tf.Tensor:
        native = self._native_input(x)
        if not self.ops.is_integer(native):
            check_finite(self.ops.all_finite(native), tuple(int(s) for s in native.shape))
        return native

    def _native_input(self, x: Any) -> tf.Tensor:
        """``x`` as a tensor: floating inputs in the model's dtype, integers as they are."""
        if not isinstance(x, tf.Tensor):
            if framework_of_array(x) not in ("numpy", "other"):
                if getattr(getattr(x, "device", None), "type", None) == "meta":
                    raise InputError("the input is on the 'meta' device, which holds shapes "
                                     "but no values; pass an array with data")
                x = to_numpy(x)
            x = np.asarray(x)
            if x.dtype.kind not in "iuf":
                raise InputError(f"the input has dtype {x.dtype}, which a model cannot be "
                                 "explained for; give floating-point values (or integer "
                                 "token ids)")
            if x.dtype.kind in "iu":
                return tf.convert_to_tensor(x)
            return self.ops.asarray(x)
        if x.dtype.is_integer:
            return x
        if not x.dtype.is_floating:
            raise InputError(f"the input has dtype {x.dtype.name}, which a model cannot be "
                             "explained for; give floating-point values (or integer token ids)")
        return self.ops.asarray(x)

    def _check_runs(self, native: tf.Tensor) -> None:
        self._run(native[:1])

    def _restore_one(self, native: tf.Tensor, like: Any) -> Any:
        if isinstance(like, tf.Tensor):
            return tf.cast(native, like.dtype) if like.dtype.is_floating else native
        return as_like(np.asarray(native), like)

    # --- running the model ----------------------------------------------------------------
    def _run(self, x: tf.Tensor) -> Any:
        """Call the model (``training=False``) on a native batch, split into its inputs for
        a structure; an exception of the model's own becomes a :class:`ModelError`."""
        try:
            if self.structure is None:
                return self.model(x, training=False)
            members = self.structure.split(self.ops, x)
            if self.structure.kind == "dict":
                return self.model(dict(zip(self.structure.keys, members)), training=False)
            return self.model(list(members), training=False)
        except CrosslensError:
            raise
        except Exception as error:
            what = (f"inputs {self.structure.describe()} (per sample)" if self.structure
                    else f"an input of shape {tuple(x.shape)} and dtype {x.dtype.name}")
            raise model_error(error, what, "Keras") from error

    # --- compiled functions ------------------------------------------------------------
    def _signature(self, x: tf.Tensor) -> tf.TensorSpec:
        return tf.TensorSpec([None] + list(x.shape[1:]), x.dtype)

    def _compiled(self, key: tuple, build, signature: list, per_call: bool = False) -> Any:
        # the input structure is traced into the function: part of every key
        key = key + (self.structure,)
        cache = self._call_fns if per_call else self._fns
        fn = cache.get(key)
        if fn is None:
            fn = _original_errors(tf.function(build, input_signature=signature))
            cache[key] = fn
        return fn

    def _forward(self, x):
        def run(x):
            return _single_output(self._run(x), "forward")
        key = ("forward", tuple(x.shape[1:]), x.dtype.name)
        return self._compiled(key, run, [self._signature(x)])(x)

    def _activations(self, x, layers):
        def run(x):
            store: dict = {}
            with self._patched(layers, store, {}):
                self._run(x)
            check_ran(store, layers)
            return {name: store[name] for name in layers}
        key = ("activations", tuple(x.shape[1:]), x.dtype.name, layers)
        return self._compiled(key, run, [self._signature(x)])(x)

    def _relevance_layers(self, x1):
        return _find_relevance_layers(self, x1)

    def _layer_calls(self, x1):
        calls: list = []
        counts: dict = {}

        def recording(name, call):
            def patched(*args, **kwargs):
                output = call(*args, **kwargs)
                k = counts.get(name, 0)
                counts[name] = k + 1
                shape = tuple(int(s) for s in output.shape[1:]) \
                    if isinstance(output, tf.Tensor) else None
                calls.append((name, k, shape))
                return output
            return patched

        with _calls_patched(self._layers, recording):  # one eager call
            self._run(x1)
        return calls

    def output_activation(self) -> str | None:
        """``"sigmoid"`` / ``"linear"`` when a Functional or Sequential model's output is
        a layer with that activation."""
        try:
            outputs = self.model.outputs
        except (AttributeError, ValueError):
            return None
        if not outputs or len(outputs) != 1 or not getattr(self.model, "layers", None):
            return None
        last = self.model.layers[-1]
        if getattr(last, "layers", None):
            return None
        activation = getattr(last, "activation", None)
        name = getattr(activation, "__name__", None)
        if name == "sigmoid":
            return "sigmoid"
        if name == "linear" and isinstance(last, keras.layers.Dense):
            return "linear"
        return None

    def _locate_nonfinite(self, x1):
        found: list = []

        def checking(name, call):
            def patched(*args, **kwargs):
                output = call(*args, **kwargs)
                if not found and isinstance(output, tf.Tensor) and output.dtype.is_floating \
                        and not bool(tf.reduce_all(tf.math.is_finite(output))):
                    inputs = [a for a in tf.nest.flatten((args, kwargs))
                              if isinstance(a, tf.Tensor) and a.dtype.is_floating]
                    clean = all(bool(tf.reduce_all(tf.math.is_finite(a))) for a in inputs)
                    kind = type(self._layers[name]).__name__
                    found.append((name, kind if clean else
                                  f"{kind}, whose input is already non-finite: they arise in "
                                  "the model's code before it"))
                return output
            return patched

        leaves = {n: layer for n, layer in self._layers.items()
                  if not getattr(layer, "layers", None)}
        with _calls_patched(leaves, checking):
            self._run(x1)
        return found[0] if found else None

    def _gradient(self, x, target, wrt, rule, capture, replace):
        replace = replace or {}
        layers = set(capture) | set(replace)
        if isinstance(target, (NeuronTarget, ChannelTarget)):
            layers.add(target.layer)
        if isinstance(target, ObjectiveTarget):
            layers.update(target.layers)
        layers = tuple(sorted(layers | ({wrt} if wrt else set())))
        names = tuple(sorted(replace))
        if isinstance(target, PredictedTarget) and self._output_count(x, static=True) == 1:
            # a binary decision needs the output's kind (logit or probability): eagerly
            outputs = np.asarray(self._forward(x)).astype(np.float64)
            target = ClassTarget(predicted_classes(outputs, self.output_activation()))
        if isinstance(target, ClassTarget):
            check_class_range(target.indices, self._output_count(x))
            index = tf.constant(target.indices, dtype=tf.int64)
        else:
            index = tf.zeros([len(x)], dtype=tf.int64)
        # An objective is keyed by its structure, not its closure: no retrace per step.
        # A user callable is keyed by identity, in a cache that lives for this call only.
        per_call = isinstance(target, ScoreTarget)
        fn_key = target.key if isinstance(target, ObjectiveTarget) else (
            id(target.fn) if per_call else None)
        target_key = (type(target).__name__, fn_key,
                      getattr(target, "layer", None), getattr(target, "index", None),
                      getattr(target, "channel", None))

        def run(x, index, *replacements):
            store: dict = {}
            with ExitStack() as stack:
                graph = tf.compat.v1.get_default_graph()
                if rule is not None:  # inside the recording: layers record the rule's output
                    stack.enter_context(self.apply_rule(rule))
                stack.enter_context(self._patched(layers, store, dict(zip(names, replacements))))
                outputs = self._run(x)
            check_ran(store, layers)
            relu_rule = getattr(rule, "name", rule) in (GUIDED.name, DECONV.name)
            if relu_rule and not any(op.type in _RELU_OPS for op in graph.get_operations()):
                raise UnsupportedError(
                    f"the {rule} rule changes the backward pass of ReLUs, but this model ran "
                    "no ReLU or ReLU6; the result would silently equal the plain gradient. "
                    "Use saliency for this model")
            score = self._score(outputs, store, target, index)
            (grad,) = tf.gradients(score, [x if wrt is None else store[wrt]])
            if grad is None:
                raise DisconnectedError(disconnected_message(wrt))
            single = isinstance(outputs, tf.Tensor)
            out = outputs if single else tf.zeros([0])
            return (grad, out, score, {name: store[name] for name in capture},
                    tf.constant(single))

        signature = [self._signature(x), tf.TensorSpec([None], tf.int64)] + [
            tf.TensorSpec([None] + list(replace[n].shape[1:]), replace[n].dtype) for n in names]
        key = ("gradient", tuple(x.shape[1:]), x.dtype.name, target_key, wrt, rule,
               tuple(capture), layers, names)
        fn = self._compiled(key, run, signature, per_call=per_call)
        grad, out, score, acts, single = fn(x, index, *[replace[n] for n in names])
        return GradientResult(grad, out if bool(single) else None, score, dict(acts))

    def _vjp(self, x, cotangent):
        def run(x, cotangent):
            outputs = _single_output(self._run(x), "vector-Jacobian product")
            if tuple(outputs.shape[1:]) != tuple(cotangent.shape[1:]):
                raise InputError(f"the cotangent has shape (N, {tuple(cotangent.shape[1:])}); "
                                 f"the model's output has shape (N, {tuple(outputs.shape[1:])})")
            (grad,) = tf.gradients(outputs, [x], grad_ys=[cotangent])
            if grad is None:
                raise DisconnectedError(disconnected_message(None))
            return grad

        signature = [self._signature(x), self._signature(cotangent)]
        key = ("vjp", tuple(x.shape[1:]), tuple(cotangent.shape[1:]))
        return self._compiled(key, run, signature)(x, cotangent)

    def _score(self, outputs, store, target: TargetSpec, index) -> tf.Tensor:
        # class indices are an input of the trace: one trace serves every class list
        return score(self.ops, target, outputs, store, self.layer_layout,
                     index=index if isinstance(target, ClassTarget) else None)

    def _output_count(self, x: tf.Tensor, static: bool = False) -> int | None:
        """Number of classes the model outputs for ``x`` (one forward pass, cached); with
        ``static``, what a Functional model declares, without running it (else ``None``
        when not declared)."""
        if static:
            try:
                outputs = self.model.outputs
            except (AttributeError, ValueError):
                outputs = None
            if outputs and len(outputs) == 1 and len(outputs[0].shape) == 2 \
                    and outputs[0].shape[1] is not None:
                return int(outputs[0].shape[1])
        key = (tuple(x.shape[1:]), self.structure)
        if key not in self._n_outputs:
            out = self._forward(x[:1])
            if out.shape.rank != 2:
                raise TargetError(class_output_message(tuple(out.shape)))
            self._n_outputs[key] = int(out.shape[1])
        return self._n_outputs[key]

    @contextmanager
    def _patched(self, layers: Sequence[str], store: dict, replace: dict) -> Iterator[None]:
        """While tracing: record (or replace) the outputs of ``layers`` in ``store``;
        ``"name#k"`` is the ``k``-th call of a shared layer."""
        wanted = group_calls(layers)
        with _calls_patched({base: self._layers[base] for base in wanted},
                            lambda base, call: _recording_call(base, call, store, replace,
                                                               wanted[base])):
            yield

    def _estimate_bytes_per_sample(self, x1: tf.Tensor) -> int:
        sizes: list = []

        def measuring(name, call):
            def patched(*args, **kwargs):
                output = call(*args, **kwargs)
                sizes.extend(t for t in tf.nest.flatten(output) if isinstance(t, tf.Tensor))
                return output
            return patched

        leaves = {n: layer for n, layer in self._layers.items()
                  if not getattr(layer, "layers", None)}
        try:
            with _calls_patched(leaves, measuring):
                self._run(x1)
        except Exception:  # an exotic model: fall back to a generous multiple
            return 200 * int(np.prod(x1.shape)) * x1.dtype.size
        total = sum(int(np.prod(t.shape)) * t.dtype.size for t in sizes)
        # forward values kept for backward, their gradients, the input and its gradient
        return int(2.5 * total + 2 * int(np.prod(x1.shape)) * x1.dtype.size)


# --- helpers --------------------------------------------------------------------------------

def _original_errors(fn):
    """Call ``fn``, re-raising our own errors raised while tracing as they were: autograph
    turns exception classes it cannot rebuild (ours) into a ``StagingError``."""
    def call(*args):
        try:
            return fn(*args)
        except Exception as error:
            cause = error.__context__
            while cause is not None and not isinstance(cause, CrosslensError):
                cause = cause.__context__
            if isinstance(error, CrosslensError) or cause is None:
                raise
            raise cause.with_traceback(cause.__traceback__) from None
    call.__wrapped__ = fn  # the tf.function itself (tracing counts, concrete functions)
    return call


def _input_dtype(model: Any) -> str:
    """The dtype the model's input expects (a float64 model has float64 inputs)."""
    try:
        inputs = model.inputs
        if inputs and len(inputs) == 1 and "float" in str(inputs[0].dtype):
            return str(inputs[0].dtype)
    except (AttributeError, ValueError):
        pass
    # e.g. a subclassed model's first layer, or the embedding after an integer input
    computing = [layer for layer in getattr(model, "layers", [])
                 if not isinstance(layer, keras.layers.InputLayer)]
    for layer in computing[:2]:
        dtype = getattr(layer, "compute_dtype", None)
        if dtype and "float" in dtype:
            return dtype
    return getattr(model, "compute_dtype", None) or "float32"


def _parameters(layer: Any) -> list:
    """A layer's learned weights (of a frozen layer too), without BatchNorm statistics."""
    weights = [] if getattr(layer, "layers", None) else list(layer.weights)
    return [w for w in weights if w.trainable or (
        not layer.trainable and not w.path.endswith(("moving_mean", "moving_variance")))]


@contextmanager
def _calls_patched(layers: dict[str, Any], wrap) -> Iterator[None]:
    """Replace each layer's ``call`` by ``wrap(name, call)``; the originals (or the absence
    of an instance attribute) are put back in ``finally``."""
    patched = []
    try:
        for name, layer in layers.items():
            own = layer.__dict__.get("call")
            layer.call = wrap(name, layer.call)
            patched.append((layer, own))
        yield
    finally:
        for layer, own in reversed(patched):
            if own is None:
                del layer.call
            else:
                layer.call = own


def _walk_layers(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for layer in getattr(model, "layers", []):
        name = prefix + layer.name
        yield name, layer
        if isinstance(layer, keras.Model) or getattr(layer, "layers", None):
            yield from _walk_layers(layer, name + "/")


def _recording_call(base: str, call, store: dict, replace: dict, calls: dict):
    """Layer ``base``'s call while tracing, recording the calls named in ``calls``
    (see :func:`~crosslens.core.checks.group_calls`)."""
    pick = CallPicker(base, calls)

    def patched(*args, **kwargs):
        output = call(*args, **kwargs)
        name = pick()
        if name is None:
            return output
        if replace.get(name) is not None:
            output = replace[name]
        if not isinstance(output, tf.Tensor):
            raise UnsupportedError(not_a_tensor_message(name, output))
        store[name] = output
        return output
    return patched


def _shape_error(shape: tuple, expected: tuple):
    from ..core.errors import InputError
    want = tuple("batch" if i == 0 else e for i, e in enumerate(expected))
    return InputError(f"this Keras model expects inputs of shape {want}; got {shape}. "
                      "Resize the input to the model's size (or rebuild the model with "
                      "a flexible input shape)")


def _relu_override(backend: KerasBackend, rule: Rule):
    """Guided backprop / deconvnet: every Relu / Relu6 op created while tracing gets the
    rule's registered gradient (graph-mode ``tf.gradients`` honours the override)."""
    graph = tf.compat.v1.get_default_graph()
    return graph.gradient_override_map({op: _override_name(rule.name, op) for op in _RELU_OPS})


# --- relevance propagation (crosslens.core.relevance) --------------------------------------

@functools.cache
def _kinds() -> list[tuple[tuple[type, ...], str]]:
    L = keras.layers
    names = {
        relevance.LINEAR: ("Dense", "Conv1D", "Conv2D", "Conv3D"),
        relevance.BATCH_NORM: ("BatchNormalization",),
        relevance.AVERAGE: ("AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                            "GlobalAveragePooling1D", "GlobalAveragePooling2D",
                            "GlobalAveragePooling3D"),
        relevance.SUM: ("Add",),
        relevance.ACTIVATION: ("ReLU", "LeakyReLU", "ELU", "PReLU", "Softmax", "Activation"),
        relevance.ROUTING: ("InputLayer", "Flatten", "Reshape", "Dropout", "SpatialDropout1D",
                            "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout",
                            "GaussianNoise", "AlphaDropout", "MaxPooling1D", "MaxPooling2D",
                            "MaxPooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                            "GlobalMaxPooling3D", "ZeroPadding1D", "ZeroPadding2D",
                            "ZeroPadding3D", "Cropping1D", "Cropping2D", "Cropping3D",
                            "Permute", "Concatenate", "UpSampling1D", "UpSampling2D",
                            "UpSampling3D", "Identity", "RepeatVector")}
    return [(tuple(getattr(L, n) for n in group if hasattr(L, n)), kind)
            for kind, group in names.items()]


def _relevance_kind(layer: Any) -> str | None:
    for types, kind in _kinds():
        if isinstance(layer, types):
            return kind
    return None if layer.weights else relevance.ROUTING


def _fused_activation(layer: Any) -> Any:
    """A dense / conv layer's own activation, or None when it is linear."""
    activation = getattr(layer, "activation", None)
    return None if activation in (None, keras.activations.linear) else activation


def _find_relevance_layers(backend: KerasBackend, x1: tf.Tensor) -> list:
    """Leaf layers in execution order with their kinds; a batch norm (of the output
    channels) or activation layer that takes the output tensor of a dense / conv layer
    with no activation of its own (through a batch norm merged into it, for an activation)
    follows that layer."""
    order: list[str] = []
    produced: dict[int, tuple[Any, str]] = {}
    follows: dict[str, str] = {}
    leaves = {n: layer for n, layer in backend._layers.items()
              if not getattr(layer, "layers", None)}

    def recording(name, call):
        def patched(*args, **kwargs):
            layer = leaves[name]
            if name not in order:
                order.append(name)
            first = args[0] if args else None
            entry = produced.get(id(first)) if first is not None else None
            kind = _relevance_kind(layer)
            if entry is not None and entry[0] is first and (
                    kind == relevance.ACTIVATION or (kind == relevance.BATCH_NORM and _merges(
                        layer, leaves[entry[1]], len(first.shape)))):
                follows[name] = entry[1]
            output = call(*args, **kwargs)
            if (kind == relevance.LINEAR and _fused_activation(layer) is None) or (
                    kind == relevance.BATCH_NORM and name in follows):
                produced[id(output)] = (output, follows.get(name, name))
            return output
        return patched

    with _calls_patched(leaves, recording):  # one eager call
        backend._run(x1)
    fused = [n for n, layer in leaves.items()
             if _relevance_kind(layer) == relevance.LINEAR and _fused_activation(layer)]
    return relevance.layer_infos(order, {n: (_relevance_kind(layer), type(layer).__name__)
                                         for n, layer in leaves.items()}, follows, fused)


def _merges(norm: Any, linear: Any, rank: int) -> bool:
    """Whether ``norm`` normalizes the output channels of ``linear``'s rank-``rank`` output
    (its last axis for a dense or channels-last conv layer, axis 1 for channels-first)."""
    axes = [a % rank for a in (norm.axis if isinstance(norm.axis, (list, tuple))
                               else [norm.axis])]
    channels_first = getattr(linear, "data_format", "channels_last") == "channels_first"
    return axes == [1 if channels_first else rank - 1]


class _KerasLayerCall:
    """One call of a dense / conv layer (or an average pool) for a relevance rule, with
    the batch norm after it merged in (``kernel * s``, ``(b - mean) * s + beta``)."""

    def __init__(self, layer: Any, call: Any, x: tf.Tensor, norm: Any) -> None:
        self.layer, self._call, self.inputs = layer, call, x
        linear = _relevance_kind(layer) == relevance.LINEAR
        self.weight = tf.convert_to_tensor(layer.kernel) if linear else None
        self.bias = tf.convert_to_tensor(layer.bias) if linear and layer.use_bias else None
        self.channel_axis = 1 if getattr(layer, "data_format", None) == "channels_first" else -1
        if norm is not None:
            scale = tf.math.rsqrt(tf.convert_to_tensor(norm.moving_variance) + norm.epsilon)
            if norm.scale:
                scale = tf.convert_to_tensor(norm.gamma) * scale
            shift = -tf.convert_to_tensor(norm.moving_mean) * scale
            if norm.center:
                shift = shift + tf.convert_to_tensor(norm.beta)
            self.bias = shift if self.bias is None else self.bias * scale + shift
            self.weight = self.weight * scale  # output channels: the kernel's last axis
        self.output = self.linear(x, self.weight, self.bias) if linear else call(x)

    def linear(self, x, weight, bias):
        if weight is None:
            return self._call(x)  # an average pool
        if isinstance(self.layer, keras.layers.Dense):
            out = keras.ops.matmul(x, weight)
        else:
            out = self.layer.convolution_op(x, weight)
        if bias is None:
            return out
        if self.channel_axis == 1:
            bias = tf.reshape(bias, (1, -1) + (1,) * (len(out.shape) - 2))
        return out + bias


def _relevance_call(layer: Any, call: Any, rule: Any, ops: ArrayOps, norm: Any,
                    fused_rule: str):
    def patched(*args, **kwargs):
        if rule == relevance.MERGED:
            return args[0]
        if rule == relevance.PASS:
            return relevance.passed_through(ops, args[0], call(*args, **kwargs))
        if isinstance(layer, keras.layers.Add):
            parts = list(args[0])
            return relevance.split_sum(ops, parts, call(*args, **kwargs), rule.epsilon)
        out = relevance.relevance_output(rule, _KerasLayerCall(layer, call, args[0], norm), ops)
        activation = _fused_activation(layer)
        if activation is None:
            return out
        if fused_rule == relevance.GRADIENT:
            return activation(out)
        return relevance.passed_through(ops, out, activation(out))
    return patched


def _relevance_rules(backend: KerasBackend, rules: relevance.RelevanceRules):
    """Relevance propagation while tracing: each assigned layer's call replaced by its
    rule's output (batch norms merged into the layer before them); the original calls
    are put back when the trace ends."""
    norms = {linear: backend._layers[bn] for linear, bn in rules.merges}
    assigned = {name: rule for name, rule in rules.assignments if rule != relevance.GRADIENT}
    return _calls_patched(
        {name: backend._layers[name] for name in assigned},
        lambda name, call: _relevance_call(backend._layers[name], call, assigned[name],
                                           backend.ops, norms.get(name), rules.activation))


# --- DeepLIFT's rescale rule ---------------------------------------------------------------

_ELEMENTWISE_OPS = ("Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Softplus", "Softsign",
                    "Sigmoid", "Tanh")


def _register_rescale_gradients() -> None:
    """``CrosslensRescale<Op>``: on a batch ``[inputs; baselines]``, the inputs' half gets
    ``g * Δy / Δx`` (the op's own gradient where ``|Δx| < RESCALE_EPS``)."""
    from tensorflow.python.framework import ops as tf_ops

    def rescale(op, grad):
        own = tf_ops._gradient_registry.lookup(op.type)(op, grad)
        own = own[0] if isinstance(own, (list, tuple)) else own
        x1, x0 = tf.split(op.inputs[0], 2)
        y1, y0 = tf.split(op.outputs[0], 2)
        g1, _ = tf.split(grad, 2)
        own1, own0 = tf.split(own, 2)
        dx = x1 - x0
        near = tf.abs(dx) < RESCALE_EPS
        slope = (y1 - y0) / tf.where(near, tf.ones_like(dx), dx)
        return tf.concat([tf.where(near, own1, g1 * slope), own0], 0)

    for op_type in _ELEMENTWISE_OPS:
        try:
            tf.RegisterGradient(_override_name(RESCALE.name, op_type))(rescale)
        except KeyError:  # already registered (module re-imported)
            pass


_register_rescale_gradients()


def _rescale_override(backend: KerasBackend, rule: Rule):
    """DeepLIFT: every elementwise nonlinearity op created while tracing gets the rescale
    gradient (graph-mode ``tf.gradients`` honours the override)."""
    graph = tf.compat.v1.get_default_graph()
    return graph.gradient_override_map({op: _override_name(RESCALE.name, op)
                                        for op in _ELEMENTWISE_OPS})


def _reveal_cancel_call(layer: Any, call: Any, activation: Any, ops: ArrayOps,
                        norm: Any):
    """A paired or fused-activation dense / conv layer's call under RevealCancel, or (with
    ``activation`` None) a paired activation layer passing the gradient, or a merged batch
    norm (``layer`` is one) as the identity."""
    def patched(*args, **kwargs):
        if isinstance(layer, keras.layers.BatchNormalization):
            return args[0]
        if _relevance_kind(layer) != relevance.LINEAR:
            return relevance.passed_through(ops, args[0], call(*args, **kwargs))
        fused = _fused_activation(layer)
        out = relevance.reveal_cancel_output(_KerasLayerCall(layer, call, args[0], norm),
                                             fused or activation, ops)
        return out if fused is None else relevance.passed_through(ops, out, fused(out))
    return patched


@contextmanager
def _reveal_cancel_rules(backend: KerasBackend, rules: relevance.RevealCancelRules):
    """DeepLIFT RevealCancel while tracing: paired dense / conv layers and those with a
    fused activation replaced by the rule's output (batch norms merged), their activation
    layers passing the gradient; every other nonlinearity op gets the rescale gradient."""
    norms = {linear: backend._layers[bn] for linear, bn in rules.merges}
    activations = {linear: backend._layers[act] for linear, act in rules.pairs}
    chosen = dict(activations)
    chosen.update({name: None for name, layer in backend._layers.items()
                   if _relevance_kind(layer) == relevance.LINEAR
                   and _fused_activation(layer) is not None})
    wrapped = {**{n: backend._layers[n] for n in chosen},
               **{act: backend._layers[act] for _, act in rules.pairs},
               **{bn: backend._layers[bn] for _, bn in rules.merges}}

    def wrap(name, call):
        act = activations.get(name)
        return _reveal_cancel_call(wrapped[name], call,
                                   None if act is None else _original_call(act),
                                   backend.ops, norms.get(name))
    with _calls_patched(wrapped, wrap), _rescale_override(backend, RESCALE):
        yield


def _original_call(layer: Any) -> Any:
    """The layer's class ``call`` bound to it (its own call, unpatched)."""
    return type(layer).call.__get__(layer)


# The backward rules this backend applies (crosslens.core.rules), and how.
for _rule in (GUIDED, DECONV):
    KerasBackend.register_rule(_rule, _relu_override)
KerasBackend.register_rule(RESCALE, _rescale_override)
KerasBackend.register_rule(relevance.REVEAL_CANCEL, _reveal_cancel_rules)
KerasBackend.register_rule(relevance.LRP, _relevance_rules)
