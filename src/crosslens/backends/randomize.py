"""Random parameter draws for model-randomization sanity checks (numpy only).

A randomized layer gets each trainable parameter replaced by Gaussian noise with the
parameter's own mean and standard deviation, so activations keep their scale while
every learned structure is destroyed (Adebayo et al. 2018 re-initialize; matching the
moments keeps deep nets from saturating). Draws are made in PyTorch's canonical
layout and seeded per (seed, layer name), so

- a cascade that randomizes one more layer per step keeps the earlier draws, and
- a PyTorch and a Keras model with the same weights get the same random weights.
"""
from __future__ import annotations

import zlib

import numpy as np


def layer_rng(seed: int | None, layer: str) -> np.random.Generator:
    """Generator for one layer's draws: depends on the seed and the layer name only."""
    canonical = layer.replace("/", ".")  # Keras nested names "a/b" == torch "a.b"
    entropy = [zlib.crc32(canonical.encode())] + ([] if seed is None else [int(seed)])
    if seed is None:
        entropy.append(int(np.random.SeedSequence().entropy % (2 ** 32)))
    return np.random.default_rng(entropy)


def random_like(values: np.ndarray, rng: np.random.Generator,
                to_native: tuple[int, ...] | None = None) -> np.ndarray:
    """Gaussian noise with the mean and std of ``values`` (a scalar gets N(mean, 0.1·|mean|)).

    ``to_native`` is the axis permutation from PyTorch's layout to the array's own (e.g.
    ``(2, 3, 1, 0)`` for a Keras conv kernel); the draw is made in PyTorch's layout.
    """
    values = np.asarray(values, dtype=np.float64)
    mean = float(values.mean()) if values.size else 0.0
    std = float(values.std()) if values.size > 1 else 0.0
    if std == 0.0:
        std = 0.1 * abs(mean) or 0.1
    shape = values.shape
    if to_native is not None:
        inverse = np.argsort(to_native)
        shape = tuple(shape[i] for i in inverse)
    draw = rng.normal(mean, std, size=shape)
    return draw if to_native is None else np.transpose(draw, to_native)
