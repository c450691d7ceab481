"""The catalogue of adversarial calls: each case is a call and what it must give.

A case expects either a specific :class:`crosslens.CrosslensError` subclass whose message
contains words naming the cause and the fix, or numbers equal to a reference. The runner
(``test_catalogue.py``) also checks, for every case, that the model's fingerprint and the
global random streams are unchanged afterwards.

References are closed forms of the linear models (a dense layer on the flattened input:
the gradient of class ``c`` is ``W[c]`` everywhere), direct autograd / GradientTape
computations, or crosslens' own result on an equivalent well-formed call.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import crosslens as cl

from . import models as M


@dataclass
class Case:
    id: str
    fw: str  # "torch", "keras" or "none"
    model: Callable[[], Any]
    x: Callable[[], Any]
    call: Callable[[Any, Any], Any]
    error: type | None = None
    words: tuple[str, ...] = ()
    reference: Callable[[Any, Any], Any] | None = None
    tol: float = 1e-5
    marks: tuple = field(default_factory=tuple)


CASES: list[Case] = []
FWS = ("torch", "keras")


def explain(method: str, **kwargs: Any) -> Callable[[Any, Any], Any]:
    """A call of ``cl.explain(model, x, method, **kwargs)`` returning the attributions."""
    return lambda model, x: cl.explain(model, x, method, **kwargs).attributions


def add(id: str, fw: str, model, x, call, **expect: Any) -> None:
    CASES.append(Case(f"{fw}-{id}", fw, model, x, call, **expect))


def both(id: str, model: dict, x: dict, call, **expect: Any) -> None:
    """The same case on the PyTorch and the Keras twin (``model`` / ``x`` per framework;
    a callable ``expect`` value is called with the framework name)."""
    for fw in FWS:
        resolved = {k: (v(fw) if k in ("reference", "call_for") and v is not None
                        and getattr(v, "per_fw", False) else v) for k, v in expect.items()}
        add(id, fw, model[fw], x[fw], call(fw) if getattr(call, "per_fw", False) else call,
            **resolved)


def per_fw(fn):
    fn.per_fw = True
    return fn


# --- inputs and references ---------------------------------------------------------------------

LINEAR = {"torch": M.torch_linear, "keras": M.keras_linear}
CNN = {"torch": lambda: M.torch_cnn("eval"), "keras": M.keras_cnn}
MLP = {"torch": M.torch_mlp, "keras": M.keras_mlp}
SHARED = {"torch": M.torch_shared_relu, "keras": M.keras_shared_relu}
TOKENS = {"torch": M.torch_tokens, "keras": M.keras_tokens}
TWO = {"torch": M.torch_two_inputs, "keras": M.keras_two_inputs}
CONV1D = {"torch": M.torch_conv1d, "keras": M.keras_conv1d}
BINARY_LOGIT = {"torch": lambda: M.torch_binary("logit"), "keras": lambda: M.keras_binary("logit")}
BINARY_PROB = {"torch": lambda: M.torch_binary("probability"),
               "keras": lambda: M.keras_binary("probability")}


def image(fw: str, n: int = 2, seed: int = 3, dtype=np.float32) -> np.ndarray:
    return M.image_x(n, seed, "channels_first" if fw == "torch" else "channels_last"
                     ).astype(dtype)


IMG = {fw: (lambda fw=fw: image(fw)) for fw in FWS}
WRONG_LAYOUT = {"torch": lambda: image("keras"), "keras": lambda: image("torch")}
TABLE = {fw: (lambda: M.rng(4).standard_normal((4, 6)).astype(np.float32)) for fw in FWS}
SERIES = {"torch": lambda: M.rng(5).standard_normal((2, 3, 10)).astype(np.float32),
          "keras": lambda: M.rng(5).standard_normal((2, 10, 3)).astype(np.float32)}
IDS = {fw: (lambda: M.rng(6).integers(1, 20, (2, 6))) for fw in FWS}


def two_inputs(fw: str, seed: int = 7) -> Any:
    a = M.rng(seed).standard_normal((2,) + M.IMAGE).astype(np.float32)
    b = M.rng(seed + 1).standard_normal((2, 4)).astype(np.float32)
    return (a, b) if fw == "torch" else {"a": np.moveaxis(a, 1, -1), "b": b}


TWO_X = {fw: (lambda fw=fw: two_inputs(fw)) for fw in FWS}


def to_fw(fw: str, nchw: np.ndarray) -> np.ndarray:
    """A channels-first reference in the framework's input layout."""
    return nchw if fw == "torch" or nchw.ndim != 4 else np.moveaxis(nchw, 1, -1)


def to_nchw(fw: str, x: np.ndarray) -> np.ndarray:
    return x if fw == "torch" or x.ndim != 4 else np.moveaxis(x, -1, 1)


def linear_gradient(x_nchw: np.ndarray, c) -> np.ndarray:
    """Gradient of class ``c`` (per sample) of the linear model: ``W[c]`` per sample."""
    w, _ = M.linear_weights()
    c = np.broadcast_to(c, (len(x_nchw),))
    return w[c].reshape(x_nchw.shape)


def lin_ref(kind: str, c: Any = 1, **kw: Any):
    """Reference of a method on the linear model, in the framework's layout."""
    @per_fw
    def make(fw: str):
        def reference(model, x):
            xs = to_nchw(fw, np.asarray(cl.core.arrays.to_numpy(x), np.float64))
            g = linear_gradient(xs, c)
            out = {"saliency": g, "gxi": g * xs, "ig": g * (xs - kw.get("base", 0.0)),
                   "smoothgrad": g, "channel_sum": None}[kind]
            if kind == "channel_sum":
                return g.sum(axis=1)
            return to_fw(fw, out)
        return reference
    return make


