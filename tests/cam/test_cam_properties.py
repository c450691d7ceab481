"""CAM properties: the CAM = Z·Grad-CAM identity, Score-CAM chunk invariance, PyTorch/Keras
parity (float32), native bilinear resize, an untouched model, the errors, and
pytorch-grad-cam's eigen_smooth (a first principal component) and aug_smooth (invariance on
a mirror-symmetric, positively homogeneous model)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import crosslens as cl
from crosslens.viz import resize_bilinear
from reference.builders import build_keras, build_torch
from reference.nets import make_net
from reference.methods_numpy import activation
from reference.numpy_nets import forward, layer_gradient

FLAVORS = ("torch", "keras")
TARGET = [1, 3, 0]
METHODS = ("gradcam", "gradcam_plus_plus", "layercam", "scorecam", "cam", "eigencam",
           "guided_gradcam", "channel_mask", "eigen_grad_cam", "kpca_cam")


@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
@pytest.mark.parametrize("method", METHODS)
def test_torch_keras_parity_float32(zoo, kind, method):
    x = zoo.x(kind).astype(np.float32)
    options = {"channel": 2} if method == "channel_mask" else {"target": TARGET}
    a, _ = zoo.explain("torch", kind, x, method, dtype="float32", **options)
    b, _ = zoo.explain("keras", kind, x, method, dtype="float32", **options)
    zoo.assert_close(b, a, 1e-5, f"{method} keras vs torch")


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("kind", ["small_cnn", "small_resnet"])
def test_cam_is_grad_cam_times_positions_on_gap_dense_heads(zoo, flavor, kind):
    """For S = b + W·GAP(A): ∂S/∂A_k = W_ck / Z everywhere, so CAM = Z · Grad-CAM."""
    x = zoo.x(kind)
    for relu in (False, True):
        cam, exp = zoo.explain(flavor, kind, x, "cam", target=TARGET, relu=relu, upsample=False)
        grad_cam, _ = zoo.explain(flavor, kind, x, "gradcam", target=TARGET, relu=relu,
                                  upsample=False)
        positions = cam.shape[1] * cam.shape[2]
        zoo.assert_close(cam, positions * grad_cam, 1e-12, f"relu={relu}")
    # the signed map with the head's bias gives back the score: mean(M_c) + b_c = S_c
    scores = forward(zoo.spec(kind), x)[np.arange(3), TARGET]
    signed, exp = zoo.explain(flavor, kind, x, "cam", target=TARGET, relu=False,
                              upsample=False)
    np.testing.assert_allclose(signed.mean(axis=(1, 2)) + exp.info["head_bias"], scores,
                               rtol=1e-10)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_scorecam_chunk_size_invariance(zoo, flavor):
    x = zoo.x("small_cnn")
    small, tiny = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET, layer="relu2",
                              memory_budget=1)
    whole, default = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET,
                                 layer="relu2")
    # 16 channels x 3 samples: one masked input per pass, or all 48 in one
    assert tiny.info["chunk_masks"] == 1 and default.info["chunk_masks"] == 48
    zoo.assert_close(small, whole, 1e-13, "chunked scorecam")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_faster_scorecam(zoo, flavor):
    """max_channels keeps each sample's channels of largest spatial std: all of them is
    full Score-CAM; fewer is a sum over the kept channels only, chosen per sample (a
    sample's map is the same alone or in a batch)."""
    x = zoo.x("small_cnn")
    full, _ = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET, layer="relu2")
    every, _ = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET, layer="relu2",
                           max_channels=16)
    zoo.assert_close(every, full, 1e-13, "max_channels = all channels")
    fast, exp = zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET, layer="relu2",
                            max_channels=3, relu=False, upsample=False)
    assert exp.info["channels_used"].tolist() == [3, 3, 3]
    spec = zoo.spec("small_cnn")
    acts = activation(spec, x, "relu2")  # (N, 16, 8, 8)
    for i in range(len(x)):
        # numpy reference: the softmax-weighted sum over the 3 channels of largest std
        top = np.argsort(-acts[i].reshape(16, -1).std(axis=1), kind="stable")[:3]
        want = np.zeros(acts.shape[2:])
        for k in top:
            mask = resize_bilinear(acts[i, k], x.shape[2:])
            mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-7)
            logits = forward(spec, x[i:i + 1] * mask)[0]
            p = np.exp(logits - logits.max())
            want += p[TARGET[i]] / p.sum() * acts[i, k]
        zoo.assert_close(fast[i], want, 1e-10, f"sample {i} vs numpy")
        alone, _ = zoo.explain(flavor, "small_cnn", x[i:i + 1], "scorecam",
                               target=TARGET[i:i + 1], layer="relu2", max_channels=3,
                               relu=False, upsample=False)
        zoo.assert_close(alone[0], fast[i], 1e-12, f"sample {i} alone")
    with pytest.raises(cl.OptionError, match="between 1 and the layer's 16 channels"):
        zoo.explain(flavor, "small_cnn", x, "scorecam", target=TARGET, layer="relu2",
                    max_channels=17)


