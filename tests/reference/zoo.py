"""Cached reference models for the test suites (importable as ``reference.zoo``)."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from . import builders
from .nets import SMALL_CNN, SMALL_RESNET, make_net

BATCH = 3


def nhwc(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 2, 3, 1)))


def nchw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (0, 3, 1, 2)))


def rel_err(actual: Any, desired: Any) -> float:
    """max |a - d| / max |d| (relative to the array's scale)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    assert actual.shape == desired.shape, (actual.shape, desired.shape)
    return float(np.abs(actual - desired).max() / max(np.abs(desired).max(), 1e-300))


class Zoo:
    """Cached reference models and layout helpers (see the module docstring)."""

    kinds = (SMALL_CNN, SMALL_RESNET)
    nhwc = staticmethod(nhwc)
    nchw = staticmethod(nchw)
    rel_err = staticmethod(rel_err)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def spec(kind: str, seed: int = 0):
        return make_net(kind, seed)

    def x(self, kind: str, seed: int = 0, dtype=np.float64) -> np.ndarray:
        """The standard NCHW test batch (3 samples, 16x16)."""
        return self.spec(kind, seed).random_input(1000 + seed, batch=BATCH).astype(dtype)

    @staticmethod
    def model(flavor: str, kind: str, dtype: str = "float64", seed: int = 0):
        """A cached model; never mutate it (tests that change state build their own)."""
        return Zoo._cached(flavor, kind, dtype, seed)

    @staticmethod
    @functools.lru_cache(maxsize=None)
    def _cached(flavor: str, kind: str, dtype: str, seed: int):
        return Zoo.build(flavor, kind, dtype, seed)

    @staticmethod
    def build(flavor: str, kind: str, dtype: str = "float64", seed: int = 0):
        spec = Zoo.spec(kind, seed)
        if flavor.startswith("torch"):
            import torch
            tdtype = getattr(torch, dtype)
            if flavor == "torch_functional":
                return builders.build_torch_functional_relu(spec, dtype=tdtype)
            return builders.build_torch(spec, dtype=tdtype)
        return builders.build_keras(spec, dtype=dtype, fused_relu=(flavor == "keras_fused"))

    # --- layouts -------------------------------------------------------------------
    @staticmethod
    def is_keras(flavor: str) -> bool:
        return flavor.startswith("keras")

    def to_model(self, flavor: str, value: Any) -> Any:
        """NCHW numpy (or (S, N, C, H, W) noise, or a list of them) -> the model's layout."""
        if not self.is_keras(flavor):
            return value
        if isinstance(value, list):
            return [self.to_model(flavor, v) for v in value]
        if isinstance(value, np.ndarray) and value.ndim == 3:
            return np.ascontiguousarray(np.transpose(value, (1, 2, 0)))
        if isinstance(value, np.ndarray) and value.ndim == 4:
            return nhwc(value)
        if isinstance(value, np.ndarray) and value.ndim == 5:
            return np.ascontiguousarray(np.transpose(value, (0, 1, 3, 4, 2)))
        return value

    def from_model(self, flavor: str, value: Any) -> np.ndarray:
        """An attribution in the model's layout -> NCHW numpy."""
        from crosslens.core.arrays import to_numpy
        value = np.asarray(to_numpy(value))
        if self.is_keras(flavor) and value.ndim == 4:
            return nchw(value)
        return value

    @staticmethod
    def layer(flavor: str, name: str | None) -> str | None:
        """Torch-style layer name -> the flavour's spelling (Keras nests with "/")."""
        if name is None:
            return None
        return name.replace(".", "/") if flavor.startswith("keras") else name

    def explain(self, flavor: str, kind: str, x: np.ndarray, method: str, *,
                dtype: str = "float64", model: Any = None, **options: Any):
        """``cl.explain`` on the flavour's model with NCHW numpy in and out.

        Array options (``baseline``, ``noise``) are given channels-first and converted.
        Returns ``(attributions as NCHW float64 numpy, Explanation)``.
        """
        import crosslens as cl

        model = self.model(flavor, kind, dtype) if model is None else model
        for key in ("baseline", "noise"):
            if key in options:
                options[key] = self.to_model(flavor, options[key])
        if "layer" in options and isinstance(options["layer"], str):
            options["layer"] = self.layer(flavor, options["layer"])
        exp = cl.explain(model, self.to_model(flavor, x), method, **options)
        return self.from_model(flavor, exp.attributions).astype(np.float64), exp

    # --- checks --------------------------------------------------------------------
    @staticmethod
    def assert_close(actual: Any, desired: Any, rtol: float, what: str = "") -> float:
        """Assert max |a - d| <= rtol · max |d|; returns the relative error."""
        err = rel_err(actual, desired)
        assert np.abs(np.asarray(desired)).max() > 0, f"{what}: reference is all zeros"
        assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.0e}"
        return err


