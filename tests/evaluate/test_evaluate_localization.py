"""Pointing game and relevance mass on known answers, in either layout."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.core.errors import InputError
from crosslens.core.explanation import Explanation
from crosslens.evaluate import pointing_game, relevance_mass, relevance_maps


def test_relevance_mass_known_values():
    maps = np.zeros((3, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 3.0, 1.0  # 3 of 4 inside
    maps[1, 0, 1], maps[1, 2, 2] = 1.0, -5.0  # negative relevance ignored: all inside
    maps[2] = -1.0  # no positive relevance at all
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True
    mass = relevance_mass(maps, mask)
    np.testing.assert_allclose(mass[:2], [0.75, 1.0])
    assert np.isnan(mass[2])
    absolute = relevance_mass(maps, mask, positive=False)
    np.testing.assert_allclose(absolute, [0.75, 1 / 6, 0.25])


def test_channels_are_summed_in_either_layout():
    rng = np.random.default_rng(0)
    first = rng.standard_normal((2, 3, 5, 6))
    last = np.transpose(first, (0, 2, 3, 1))
    masks = rng.uniform(size=(2, 5, 6)) > 0.5
    reference = np.maximum(first.sum(axis=1), 0)
    expected = (reference * masks).sum(axis=(1, 2)) / reference.sum(axis=(1, 2))
    np.testing.assert_allclose(relevance_mass(first, masks, layout="channels_first"), expected)
    np.testing.assert_allclose(relevance_mass(last, masks, layout="channels_last"), expected)
    exp = Explanation(attributions=last, inputs=None, method="x", layout="channels_last")
    np.testing.assert_allclose(relevance_mass(exp, masks), expected)
    with pytest.raises(InputError, match="layout"):
        relevance_mass(first, masks)


def test_pointing_game_hits_misses_and_tolerance():
    maps = np.zeros((3, 8, 8))
    maps[0, 1, 1] = 1.0  # inside
    maps[1, 5, 1] = 1.0  # 3 rows below the mask's last row
    mask = np.zeros((8, 8), bool)
    mask[:3, :3] = True
    # sample 2: constant map, no maximum -> miss
    np.testing.assert_array_equal(pointing_game(maps, mask), [True, False, False])
    np.testing.assert_array_equal(pointing_game(maps, mask, tolerance=3), [True, True, False])
    np.testing.assert_array_equal(pointing_game(maps, mask, tolerance=2.9),
                                  [True, False, False])


def test_small_maps_are_upsampled_to_the_mask():
    from crosslens.viz import resize_bilinear
    cam = np.random.default_rng(1).standard_normal((2, 4, 4))
    mask = np.zeros((16, 16), bool)
    mask[:4, :4] = True
    up = np.stack([resize_bilinear(c, (16, 16)) for c in cam])
    np.testing.assert_allclose(relevance_mass(cam, mask), relevance_mass(up, mask))
    np.testing.assert_array_equal(pointing_game(cam, mask), pointing_game(up, mask))
    np.testing.assert_allclose(relevance_maps(cam, size=(16, 16)), up)


def test_mask_shape_errors_are_named():
    with pytest.raises(InputError, match="masks"):
        relevance_mass(np.zeros((2, 4, 4)), np.zeros((3, 4, 4), bool))
