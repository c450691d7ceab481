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


# --- pytorch-grad-cam's projections and smoothing -----------------------------------------
EIGEN_SMOOTH = ("gradcam", "gradcam_plus_plus", "layercam", "hirescam", "gradcam_elementwise",
                "xgradcam", "ablationcam", "scorecam")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("relu,upsample", [(True, True), (False, False)])
def test_eigen_grad_cam_matches_get_2d_projection(zoo, flavor, relu, upsample):
    """EigenGradCAM = get_2d_projection(g ⊙ A), at conv2 (signed A, varying gradient)."""
    ours, exp = zoo.explain(flavor, "small_cnn", zoo.x("small_cnn"), "eigengradcam",
                            target=TARGET.tolist(), layer="conv2", relu=relu,
                            upsample=upsample)
    assert exp.method == "eigen_grad_cam" and ours.shape == ((3, 16, 16) if upsample
                                                              else (3, 8, 8))
    desired = ref.eigengradcam(zoo.spec("small_cnn"), zoo.x("small_cnn"), TARGET, "conv2",
                               relu=relu, up=upsample)
    zoo.assert_close(ours, desired, 1e-8, f"eigen_grad_cam relu={relu} upsample={upsample}")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("kernel,gamma", [("sigmoid", None), ("rbf", None), ("poly", 0.05),
                                          ("linear", None), ("cosine", None), ("sigmoid", 0.3)])
def test_kpca_cam_matches_sklearn_kernel_pca(zoo, flavor, kernel, gamma):
    """KPCA-CAM = sklearn KernelPCA(n_components=1) of the centred activations, sign
    included (sklearn's svd_flip), signed at the layer's resolution."""
    pytest.importorskip("sklearn")
    x = zoo.x("small_cnn")
    ours, exp = zoo.explain(flavor, "small_cnn", x, "kpcacam", layer="relu2", relu=False,
                            upsample=False, kernel=kernel, gamma=gamma)
    desired = ref.kpcacam(zoo.spec("small_cnn"), x, "relu2", relu=False, up=False,
                          kernel=kernel, gamma=gamma)
    assert exp.info["kernel"] == kernel and ours.min() < 0 < ours.max()
    zoo.assert_close(ours, desired, 1e-8, f"kpca_cam {kernel} gamma={gamma}")


def test_kpca_cam_default_options(zoo):
    pytest.importorskip("sklearn")
    x = zoo.x("small_resnet")
    ours, exp = zoo.explain("keras", "small_resnet", x, "kpca_cam")
    assert exp.layer == "block" and exp.info["class_agnostic"]
    zoo.assert_close(ours, ref.kpcacam(zoo.spec("small_resnet"), x, "block"), 1e-8, "kpca")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", EIGEN_SMOOTH)
def test_eigen_smooth_matches_pytorch_grad_cam(zoo, flavor, method):
    """eigen_smooth=True: get_2d_projection of the weighted activations, before the ReLU."""
    up = method in ("gradcam", "scorecam")
    ours, exp = zoo.explain(flavor, "small_cnn", zoo.x("small_cnn"), method,
                            target=TARGET.tolist(), layer="relu2", relu=False, upsample=up,
                            eigen_smooth=True)
    assert exp.info["eigen_smooth"] is True
    desired = _reference(zoo, method, "small_cnn", "relu2", relu=False, up=up, eigen=True)
    zoo.assert_close(ours, desired, 1e-8, f"{method} eigen_smooth")
    plain = _reference(zoo, method, "small_cnn", "relu2", relu=False, up=up)
    assert zoo.rel_err(ours, plain) > 1e-2  # not the channel sum


AUG_CASES = {  # name -> (crosslens method, options, reference of an input batch)
    "gradcam": ("gradcam", {}, lambda s, x: ref.gradcam(s, x, TARGET, "relu2")),
    "gradcam_signed_layer_res": ("gradcam", dict(relu=False, upsample=False),
                                 lambda s, x: ref.gradcam(s, x, TARGET, "relu2", relu=False,
                                                          up=False)),
    "gradcam_eigen": ("gradcam", dict(eigen_smooth=True, relu=False),
                      lambda s, x: ref.gradcam(s, x, TARGET, "relu2", relu=False,
                                               eigen=True)),
    "layercam": ("layercam", {}, lambda s, x: ref.layercam(s, x, TARGET, "relu2")),
    "eigen_grad_cam": ("eigen_grad_cam", dict(relu=False),
                       lambda s, x: ref.eigengradcam(s, x, TARGET, "relu2", relu=False)),
    "eigencam": ("eigencam", dict(upsample=False),
                 lambda s, x: ref.eigencam(s, x, "relu2", up=False)),
    "kpca_cam": ("kpca_cam", dict(relu=False, kernel="rbf"),
                 lambda s, x: ref.kpcacam(s, x, "relu2", relu=False, kernel="rbf")),
}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("case", list(AUG_CASES))
def test_aug_smooth_matches_ttach_augmentations(zoo, flavor, case):
    """aug_smooth=True: the mean over (flip or not) x (0.9, 1, 1.1) of the maps, flips
    undone, as pytorch-grad-cam's ttach pipeline without its per-map scaling."""
    if case == "kpca_cam":
        pytest.importorskip("sklearn")
    method, options, reference = AUG_CASES[case]
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    targets = {} if method in ("eigencam", "kpca_cam") else {"target": TARGET.tolist()}
    ours, exp = zoo.explain(flavor, "small_cnn", x, method, layer="relu2", aug_smooth=True,
                            **targets, **options)
    assert exp.info["aug_smooth"] is True and exp.info["augmentations"] == 6
    desired = ref.aug_smooth(lambda image: reference(spec, image), x)
    zoo.assert_close(ours, desired, 1e-8, f"{case} aug_smooth")
    assert zoo.rel_err(reference(spec, x), desired) > 1e-3  # smoothing changes the map


@pytest.mark.parametrize("flavor", FLAVORS)
def test_aug_smooth_keeps_the_class_predicted_for_the_input(zoo, flavor):
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    predicted = ref.forward(spec, x).argmax(axis=1)
    ours, exp = zoo.explain(flavor, "small_cnn", x, "gradcam", layer="relu2", aug_smooth=True)
    desired = ref.aug_smooth(lambda image: ref.gradcam(spec, image, predicted, "relu2"), x)
    zoo.assert_close(ours, desired, 1e-8, "predicted target")
    assert [int(c) for c in exp.target] == predicted.tolist()
