"""Shared helpers of the perturbation / layer / influence tests: the suite's cached
reference nets (tests/conftest.py ``Zoo``) in PyTorch and Keras with identical weights,
layout helpers, a scale-relative comparison and a model-state snapshot."""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from reference.zoo import Zoo  # noqa: E402  (the suite's cached reference models)

import crosslens as cl  # noqa: E402


def spec_of(kind: str = "small_cnn", seed: int = 0):
    return Zoo.spec(kind, seed)


def torch_model(kind: str = "small_cnn", seed: int = 0):
    """Cached float64 PyTorch build of the reference net (never mutate it)."""
    return Zoo.model("torch", kind, "float64", seed)


def keras_model(kind: str = "small_cnn", seed: int = 0):
    """Cached float64 Keras build with the same weights and layer names."""
    return Zoo.model("keras", kind, "float64", seed)


def inputs(kind: str = "small_cnn", seed: int = 0, batch: int = 2) -> np.ndarray:
    """Standard-normal NCHW batch for the net ``(kind, seed)``."""
    return spec_of(kind, seed).random_input(100 + seed, batch=batch)


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def nchw(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2))) if a.ndim == 4 else a


def assert_close(actual, desired, rtol: float = 1e-10, what: str = "") -> float:
    """``max|a - d| <= rtol · max|d|``; returns the relative error."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, (what, actual.shape, desired.shape)
    scale = np.abs(desired).max()
    assert scale > 0, f"{what}: the reference is all zeros (a vacuous comparison)"
    err = float(np.abs(actual - desired).max() / scale)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"
    return err


def explain_torch(x_nchw: np.ndarray, method: str, kind: str = "small_cnn", net: int = 0,
                  **kw) -> np.ndarray:
    return cl.explain(torch_model(kind, net), x_nchw, method, **kw).numpy()


def explain_keras(x_nchw: np.ndarray, method: str, kind: str = "small_cnn", net: int = 0,
                  **kw) -> np.ndarray:
    """Keras result for the same NCHW batch, returned channels-first."""
    return nchw(cl.explain(keras_model(kind, net), nhwc(x_nchw), method, **kw).numpy())


def state_of(model) -> dict:
    """Snapshot of a torch model's weights, modes and flags (to check it is untouched)."""
    return {"params": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                      for m in model.modules()]}


def assert_same_state(model, before: dict) -> None:
    after = state_of(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    for k, v in before["params"].items():
        assert (after["params"][k] == v).all(), k