def test_scorecam_raw_scores_for_callable_targets(zoo):
    """softmax=False weights by the raw score: a callable target equals the class logit."""
    x = zoo.x("small_cnn")
    by_class, _ = zoo.explain("torch", "small_cnn", x, "scorecam", target=2, softmax=False,
                              relu=False)
    by_callable, _ = zoo.explain("torch", "small_cnn", x, "scorecam", relu=False,
                                 target=lambda out: out[:, 2], softmax=False)
    zoo.assert_close(by_callable, by_class, 1e-12, "callable target")
    with pytest.raises(cl.OptionError, match="softmax=False"):
        zoo.explain("torch", "small_cnn", x, "scorecam", target=lambda out: out[:, 2])


def test_native_resize_equals_numpy_torch_and_tf():
    import tensorflow as tf
    import torch
    import torch.nn.functional as F

    from crosslens.backends.keras import KerasOps
    from crosslens.backends.torch import TorchOps

    maps = np.random.default_rng(0).standard_normal((2, 5, 7))
    torch_ops, keras_ops = TorchOps(torch.device("cpu"), torch.float64), KerasOps(tf.float64)
    for size in [(16, 16), (3, 4), (11, 9), (5, 7)]:
        expected = np.stack([resize_bilinear(m, size) for m in maps])
        interp = F.interpolate(torch.tensor(maps)[:, None], size=size, mode="bilinear",
                               align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(interp, expected, rtol=0, atol=1e-14)
        t = torch_ops.resize_bilinear(torch_ops.asarray(maps), size)
        k = keras_ops.resize_bilinear(keras_ops.asarray(maps), size)
        assert k.dtype == tf.float64  # tf.image.resize would return float32
        np.testing.assert_allclose(t.numpy(), expected, rtol=0, atol=1e-14)
        np.testing.assert_allclose(np.asarray(k), expected, rtol=0, atol=1e-14)
        image = tf.image.resize(maps[..., None].astype(np.float32), size, method="bilinear",
                                antialias=False)[..., 0]
        np.testing.assert_allclose(image.numpy(), expected, rtol=0, atol=1e-5)


def test_spatial_layers(zoo):
    from crosslens.backends import get_backend

    expected = {"torch": ["conv1", "relu1", "pool", "conv2", "relu2"],
                "keras": ["conv1", "relu1", "pool", "conv2", "relu2"],
                "keras_fused": ["conv1", "pool", "conv2"]}
    for flavor, names in expected.items():
        backend = get_backend(zoo.model(flavor, "small_cnn"))
        x = zoo.to_model(flavor, zoo.x("small_cnn"))
        with backend.session():
            assert backend.spatial_layers(backend.prepare(x)) == names


def _torch_state(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(m.training, len(m._forward_hooks)) for m in model.modules()],
            [p.requires_grad for p in model.parameters()])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_model_untouched(zoo, flavor):
    model = zoo.build(flavor, "small_cnn")
    if flavor == "torch":
        model.train()
        before = _torch_state(model)
    else:
        before = [w.copy() for w in model.get_weights()]
    x = zoo.to_model(flavor, zoo.x("small_cnn"))
    for method in METHODS:
        options = {"channel": 1} if method == "channel_mask" else {"target": TARGET}
        cl.explain(model, x, method, **options)
    with pytest.raises(cl.UnsupportedError):
        cl.explain(model, x, "cam", layer="conv2", target=TARGET)  # error paths restore too
    if flavor == "torch":
        after = _torch_state(model)
        assert all(np.array_equal(before[0][k], after[0][k]) for k in before[0])
        assert before[1:] == after[1:]
    else:
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        assert not any("call" in layer.__dict__ for layer in model.layers)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", ["gradcam", "scorecam", "eigencam", "cam", "channel_mask"])
def test_layer_without_spatial_dimensions_is_a_clear_error(zoo, flavor, method):
    options = {"channel": 0} if method == "channel_mask" else {}
    with pytest.raises(cl.OptionError) as info:
        zoo.explain(flavor, "small_cnn", zoo.x("small_cnn"), method, layer="fc", **options)
    message = str(info.value)
    assert "'fc'" in message and "(3, 5)" in message and "spatial" in message
    assert "'relu2'" in message  # the suggestion names the spatial layers


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cam_on_a_head_that_is_not_gap_dense(zoo, flavor):
    x = zoo.x("small_cnn")
    # conv2 is followed by a ReLU before the pooling: the gradient varies over positions
    with pytest.raises(cl.UnsupportedError, match="varies over positions.*grad_cam"):
        zoo.explain(flavor, "small_cnn", x, "cam", layer="conv2", target=TARGET)
    # a softmax output: the gradient is constant over positions but depends on A
    spec = zoo.spec("small_cnn")
    model = build_torch(spec, softmax=True) if flavor == "torch" else build_keras(spec,
                                                                                  softmax=True)
    with pytest.raises(cl.UnsupportedError, match="changes with the layer's values"):
        zoo.explain(flavor, "small_cnn", x, "cam", layer="relu2", target=TARGET, model=model)


