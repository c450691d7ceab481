"""A width-scalable Keras ResNet50 (layer names as ``keras.applications.ResNet50``).

The full benchmark uses ``keras.applications.ResNet50(weights=None)`` itself; this builder
gives the same architecture at a fraction of the width for ``--quick`` smoke runs.
"""
from __future__ import annotations

import keras
from keras import layers


def _block(x, filters: int, stride: int, shortcut: bool, name: str):
    if shortcut:
        skip = layers.Conv2D(4 * filters, 1, strides=stride, name=name + "_0_conv")(x)
        skip = layers.BatchNormalization(epsilon=1.001e-5, name=name + "_0_bn")(skip)
    else:
        skip = x
    x = layers.Conv2D(filters, 1, strides=stride, name=name + "_1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=name + "_1_bn")(x)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", name=name + "_2_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=name + "_2_bn")(x)
    x = layers.Activation("relu", name=name + "_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=name + "_3_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name=name + "_3_bn")(x)
    x = layers.Add(name=name + "_add")([skip, x])
    return layers.Activation("relu", name=name + "_out")(x)


def resnet50(size: int = 224, width: float = 1.0, classes: int = 1000) -> keras.Model:
    """ResNet50 v1 (channels-last, logits output) with every channel count times ``width``."""
    base = max(4, int(64 * width))
    inputs = keras.Input((size, size, 3), name="input_layer")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(base, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=1.001e-5, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (blocks, stride) in enumerate(((3, 1), (4, 2), (6, 2), (3, 2)), start=2):
        filters = base * 2 ** (stage - 2)
        for b in range(1, blocks + 1):
            x = _block(x, filters, stride if b == 1 else 1, b == 1, f"conv{stage}_block{b}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="resnet50")
