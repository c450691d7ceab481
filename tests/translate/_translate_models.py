"""Small test networks (PyTorch and Keras) with non-trivial BatchNorm statistics."""

from __future__ import annotations

import numpy as np


def torch_small_cnn(seed=0):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
            self.relu1 = nn.ReLU()
            self.pool1 = nn.MaxPool2d(2)
            self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
            self.act2 = nn.Sigmoid()
            self.pool2 = nn.AvgPool2d(2)
            self.flatten = nn.Flatten()
            self.fc1 = nn.Linear(16 * 4 * 4, 32)
            self.relu3 = nn.ReLU6()
            self.fc2 = nn.Linear(32, 10)

        def forward(self, x):
            x = self.pool1(self.relu1(self.conv1(x)))
            x = self.pool2(self.act2(self.conv2(x)))
            return self.fc2(self.relu3(self.fc1(self.flatten(x))))

    return _randomize_bn(SmallCNN()).eval()


def torch_small_resnet(seed=0):
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.down is None else self.down(x)
            y = self.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            return self.relu(y + idt)

    class SmallResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.layer1 = Block(16, 16, 1)
            self.layer2 = Block(16, 32, 2)
            self.dw = nn.Conv2d(32, 32, 3, 1, 1, groups=32)  # depthwise
            self.hs = nn.Hardswish()
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)
            self.softmax = nn.Softmax(dim=1)

        def forward(self, x):
            x = self.layer2(self.layer1(self.stem(x)))
            x = self.hs(self.dw(x))
            x = torch.flatten(self.pool(x), 1)
            return self.softmax(self.fc(x)) * 10.0

    return _randomize_bn(SmallResNet()).eval()


def _randomize_bn(model):
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return model


def keras_small_cnn(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(name="pool1")(x)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="sigmoid", name="conv2")(x)
    x = L.AveragePooling2D(2, name="pool2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    out = L.Dense(10, name="fc2")(x)
    return _randomize_keras_bn(keras.Model(inp, out, name="keras_small_cnn"))


def keras_small_resnet(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((32, 32, 3), name="image")
    x = L.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.Activation("relu", name="stem_relu")(x)
    for i, (filters, stride) in enumerate([(16, 1), (32, 2)]):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"b{i}_conv1")(x)
        y = L.BatchNormalization(name=f"b{i}_bn1")(y)
        y = L.ReLU(name=f"b{i}_relu1")(y)
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=f"b{i}_conv2")(y)
        y = L.BatchNormalization(name=f"b{i}_bn2")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = L.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"b{i}_down")(x)
            x = L.BatchNormalization(name=f"b{i}_down_bn")(x)
        x = L.Add(name=f"b{i}_add")([x, y])
        x = L.ReLU(name=f"b{i}_out")(x)
    x = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.ReLU(max_value=6.0, name="relu6")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(10, name="logits")(x)
    out = L.Softmax(name="probs")(x)
    return _randomize_keras_bn(keras.Model(inp, out, name="keras_small_resnet"))


def _randomize_keras_bn(model):
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            n = gamma.shape[0]
            layer.set_weights(
                [
                    (rng.random(n) + 0.5).astype("float32"),
                    (rng.random(n) * 0.4 - 0.2).astype("float32"),
                    (rng.random(n) - 0.5).astype("float32"),
                    (rng.random(n) + 0.5).astype("float32"),
                ]
            )
    return model


def example_nchw(n=2, size=32, seed=0):
    return np.random.default_rng(seed).random((n, 3, size, size), dtype=np.float32)


def example_nhwc(n=2, size=32, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), dtype=np.float32)