def test_cam_on_an_mlp_head():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8))
    with pytest.raises(cl.UnsupportedError, match="not b \\+ W·mean\\(A\\)"):
        cl.explain(model, x, "cam", layer="1", target=0)
    assert cl.explain(model, x, "gradcam", target=0).layer == "1"


def test_option_errors(zoo):
    x = zoo.x("small_cnn")
    with pytest.raises(cl.OptionError, match="relu must be True or False"):
        zoo.explain("torch", "small_cnn", x, "gradcam", relu="yes")
    with pytest.raises(cl.OptionError, match="channel=<int>"):
        zoo.explain("torch", "small_cnn", x, "channel_mask", layer="relu2")
    with pytest.raises(cl.OptionError, match="out of range.*16 channels"):
        zoo.explain("torch", "small_cnn", x, "channel_mask", layer="relu2", channel=16)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_hirescam_and_xgradcam_are_cam_over_positions_for_a_gap_dense_head(zoo, flavor):
    """With the score b + W·mean(A), the gradient is W/Z at every position: HiResCAM and
    XGrad-CAM both reduce to CAM / Z (Draelos & Carin; Fu et al.), element-wise Grad-CAM
    to the sum of its positive terms."""
    x = zoo.x("small_cnn")
    options = dict(target=TARGET, layer="relu2", relu=False, upsample=False)
    cam, _ = zoo.explain(flavor, "small_cnn", x, "cam", **options)
    positions = cam.shape[1] * cam.shape[2]
    for method, tolerance in (("hires_cam", 1e-10), ("xgrad_cam", 1e-6)):  # 1e-7 stabilizer
        got, _ = zoo.explain(flavor, "small_cnn", x, method, **options)
        zoo.assert_close(got * positions, cam, tolerance, method)
    elementwise, _ = zoo.explain(flavor, "small_cnn", x, "grad_cam_elementwise", **options)
    assert (elementwise >= 0).all() and (elementwise >= cam / positions - 1e-12).all()


