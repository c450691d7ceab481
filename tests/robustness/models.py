"""Tiny models of every kind the robustness catalogue calls, in PyTorch and Keras.

Twins share weights so one numpy reference serves both: ``linear`` models (a dense layer
on the flattened input) have closed-form answers for most methods; the reference nets of
``tests/reference`` (``small_cnn``) have numpy references for the gradient methods.
Factories are cached: the catalogue checks after every call that the model is unchanged,
so sharing one model between cases also checks that calls do not leak state.
"""
from __future__ import annotations

import functools

import numpy as np

SEED = 0
IMAGE = (3, 8, 8)  # channels-first sample shape of the image models
CLASSES = 5


def rng(seed: int = SEED) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- weights shared by the twins ---------------------------------------------------------

@functools.lru_cache(maxsize=None)
def linear_weights(features: int = int(np.prod(IMAGE)), classes: int = CLASSES):
    r = rng(1)
    return r.standard_normal((classes, features)) * 0.2, r.standard_normal(classes) * 0.1


def image_x(n: int = 2, seed: int = 3, layout: str = "channels_first") -> np.ndarray:
    x = rng(seed).standard_normal((n,) + IMAGE).astype(np.float32)
    return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if layout == "channels_last" else x


def linear_scores(x_nchw: np.ndarray, classes) -> np.ndarray:
    """Class score of a linear model (float64)."""
    w, b = linear_weights()
    out = x_nchw.reshape(len(x_nchw), -1).astype(np.float64) @ w.T + b
    return out[np.arange(len(out)), np.broadcast_to(classes, (len(out),))]


# --- PyTorch -----------------------------------------------------------------------------

def _torch():
    import torch
    return torch


@functools.lru_cache(maxsize=None)
def torch_linear(dtype: str = "float32"):
    torch = _torch()
    w, b = linear_weights()
    fc = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(w))
        fc.bias.copy_(torch.as_tensor(b))
    return torch.nn.Sequential(torch.nn.Flatten(), fc).to(getattr(torch, dtype)).eval()


@functools.lru_cache(maxsize=None)
def torch_cnn(mode: str = "eval"):
    """Conv -> BatchNorm -> ReLU -> Dropout -> GAP -> Linear, in ``mode`` (train / eval)."""
    torch = _torch()
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, CLASSES))
    with torch.no_grad():  # non-trivial statistics, so train / eval mode differ
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.train() if mode == "train" else model.eval()


@functools.lru_cache(maxsize=None)
def torch_shared_relu():
    """One ReLU module called twice (as EfficientNet's activation): relu#0, relu#1."""
    torch = _torch()
    nn = torch.nn

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(1)
            self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 6, 3, padding=1)
            self.relu, self.fc = nn.ReLU(), nn.Linear(6, CLASSES)

        def forward(self, x):
            h = self.relu(self.conv2(self.relu(self.conv1(x))))
            return self.fc(h.mean(dim=(2, 3)))
    return Shared().eval()


@functools.lru_cache(maxsize=None)
def torch_mlp(features: int = 6, classes: int = 3):
    torch = _torch()
    torch.manual_seed(2)
    nn = torch.nn
    return nn.Sequential(nn.Linear(features, 8), nn.ReLU(), nn.Linear(8, classes)).eval()


@functools.lru_cache(maxsize=None)
def torch_conv1d():
    torch = _torch()
    torch.manual_seed(3)
    nn = torch.nn
    return nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
                         nn.Flatten(), nn.Linear(4, 2)).eval()


@functools.lru_cache(maxsize=None)
def torch_lstm():
    torch = _torch()
    nn = torch.nn

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.lstm, self.fc = nn.LSTM(3, 4, batch_first=True), nn.Linear(4, 2)

        def forward(self, x):
            h, _ = self.lstm(x)
            return self.fc(h[:, -1])
    return Recurrent().eval()


@functools.lru_cache(maxsize=None)
def torch_tokens():
    """Embedding(20, 8) -> LSTM -> Linear: a model of integer token ids."""
    torch = _torch()
    nn = torch.nn

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.emb, self.lstm = nn.Embedding(20, 8), nn.LSTM(8, 6, batch_first=True)
            self.fc = nn.Linear(6, 3)

        def forward(self, tokens):
            h, _ = self.lstm(self.emb(tokens))
            return self.fc(h[:, -1])
    return Tokens().eval()


