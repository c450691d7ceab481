"""Channel reduction, normalization and heatmap coloring."""

import numpy as np
import pytest

from crosslens.viz import heatmap_rgba, normalize, outlier_threshold, reduce_channels, to_display_image

KNOWN = np.array([[[1.0, -2.0, 2.0], [3.0, -4.0, 0.0]]])  # shape (1, 2, 3)


@pytest.mark.parametrize(
    "how,expected",
    [
        ("sum", [[1.0, -1.0]]),
        ("mean", [[1.0 / 3.0, -1.0 / 3.0]]),
        ("max_abs", [[-2.0, -4.0]]),  # first channel of largest |a|, sign kept
        ("l2", [[3.0, 5.0]]),
        ("abs_sum", [[5.0, 7.0]]),
    ],
)
def test_reduce_channels_known_values(how, expected):
    np.testing.assert_allclose(reduce_channels(KNOWN, how), expected, atol=1e-12)


def test_reduce_channels_2d_passthrough_and_bad_name():
    m = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(reduce_channels(m, "l2"), m)
    with pytest.raises(ValueError, match="sum, mean, max_abs, l2, abs_sum"):
        reduce_channels(KNOWN, "median")


@pytest.fixture
def signed_map():
    return np.random.default_rng(0).standard_normal((16, 12)) * 3.0


def test_normalize_max_abs(signed_map):
    n = normalize(signed_map, "max_abs")
    assert np.isclose(np.abs(n).max(), 1.0)
    np.testing.assert_array_equal(np.sign(n), np.sign(signed_map))
    np.testing.assert_allclose(n * np.abs(signed_map).max(), signed_map)


def test_normalize_sum(signed_map):
    n = normalize(signed_map, "sum")
    assert np.isclose(np.abs(n).sum(), 1.0)
    np.testing.assert_array_equal(np.sign(n), np.sign(signed_map))


def test_normalize_minmax(signed_map):
    n = normalize(signed_map, "minmax")
    assert n.min() == 0.0 and np.isclose(n.max(), 1.0)
    assert np.argmax(n) == np.argmax(signed_map)


def test_normalize_percentile_clips_outlier():
    a = np.linspace(-1.0, 1.0, 1001)
    a[500] = 1000.0  # outlier above the 99.5th percentile of |a|
    n = normalize(a, "percentile")
    p = np.percentile(np.abs(a), 99.5)
    assert n[500] == 1.0 and n.min() == -1.0
    np.testing.assert_allclose(n, np.clip(a, -p, p) / p)
    assert np.abs(n[10:490]).max() < 1.0  # the bulk is not saturated


def test_normalize_degenerate_and_bad_name():
    z = np.zeros((3, 3))
    for how in ("max_abs", "minmax", "sum", "percentile"):
        assert np.array_equal(normalize(z, how), z)
    assert np.array_equal(normalize(np.full((2, 2), 5.0), "minmax"), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="max_abs, minmax, sum, percentile"):
        normalize(z, "zscore")


def test_to_display_image():
    u8 = np.array([[[0, 128, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(to_display_image(u8), u8 / 255.0)
    f = np.array([[-1.0, 1.0], [0.0, 3.0]])  # grayscale, arbitrary range
    out = to_display_image(f)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[..., 0], [[0.0, 0.5], [0.25, 1.0]])
    assert np.array_equal(out[..., 0], out[..., 2])
    const = to_display_image(np.full((2, 2, 1), 7.0))
    assert np.isfinite(const).all() and const.min() >= 0 and const.max() <= 1


def test_signed_heatmap_colors():
    m = np.array([[0.0, 2.0, -2.0, 1.0]])
    rgba = heatmap_rgba(m, signed=True, scale="max_abs")
    np.testing.assert_allclose(rgba[0, 0], [1.0, 1.0, 1.0, 0.0])  # zero: white, transparent
    r, g, b, a = rgba[0, 1]
    assert r > 0.9 and g < 0.1 and b < 0.1 and a == 1.0  # positive: red
    r, g, b, a = rgba[0, 2]
    assert b > 0.9 and r < 0.1 and g < 0.1 and a == 1.0  # negative: blue
    r, g, b, a = rgba[0, 3]
    assert r > b and r > g and 0.0 < a < 1.0  # half positive: lighter red, partial alpha


def test_absolute_heatmap_uses_magnitude():
    from matplotlib import colormaps

    m = np.array([[0.0, -4.0, 4.0]])
    rgba = heatmap_rgba(m, signed=False, scale="max_abs")
    np.testing.assert_allclose(rgba[0, 1], rgba[0, 2])  # sign ignored
    np.testing.assert_allclose(rgba[0, 2, :3], colormaps["inferno"](1.0)[:3])
    assert rgba[0, 0, 3] == 0.0 and rgba[0, 2, 3] == 1.0


def test_heatmap_percentile_saturates_outliers_and_sparse_maps():
    m = np.zeros((20, 20))
    m[0, 0] = 5.0  # a single non-zero pixel holds all the mass: it sets the scale
    assert outlier_threshold(m) == 5.0
    rgba = heatmap_rgba(m, signed=True)
    assert rgba[0, 0, 3] == 1.0 and rgba[1, 1, 3] == 0.0
    m[0, 1] = 1000.0  # an outlier holding more than 2 % of the mass sets the scale
    assert outlier_threshold(m, 0.0) == 1000.0 and outlier_threshold(m, 2.0) == 1000.0
    bulk = np.linspace(1.0, 2.0, 3600).reshape(60, 60)
    bulk[0, 0] = 50.0  # holds < 1 % of the mass: clipped, so it cannot wash out the bulk
    t = outlier_threshold(bulk, 2.0)
    assert 1.9 < t < 2.0
    alpha = heatmap_rgba(bulk, signed=True)[..., 3]
    assert alpha[0, 0] == 1.0 and alpha[1:30].max() < 1.0
    assert np.all(np.isfinite(heatmap_rgba(np.zeros((3, 3)), signed=True)))
