"""The small CNN of the Clever-Hans benchmark, built and trained identically in PyTorch
and in Keras.

Architecture (layer names shared by both frameworks)::

    conv1 3x3 -> relu1 -> pool1 2x2 -> conv2 3x3 -> relu2 -> pool2 2x2
    -> conv3 3x3 -> relu3 -> gap (global average) -> fc (logits)

Initial weights are drawn once with numpy (He normal convolutions, zero biases, a
zero classifier) and loaded into
both frameworks; both train with the same mini-batches in the same order, plain SGD
with momentum (the two frameworks' updates are the same formula) and mean softmax
cross-entropy, so the two trained models differ only by float rounding. The
frameworks are imported inside the functions that need them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import OptionError

#: The layer Grad-CAM-like methods read (last convolutional block's output).
CAM_LAYER = "relu3"


def init_weights(seed: int, in_channels: int = 1, n_classes: int = 2,
                 channels: tuple[int, int, int] = (8, 16, 16)) -> dict[str, np.ndarray]:
    """He-normal convolutions and a zero classifier, in PyTorch layout and keys (float32)."""
    rng = np.random.default_rng(seed)
    weights, previous = {}, in_channels
    for i, c in enumerate(channels, start=1):
        std = np.sqrt(2.0 / (previous * 9))
        weights[f"conv{i}.weight"] = rng.normal(0.0, std, (c, previous, 3, 3))
        weights[f"conv{i}.bias"] = np.zeros(c)
        previous = c
    # A zero head: the convolutions then only receive gradients through what the
    # classifier learns to use, so the trained model is not sensitive to random features
    # (and the two logits stay exactly opposite under softmax cross-entropy).
    weights["fc.weight"] = np.zeros((n_classes, previous))
    weights["fc.bias"] = np.zeros(n_classes)
    return {k: v.astype(np.float32) for k, v in weights.items()}


def build_torch(weights: dict[str, np.ndarray]) -> Any:
    """The CNN as a ``torch.nn.Module`` (NCHW) with the given weights."""
    import torch
    from torch import nn

    c1, c2, c3 = (weights[f"conv{i}.weight"].shape[0] for i in (1, 2, 3))
    c0 = weights["conv1.weight"].shape[1]
    model = nn.Sequential()
    for name, module in (("conv1", nn.Conv2d(c0, c1, 3, padding=1)), ("relu1", nn.ReLU()),
                         ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(c1, c2, 3, padding=1)),
                         ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
                         ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU()),
                         ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                         ("fc", nn.Linear(c3, weights["fc.weight"].shape[0]))):
        model.add_module(name, module)
    model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
    return model.eval()


def build_keras(weights: dict[str, np.ndarray], size: int) -> Any:
    """The CNN as a Functional Keras model (NHWC, ``size x size``) with the given weights."""
    import keras

    c0 = weights["conv1.weight"].shape[1]
    inputs = keras.Input((size, size, c0), name="input")
    h = inputs
    for i in (1, 2, 3):
        h = keras.layers.Conv2D(weights[f"conv{i}.weight"].shape[0], 3, padding="same",
                                name=f"conv{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
        if i < 3:
            h = keras.layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    outputs = keras.layers.Dense(weights["fc.weight"].shape[0], name="fc")(h)
    model = keras.Model(inputs, outputs, name="clever_hans_cnn")
    for i in (1, 2, 3):
        model.get_layer(f"conv{i}").set_weights([
            np.transpose(weights[f"conv{i}.weight"], (2, 3, 1, 0)), weights[f"conv{i}.bias"]])
    model.get_layer("fc").set_weights([weights["fc.weight"].T, weights["fc.bias"]])
    return model


def batches(seed: int, n: int, batch_size: int, epochs: int) -> list[np.ndarray]:
    """Mini-batch indices of every epoch, shuffled with ``seed`` (shared by frameworks)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out += [order[a:a + batch_size] for a in range(0, n, batch_size)]
    return out


def train_small_cnn(framework: str, x: np.ndarray, y: np.ndarray, *, seed: int = 0,
                    epochs: int = 5, batch_size: int = 32, lr: float = 0.05,
                    momentum: float = 0.9) -> Any:
    """Build and train the CNN on channels-last images ``x`` in ``framework``.

    Parameters
    ----------
    framework
        ``"torch"`` or ``"keras"``.
    x, y
        Training images ``(N, H, W, C)`` (converted to NCHW for PyTorch) and labels.
    seed
        Seed of the initial weights and of the mini-batch order.
    epochs, batch_size, lr, momentum
        SGD settings.

    Returns
    -------
    The trained model (``torch.nn.Module`` in eval mode, or ``keras.Model``).
    """
    weights = init_weights(seed, in_channels=x.shape[-1], n_classes=int(y.max()) + 1)
    plan = batches(seed + 1, len(x), batch_size, epochs)
    if framework == "torch":
        return _train_torch(build_torch(weights), np.transpose(x, (0, 3, 1, 2)), y, plan,
                            lr, momentum)
    if framework == "keras":
        return _train_keras(build_keras(weights, x.shape[1]), x, y, plan, lr, momentum)
    raise OptionError(f"framework must be 'torch' or 'keras', got {framework!r}")


def _train_torch(model: Any, x: np.ndarray, y: np.ndarray, plan: list, lr: float,
                 momentum: float) -> Any:
    import torch
    import torch.nn.functional as F

    xs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    ys = torch.as_tensor(y, dtype=torch.int64)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    for index in plan:
        index = torch.as_tensor(index)
        optimizer.zero_grad()
        loss = F.cross_entropy(model(xs[index]), ys[index])
        loss.backward()
        optimizer.step()
    return model.eval()


def _train_keras(model: Any, x: np.ndarray, y: np.ndarray, plan: list, lr: float,
                 momentum: float) -> Any:
    import keras
    import tensorflow as tf

    optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=momentum)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            loss = loss_fn(yb, model(xb, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    xs = tf.constant(x, dtype=tf.float32)
    ys = tf.constant(y, dtype=tf.int64)
    for index in plan:
        step(tf.gather(xs, index), tf.gather(ys, index))
    return model


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of a PyTorch or Keras model on channels-last images (via its backend)."""
    from ..backends import get_backend
    backend = get_backend(model)
    images = np.transpose(x, (0, 3, 1, 2)) if backend.layout == "channels_first" else x
    with backend.session():
        outputs = backend.ops.to_numpy(backend.forward(backend.prepare(
            np.ascontiguousarray(images))))
    return float((outputs.argmax(axis=1) == y).mean())