@functools.lru_cache(maxsize=None)
def torch_two_inputs():
    """``forward(a, b)``: a linear model of an image ``a`` (3, 8, 8) and features ``b`` (4,)."""
    torch = _torch()
    nn = torch.nn
    wa, ba = linear_weights()
    wb = two_input_weights()

    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(wa.shape[1], CLASSES), nn.Linear(4, CLASSES, bias=False)
            with torch.no_grad():
                self.a.weight.copy_(torch.as_tensor(wa))
                self.a.bias.copy_(torch.as_tensor(ba))
                self.b.weight.copy_(torch.as_tensor(wb))

        def forward(self, a, b):
            return self.a(a.flatten(1)) + self.b(b)
    return TwoInputs().eval()


@functools.lru_cache(maxsize=None)
def two_input_weights() -> np.ndarray:
    return rng(6).standard_normal((CLASSES, 4)) * 0.3


@functools.lru_cache(maxsize=None)
def torch_binary(final: str = "logit"):
    """Linear(6 -> 1), followed by a Sigmoid for ``final="probability"``."""
    torch = _torch()
    nn = torch.nn
    fc = nn.Linear(6, 1)
    w = rng(7).standard_normal((1, 6))
    with torch.no_grad():
        fc.weight.copy_(torch.as_tensor(w))
        fc.bias.zero_()
    layers = [fc] + ([nn.Sigmoid()] if final == "probability" else [])
    return nn.Sequential(*layers).eval()


def binary_weights() -> np.ndarray:
    return rng(7).standard_normal((1, 6))


@functools.lru_cache(maxsize=None)
def torch_special(kind: str):
    """Models whose shape makes a call fail: a required keyword argument, a module that
    never runs, a tuple output, a constant output."""
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(8)

    class NeedsScale(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(int(np.prod(IMAGE)), CLASSES)

        def forward(self, x, *, scale):
            return self.fc(x.flatten(1)) * scale

    class Unused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.unused = nn.Linear(int(np.prod(IMAGE)), CLASSES), nn.Linear(5, 5)

        def forward(self, x):
            return self.fc(x.flatten(1))

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(int(np.prod(IMAGE)), CLASSES)

        def forward(self, x):
            out = self.fc(x.flatten(1))
            return out, out.sum(dim=1)

    class Overflows(nn.Module):
        """exp of the logits: finite inputs, infinite outputs."""

        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(int(np.prod(IMAGE)), CLASSES)
            self.act = nn.Identity()

        def forward(self, x):
            return torch.exp(self.act(self.fc(x.flatten(1)) * 100.0))

    return {"kwarg": NeedsScale, "unused": Unused, "tuple": TwoOutputs,
            "overflow": Overflows}[kind]().eval()


# --- Keras -------------------------------------------------------------------------------

def _keras():
    import keras
    return keras


@functools.lru_cache(maxsize=None)
def keras_linear(dtype: str = "float32"):
    keras = _keras()
    w, b = linear_weights()
    inp = keras.Input((IMAGE[1], IMAGE[2], IMAGE[0]), dtype=dtype)
    # flatten in channels-first order, so the weights are the torch twin's
    h = keras.layers.Permute((3, 1, 2), name="to_nchw", dtype=dtype)(inp)
    h = keras.layers.Flatten(name="flatten", dtype=dtype)(h)
    fc = keras.layers.Dense(CLASSES, name="fc", dtype=dtype)
    model = keras.Model(inp, fc(h))
    fc.set_weights([w.T.astype(dtype), b.astype(dtype)])
    return model


@functools.lru_cache(maxsize=None)
def keras_cnn():
    keras = _keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU(name="relu")(h)
    h = keras.layers.Dropout(0.5, name="drop")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    model = keras.Model(inp, keras.layers.Dense(CLASSES, name="fc")(h))
    bn = model.get_layer("bn")
    gamma, beta, mean, var = bn.get_weights()
    r = rng(9)
    bn.set_weights([gamma, beta, r.uniform(-0.5, 0.5, mean.shape), r.uniform(0.5, 2, var.shape)])
    return model


@functools.lru_cache(maxsize=None)
def keras_shared_relu():
    keras = _keras()
    keras.utils.set_random_seed(1)
    relu = keras.layers.ReLU(name="relu")
    inp = keras.Input((8, 8, 3))
    h = relu(keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inp))
    h = relu(keras.layers.Conv2D(6, 3, padding="same", name="conv2")(h))
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inp, keras.layers.Dense(CLASSES, name="fc")(h))


