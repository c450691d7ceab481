"""Every CAM method equals its numpy reference (float64) on PyTorch and Keras models."""
from __future__ import annotations

import numpy as np
import pytest

from cam import cam_numpy as ref

FLAVORS = ("torch", "keras")
TARGET = np.array([0, 2, 4])
CLASS_METHODS = ("gradcam", "gradcam_plus_plus", "layercam", "scorecam", "cam", "hirescam",
                 "gradcam_elementwise", "xgradcam")


def _reference(zoo, method, kind, layer, target=TARGET, **options):
    spec, x = zoo.spec(kind), zoo.x(kind)
    if method == "eigencam":
        return ref.eigencam(spec, x, layer, **options)
    if method == "guided_gradcam":
        return ref.guided_gradcam(spec, x, target, layer, **options)
    return getattr(ref, method)(spec, x, target, layer, **options)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", CLASS_METHODS + ("eigencam", "guided_gradcam", "ablationcam"))
def test_matches_numpy_reference_at_named_layer(zoo, flavor, method):
    ours, exp = zoo.explain(flavor, "small_cnn", zoo.x("small_cnn"), method,
                            target=TARGET.tolist(), layer="relu2")
    zoo.assert_close(ours, _reference(zoo, method, "small_cnn", "relu2"), 1e-10, method)
    if method != "guided_gradcam":
        assert ours.shape == (3, 16, 16) and exp.image_maps().shape == (3, 16, 16)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", CLASS_METHODS)
def test_default_layer_is_last_spatial_layer(zoo, flavor, method):
    """small_resnet: the block output (torch module "block", nested Keras model "block")."""
    ours, exp = zoo.explain(flavor, "small_resnet", zoo.x("small_resnet"), method,
                            target=TARGET.tolist())
    assert exp.layer == "block" and exp.info["cam_layer"] == "block"
    zoo.assert_close(ours, _reference(zoo, method, "small_resnet", "block"), 1e-10, method)


def test_default_layer_with_fused_relu(zoo):
    """Conv2D(activation="relu"): the last spatial layer is conv2, whose output is relu2's."""
    ours, exp = zoo.explain("keras_fused", "small_cnn", zoo.x("small_cnn"), "gradcam",
                            target=TARGET.tolist())
    assert exp.layer == "conv2"
    zoo.assert_close(ours, _reference(zoo, "gradcam", "small_cnn", "relu2"), 1e-10, "fused")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", ["gradcam", "cam", "layercam", "eigencam"])
@pytest.mark.parametrize("relu,upsample", [(False, False), (False, True), (True, False)])
def test_relu_and_upsample_options(zoo, flavor, method, relu, upsample):
    # conv2 (pre-ReLU) has signed activations, so relu=False matters
    layer = "relu2" if method == "cam" else "conv2"
    ours, exp = zoo.explain(flavor, "small_cnn", zoo.x("small_cnn"), method,
                            target=TARGET.tolist(), layer=layer, relu=relu, upsample=upsample)
    assert ours.shape == ((3, 16, 16) if upsample else (3, 8, 8))
    assert exp.info["relu"] is relu and exp.info["upsample"] is upsample
    if not relu:
        assert method not in ("gradcam", "cam") or ours.min() < 0
    desired = _reference(zoo, method, "small_cnn", layer, relu=relu, up=upsample)
    zoo.assert_close(ours, desired, 1e-10, f"{method} relu={relu} upsample={upsample}")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_predicted_target(zoo, flavor):
    x = zoo.x("small_cnn")
    predicted = np.asarray(ref.forward(zoo.spec("small_cnn"), x)).argmax(axis=1)
    for method in ("gradcam", "scorecam"):
        ours, exp = zoo.explain(flavor, "small_cnn", x, method, layer="relu2")
        zoo.assert_close(ours, _reference(zoo, method, "small_cnn", "relu2", predicted), 1e-10,
                         method)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_channel_mask_method_is_the_upsampled_channel(zoo, flavor):
    x = zoo.x("small_cnn")
    ours, exp = zoo.explain(flavor, "small_cnn", x, "channel_mask", layer="conv2", channel=5)
    zoo.assert_close(ours, ref.channel_activation(zoo.spec("small_cnn"), x, "conv2", 5), 1e-10,
                     "channel_mask")
    assert exp.info["channel"] == 5 and exp.image_maps().shape == (3, 16, 16)
