"""Grad-CAM family against Captum and tf-keras-vis on the same reference nets.

Captum upsamples with ``F.interpolate(mode="bilinear")`` (``align_corners=False``), the
same as ``upsample=True``, so the comparison includes the upsampling. tf-keras-vis
upsamples with ``scipy.ndimage.zoom(order=1)``, whose grid maps corner to corner
(``align_corners=True``): it cannot be aligned with half-pixel upsampling, so Grad-CAM,
Grad-CAM++ and Layer-CAM are compared at the layer's resolution (``expand_cam=False`` vs
``upsample=False``), plus a check that zooming our layer map with scipy gives its
expanded map. Score-CAM upsamples its *masks* that way too, so it is compared on layers
with the input's resolution, where both upsamplings are the identity.
"""
from __future__ import annotations

import numpy as np
import pytest


TARGET = [0, 2, 4]
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.parametrize("kind,layer", [("small_cnn", "relu2"), ("small_resnet", "block")])
def test_gradcam_equals_captum_layergradcam(zoo, kind, layer):
    captum = pytest.importorskip("captum.attr")
    import torch

    model, x = zoo.model("torch", kind), zoo.x(kind)
    module = dict(model.named_modules())[layer]
    attr = captum.LayerGradCam(model, module).attribute(
        torch.tensor(x), target=TARGET, relu_attributions=True)
    ref = captum.LayerAttribution.interpolate(attr, (16, 16), interpolate_mode="bilinear")
    ours, _ = zoo.explain("torch", kind, x, "gradcam", target=TARGET, layer=layer)
    zoo.assert_close(ours, ref.detach().numpy()[:, 0], 1e-12, "gradcam vs captum")
    # the Keras model with the same weights gives the same maps
    keras_map, _ = zoo.explain("keras", kind, x, "gradcam", target=TARGET, layer=layer)
    zoo.assert_close(keras_map, ref.detach().numpy()[:, 0], 1e-10, "keras gradcam vs captum")


def test_guided_gradcam_equals_captum(zoo):
    captum = pytest.importorskip("captum.attr")
    import torch

    model, x = zoo.model("torch", "small_cnn"), zoo.x("small_cnn")
    ref = captum.GuidedGradCam(model, model.relu2).attribute(
        torch.tensor(x), target=TARGET, interpolate_mode="bilinear").detach().numpy()
    for flavor in ("torch", "keras"):
        ours, _ = zoo.explain(flavor, "small_cnn", x, "guided_gradcam", target=TARGET,
                              layer="relu2")
        zoo.assert_close(ours, ref, 1e-10, f"{flavor} guided_gradcam vs captum")


def _tkv(name):
    pytest.importorskip("tf_keras_vis")
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    return {"gradcam": Gradcam, "gradcam_plus_plus": GradcamPlusPlus,
            "layercam": Layercam, "scorecam": Scorecam}[name]


def _tkv_cam(zoo, name, kind, layer, dtype, expand):
    from tf_keras_vis.utils.scores import CategoricalScore

    model = zoo.model("keras", kind, dtype)
    vis = _tkv(name)(model, clone=True)
    return np.asarray(vis(CategoricalScore(TARGET), zoo.nhwc(zoo.x(kind).astype(dtype)),
                          penultimate_layer=layer, seek_penultimate_conv_layer=False,
                          expand_cam=expand, normalize_cam=False))


@pytest.mark.parametrize("name", ["gradcam", "gradcam_plus_plus", "layercam"])
def test_gradient_cams_equal_tf_keras_vis_at_layer_resolution(zoo, name):
    ref = _tkv_cam(zoo, name, "small_cnn", "relu2", "float64", expand=False)
    x = zoo.x("small_cnn")
    for flavor in ("keras", "torch"):
        ours, _ = zoo.explain(flavor, "small_cnn", x, name, target=TARGET, layer="relu2",
                              upsample=False)
        zoo.assert_close(ours, ref, 1e-10, f"{flavor} {name} vs tf-keras-vis")


def test_tf_keras_vis_expansion_is_a_corner_aligned_zoom(zoo):
    """The only difference of the expanded maps is tf-keras-vis' scipy zoom."""
    from scipy.ndimage import zoom

    ref = _tkv_cam(zoo, "gradcam", "small_cnn", "relu2", "float64", expand=True)
    ours, _ = zoo.explain("keras", "small_cnn", zoo.x("small_cnn"), "gradcam", target=TARGET,
                          layer="relu2", upsample=False)
    zoo.assert_close(zoom(ours, (1, 2, 2), order=1), ref, 1e-10, "zoomed gradcam")


@pytest.mark.parametrize("kind,layer", [("small_cnn", "relu1"), ("small_resnet", "relu")])
def test_scorecam_equals_tf_keras_vis(zoo, kind, layer):
    # tf-keras-vis computes the channel weights in float32 whatever the model: float32 nets
    ref = _tkv_cam(zoo, "scorecam", kind, layer, "float32", expand=True)
    x = zoo.x(kind).astype(np.float32)
    for flavor in ("keras", "torch"):
        ours, _ = zoo.explain(flavor, kind, x, "scorecam", target=TARGET, layer=layer,
                              dtype="float32")
        zoo.assert_close(ours, ref, 1e-5, f"{flavor} scorecam vs tf-keras-vis")


def test_faster_scorecam_equals_tf_keras_vis_max_n_on_one_image(zoo):
    """max_channels is tf-keras-vis' max_N (Faster Score-CAM). For one image the channels
    kept are the same; for a batch tf-keras-vis keeps the union of the samples' choices,
    crosslens each sample's own (batch-invariant)."""
    from tf_keras_vis.utils.scores import CategoricalScore

    model = zoo.model("keras", "small_cnn", "float32")
    x = zoo.x("small_cnn")[:1].astype(np.float32)
    ref = np.asarray(_tkv("scorecam")(model, clone=True)(
        CategoricalScore(TARGET[:1]), zoo.nhwc(x), penultimate_layer="relu1",
        seek_penultimate_conv_layer=False, max_N=3, normalize_cam=False))
    full = np.asarray(_tkv("scorecam")(model, clone=True)(
        CategoricalScore(TARGET[:1]), zoo.nhwc(x), penultimate_layer="relu1",
        seek_penultimate_conv_layer=False, normalize_cam=False))
    assert not np.allclose(ref, full, rtol=1e-3)  # max_N changes the map
    for flavor in ("keras", "torch"):
        ours, exp = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET[:1],
                                layer="relu1", max_channels=3, dtype="float32")
        assert exp.info["channels_used"].tolist() == [3]
        zoo.assert_close(ours, ref, 1e-5, f"{flavor} faster scorecam vs tf-keras-vis")


def test_faster_scorecam_through_the_tf_keras_vis_bridge(zoo):
    """implementation='tf-keras-vis' maps max_channels to its max_N."""
    import crosslens as cl

    model = zoo.model("keras", "small_cnn", "float32")
    x = zoo.nhwc(zoo.x("small_cnn")[:1].astype(np.float32))
    ours = cl.explain(model, x, "score_cam", target=TARGET[:1], layer="relu1", max_channels=3)
    theirs = cl.explain(model, x, "score_cam", target=TARGET[:1], layer="relu1",
                        max_channels=3, implementation="tf-keras-vis")
    zoo.assert_close(theirs.numpy(), ours.numpy(), 1e-5, "bridge max_N")