@functools.lru_cache(maxsize=None)
def keras_mlp(features: int = 6, classes: int = 3):
    keras = _keras()
    keras.utils.set_random_seed(2)
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(8, activation="relu",
                                                                         name="hidden"),
                             keras.layers.Dense(classes, name="fc")])


@functools.lru_cache(maxsize=None)
def keras_conv1d():
    keras = _keras()
    keras.utils.set_random_seed(3)
    return keras.Sequential([keras.Input((10, 3)),
                             keras.layers.Conv1D(4, 3, padding="same", activation="relu",
                                                 name="conv"),
                             keras.layers.GlobalAveragePooling1D(name="gap"),
                             keras.layers.Dense(2, name="fc")])


@functools.lru_cache(maxsize=None)
def keras_lstm():
    keras = _keras()
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((7, 3)), keras.layers.LSTM(4, name="lstm"),
                             keras.layers.Dense(2, name="fc")])


@functools.lru_cache(maxsize=None)
def keras_tokens():
    keras = _keras()
    keras.utils.set_random_seed(5)
    inp = keras.Input((6,), dtype="int32")
    h = keras.layers.Embedding(20, 8, name="emb")(inp)
    h = keras.layers.LSTM(6, name="lstm")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="fc")(h))


@functools.lru_cache(maxsize=None)
def keras_two_inputs():
    """Inputs "a" (8, 8, 3) and "b" (4,), a linear model: the torch twin's weights."""
    keras = _keras()
    wa, ba = linear_weights()
    a, b = keras.Input((8, 8, 3), name="a"), keras.Input((4,), name="b")
    ha = keras.layers.Flatten(name="flat")(keras.layers.Permute((3, 1, 2), name="perm")(a))
    fa, fb = keras.layers.Dense(CLASSES, name="fa"), keras.layers.Dense(CLASSES, use_bias=False,
                                                                       name="fb")
    model = keras.Model({"a": a, "b": b}, keras.layers.Add(name="add")([fa(ha), fb(b)]))
    fa.set_weights([wa.T.astype("float32"), ba.astype("float32")])
    fb.set_weights([two_input_weights().T.astype("float32")])
    return model


@functools.lru_cache(maxsize=None)
def keras_binary(final: str = "logit"):
    keras = _keras()
    dense = keras.layers.Dense(1, activation="sigmoid" if final == "probability" else None,
                               name="fc")
    model = keras.Sequential([keras.Input((6,)), dense])
    dense.set_weights([binary_weights().T.astype("float32"), np.zeros(1, "float32")])
    return model


@functools.lru_cache(maxsize=None)
def keras_subclassed():
    keras = _keras()
    w, b = linear_weights()

    class Linear(keras.Model):
        def __init__(self):
            super().__init__()
            self.perm = keras.layers.Permute((3, 1, 2), name="perm")
            self.flat = keras.layers.Flatten(name="flat")
            self.fc = keras.layers.Dense(CLASSES, name="fc")

        def call(self, x, training=False):
            return self.fc(self.flat(self.perm(x)))

    model = Linear()
    model(np.zeros((1, 8, 8, 3), "float32"))
    model.fc.set_weights([w.T.astype("float32"), b.astype("float32")])
    return model


@functools.lru_cache(maxsize=None)
def keras_nested():
    """The linear model inside an outer Functional model (layers "inner/fc")."""
    keras = _keras()
    inner = keras_linear()
    inner_copy = keras.models.clone_model(inner)
    inner_copy.set_weights(inner.get_weights())
    inner_copy.name = "inner"
    inp = keras.Input((8, 8, 3))
    return keras.Model(inp, inner_copy(keras.layers.Identity(name="pre")(inp)))


@functools.lru_cache(maxsize=None)
def keras_lambda():
    """A Lambda layer (x * 2) before the linear model: every score is the linear model's
    at 2x."""
    keras = _keras()
    inner = keras_linear()
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    h = keras.layers.Flatten(name="flatten2")(keras.layers.Permute((3, 1, 2), name="p2")(h))
    fc = keras.layers.Dense(CLASSES, name="fc2")
    model = keras.Model(inp, fc(h))
    fc.set_weights(inner.get_layer("fc").get_weights())
    return model