@pytest.mark.parametrize("flavor", FLAVORS)
def test_ablationcam_chunk_size_invariance(zoo, flavor):
    x = zoo.x("small_cnn")
    tiny, _ = zoo.explain(flavor, "small_cnn", x, "ablation_cam", target=TARGET,
                          layer="relu2", memory_budget=1)
    whole, _ = zoo.explain(flavor, "small_cnn", x, "ablation_cam", target=TARGET,
                           layer="relu2")
    zoo.assert_close(tiny, whole, 1e-12, "chunked ablation_cam")


# --- eigen_smooth / aug_smooth ------------------------------------------------------------------

@pytest.mark.parametrize("method,options", [
    ("grad_cam", dict(eigen_smooth=True)),
    ("layer_cam", dict(eigen_smooth=True, aug_smooth=True)),
    ("score_cam", dict(eigen_smooth=True, aug_smooth=True)),
    ("eigen_grad_cam", dict(aug_smooth=True)),
    ("kpca_cam", dict(kernel="rbf", aug_smooth=True)),
])
def test_torch_keras_parity_float32_smoothing(zoo, method, options):
    x = zoo.x("small_cnn").astype(np.float32)
    a, _ = zoo.explain("torch", "small_cnn", x, method, dtype="float32", target=TARGET,
                       relu=False, **options)
    b, _ = zoo.explain("keras", "small_cnn", x, method, dtype="float32", target=TARGET,
                       relu=False, **options)
    zoo.assert_close(b, a, 1e-5, f"{method} {options} keras vs torch")


@pytest.mark.parametrize("flavor", FLAVORS)
def test_eigen_smooth_is_the_first_principal_component(zoo, flavor):
    """For Grad-CAM the map p is the centred weighted matrix M (positions x channels)
    times a unit vector v, and no unit vector gives more: |p| = σ_1(M); M minus its
    rank-1 part p v^T keeps |M|² - |p|²; the sample's largest entry in magnitude is
    positive. Checked against M from the numpy reference net."""
    spec, x = zoo.spec("small_cnn"), zoo.x("small_cnn")
    p, _ = zoo.explain(flavor, "small_cnn", x, "grad_cam", target=TARGET, layer="conv2",
                       relu=False, upsample=False, eigen_smooth=True)
    _, acts = forward(spec, x, capture=("conv2",))
    g = layer_gradient(spec, x, np.asarray(TARGET), "conv2")
    weighted = g.mean(axis=(2, 3), keepdims=True) * acts["conv2"]  # (N, K, h, w)
    rng = np.random.default_rng(0)
    for i in range(len(x)):
        m = weighted[i].reshape(weighted.shape[1], -1).T
        m = m - m.mean(axis=0)
        pi = p[i].ravel()
        v = np.linalg.lstsq(m, pi, rcond=None)[0]
        np.testing.assert_allclose(m @ v, pi, atol=1e-10 * np.abs(pi).max())
        np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-8)
        trials = rng.standard_normal((m.shape[1], 200))
        trials /= np.linalg.norm(trials, axis=0)
        assert np.linalg.norm(m @ trials, axis=0).max() <= np.linalg.norm(pi) * (1 + 1e-12)
        residual = m - np.outer(pi, v)
        np.testing.assert_allclose((residual ** 2).sum(), (m ** 2).sum() - pi @ pi,
                                   rtol=1e-8)
        assert abs(pi.sum()) <= 1e-10 * np.abs(pi).sum()  # centred over positions
        assert pi[np.argmax(np.abs(pi))] > 0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_eigen_grad_cam_is_eigen_smoothed_grad_cam_on_a_gap_dense_head(zoo, flavor):
    """With S = b + W·GAP(A) the gradient is W/Z at every position, so g ⊙ A is Grad-CAM's
    weighted activations: Eigen-Grad-CAM = eigen-smoothed Grad-CAM = eigen-smoothed HiResCAM."""
    x = zoo.x("small_cnn")
    options = dict(target=TARGET, layer="relu2", relu=False, upsample=False)
    eigen, _ = zoo.explain(flavor, "small_cnn", x, "eigen_grad_cam", **options)
    for method in ("grad_cam", "hires_cam"):
        got, _ = zoo.explain(flavor, "small_cnn", x, method, eigen_smooth=True, **options)
        zoo.assert_close(got, eigen, 1e-10, method)
    # and not on conv2, whose gradient varies over positions (the ReLU after it)
    options["layer"] = "conv2"
    eigen, _ = zoo.explain(flavor, "small_cnn", x, "eigen_grad_cam", **options)
    smoothed, _ = zoo.explain(flavor, "small_cnn", x, "grad_cam", eigen_smooth=True, **options)
    assert zoo.rel_err(smoothed, eigen) > 1e-2


