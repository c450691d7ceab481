"""Bilinear resize (align_corners=False) against independent references."""

import numpy as np
import pytest

from crosslens.viz import resize_bilinear


def _reference(x, out_h, out_w):
    """Direct per-pixel 2-D formula (no separability, explicit loops)."""
    in_h, in_w = x.shape[:2]
    out = np.zeros((out_h, out_w) + x.shape[2:])
    for i in range(out_h):
        sy = max((i + 0.5) * in_h / out_h - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), in_h - 1)
        y1 = min(y0 + 1, in_h - 1)
        ly = sy - y0
        for j in range(out_w):
            sx = max((j + 0.5) * in_w / out_w - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), in_w - 1)
            x1 = min(x0 + 1, in_w - 1)
            lx = sx - x0
            out[i, j] = (
                (1 - ly) * (1 - lx) * x[y0, x0]
                + (1 - ly) * lx * x[y0, x1]
                + ly * (1 - lx) * x[y1, x0]
                + ly * lx * x[y1, x1]
            )
    return out


def test_hand_computed_upsample_2x2_to_4x4():
    x = np.array([[0.0, 1.0], [2.0, 3.0]])
    # Per axis, [a, b] -> [a, .75a + .25b, .25a + .75b, b] (border clamped).
    expected = np.array(
        [
            [0.0, 0.25, 0.75, 1.0],
            [0.5, 0.75, 1.25, 1.5],
            [1.5, 1.75, 2.25, 2.5],
            [2.0, 2.25, 2.75, 3.0],
        ]
    )
    np.testing.assert_allclose(resize_bilinear(x, (4, 4)), expected, atol=1e-12)


def test_hand_computed_downsample_averages_pairs():
    x = np.array([[0.0, 1.0, 2.0, 3.0]])
    # Half-pixel centers of a 2x downsample fall between source pixels.
    np.testing.assert_allclose(resize_bilinear(x, (1, 2)), [[0.5, 2.5]], atol=1e-12)


@pytest.mark.parametrize(
    "shape,size",
    [((3, 5), (7, 4)), ((7, 7), (224, 224)), ((10, 6), (3, 9)), ((4, 5, 3), (9, 2)), ((1, 4), (3, 7))],
)
def test_matches_loop_reference(shape, size):
    x = np.random.default_rng(0).standard_normal(shape)
    if size == (224, 224):  # keep the python-loop reference cheap
        got = resize_bilinear(x, size)[::17, ::13]
        ref = _reference(x, *size)[::17, ::13]
    else:
        got, ref = resize_bilinear(x, size), _reference(x, *size)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_linear_ramp_stays_linear_in_interior():
    in_h, in_w, out_h, out_w = 6, 9, 17, 25
    yy, xx = np.mgrid[0:in_h, 0:in_w].astype(float)
    ramp = 2.0 * yy - 3.0 * xx + 1.0
    out = resize_bilinear(ramp, (out_h, out_w))
    sy = (np.arange(out_h) + 0.5) * in_h / out_h - 0.5
    sx = (np.arange(out_w) + 0.5) * in_w / out_w - 0.5
    iy = (sy >= 0) & (sy <= in_h - 1)
    ix = (sx >= 0) & (sx <= in_w - 1)
    expected = 2.0 * sy[:, None] - 3.0 * sx[None, :] + 1.0
    np.testing.assert_allclose(out[np.ix_(iy, ix)], expected[np.ix_(iy, ix)], atol=1e-12)
    # Outside the interior the border is replicated (clamped), not extrapolated.
    assert out.max() <= ramp.max() + 1e-12 and out.min() >= ramp.min() - 1e-12


def test_identity_and_dtype():
    x = np.random.default_rng(1).random((5, 4, 2)).astype(np.float32)
    out = resize_bilinear(x, (5, 4))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x)
    assert resize_bilinear(np.ones((2, 2), dtype=np.uint8), (3, 3)).dtype == np.float64


def test_bad_input():
    with pytest.raises(ValueError):
        resize_bilinear(np.zeros((2, 2, 2, 2)), (3, 3))
    with pytest.raises(ValueError):
        resize_bilinear(np.zeros((2, 2)), (0, 3))


@pytest.mark.parametrize("shape,size", [((7, 7), (224, 224)), ((5, 9), (3, 4)), ((6, 4), (13, 11))])
def test_matches_torch_interpolate(shape, size):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).standard_normal(shape + (3,))
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]
    ref = torch.nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
    ref = ref[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(resize_bilinear(x, size), ref, rtol=0, atol=1e-10)
