"""Activation maximization in code space (Nguyen et al. 2016): optimize a generator's
latent code so that the generated image maximizes the objective.

The generator is any model crosslens has a backend for (it need not share the
classifier's framework). The chain rule runs across the two backends on the host:
``d objective / d z = J_G(z)^T (d objective / d image)``, the vector-Jacobian product
of the generator's backend (:meth:`~crosslens.core.backend.Backend.vjp`).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import InputError, OptionError
from .modelio import ModelIO, image_layout
from .params import Parameterization


class Generator:
    """A user generator ``G(z)`` producing images (in its framework's layout).

    Parameters
    ----------
    model
        The generator: latent batch ``(N, *latent_shape)`` -> images ``(N, C, H, W)``
        (PyTorch) or ``(N, H, W, C)`` (Keras).
    latent_shape : int or tuple of int
        Shape of one latent code.
    output_range : (float, float)
        The generator's output values that mean black and white (``(-1, 1)`` for tanh).
    latent_weight : float
        Weight of a Gaussian prior on the code, ``-latent_weight * mean(z²)`` added to the
        objective (keeps codes where the generator was trained).
    """

    def __init__(self, model: Any, latent_shape: int | tuple[int, ...],
                 output_range: tuple[float, float] = (0.0, 1.0),
                 latent_weight: float = 0.0) -> None:
        self.model = model
        self.latent_shape = (int(latent_shape),) if np.ndim(latent_shape) == 0 \
            else tuple(int(s) for s in latent_shape)
        self.output_range, self.latent_weight = output_range, float(latent_weight)

    def bind(self, batch: int) -> "GeneratorParam":
        from ..backends import get_backend
        return GeneratorParam(self, get_backend(self.model), batch)

    def __repr__(self) -> str:
        return f"Generator({type(self.model).__name__}, latent_shape={self.latent_shape})"


class GeneratorParam(Parameterization):
    """Parameters = latent codes; image = the generator's output mapped to ``[0, 1]``.

    Enter ``backend.session()`` before use; the image size is read from one forward
    pass (:meth:`setup`).
    """

    def __init__(self, generator: Generator, backend: Any, batch: int) -> None:
        self.generator, self.backend, self.batch = generator, backend, int(batch)
        self.shape = (self.batch,) + generator.latent_shape
        self.io: ModelIO | None = None

    def setup(self) -> None:
        """Find the output size and layout with one forward pass of a zero code."""
        out = self.backend.ops.to_numpy(self.backend.forward(
            self.backend.ops.asarray(np.zeros((1,) + self.generator.latent_shape))))
        if out.ndim != 4:
            raise InputError(f"the generator must output image batches (rank 4); got shape "
                             f"{out.shape}. Add a reshape to the generator's end")
        layout = image_layout(self.backend)
        channels = out.shape[1] if layout == "channels_first" else out.shape[3]
        self.io = ModelIO(layout, int(channels), self.generator.output_range)
        canonical = self.io.from_layout(out)
        self.size, self.channels = tuple(canonical.shape[1:3]), int(channels)

    def noise(self, rng, scale):
        return rng.standard_normal(self.shape)

    def forward(self, p):
        out = self.backend.forward(self.backend.ops.asarray(p))
        return self.io.decode(self.backend.ops.to_numpy(out))

    def vjp(self, p, grad_image):
        ops = self.backend.ops
        cot = ops.asarray(self.io.decode_vjp(grad_image))
        grad = ops.to_numpy(self.backend.vjp(ops.asarray(p), cot)).astype(np.float64)
        if self.generator.latent_weight:
            size = int(np.prod(self.generator.latent_shape))
            grad = grad - 2.0 * self.generator.latent_weight * p / size
        return grad

    def from_image(self, image):
        raise OptionError("a generator's codes cannot be computed from an image: pass "
                          "init='noise', 'mean' (the zero code) or an array of latent codes")

    def __repr__(self) -> str:
        return f"GeneratorParam({self.generator!r})"
