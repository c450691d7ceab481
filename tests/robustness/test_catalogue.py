"""Runs the catalogue (``catalogue.py``): a specific error naming cause and fix, or the
reference numbers; and in every case the model and the global random streams unchanged."""
from __future__ import annotations

import random

import numpy as np
import pytest

import crosslens as cl
from crosslens.core.arrays import framework_of_array, to_numpy

from .catalogue import CASES
from .fingerprint import assert_unchanged, fingerprint


def rng_state() -> tuple:
    """Every global random stream a call could advance."""
    import tensorflow as tf
    import torch
    return (random.getstate(), np.random.get_state()[1].tobytes(),
            torch.get_rng_state().numpy().tobytes(),
            tf.random.get_global_generator().state.numpy().tobytes())


def test_catalogue_is_wide():
    assert len(CASES) >= 150, len(CASES)
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"
    kinds = {"error": sum(c.error is not None for c in CASES),
             "reference": sum(c.reference is not None for c in CASES)}
    assert kinds["error"] + kinds["reference"] == len(CASES)
    assert min(kinds.values()) >= 50, kinds


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case):
    model, x = case.model(), case.x()
    before = fingerprint(model) if model is not None else None
    streams = rng_state()
    if case.error is not None:
        with pytest.raises(cl.CrosslensError) as raised:
            case.call(model, x)
        error = raised.value
        assert isinstance(error, case.error), f"{type(error).__name__}: {error}"
        message = str(error).lower()
        missing = [word for word in case.words if word.lower() not in message]
        assert not missing, f"message lacks {missing}: {error}"
    else:
        got = case.call(model, x)
        want = case.reference(model, x)
        assert_equal(got, want, case.tol)
        if getattr(case.reference, "same_type", False):
            like = x if hasattr(x, "shape") else (
                next(iter(x.values())) if isinstance(x, dict) else x[0])
            assert framework_of_array(got) == framework_of_array(like)
    if before is not None:
        assert_unchanged(model, before)
    assert rng_state() == streams, "a call advanced a global random stream"


def assert_equal(got, want, tol: float) -> None:
    """Structures equal leaf by leaf; arrays to ``tol`` relative to their scale."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want)
        for key in want:
            assert_equal(got[key], want[key], tol)
        return
    if isinstance(want, (tuple, list)):
        assert isinstance(got, type(want)) and len(got) == len(want), (type(got), got)
        for g, w in zip(got, want):
            assert_equal(g, w, tol)
        return
    if want is None or isinstance(want, (str, bool)):
        assert got == want
        return
    got = np.asarray(to_numpy(got), dtype=np.float64)
    want = np.asarray(to_numpy(want), dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    scale = max(float(np.abs(want).max()) if want.size else 0.0, 1.0 if not want.any() else 0)
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= tol * max(scale, 1e-30), f"max error {err:.3g} > {tol:g} x {scale:.3g}"
