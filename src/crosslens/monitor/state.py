"""Leave training exactly as it was: random streams and module modes around a step.

The crosslens backends already restore each module's ``training`` flag and each
parameter's ``requires_grad``, and take gradients with ``torch.autograd.grad`` / a tape
(never writing ``.grad``); methods draw randomness from their own seeded numpy
generators. This guard is the second line: whatever the monitor runs (a method that
does draw from a global stream, feature visualization, a user's sink), the global
random streams a training loop reads (Python, numpy, torch CPU/CUDA, Keras' global
seed generator, TensorFlow's global generator) and the PyTorch modes are put back
afterwards. Frameworks are only touched when the training loop already imported them.
"""
from __future__ import annotations

import contextlib
import random
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np


def _torch_streams() -> tuple[Any, Any] | None:
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_torch_streams(saved: tuple[Any, Any] | None) -> None:
    if saved is None:
        return
    torch = sys.modules["torch"]
    torch.set_rng_state(saved[0])
    if saved[1] is not None:
        torch.cuda.set_rng_state_all(saved[1])


def _keras_generators() -> list[tuple[Any, Any]]:
    """``(variable, value)`` of the global seed states that already exist (none is
    created: creating one would itself change what training draws)."""
    saved = []
    if "keras" in sys.modules:
        try:  # Keras 3's internal home of the global generator
            from keras.src.backend.common import global_state
            from keras.src.random.seed_generator import GLOBAL_SEED_GENERATOR
        except ImportError:
            global_state = None
        generator = None if global_state is None else \
            global_state.get_global_attribute(GLOBAL_SEED_GENERATOR)
        if generator is not None:
            saved.append((generator.state, np.array(generator.state.numpy())))
    stateful = sys.modules.get("tensorflow.python.ops.stateful_random_ops")
    if stateful is not None and stateful.global_generator is not None:
        state = stateful.global_generator.state
        saved.append((state, np.array(state.numpy())))
    return saved


def _torch_modes(model: Any) -> list[tuple[Any, bool]]:
    modules = getattr(model, "modules", None)
    if "torch" not in sys.modules or not callable(modules):
        return []
    return [(m, m.training) for m in modules()]


@contextlib.contextmanager
def untouched(model: Any) -> Iterator[None]:
    """Run the body and restore the global random streams and the model's modes."""
    python, numpy_state = random.getstate(), np.random.get_state()
    torch_state, generators = _torch_streams(), _keras_generators()
    modes = _torch_modes(model)
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy_state)
        _set_torch_streams(torch_state)
        for variable, value in generators:
            variable.assign(value)
        for module, training in modes:
            module.training = training