def _mirror_spec(biases: bool):
    """small_cnn with left-right symmetric kernels: flipping the input's width flips every
    feature map (3x3 'same' convolutions, 2x2 pooling of an even width, global pooling).
    Without biases it is positively homogeneous: A(c·x) = c·A(x) and constant gradients."""
    spec = make_net("small_cnn", 0)
    weights = {}
    for key, w in spec.weights.items():
        if key.startswith("conv") and key.endswith("weight"):
            w = (w + w[..., ::-1]) / 2
        elif key.endswith("bias") and not biases:
            w = np.zeros_like(w)
        weights[key] = w
    return dataclasses.replace(spec, weights=weights)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_aug_smooth_is_the_plain_map_on_a_mirror_symmetric_homogeneous_model(zoo, flavor):
    """The six augmentations of such a model give the map (flipped back) times 0.9, 1 and
    1.1, whose mean is the map: aug_smooth equals the plain CAM for an asymmetric input.
    It fails if a flip is not undone, is along the height, or the factors do not average
    to 1; the same model with biases (not homogeneous) gives a different map."""
    x = zoo.x("small_cnn")
    assert zoo.rel_err(x[..., ::-1], x) > 0.5
    build = build_torch if flavor == "torch" else build_keras
    for biases in (False, True):
        model = build(_mirror_spec(biases))  # float64
        plain, _ = zoo.explain(flavor, "small_cnn", x, "grad_cam", model=model, target=TARGET,
                               relu=False, upsample=False)
        mirrored, _ = zoo.explain(flavor, "small_cnn", np.ascontiguousarray(x[..., ::-1]),
                                  "grad_cam", model=model, target=TARGET, relu=False,
                                  upsample=False)
        zoo.assert_close(mirrored[..., ::-1], plain, 1e-10, "mirror symmetry")
        for method, options in (("grad_cam", dict(relu=False, upsample=False)),
                                ("grad_cam", dict(eigen_smooth=True)),
                                ("layer_cam", {}), ("eigen_grad_cam", dict(relu=False)),
                                ("eigen_cam", dict(upsample=False))):
            plain, _ = zoo.explain(flavor, "small_cnn", x, method, model=model,
                                   target=TARGET, **options)
            smooth, _ = zoo.explain(flavor, "small_cnn", x, method, model=model,
                                    target=TARGET, aug_smooth=True, **options)
            if biases:
                assert zoo.rel_err(smooth, plain) > 1e-4, (method, options)
            else:
                zoo.assert_close(smooth, plain, 1e-10, f"{method} {options}")


def test_smoothing_and_kernel_option_errors(zoo):
    import torch

    x = zoo.x("small_cnn")
    with pytest.raises(cl.OptionError, match="eigen_smooth must be True or False"):
        zoo.explain("torch", "small_cnn", x, "grad_cam", eigen_smooth="yes")
    with pytest.raises(cl.OptionError, match="kernel must be one of .*'rbf'"):
        zoo.explain("torch", "small_cnn", x, "kpca_cam", kernel="gaussian")
    for gamma in (0.0, -1.0, float("nan"), "0.1", True):
        with pytest.raises(cl.OptionError, match="gamma must be a (positive|finite) number"):
            zoo.explain("keras", "small_cnn", x, "kpca_cam", gamma=gamma)
    with pytest.raises(TypeError):
        zoo.explain("torch", "small_cnn", x, "eigen_cam", eigen_smooth=True)
    table = torch.nn.Sequential(torch.nn.Linear(4, 3)).double()
    with pytest.raises(cl.OptionError, match="aug_smooth=True flips the input image.*rank 4"):
        cl.explain(table, np.ones((2, 4)), "grad_cam", target=0, aug_smooth=True)
