"""Tiny seeded models on scikit-learn's 8x8 digits (no downloads, trained in seconds):
a classifier, an autoencoder whose decoder is a generator, and a denoiser."""
from __future__ import annotations

import functools

import numpy as np

LATENT = 8
NOISE = 0.2  # the denoiser's training noise std (images in [0, 1])


@functools.lru_cache(maxsize=None)
def data() -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 8, 8) in [0, 1], labels)``."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    return (digits.images / 16.0).astype(np.float64), digits.target.astype(np.int64)


def _train(model, loss_fn, steps: int, lr: float):
    """Full-batch Adam in float32 on one thread (tiny nets: threads only add overhead)."""
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def _mlp(sizes, final):
    from torch import nn
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers[-1] = final
    return layers


@functools.lru_cache(maxsize=None)
def classifier():
    """MLP (N, 1, 8, 8) -> 10 logits; float64."""
    import torch
    from torch import nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), *_mlp([64, 64, 10], nn.Identity()))
    images, labels = data()
    x, y = torch.tensor(images[:, None], dtype=torch.float32), torch.tensor(labels)
    return _train(model, lambda: nn.functional.cross_entropy(model(x), y), 150, 1e-2).double()


@functools.lru_cache(maxsize=None)
def autoencoder():
    """(encoder (N, 64) -> (N, LATENT), decoder (N, LATENT) -> (N, 1, 8, 8) in [0, 1])."""
    import torch
    from torch import nn
    torch.manual_seed(1)
    encoder = nn.Sequential(*_mlp([64, 64, LATENT], nn.Identity()))
    decoder = nn.Sequential(*_mlp([LATENT, 64, 64], nn.Sigmoid()), nn.Unflatten(1, (1, 8, 8)))
    x = torch.tensor(data()[0].reshape(-1, 64), dtype=torch.float32)
    both = nn.ModuleList([encoder, decoder])

    def loss():
        code = encoder(x)
        return ((decoder(code).reshape(-1, 64) - x) ** 2).mean() + 1e-3 * (code ** 2).mean()

    _train(both, loss, 400, 1e-2)
    return encoder.double().eval(), decoder.double().eval()


@functools.lru_cache(maxsize=None)
def denoiser():
    """(N, 1, 8, 8) noisy -> clean, trained on noise of std NOISE."""
    import torch
    from torch import nn
    torch.manual_seed(2)
    body = nn.Sequential(nn.Flatten(), *_mlp([64, 96, 64], nn.Identity()),
                         nn.Unflatten(1, (1, 8, 8)))
    x = torch.tensor(data()[0][:, None], dtype=torch.float32)
    gen = torch.Generator().manual_seed(3)

    def loss():
        noisy = x + NOISE * torch.randn(x.shape, generator=gen)
        return ((body(noisy) - x) ** 2).mean()

    return _train(body, loss, 400, 1e-2).double()


def keras_decoder():
    """The decoder with the same weights in Keras (NHWC output (N, 8, 8, 1))."""
    import keras
    _, decoder = autoencoder()
    dense = [m for m in decoder if m.__class__.__name__ == "Linear"]
    inp = keras.Input((LATENT,), dtype="float64")
    h = inp
    for i, lin in enumerate(dense):
        act = "relu" if i < len(dense) - 1 else "sigmoid"
        layer = keras.layers.Dense(lin.out_features, activation=act, dtype="float64")
        h = layer(h)
        layer.set_weights([lin.weight.detach().numpy().T, lin.bias.detach().numpy()])
    # torch's Unflatten gives (1, 8, 8) = (C, H, W); with one channel NHWC is a reshape
    out = keras.layers.Reshape((8, 8, 1), dtype="float64")(h)
    return keras.Model(inp, out)


def nearest_distance(images: np.ndarray) -> np.ndarray:
    """RMS distance of each (N, 8, 8, 1) image to its nearest training digit."""
    train = data()[0].reshape(-1, 64)
    flat = images.reshape(len(images), 64)
    d2 = (flat ** 2).sum(1)[:, None] - 2 * flat @ train.T + (train ** 2).sum(1)[None]
    return np.sqrt(np.maximum(d2.min(axis=1), 0) / 64)