def linear_occlusion(x_nchw: np.ndarray, c: int, patch: int) -> np.ndarray:
    """Occlusion (baseline 0, all channels, non-overlapping patches) of the linear model."""
    contribution = linear_gradient(x_nchw, c) * x_nchw
    out = np.zeros_like(x_nchw)
    for i in range(0, x_nchw.shape[2], patch):
        for j in range(0, x_nchw.shape[3], patch):
            window = (slice(None), slice(None), slice(i, i + patch), slice(j, j + patch))
            out[window] = contribution[window].sum(axis=(1, 2, 3))[:, None, None, None]
    return out


def same_as(method: str, **kwargs: Any):
    """Reference: crosslens' result for a well-formed equivalent call."""
    return lambda model, x: cl.explain(model, x, method, **kwargs).attributions


# === A. inputs: layout, rank, dtype, values =====================================================

both("wrong-layout", CNN, WRONG_LAYOUT, explain("saliency", target=1),
     error=cl.InputError, words=("channels", "transpose"))
both("one-sample-without-batch-axis", CNN, {fw: (lambda fw=fw: image(fw)[0]) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("batch axis", "x[none]"))
both("rank-2-for-an-image-model", CNN, TABLE, explain("saliency", target=1),
     error=cl.InputError, words=("rank",))
for bad, value in (("nan", np.nan), ("inf", np.inf)):
    def _poisoned(fw, value=value):
        x = image(fw)
        x.flat[5] = value
        return x
    both(f"{bad}-in-the-input", LINEAR, {fw: (lambda fw=fw, f=_poisoned: f(fw)) for fw in FWS},
         explain("saliency", target=1), error=cl.InputError, words=("nan or infinite", "clean"))
both("object-dtype", LINEAR, {fw: (lambda: np.array([["a"] * 3] * 2, dtype=object)) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("dtype",))
both("bool-dtype", LINEAR, {fw: (lambda fw=fw: image(fw) > 0) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("dtype bool", "floating-point"))
both("complex-dtype", LINEAR, {fw: (lambda fw=fw: image(fw).astype(np.complex64)) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("complex", "floating-point"))
both("empty-batch", LINEAR, {fw: (lambda fw=fw: image(fw)[:0]) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("empty", "at least one"))
both("integer-pixels-for-a-float-model", CNN,
     {fw: (lambda fw=fw: (image(fw) * 50).astype(np.int64) % 255) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("integers", "astype('float32')"))
both("float64-input-to-float32-model", LINEAR,
     {fw: (lambda fw=fw: image(fw, dtype=np.float64)) for fw in FWS},
     explain("saliency", target=1), reference=lin_ref("saliency"))
both("float16-input-to-float32-model", LINEAR,
     {fw: (lambda fw=fw: image(fw, dtype=np.float16)) for fw in FWS},
     explain("integrated_gradients", target=1, steps=4), reference=lin_ref("ig"), tol=2e-3)
both("nested-python-list-input", LINEAR, {fw: (lambda fw=fw: image(fw).tolist()) for fw in FWS},
     explain("gradient_x_input", target=1), reference=lin_ref("gxi"))
both("channel-count-mismatch", CNN,
     {"torch": lambda: M.rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32),
      "keras": lambda: M.rng(1).standard_normal((2, 8, 8, 4)).astype(np.float32)},
     explain("saliency", target=1), error=cl.InputError, words=("channels", "input"))
for fw, words in (("torch", ("batch axis", "x[none]")), ("keras", ("rank 4", "got rank 0"))):
    add("scalar-input", fw, LINEAR[fw], lambda: np.float32(1.0), explain("saliency", target=1),
        error=cl.InputError, words=words)


def _torch_tensor(fw):
    import torch
    return torch.as_tensor(image(fw))


def _tf_tensor(fw):
    import tensorflow as tf
    return tf.constant(image(fw))


def _same_type_as_input(reference):
    """Reference that also requires the result's array type to be the input's."""
    def check(model, x):
        return reference(model, x)
    check.same_type = True
    return check


add("torch-tensor-in-torch-tensor-out", "keras", M.keras_linear, lambda: _torch_tensor("keras"),
    explain("saliency", target=1),
    reference=_same_type_as_input(lin_ref("saliency")("keras")))
add("tf-tensor-in-tf-tensor-out", "torch", M.torch_linear, lambda: _tf_tensor("torch"),
    explain("saliency", target=1),
    reference=_same_type_as_input(lin_ref("saliency")("torch")))
add("tf-tensor-in-tf-tensor-out", "keras", M.keras_linear, lambda: _tf_tensor("keras"),
    explain("gradient_x_input", target=1),
    reference=_same_type_as_input(lin_ref("gxi")("keras")))


def _leaf_input():
    import torch
    return torch.as_tensor(image("torch")).requires_grad_(True)


add("input-that-requires-grad", "torch", M.torch_linear, _leaf_input,
    lambda model, x: (cl.explain(model, x, "saliency", target=1).attributions,
                      x.grad, x.requires_grad),
    reference=lambda model, x: (lin_ref("saliency")("torch")(model, x), None, True))


def _strided_input():
    import torch
    return torch.as_tensor(image("keras")).permute(0, 3, 1, 2)  # a non-contiguous view


add("non-contiguous-tensor", "torch", M.torch_linear, _strided_input,
    explain("saliency", target=1), reference=lin_ref("saliency")("torch"))


def _meta_input():
    import torch
    return torch.empty((2,) + M.IMAGE, device="meta")


add("meta-device-input", "torch", M.torch_linear, _meta_input, explain("saliency", target=1),
    error=cl.InputError, words=("meta", "pass a tensor with data"))


# === B. targets ===========================================================================

both("class-out-of-range", LINEAR, IMG, explain("saliency", target=7),
     error=cl.TargetError, words=("out of range", "valid classes 0..4"))
both("negative-class", LINEAR, IMG, explain("saliency", target=-1),
     error=cl.TargetError, words=(">= 0",))
both("per-sample-list-of-wrong-length", LINEAR, IMG, explain("saliency", target=[1, 2, 3]),
     error=cl.TargetError, words=("one class index per sample",))
both("float-class-list", LINEAR, IMG, explain("saliency", target=[1.5, 2.0]),
     error=cl.TargetError, words=("integers",))
both("bool-target", LINEAR, IMG, explain("saliency", target=True),
     error=cl.TargetError, words=("not a bool",))
both("unknown-target-string", LINEAR, IMG, explain("saliency", target="largest"),
     error=cl.TargetError, words=("unknown target", "'predicted'"))
both("callable-target-wrong-shape", LINEAR, IMG, explain("saliency", target=lambda out: out),
     error=cl.TargetError, words=("one score per sample",))
both("callable-target-raises", LINEAR, IMG,
     explain("saliency", target=lambda out: out[:, 99]),
     error=cl.TargetError, words=("callable raised", "one score per sample"))
both("constant-callable-target", LINEAR, IMG,
     explain("saliency", target=lambda out: 0 * out[:, 0] + 1.0),
     error=cl.DisconnectedError, words=("does not depend on the input", "check the target"))
both("constant-callable-target-ig", LINEAR, IMG,
     explain("integrated_gradients", steps=4, target=lambda out: out[:, 0] * 0.0),
     error=cl.DisconnectedError, words=("does not depend on the input",))
both("constant-callable-target-occlusion", LINEAR, IMG,
     explain("occlusion", patch=4, target=lambda out: out[:, 0] * 0.0 + 2.0),
     error=cl.DisconnectedError, words=("does not depend on the input",))
both("neuron-index-out-of-range", CNN, IMG,
     per_fw(lambda fw: explain("saliency", target=cl.Neuron(
         "0" if fw == "torch" else "conv", (9, 1, 1))))
     , error=cl.TargetError, words=("does not fit layer",))
both("channel-out-of-range", CNN, IMG,
     per_fw(lambda fw: explain("saliency", target=cl.Channel("0" if fw == "torch" else "conv",
                                                              12))),
     error=cl.TargetError, words=("out of range", "4 channels"))
both("neuron-on-unknown-layer", CNN, IMG, explain("saliency", target=cl.Neuron("conv9", 0)),
     error=cl.LayerNotFoundError, words=("unknown layer",))
both("per-sample-numpy-classes", LINEAR, IMG, explain("saliency", target=np.array([0, 3])),
     reference=lin_ref("saliency", c=np.array([0, 3])))


def _torch_classes():
    import torch
    return torch.tensor([4, 2])


add("per-sample-torch-classes", "torch", M.torch_linear, IMG["torch"],
    lambda model, x: cl.explain(model, x, "saliency", target=_torch_classes()).attributions,
    reference=lin_ref("saliency", c=np.array([4, 2]))("torch"))
add("class-target-on-tuple-output", "torch", lambda: M.torch_special("tuple"), IMG["torch"],
    explain("saliency", target=1), error=cl.TargetError, words=("returns tuple", "callable"))


def _tuple_head_reference(model, x):
    import torch
    leaf = torch.as_tensor(x).requires_grad_(True)
    (grad,) = torch.autograd.grad(model(leaf)[0][:, 2].sum(), leaf)
    return grad.numpy()


add("callable-target-on-tuple-output", "torch", lambda: M.torch_special("tuple"), IMG["torch"],
    explain("saliency", target=lambda out: out[0][:, 2]), reference=_tuple_head_reference)

# Binary decisions: class 1 is the output, class 0 its negation; "predicted" thresholds at
# 0 for a logit, 0.5 for a probability.
BIN_X = {fw: (lambda: M.rng(11).standard_normal((6, 6)).astype(np.float32)) for fw in FWS}


def _binary_reference(final: str, target: Any = "predicted"):
    def reference(model, x):
        w = M.binary_weights()[0]
        z = x.astype(np.float64) @ w
        classes = (z > 0).astype(int) if target == "predicted" else np.broadcast_to(target, z.shape)
        p = 1 / (1 + np.exp(-z))
        slope = p * (1 - p) if final == "probability" else np.ones_like(z)
        sign = np.where(classes == 1, 1.0, -1.0)
        return (sign * slope)[:, None] * w[None, :], list(map(int, classes))
    return reference


def _explain_with_target(method: str, **kwargs: Any):
    def call(model, x):
        exp = cl.explain(model, x, method, **kwargs)
        return exp.attributions, exp.target
    return call


both("binary-logit-predicted", BINARY_LOGIT, BIN_X, _explain_with_target("saliency"),
     reference=_binary_reference("logit"))
both("binary-probability-predicted", BINARY_PROB, BIN_X, _explain_with_target("saliency"),
     reference=_binary_reference("probability"))
both("binary-logit-class-0", BINARY_LOGIT, BIN_X, _explain_with_target("saliency", target=0),
     reference=_binary_reference("logit", 0))
both("binary-class-2", BINARY_LOGIT, BIN_X, explain("saliency", target=2),
     error=cl.TargetError, words=("out of range", "0..1"))


def _functional_sigmoid():
    import torch

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = M.torch_binary("logit")[0]

        def forward(self, x):
            return torch.sigmoid(self.fc(x))  # a probability nothing declares
    return Hidden().eval()


add("binary-output-of-unknown-kind", "torch", _functional_sigmoid, BIN_X["torch"],
    explain("saliency"), error=cl.TargetError, words=("probability", "logit", "target=1"))
add("binary-output-of-unknown-kind-explicit-class", "torch", _functional_sigmoid,
    BIN_X["torch"], _explain_with_target("saliency", target=1),
    reference=lambda model, x: (_binary_reference("probability", 1)(model, x)[0], [1] * 6))

# === C. layers ===========================================================================

both("unknown-layer", CNN, IMG, explain("saliency", target=1, layer="conv_9"),
     error=cl.LayerNotFoundError, words=("unknown layer 'conv_9'", "valid names"))


def _foreign_layer(fw: str):
    if fw == "torch":
        import torch
        return torch.nn.ReLU()
    import keras
    return keras.layers.ReLU()


both("layer-object-from-another-model", CNN, IMG,
     per_fw(lambda fw: explain("saliency", target=1, layer=_foreign_layer(fw))),
     error=cl.LayerNotFoundError, words=("not part of this model",))
add("layer-that-never-runs", "torch", lambda: M.torch_special("unused"), IMG["torch"],
    explain("saliency", target=1, layer="unused"), error=cl.LayerNotFoundError,
    words=("does not run", "cl.layer_calls"))
both("shared-layer-by-plain-name", SHARED, IMG, explain("saliency", target=1, layer="relu"),
     error=cl.UnsupportedError, words=("more than once", "#0", "#-1"))


def _second_relu_call(fw: str):
    """The second call's values, captured directly (forward hook / sub-model)."""
    def reference(model, x):
        if fw == "torch":
            import torch
            seen = []
            handle = model.relu.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
            try:
                with torch.no_grad():
                    model(torch.as_tensor(x))
            finally:
                handle.remove()
            return seen[1].numpy()
        import keras
        relu, conv2 = model.get_layer("relu"), model.get_layer("conv2")
        return keras.ops.convert_to_numpy(relu(conv2(relu(model.get_layer("conv1")(x)))))
    return reference


both("shared-layer-second-call", SHARED, IMG,
     explain("activations", layer="relu#1"), reference=per_fw(_second_relu_call))
both("shared-layer-last-call-by-negative-index", SHARED, IMG,
     explain("activations", layer="relu#-1"), reference=per_fw(_second_relu_call))
both("shared-layer-call-out-of-range", SHARED, IMG,
     explain("activations", layer="relu#5"), error=cl.LayerNotFoundError,
     words=("runs 2 time", "relu#0 .. relu#1"))
both("shared-layer-call-not-a-number", SHARED, IMG,
     explain("activations", layer="relu#last"), error=cl.LayerNotFoundError,
     words=("must be an integer",))
both("default-cam-layer-is-the-last-post-activation-output", SHARED, IMG,
     lambda model, x: cl.explain(model, x, "grad_cam", target=1).info["cam_layer"],
     reference=lambda model, x: "relu#1")
both("cam-on-shared-layer-equals-named-call", SHARED, IMG, explain("grad_cam", target=1),
     reference=same_as("grad_cam", target=1, layer="relu#1"))
add("layer-returning-a-tuple", "torch", M.torch_lstm,
    lambda: M.rng(2).standard_normal((2, 7, 3)).astype(np.float32),
    explain("saliency", target=1, layer="lstm"), error=cl.UnsupportedError,
    words=("not a tensor", "single tensor"))
both("layer-for-a-perturbation-method", CNN, IMG,
     per_fw(lambda fw: explain("occlusion", target=1, layer="0" if fw == "torch" else "conv")),
     error=cl.OptionError, words=("takes no layer", "cl.neuron"))
both("activations-without-layer", CNN, IMG, explain("activations"),
     error=cl.OptionError, words=("needs a layer", "cl.layers"))


def _fc_layer_gradient(fw: str):
    def reference(model, x):
        return np.tile(np.eye(M.CLASSES)[1], (len(x), 1))
    return reference


both("gradient-at-the-output-layer", LINEAR, IMG,
     per_fw(lambda fw: explain("saliency", target=1, layer="1" if fw == "torch" else "fc")),
     reference=per_fw(_fc_layer_gradient))

# === D. methods on models they do not suit ===================================================

for method in ("grad_cam", "score_cam", "layer_cam", "eigen_cam", "grad_cam_plus_plus"):
    both(f"{method}-on-a-tabular-model", MLP, TABLE, explain(method, target=1),
         error=cl.OptionError, words=("spatial", "layer="))
both("cam-without-spatial-layer", MLP, TABLE, explain("cam", target=1),
     error=cl.OptionError, words=("spatial",))
add("cam-on-a-head-that-is-not-gap-and-dense", "keras", M.keras_linear, IMG["keras"],
    explain("cam", target=1), error=cl.UnsupportedError,
    words=("global average pooling", "grad_cam"))
both("guided-backprop-without-relu", LINEAR, IMG, explain("guided_backprop", target=1),
     error=cl.UnsupportedError, words=("no relu", "saliency"))
both("deconvnet-without-relu", LINEAR, IMG, explain("deconvnet", target=1),
     error=cl.UnsupportedError, words=("no relu",))
both("rise-on-tabular", MLP, TABLE, explain("rise", target=1, samples=4),
     error=cl.InputError, words=("image",))
both("occlusion-default-patch-on-tabular", MLP, TABLE, explain("occlusion", target=1),
     error=cl.OptionError, words=("does not fit", "between 1 and"))
both("feature-ablation-without-mask", LINEAR, IMG, explain("feature_ablation", target=1),
     error=cl.OptionError, words=("feature_mask",))
both("conductance-without-layer", LINEAR, IMG, explain("conductance", target=1),
     error=cl.OptionError, words=("needs a layer",))
both("eigen-cam-on-a-series-model", CONV1D, SERIES, explain("eigen_cam"),
     error=cl.OptionError, words=("spatial",))
both("reduce-channels-of-tabular", MLP, TABLE, explain("saliency", target=1,
                                                       reduce_channels="sum"),
     error=cl.OptionError, words=("channel axis", "drop reduce_channels"))
add("reduce-channels-where-the-axis-is-unknown", "torch", M.torch_lstm,
    lambda: M.rng(2).standard_normal((2, 7, 3)).astype(np.float32),
    explain("saliency", target=1, reduce_channels="sum"), error=cl.OptionError,
    words=("cannot be known", "sum(axis="))
both("reduce-channels-of-a-dense-image-model", LINEAR, IMG,
     explain("saliency", target=1, reduce_channels="sum"), reference=lin_ref("channel_sum"))
both("reduce-channels-of-a-series", CONV1D, SERIES,
     explain("saliency", target=1, reduce_channels="sum"),
     reference=per_fw(lambda fw: lambda model, x: cl.explain(model, x, "saliency", target=1)
                      .numpy().sum(axis=1 if fw == "torch" else -1)))
both("reduce-channels-of-a-cam", CNN, IMG, explain("grad_cam", target=1, reduce_channels="sum"),
     error=cl.OptionError, words=("no channel axis", "drop reduce_channels"))
both("unknown-method", LINEAR, IMG, explain("integrated_gradient_x", target=1),
     error=cl.UnknownMethodError, words=("unknown method", "closest"))
both("noise-over-a-perturbation-method", LINEAR, IMG,
     explain("smoothgrad", target=1, base="occlusion", samples=2),
     error=cl.OptionError, words=("gradient method as base",))

# === E. options of the wrong type or range ========================================================

BAD_OPTIONS = [
    ("steps-float", "integrated_gradients", {"steps": 4.0}, ("must be an int", "steps=4")),
    ("steps-zero", "integrated_gradients", {"steps": 0}, ("at least 1",)),
    ("steps-string", "integrated_gradients", {"steps": "10"}, ("must be an int",)),
    ("samples-fraction", "smoothgrad", {"samples": 2.5}, ("must be an int",)),
    ("samples-zero", "smoothgrad", {"samples": 0}, (">= 1",)),
    ("noise-level-negative", "smoothgrad", {"samples": 2, "noise_level": -1.0}, (">= 0",)),
    ("noise-level-nan", "smoothgrad", {"samples": 2, "noise_level": float("nan")},
     ("finite number",)),
    ("stdev-negative", "smoothgrad", {"samples": 2, "stdev": -0.1}, (">= 0",)),
    ("unknown-option", "integrated_gradients", {"stepz": 4}, ("no option 'stepz'", "options are")),
    ("unknown-rule", "integrated_gradients", {"rule": "simpson"}, ("unknown integration rule",)),
    ("unknown-baseline", "integrated_gradients", {"baseline": "median"}, ("unknown baseline",)),
    ("none-baseline", "integrated_gradients", {"baseline": None}, ("not a baseline",)),
    ("rise-p-too-large", "rise", {"p": 1.5, "samples": 4}, ("(0, 1]",)),
    ("rise-p-zero", "rise", {"p": 0.0, "samples": 4}, ("(0, 1]",)),
    ("occlusion-stride-larger-than-patch", "occlusion", {"patch": 2, "stride": 4},
     ("not larger than the window",)),
    ("occlusion-zero-patch", "occlusion", {"patch": 0}, ("between 1 and",)),
    ("cam-relu-not-bool", "grad_cam", {"relu": "yes"}, ("true or false",)),
    ("seed-float", "smoothgrad", {"samples": 2, "seed": 1.5}, ("seed must be an int",)),
    ("seed-negative", "smoothgrad", {"samples": 2, "seed": -1}, ("seed must be >= 0",)),
    ("abs-not-bool", "saliency", {"abs": "yes"}, ("true or false",)),
    ("unknown-reduction", "saliency", {"reduce_channels": "median"}, ("unknown reduce_channels",)),
    ("unknown-normalization", "saliency", {"normalize": "z"}, ("unknown normalize",)),
    ("memory-budget-words", "saliency", {"memory_budget": "lots"}, ("memory budget", "'2gb'")),
    ("memory-budget-negative", "saliency", {"memory_budget": -5}, ("must be positive",)),
    ("progress-not-bool", "saliency", {"progress": "x"}, ("true or false",)),
    ("noise-of-wrong-shape", "smoothgrad", {"samples": 2, "noise": np.zeros((2, 1))},
     ("noise must have shape",)),
]
for name, method, options, words in BAD_OPTIONS:
    error = cl.InputError if name.startswith("noise-of") else cl.OptionError
    both(name, CNN, IMG, explain(method, target=1, **options), error=error, words=words)
both("baseline-of-wrong-shape", LINEAR, IMG,
     explain("integrated_gradients", target=1, baseline=np.zeros((5, 5))),
     error=cl.InputError, words=("fits neither",))
both("feature-mask-of-floats", LINEAR, IMG,
     per_fw(lambda fw: explain("feature_ablation", target=1,
                               feature_mask=np.zeros((8, 8), dtype=np.float32))),
     error=cl.InputError, words=("integer feature ids",))
both("unknown-implementation", LINEAR, IMG, explain("saliency", target=1, implementation="lime"),
     error=cl.UnsupportedError, words=("unknown implementation", "captum"))

# === F. model kinds ===========================================================================


def _train_mode_reference(model, x):
    """The eval-mode result of an identical copy: train mode must not be used."""
    import copy
    twin = copy.deepcopy(model).eval()
    return cl.explain(twin, x, "integrated_gradients", target=1, steps=8).attributions


add("train-mode-model", "torch", lambda: M.torch_cnn("train"), IMG["torch"],
    explain("integrated_gradients", target=1, steps=8), reference=_train_mode_reference)
add("keras-dropout-and-batchnorm-are-inference", "keras", M.keras_cnn, IMG["keras"],
    explain("saliency", target=1),
    reference=lambda model, x: _tape_gradient(model, x, 1))


def _tape_gradient(model, x, c):
    import tensorflow as tf
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        score = model(xt, training=False)[:, c]
    return tape.gradient(score, xt).numpy()


def _hooked_linear():
    """The linear model with a user hook doubling its output (kept during the call)."""
    import copy
    model = copy.deepcopy(M.torch_linear())
    model[1].register_forward_hook(lambda module, inputs, output: output * 2)
    return model


add("user-forward-hook-is-honoured", "torch", _hooked_linear, IMG["torch"],
    explain("saliency", target=1),
    reference=lambda model, x: 2 * lin_ref("saliency")("torch")(model, x))
add("user-forward-hook-with-layer", "torch", _hooked_linear, IMG["torch"],
    explain("gradient_x_input", target=1, layer="1"),
    reference=lambda model, x: 2 * (np.asarray(x, np.float64).reshape(2, -1)
                                    @ M.linear_weights()[0].T + M.linear_weights()[1])
    * np.eye(M.CLASSES)[1])


def _script():
    import torch
    return torch.jit.script(M.torch_linear())


def _traced_cnn():
    import torch
    return torch.jit.trace(M.torch_cnn("eval"), torch.as_tensor(image("torch")))


add("torchscript-saliency", "torch", _script, IMG["torch"], explain("saliency", target=1),
    reference=lin_ref("saliency")("torch"))
add("torchscript-layer", "torch", _script, IMG["torch"], explain("saliency", target=1, layer="1"),
    error=cl.UnsupportedError, words=("torchscript", "eager nn.module"))
add("traced-guided-backprop", "torch", _traced_cnn, IMG["torch"],
    explain("guided_backprop", target=1), error=cl.UnsupportedError,
    words=("torchscript", "eager nn.module"))
add("traced-occlusion", "torch", _traced_cnn, IMG["torch"],
    explain("occlusion", target=1, patch=4),
    reference=lambda model, x: cl.explain(M.torch_cnn("eval"), x, "occlusion", target=1,
                                          patch=4).attributions)


def _compiled(kind: str):
    import torch
    return torch.compile(M.torch_linear() if kind == "linear" else M.torch_cnn("eval"),
                         backend="eager")


add("torch-compile-saliency", "torch", lambda: _compiled("linear"), IMG["torch"],
    explain("saliency", target=1), reference=lin_ref("saliency")("torch"))
add("torch-compile-layer-by-its-own-name", "torch", lambda: _compiled("cnn"), IMG["torch"],
    explain("gradient_x_input", target=1, layer="0"),
    reference=lambda model, x: cl.explain(M.torch_cnn("eval"), x, "gradient_x_input", target=1,
                                          layer="0").attributions)
add("torch-compile-guided-backprop", "torch", lambda: _compiled("cnn"), IMG["torch"],
    explain("guided_backprop", target=1),
    reference=lambda model, x: cl.explain(M.torch_cnn("eval"), x, "guided_backprop",
                                          target=1).attributions)
add("keras-subclassed-ig", "keras", M.keras_subclassed, IMG["keras"],
    explain("integrated_gradients", target=1, steps=4), reference=lin_ref("ig")("keras"))
add("keras-subclassed-layer", "keras", M.keras_subclassed, IMG["keras"],
    explain("saliency", target=1, layer="fc"), reference=_fc_layer_gradient("keras"))
add("keras-nested-inner-layer", "keras", M.keras_nested, IMG["keras"],
    explain("saliency", target=1, layer="inner/fc"), reference=_fc_layer_gradient("keras"))
add("keras-nested-ig", "keras", M.keras_nested, IMG["keras"],
    explain("integrated_gradients", target=1, steps=4), reference=lin_ref("ig")("keras"))
add("keras-lambda-layer", "keras", M.keras_lambda, IMG["keras"], explain("saliency", target=1),
    reference=lambda model, x: 2 * lin_ref("saliency")("keras")(model, x))
add("float64-model-float32-input", "torch", lambda: M.torch_linear("float64"), IMG["torch"],
    lambda model, x: cl.explain(model, x, "saliency", target=1).attributions.dtype.name,
    reference=lambda model, x: "float32")
add("float64-model", "keras", lambda: M.keras_linear("float64"),
    lambda: image("keras", dtype=np.float64),
    explain("integrated_gradients", target=1, steps=3), reference=lin_ref("ig")("keras"),
    tol=1e-12)
add("float16-model", "torch", lambda: M.torch_linear("float16"), IMG["torch"],
    explain("saliency", target=1), reference=lin_ref("saliency")("torch"), tol=2e-3)
def aligned(fw: str, magnitude: float) -> np.ndarray:
    """Finite inputs whose class-1 score on the linear model is about 30 x ``magnitude``:
    every element of size ``magnitude`` with the sign of its weight."""
    w = np.sign(M.linear_weights()[0][1]).reshape(M.IMAGE)
    return to_fw(fw, np.stack([w, w]) * magnitude).astype(np.float32)


for fw, factory in (("torch", lambda: M.torch_linear("float16")),
                    ("keras", lambda: M.keras_linear("float16"))):
    add("float16-overflow", fw, factory, (lambda fw=fw: aligned(fw, 6e4)),
        explain("saliency", target=1), error=cl.NonFiniteError,
        words=("nan or infinite", "first appear at the output of layer", "float16"))
both("huge-inputs-overflow-ig", LINEAR, {fw: (lambda fw=fw: aligned(fw, 3e37)) for fw in FWS},
     explain("integrated_gradients", target=1, steps=4, completeness=True),
     error=cl.NonFiniteError, words=("nan or infinite", "rescale the input"))
add("overflow-in-the-models-own-code", "torch", lambda: M.torch_special("overflow"),
    IMG["torch"], explain("saliency", target=1), error=cl.NonFiniteError,
    words=("outputs", "model's own code"))
both("score-that-is-nan", LINEAR, IMG,
     explain("saliency", target=lambda out: (out[:, 0] * 0.0 - 1.0) ** 0.5),
     error=cl.NonFiniteError, words=("score", "callable target"))
add("required-forward-keyword", "torch", lambda: M.torch_special("kwarg"), IMG["torch"],
    explain("saliency", target=1), error=cl.ModelError,
    words=("missing 1 required keyword-only argument", "wrap it"))

# === G. integer token inputs ===================================================================


def _embedding_gradient(fw: str, c: int = 1, times_input: bool = False):
    """Gradient of class ``c`` w.r.t. the embedding's output, computed directly."""
    def reference(model, ids):
        if fw == "torch":
            import torch
            values = model.emb(torch.as_tensor(ids)).detach().requires_grad_(True)
            h, _ = model.lstm(values)
            (grad,) = torch.autograd.grad(model.fc(h[:, -1])[:, c].sum(), values)
            grad, values = grad.numpy(), values.detach().numpy()
        else:
            import tensorflow as tf
            values = model.get_layer("emb")(tf.constant(ids))
            with tf.GradientTape() as tape:
                tape.watch(values)
                out = model.get_layer("fc")(model.get_layer("lstm")(values))[:, c]
            grad, values = tape.gradient(out, values).numpy(), values.numpy()
        return grad * values if times_input else grad
    return reference


both("ids-saliency-at-the-embedding", TOKENS, IDS, explain("saliency", target=1),
     reference=per_fw(_embedding_gradient))
both("ids-gradient-x-embedding", TOKENS, IDS, explain("gradient_x_input", target=1),
     reference=per_fw(lambda fw: _embedding_gradient(fw, times_input=True)))
both("ids-result-says-where-it-attributes", TOKENS, IDS,
     lambda model, x: (cl.explain(model, x, "saliency", target=1).layer,
                       "embedding layer 'emb'" in cl.explain(model, x, "saliency",
                                                             target=1).info["note"]),
     reference=lambda model, x: ("emb", True))


def _completeness(**options: Any):
    def call(model, ids):
        info = cl.explain(model, ids, "integrated_gradients", target=1, completeness=True,
                          steps=64, **options).info
        return info["completeness_error"]
    return call


both("ids-ig-complete-from-the-zero-embedding", TOKENS, IDS, _completeness(),
     reference=lambda model, x: np.zeros(len(x)), tol=1e-3)
both("ids-ig-complete-from-padding-ids", TOKENS, IDS,
     _completeness(baseline=np.zeros((2, 6), dtype=np.int64)),
     reference=lambda model, x: np.zeros(len(x)), tol=1e-3)
both("ids-smoothgrad", TOKENS, IDS, explain("smoothgrad", target=1, samples=2),
     error=cl.OptionError, words=("integer ids", "internal_influence"))
both("ids-rise", TOKENS, IDS, explain("rise", target=1, samples=4),
     error=cl.OptionError, words=("integer ids", "occlusion"))
both("ids-conductance", TOKENS, IDS, explain("conductance", target=1, layer="lstm"),
     error=cl.OptionError, words=("integer ids", "integrated_gradients"))
both("ids-out-of-range", TOKENS, {fw: (lambda: np.full((2, 6), 25)) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("out of range", "0..19"))
both("ids-negative", TOKENS, {fw: (lambda: np.full((2, 6), -1)) for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("negative", ">= 0"))
both("float-ids", TOKENS, {fw: (lambda: M.rng(6).integers(1, 20, (2, 6)).astype(np.float32))
                           for fw in FWS},
     explain("saliency", target=1), error=cl.InputError, words=("integer ids", "astype('int64')"))


def _token_occlusion(model, ids):
    """Score drop when each token is replaced by id 0, one at a time."""
    base = cl.explain(model, ids, "saliency", target=1).outputs[:, 1]
    drops = np.zeros(ids.shape)
    for t in range(ids.shape[1]):
        occluded = ids.copy()
        occluded[:, t] = 0
        out = cl.explain(model, occluded, "saliency", target=1).outputs
        drops[:, t] = base - out[:, 1]
    return drops


both("ids-occlusion-by-token", TOKENS, IDS, explain("occlusion", target=1, patch=1, baseline=0),
     reference=_token_occlusion, tol=1e-5)
both("ids-influence-equals-ig-at-the-embedding", TOKENS, IDS,
     explain("internal_influence", target=1, steps=16),
     reference=same_as("integrated_gradients", target=1, steps=16))

# === H. several inputs ==========================================================================


def _two_input_reference(kind: str, base: Any = None):
    @per_fw
    def make(fw: str):
        def reference(model, x):
            a, b = (x if fw == "torch" else (np.moveaxis(x["a"], -1, 1), x["b"]))
            wa = linear_gradient(a, 1)
            wb = np.tile(M.two_input_weights()[1], (len(b), 1))
            if kind == "ig":
                ba, bb = base if base is not None else (0.0, 0.0)
                wa, wb = wa * (a - ba), wb * (b - bb)
            return (wa, wb) if fw == "torch" else {"a": np.moveaxis(wa, 1, -1), "b": wb}
        return reference
    return make


both("two-inputs-ig", TWO, TWO_X, explain("integrated_gradients", target=1, steps=4),
     reference=_two_input_reference("ig"))
both("two-inputs-saliency", TWO, TWO_X, explain("saliency", target=1),
     reference=_two_input_reference("saliency"))
both("two-inputs-smoothgrad", TWO, TWO_X,
     explain("smoothgrad", target=1, samples=3, stdev=0.5, seed=0),
     reference=_two_input_reference("saliency"))
both("two-inputs-ig-per-input-baselines", TWO, TWO_X,
     per_fw(lambda fw: explain("integrated_gradients", target=1, steps=4,
                               baseline=(0.5, -1.0) if fw == "torch" else
                               {"a": 0.5, "b": -1.0})),
     reference=_two_input_reference("ig", base=(0.5, -1.0)))
add("two-inputs-as-a-list", "keras", M.keras_two_inputs,
    lambda: [two_inputs("keras")["a"], two_inputs("keras")["b"]],
    explain("saliency", target=1),
    reference=lambda model, x: list(_two_input_reference("saliency")("keras")(
        model, {"a": x[0], "b": x[1]}).values()))
add("two-inputs-as-keywords", "torch", M.torch_two_inputs,
    lambda: dict(zip("ab", two_inputs("torch"))), explain("saliency", target=1),
    reference=lambda model, x: dict(zip("ab", _two_input_reference("saliency")("torch")(
        model, (x["a"], x["b"])))))
both("two-inputs-layer-gradient-in-the-callers-type", TWO, TWO_X,
     per_fw(lambda fw: explain("saliency", target=1, layer="a" if fw == "torch" else "fa")),
     reference=_same_type_as_input(lambda model, x: np.tile(np.eye(M.CLASSES)[1], (2, 1))))
both("two-inputs-given-one", TWO, IMG, explain("saliency", target=1),
     error=cl.CrosslensError, words=("model",))
both("two-inputs-different-batch-sizes", TWO,
     {"torch": lambda: (two_inputs("torch")[0], two_inputs("torch")[1][:1]),
      "keras": lambda: {"a": two_inputs("keras")["a"], "b": two_inputs("keras")["b"][:1]}},
     explain("saliency", target=1), error=cl.InputError, words=("batch sizes",))
both("two-inputs-with-nan", TWO,
     {"torch": lambda: (two_inputs("torch")[0], two_inputs("torch")[1] * np.nan),
      "keras": lambda: {"a": two_inputs("keras")["a"], "b": two_inputs("keras")["b"] * np.nan}},
     explain("saliency", target=1), error=cl.InputError, words=("nan",))
both("two-inputs-one-of-integers", TWO,
     {"torch": lambda: (two_inputs("torch")[0], np.ones((2, 4), dtype=np.int64)),
      "keras": lambda: {"a": two_inputs("keras")["a"], "b": np.ones((2, 4), dtype=np.int64)}},
     explain("saliency", target=1), error=cl.InputError, words=("integers",))
both("two-inputs-occlusion", TWO, TWO_X, explain("occlusion", target=1),
     error=cl.OptionError, words=("several", "feature_ablation"))
add("two-inputs-upsampled-cam", "torch", TWO["torch"], TWO_X["torch"],
    explain("grad_cam", target=1, layer="a"), error=cl.OptionError,
    words=("spatial", "layer"))
add("two-inputs-upsampled-cam", "keras", TWO["keras"], TWO_X["keras"],
    explain("grad_cam", target=1, layer="perm"), error=cl.OptionError,
    words=("several inputs", "upsample=false"))
both("two-inputs-captum", TWO, TWO_X, explain("saliency", target=1, implementation="captum"),
     error=cl.UnsupportedError, words=("several inputs", "implementation='crosslens'"))


def _two_input_ablation(fw: str):
    def reference(model, x):
        a, b = (x if fw == "torch" else (np.moveaxis(x["a"], -1, 1), x["b"]))
        ca = (linear_gradient(a, 1) * a).reshape(len(a), -1).sum(axis=1)
        cb = (b * M.two_input_weights()[1]).sum(axis=1)
        ra, rb = np.broadcast_to(ca[:, None, None, None], a.shape), np.tile(cb[:, None], (1, 4))
        return (ra, rb) if fw == "torch" else {"a": np.moveaxis(ra, 1, -1), "b": rb}
    return reference


both("two-inputs-feature-ablation", TWO, TWO_X,
     per_fw(lambda fw: explain("feature_ablation", target=1,
                               feature_mask=(np.zeros((1,) + M.IMAGE, dtype=int),
                                             np.ones((1, 4), dtype=int)) if fw == "torch" else
                               {"a": np.zeros((1, 8, 8, 3), dtype=int),
                                "b": np.ones((1, 4), dtype=int)})),
     reference=per_fw(_two_input_ablation))

# === J. loading =============================================================================


def load(spec: str) -> Callable[[Any, Any], Any]:
    return lambda model, x: cl.explain(spec, image("torch"), "saliency", target=1)


NONE = lambda: None  # noqa: E731
add("path-with-a-colon", "none", NONE, NONE, load("models/net:v2.pt"), error=cl.LoadError,
    words=("does not exist",))
add("module-that-does-not-import", "none", NONE, NONE, load("no_such_module_xyz:build"),
    error=cl.LoadError, words=("cannot import", "importable"))
add("callable-that-does-not-exist", "none", NONE, NONE, load("json:no_such_factory"),
    error=cl.LoadError, words=("has no attribute",))
add("python-file-that-does-not-exist", "none", NONE, NONE, load("nowhere/net.py:build"),
    error=cl.LoadError, words=("does not exist",))
add("model-of-unknown-type", "none", NONE, NONE,
    lambda model, x: cl.explain(object(), image("torch"), "saliency"),
    error=cl.UnsupportedError, words=("cannot explain", "torch.nn.module"))
