"""Shared fixtures: the reference nets built once per session in every framework flavour.

``zoo`` (session fixture) builds the nets of ``tests/reference`` (cached), converts arrays
between the numpy references' channels-first layout and each model's layout, and runs
``cl.explain`` returning channels-first numpy, so method tests read as
``zoo.explain(flavor, kind, x, method, ...) == methods_numpy.method(spec, x, ...)``.

Flavours: ``"torch"`` (nn.ReLU modules), ``"torch_functional"`` (F.relu, small_cnn only),
``"keras"`` (ReLU layers), ``"keras_fused"`` (Conv2D(activation="relu"), small_cnn only).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# One intra-op thread: the test nets are tiny, and on a shared 2-core machine torch's
# spinning OpenMP workers make a 64-step IG 20x slower than a single thread.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

from reference.zoo import BATCH, Zoo, nchw, nhwc, rel_err  # noqa: E402,F401


@pytest.fixture(scope="session")
def zoo() -> Zoo:
    return Zoo()
