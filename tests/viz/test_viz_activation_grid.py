"""Tiling layer activations."""

import numpy as np
import pytest

from crosslens.viz import activation_grid


def test_channel_k_lands_in_its_tile():
    h, w, c, k = 5, 4, 10, 7
    act = np.zeros((h, w, c))
    act[1, 2, k] = 9.0  # distinctive pixel in channel k only
    grid = activation_grid(act, ncols=4, pad_value=0.5)
    assert grid.shape == (3 * h + 2, 4 * w + 3)
    r, col = divmod(k, 4)
    y0, x0 = r * (h + 1), col * (w + 1)
    tile = grid[y0 : y0 + h, x0 : x0 + w]
    expected = np.zeros((h, w))
    expected[1, 2] = 1.0
    np.testing.assert_array_equal(tile, expected)
    assert np.argwhere(grid == 1.0).tolist() == [[y0 + 1, x0 + 2]]
    # Separators carry pad_value; the 2 trailing empty tiles too.
    assert (grid[h, :] == 0.5).all() and (grid[:, w] == 0.5).all()
    assert (grid[2 * (h + 1) :, 2 * (w + 1) :] == 0.5).all()


def test_per_channel_vs_global_normalization():
    act = np.stack([np.full((3, 3), 1.0), np.arange(9.0).reshape(3, 3) * 10], -1)
    per = activation_grid(act, ncols=2, pad_value=0.0)
    glob = activation_grid(act, ncols=2, normalize="global", pad_value=0.0)
    assert per.min() >= 0 and per.max() <= 1 and glob.min() >= 0 and glob.max() <= 1
    np.testing.assert_array_equal(per[:, :3], 0.0)  # constant channel -> 0
    np.testing.assert_allclose(per[:, 4:], np.arange(9.0).reshape(3, 3) / 8)
    np.testing.assert_allclose(glob[:, :3], 1.0 / 80)


def test_max_channels_batch_axis_and_default_cols():
    act = np.random.default_rng(0).random((1, 4, 4, 100))
    grid = activation_grid(act, max_channels=16)
    assert grid.shape == (4 * 4 + 3, 4 * 4 + 3)  # 16 channels -> 4 x 4 tiles
    with pytest.raises(ValueError):
        activation_grid(act, normalize="zscore")


def test_dense_activations_near_square_tile():
    v = np.arange(10.0)
    grid = activation_grid(v, pad_value=1.0)
    assert grid.shape == (3, 4)
    np.testing.assert_allclose(grid.ravel()[:10], v / 9.0)
    assert (grid.ravel()[10:] == 1.0).all()
