"""The mask visualizers (numpy) and the channel-mask pipeline on real models."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
from crosslens.viz import apply_mask, attribution_mask, channel_mask, mask_image


def _image(h=16, w=16):
    return np.random.default_rng(0).uniform(0.1, 1.0, (h, w, 3))


def test_top_fraction_without_blur_keeps_exactly_that_fraction():
    attr = np.random.default_rng(1).standard_normal((20, 20))
    for keep in (0.05, 0.1, 0.5, 1.0):
        mask = attribution_mask(attr, keep, blur_sigma=0)
        assert mask.sum() == int(np.ceil(keep * 400))
        assert np.abs(attr[mask]).min() >= np.abs(attr[~mask]).max() if keep < 1 else True
    positive = attribution_mask(attr, 0.1, sign="positive", blur_sigma=0)
    negative = attribution_mask(attr, 0.1, sign="negative", blur_sigma=0)
    assert attr[positive].min() > 0 and attr[negative].max() < 0


def test_blur_and_threshold_remove_isolated_pixels_and_keep_blobs():
    attr = np.zeros((32, 32))
    attr[8:16, 8:16] = 1.0      # a blob of 64 pixels
    attr[25, 25] = 1.0          # an isolated pixel
    mask = attribution_mask(attr, 65 / 1024, blur_sigma=1.5, threshold=0.5)
    assert mask[10:14, 10:14].all() and not mask[25, 25]
    assert not mask[:6].any() and not mask[:, 20:].any()


def test_mask_image_and_channels_last_attributions():
    image = _image()
    attr = np.zeros((16, 16, 3))
    attr[4:8, 4:8, 0] = 2.0
    masked, mask = mask_image(image, attr, keep=16 / 256, blur_sigma=0, background=-1.0,
                              return_mask=True)
    assert mask.sum() == 16 and mask[4:8, 4:8].all()
    np.testing.assert_array_equal(masked[mask], image[mask])
    assert (masked[~mask] == -1.0).all() and masked.shape == image.shape
    # a map at another resolution is resized to the image
    small = np.zeros((8, 8))
    small[0:2, 0:2] = 1.0
    assert mask_image(image, small, keep=0.05, blur_sigma=0, return_mask=True)[1][:3, :3].all()


def test_channel_mask_thresholds_relative_to_the_maximum():
    image = _image()
    amap = np.linspace(0, 1, 256).reshape(16, 16)
    masked, mask = channel_mask(image, amap, threshold=0.75, return_mask=True)
    np.testing.assert_array_equal(mask, amap >= 0.75)
    np.testing.assert_array_equal(masked, apply_mask(image, mask))
    assert not channel_mask(image, -amap, return_mask=True)[1].any()  # never active


def test_invalid_arguments():
    with pytest.raises(ValueError, match="keep"):
        attribution_mask(np.ones((4, 4)), 0.0)
    with pytest.raises(ValueError, match="sign"):
        attribution_mask(np.ones((4, 4)), 0.5, sign="both")
    with pytest.raises(ValueError, match="does not match"):
        apply_mask(np.ones((4, 4, 3)), np.ones((3, 3), bool))


@pytest.mark.parametrize("flavor", ["torch", "keras"])
def test_channel_mask_pipeline_shows_where_the_channel_fires(zoo, flavor):
    model = zoo.model(flavor, "small_cnn")
    x = zoo.to_model(flavor, zoo.x("small_cnn"))
    exp = cl.explain(model, x, "channel_mask", layer=zoo.layer(flavor, "relu2"), channel=7)
    images, maps = exp.images(), exp.image_maps()
    masked, mask = channel_mask(images[0], maps[0], threshold=0.5, return_mask=True)
    assert mask.any() and not mask.all()
    np.testing.assert_array_equal(mask, maps[0] >= 0.5 * maps[0].max())
    np.testing.assert_array_equal(masked[mask], images[0][mask])
