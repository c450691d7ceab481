"""The monitor's numbers against independent references, and the state guard."""
from __future__ import annotations

import random

import numpy as np
import pytest
from scipy.stats import spearmanr

from crosslens.monitor.measures import (channel_means, dead_share, mass_share, rank_rows,
                                        runner_up, spearman)
from crosslens.monitor.state import untouched


def test_spearman_equals_scipy_with_ties_and_nan_for_constant_maps():
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(5, 4, 6)), 1)  # rounding makes ties
    b = np.round(a + rng.normal(scale=0.5, size=a.shape), 1)
    expected = [spearmanr(p.ravel(), q.ravel()).statistic for p, q in zip(a, b)]
    np.testing.assert_allclose(spearman(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(spearman(a, a), 1.0)
    np.testing.assert_allclose(spearman(a, -a), -1.0)
    a[2] = 3.0
    assert np.isnan(spearman(a, b)[2]) and np.isfinite(np.delete(spearman(a, b), 2)).all()


def test_ranks_average_ties():
    np.testing.assert_array_equal(rank_rows(np.array([[3.0, 1.0, 3.0, 2.0]])),
                                  [[2.5, 0.0, 2.5, 1.0]])


def test_channel_statistics_against_loops():
    rng = np.random.default_rng(1)
    values = np.maximum(rng.normal(size=(3, 5, 4, 4)), 0)  # NCHW
    values[:, 2] = 0.0  # one dead channel
    values[0, 4] = 0.0  # zero for one probe only: alive
    means = [values[:, c].mean() for c in range(5)]
    np.testing.assert_allclose(channel_means(values, 1), means)
    np.testing.assert_allclose(channel_means(np.moveaxis(values, 1, -1), -1), means)
    assert dead_share(values, 1) == pytest.approx(1 / 5)
    assert dead_share(np.moveaxis(values, 1, -1), -1) == pytest.approx(1 / 5)


def test_mass_share_and_runner_up():
    maps = np.zeros((2, 4, 4))
    maps[0, :2, :2] = -1.0  # all mass inside, negative: the share counts |a|
    maps[1] = 1.0
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    np.testing.assert_allclose(mass_share(maps, mask), [1.0, 0.25])
    outputs = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0], [0.0, 5.0, 9.0]])
    np.testing.assert_array_equal(runner_up(outputs, np.array([0, 2, 1])), [1, 0, 2])


def test_untouched_restores_every_global_stream_and_the_modes():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout())
    model.train()
    model[1].eval()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    with untouched(model):
        random.random(), np.random.rand(3), torch.rand(5)  # what a careless method might draw
        model.eval()
    assert (random.random(), np.random.rand(), float(torch.rand(1))) == \
        (expected[0], expected[1], float(expected[2]))
    assert model.training and model[0].training and not model[1].training


def test_untouched_restores_keras_global_seed_generator():
    keras = pytest.importorskip("keras")
    pytest.importorskip("tensorflow")
    keras.utils.set_random_seed(3)
    keras.random.uniform((1,))  # creates the global seed generator
    keras.utils.set_random_seed(3)
    keras.random.uniform((1,))
    expected = np.asarray(keras.random.uniform((2,)))
    keras.utils.set_random_seed(3)
    keras.random.uniform((1,))
    with untouched(None):
        keras.random.uniform((4,))
    np.testing.assert_array_equal(np.asarray(keras.random.uniform((2,))), expected)


def test_mistakes_fail_when_the_monitor_is_built_and_name_the_fix():
    from crosslens import OptionError, UnknownMethodError
    from crosslens.monitor import Monitor

    x = np.zeros((2, 1, 16, 16), np.float32)
    with pytest.raises(UnknownMethodError):
        Monitor(x, methods=["no_such_method"])
    with pytest.raises(OptionError, match="probe_y"):
        Monitor(x, targets=["label"])
    with pytest.raises(OptionError, match="positive integer"):
        Monitor(x, every=0)
    with pytest.raises(OptionError, match="time_budget"):
        Monitor(x, time_budget=0)
    with pytest.raises(OptionError, match="'channels'"):
        Monitor(x, featurevis={"layer": "conv1"})
    with pytest.raises(OptionError, match="twice"):
        Monitor(x, methods=["saliency", "saliency"])
