"""Compositing heatmaps over images."""

import numpy as np

from crosslens.viz import is_signed, overlay


def _photo(h=12, w=10):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_zero_map_returns_original_image_exactly():
    img = _photo()
    for signed in (None, True, False):
        out = overlay(img, np.zeros((12, 10)), signed=signed)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, img)
    # Also through the resize path (a coarse Grad-CAM-sized map) and channels.
    np.testing.assert_array_equal(overlay(img, np.zeros((3, 2, 4))), img)


def test_zero_map_float_and_gray_images():
    gray = np.linspace(0.0, 1.0, 20).reshape(4, 5)
    out = overlay(gray, np.zeros((4, 5)))
    np.testing.assert_array_equal(out, np.repeat(np.rint(gray * 255)[..., None], 3, -1).astype(np.uint8))


def test_saturated_pixels_take_colormap_color():
    img = np.full((2, 2, 3), 128, dtype=np.uint8)
    m = np.array([[3.0, -3.0], [0.0, 0.0]])
    out = overlay(img, m, alpha=1.0, scale="max_abs")
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])
    np.testing.assert_array_equal(out[1], img[1])


def test_overlay_keeps_untouched_regions_and_tints_hot_ones():
    img = _photo()
    m = np.zeros((12, 10))
    m[2:5, 2:5] = 1.0
    out = overlay(img, m, signed=True, alpha=0.6)
    np.testing.assert_array_equal(out[8:, :], img[8:, :])
    hot = out[2:5, 2:5].astype(int) - img[2:5, 2:5].astype(int)
    assert (hot[..., 0] >= 0).all() and hot[..., 0].sum() > 0  # pushed towards red


def test_auto_sign_detection():
    rng = np.random.default_rng(0)
    pos = rng.random((8, 8))
    assert not is_signed(pos)
    assert not is_signed(pos - 1e-4 * rng.random((8, 8)) * (pos < 0.05))  # tiny negative noise
    assert is_signed(rng.standard_normal((8, 8)))
    assert is_signed(-pos)
    assert not is_signed(np.zeros((3, 3)))
