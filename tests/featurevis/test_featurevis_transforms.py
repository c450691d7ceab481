"""Transforms do what they say, and their adjoints are exact."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.featurevis.transforms import (Compose, Jitter, Pad, RandomRotate, RandomScale,
                                             Resize, Roll, standard_transforms)
from crosslens.viz import resize_bilinear

RNG = np.random.default_rng(0)


def images(n=3, h=12, w=10, c=3):
    return RNG.standard_normal((n, h, w, c))


def test_jitter_is_a_random_shift():
    x = images()
    out, states = Jitter(4).forward(x, np.random.default_rng(3))
    offsets = states[0][1].matrices[:, :2, 2].astype(int)  # the drawn (dy, dx)
    assert out.shape == (3, 8, 6, 3)
    assert len({tuple(o) for o in offsets}) > 1  # drawn per image
    for i, (oy, ox) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], x[i, oy:oy + 8, ox:ox + 6])
        assert 0 <= oy <= 4 and 0 <= ox <= 4


def test_roll_is_a_circular_shift():
    x = images()
    out, offsets = Roll(3).forward(x, np.random.default_rng(1))
    for i, (dy, dx) in enumerate(offsets):
        np.testing.assert_array_equal(out[i], np.roll(x[i], (dy, dx), axis=(0, 1)))
    assert np.abs(offsets).max() <= 3


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "symmetric"])
def test_pad_matches_numpy(mode):
    x = images()
    out, _ = Pad(3, mode=mode, value=0.25).forward(x, RNG)
    kwargs = {"constant_values": 0.25} if mode == "constant" else {}
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode=mode,
                                              **kwargs))


def test_rotation_by_zero_and_scale_one_are_identity():
    x = images()
    for t in (RandomRotate([0.0]), RandomScale([1.0])):
        out, _ = t.forward(x, RNG)
        np.testing.assert_allclose(out, x, atol=1e-12)


@pytest.mark.parametrize("degrees,k", [(90, 1), (180, 2), (-90, -1)])
def test_rotation_by_quarter_turns_is_rot90(degrees, k):
    """Rotation by 90 degrees (counter-clockwise as displayed) is a transpose then a
    vertical flip (np.rot90)."""
    x = images(h=9, w=9)
    out, _ = RandomRotate([degrees]).forward(x, RNG)
    np.testing.assert_allclose(out, np.rot90(x, k=k, axes=(1, 2)), atol=1e-12)
    if degrees == 90:
        np.testing.assert_allclose(out, np.transpose(x, (0, 2, 1, 3))[:, ::-1], atol=1e-12)


def test_scale_two_magnifies_about_the_centre():
    """Zoom by 2 of a linear ramp: the ramp's slope doubles about the centre."""
    ramp = np.tile(np.arange(16.0)[None, :, None], (16, 1, 1))[None]
    out, _ = RandomScale([2.0]).forward(ramp, RNG)
    inner = out[0, 8, 4:12, 0]
    np.testing.assert_allclose(np.diff(inner), 0.5)  # source steps of 1/2 pixel
    assert np.isclose(out[0, 8, 7:9, 0].mean(), 7.5)


def test_out_of_image_samples_take_the_fill_value():
    x = np.zeros((1, 10, 10, 1))
    out, _ = RandomScale([0.5], fill=0.7).forward(x, RNG)
    assert np.isclose(out[0, 0, 0, 0], 0.7) and np.isclose(out[0, 5, 5, 0], 0.0)


def test_resize_matches_viz_resize_bilinear():
    x = images(n=2, h=7, w=9)
    out, _ = Resize((16, 11)).forward(x, RNG)
    for i in range(2):
        np.testing.assert_allclose(out[i], resize_bilinear(x[i], (16, 11)), atol=1e-12)


def _linear(transforms):
    """The same transforms with fill 0 (so the map is linear, not affine)."""
    for t in transforms:
        if hasattr(t, "fill"):
            t.fill = 0.0
        if isinstance(t, Pad):
            t.value = t.fill = 0.0
    return Compose(transforms)


@pytest.mark.parametrize("transforms", [
    [Pad(3, value=0.0)], [Pad(3, mode="reflect")], [Jitter(3)], [Roll(4)],
    [RandomScale([0.8, 1.2])], [RandomRotate([-17, 33])], [Resize((20, 7))],
    standard_transforms(), standard_transforms() + [Resize((11, 13))],
], ids=lambda t: repr(t))
def test_adjoint_is_exact(transforms):
    """<T x, g> == <x, T* g> for the same random draw."""
    compose = _linear(transforms)
    x = images(n=2, h=30, w=26)
    out, state = compose.forward(x, np.random.default_rng(5))
    g = RNG.standard_normal(out.shape)
    lhs, rhs = np.sum(out * g), np.sum(x * compose.adjoint(g, state))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_pad_jitter_and_rotation_fuse_into_one_exact_resampling():
    """pad 3 + jitter + rot90 as one resampling equals the sequential numpy ops."""
    x = images(h=9, w=9)
    rng = np.random.default_rng(4)
    out, states = Compose([Pad(3, value=0.2), Jitter(2), RandomRotate([90], fill=0.2)]
                          ).forward(x, rng)
    assert len(states) == 1 and out.shape == (3, 13, 13, 3)
    offsets = np.random.default_rng(4).integers(0, 3, size=(3, 2))
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), constant_values=0.2)
    for i, (oy, ox) in enumerate(offsets):
        expected = np.rot90(padded[i, oy:oy + 13, ox:ox + 13], axes=(0, 1))
        np.testing.assert_allclose(out[i], expected, atol=1e-12)


def test_consecutive_warps_are_fused_into_one_resampling():
    x = images(h=16, w=16)
    fused, _ = Compose([RandomRotate([90]), RandomRotate([-90])]).forward(x, RNG)
    np.testing.assert_allclose(fused, x, atol=1e-12)
    rotated, _ = Compose([RandomScale([1.25]), RandomRotate([30])]).forward(x, RNG)
    ref, _ = Compose([RandomRotate([30]), RandomScale([1.25])]).forward(x, RNG)
    np.testing.assert_allclose(rotated, ref, atol=1e-12)  # scalar zoom commutes with rotation


def test_draws_depend_on_the_seed_only():
    x = images(h=40, w=40)
    a, _ = Compose(standard_transforms()).forward(x, np.random.default_rng(7))
    b, _ = Compose(standard_transforms()).forward(x, np.random.default_rng(7))
    c, _ = Compose(standard_transforms()).forward(x, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
