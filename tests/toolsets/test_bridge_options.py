"""Options through the Captum and tf-keras-vis bridges (issue 15, part 15).

Arrays given to ``implementation="captum"`` as baselines / feature masks (numpy, lists,
per-sample arrays, the Keras layout when a Keras model runs on its PyTorch translation)
give Captum's own numbers with tensors; tf-keras-vis' ``relu=False`` CAMs equal crosslens'
own; options the toolset cannot honour or does not have are a named ``CrosslensError``.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import crosslens as cl  # noqa: E402

TARGET = [3, 1, 4]


@pytest.fixture(scope="module")
def torch_net(zoo):
    return zoo.model("torch", "small_cnn"), zoo.x("small_cnn")


def captum(cls, model, x, seed=None, **kwargs):
    """Captum directly, with tensors (the reference)."""
    if seed is not None:  # Captum draws from torch's and (GradientShap) NumPy's generators
        torch.manual_seed(seed)
        np.random.seed(seed)
    return cls(model).attribute(torch.as_tensor(x), target=TARGET, **kwargs).detach().numpy()


def test_gradient_shap_takes_a_numpy_baseline_distribution(zoo, torch_net):
    model, x = torch_net
    baselines = np.random.default_rng(0).uniform(0, 1, (4,) + x.shape[1:]).astype(np.float32)
    state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    ours = cl.explain(model, x, "GradientShap", target=TARGET, implementation="captum",
                      baselines=baselines, n_samples=6, seed=11).attributions
    assert torch.equal(torch.get_rng_state(), state)  # seeded, then put back
    np.testing.assert_array_equal(np.random.get_state()[1], numpy_state)
    theirs = captum(captum_attr.GradientShap, model, x, seed=11, n_samples=6,
                    baselines=torch.as_tensor(baselines, dtype=torch.float64))
    zoo.assert_close(ours, theirs, 1e-12, "GradientShap, numpy baselines")
    # one baseline (per-sample shape) is a distribution of one, and a python number too
    one = cl.explain(model, x, "GradientShap", target=TARGET, implementation="captum",
                     baselines=baselines[0].tolist(), seed=11).attributions
    zoo.assert_close(one, captum(captum_attr.GradientShap, model, x, seed=11,
                                 baselines=torch.as_tensor(baselines[:1], dtype=torch.float64)),
                     1e-12, "GradientShap, one baseline as a list")
    number = cl.explain(model, x, "GradientShap", target=TARGET, implementation="captum",
                        baseline=0.25, seed=11).attributions
    zoo.assert_close(number, captum(captum_attr.GradientShap, model, x, seed=11,
                                    baselines=torch.full((1,) + x.shape[1:], 0.25,
                                                         dtype=torch.float64)),
                     1e-12, "GradientShap, a number")


@pytest.mark.parametrize("name,option,extra", [
    ("IntegratedGradients", "baselines", {"n_steps": 8}),
    ("integrated_gradients", "baseline", {"steps": 8}),
    ("DeepLift", "baseline", {}),
    ("occlusion", "baseline", {"patch": 4, "stride": 4}),
])
def test_numpy_baselines_equal_captum_with_tensors(zoo, torch_net, name, option, extra):
    model, x = torch_net
    baseline = np.random.default_rng(1).uniform(0, 1, x.shape[1:]).astype(np.float32)
    ours = cl.explain(model, x, name, target=TARGET, implementation="captum",
                      **{option: baseline}, **extra).attributions
    tensor = torch.as_tensor(baseline[None], dtype=torch.float64)
    if name.lower().startswith("integrated"):
        theirs = captum(captum_attr.IntegratedGradients, model, x, baselines=tensor, n_steps=8)
    elif name == "DeepLift":
        theirs = captum(captum_attr.DeepLift, model, x, baselines=tensor)
    else:
        theirs = captum(captum_attr.Occlusion, model, x, baselines=tensor,
                        sliding_window_shapes=(3, 4, 4), strides=(3, 4, 4))
    zoo.assert_close(ours, theirs, 1e-12, f"{name} {option}=numpy")
    assert np.abs(ours).max() > 0


def test_numpy_feature_mask_equals_captum_with_a_tensor(zoo, torch_net):
    model, x = torch_net
    mask = (np.arange(16)[:, None] // 4 * 4 + np.arange(16)[None, :] // 4)[None, None]
    ours = cl.explain(model, x, "feature_ablation", target=TARGET, implementation="captum",
                      feature_mask=mask).attributions
    theirs = captum(captum_attr.FeatureAblation, model, x,
                    feature_mask=torch.as_tensor(mask))
    zoo.assert_close(ours, theirs, 1e-12, "FeatureAblation, numpy feature_mask")


@pytest.mark.parametrize("method,options,match", [
    ("DeepLiftShap", {"baselines": np.zeros((3, 16, 16))}, "at least 2 baselines"),
    ("IntegratedGradients", {"baselines": np.zeros(3)}, r"one baseline shaped \(3, 16, 16\)"),
    ("GradientShap", {"baselines": np.zeros((2, 3, 8, 8))}, "distribution of baselines"),
    ("GradientShap", {"baselines": [np.zeros((3, 16, 16)), np.zeros((3, 8, 8))]},
     "must be a number or an array"),
    ("feature_ablation", {"feature_mask": np.zeros((16, 16))}, "integer group ids"),
    ("integrated_gradients", {"steps": 8.0}, "steps must be an integer"),
    ("integrated_gradients", {"baseline": "noise"}, "no Captum equivalent"),
    ("occlusion", {"patch": 40}, "must fit"),
    ("smoothgrad", {"samples": 0}, "samples must be an integer >= 1"),
    ("smoothgrad", {"noise": np.zeros((2, 3, 3, 16, 16))}, "draws its own noise"),
    ("DeepLift", {"multiply_by_input": True}, "no option 'multiply_by_input'"),
    ("IntegratedGradients", {"rule": "simpson"}, "rejected the arguments"),
    ("IntegratedGradients", {"n_steps": -1}, "rejected the arguments"),
    ("GradientShap", {"baselines": np.zeros((2, 3, 16, 16)), "seed": 1.5}, "seed"),
])
def test_bad_captum_options_are_named(torch_net, method, options, match):
    from robustness.fingerprint import assert_unchanged, fingerprint

    model, x = torch_net
    before = fingerprint(model)
    with pytest.raises(cl.CrosslensError, match=match):
        cl.explain(model, x, method, target=TARGET, implementation="captum", **options)
    assert_unchanged(model, before)


def test_captum_guided_grad_cam_refuses_relu_false(torch_net):
    model, x = torch_net
    with pytest.raises(cl.OptionError, match="always applies the ReLU"):
        cl.explain(model, x, "guided_grad_cam", target=TARGET, layer="relu2", relu=False,
                   implementation="captum")


# ----------------------------------------------------------------------------- tf-keras-vis
@pytest.fixture(scope="module")
def keras_net(zoo):
    pytest.importorskip("tf_keras_vis")
    return zoo.model("keras", "small_cnn"), zoo.nhwc(zoo.x("small_cnn"))


@pytest.mark.parametrize("method", ["grad_cam_plus_plus", "grad_cam", "layer_cam"])
def test_tf_keras_vis_relu_false_equals_ours(zoo, keras_net, method):
    model, x = keras_net
    ours = cl.explain(model, x, method, target=TARGET, layer="conv2", relu=False).attributions
    theirs = cl.explain(model, x, method, target=TARGET, layer="conv2", relu=False,
                        implementation="tf-keras-vis").attributions
    if method != "layer_cam":  # layer_cam's map is >= 0 here anyway
        assert ours.min() < 0  # relu=False keeps the negative part of the map
    zoo.assert_close(theirs, ours, 1e-10, f"{method} relu=False")


def test_an_identity_modifier_is_not_grad_cam_plus_plus_relu_false(zoo, keras_net):
    """The old mapping: tf-keras-vis' activation_modifier=identity also drops the ReLU of
    the weights exp(S)·grad, which crosslens (and the paper) keep."""
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.utils.scores import CategoricalScore

    model, x = keras_net
    ours = cl.explain(model, x, "grad_cam_plus_plus", target=TARGET, layer="relu2",
                      relu=False, upsample=False).attributions
    identity = np.asarray(GradcamPlusPlus(model, model_modifier=None, clone=False)(
        CategoricalScore(TARGET), x, penultimate_layer=model.get_layer("relu2"),
        seek_penultimate_conv_layer=False, activation_modifier=lambda cam: cam,
        expand_cam=False, normalize_cam=False))
    assert zoo.rel_err(identity, ours) > 1e-2


@pytest.mark.parametrize("method,options,error,match", [
    ("score_cam", {"softmax": False}, cl.OptionError, "softmax"),
    ("grad_cam", {"foo": 1}, cl.OptionError, "no option 'foo'"),
    ("grad_cam", {"relu": "no"}, cl.OptionError, "relu must be True or False"),
    ("smoothgrad", {"samples": 2.5}, cl.OptionError, "samples must be an integer"),
    ("smoothgrad", {"noise": np.zeros((2, 3, 16, 16, 3))}, cl.OptionError, "its own noise"),
    ("activation_maximization", {"stepz": 3}, cl.OptionError, "no option 'stepz'"),
])
def test_bad_tf_keras_vis_options_are_named(keras_net, method, options, error, match):
    from robustness.fingerprint import assert_unchanged, fingerprint

    model, x = keras_net
    before = fingerprint(model)
    with pytest.raises(error, match=match):
        cl.explain(model, x, method, target=TARGET, implementation="tf-keras-vis", **options)
    assert_unchanged(model, before)


def test_tf_keras_vis_failures_are_named(zoo, keras_net):
    """tf-keras-vis' Scorecam mixes float32 weights into a float64 model's tensors (raw
    InvalidArgumentError), and its model surgery cannot output a nested model's layer (raw
    ValueError): both are UnsupportedError naming the way out."""
    model, x = keras_net
    with pytest.raises(cl.UnsupportedError, match="float32"):
        cl.explain(model, x, "score_cam", target=TARGET, layer="relu2",
                   implementation="tf-keras-vis")
    nested = zoo.model("keras", "small_resnet")  # its residual block is a nested Model
    with pytest.raises(cl.UnsupportedError, match="nested models.*implementation='crosslens'"):
        cl.explain(nested, zoo.nhwc(zoo.x("small_resnet")), "grad_cam", target=TARGET,
                   layer="block", implementation="tf-keras-vis")


def test_default_cam_layer_is_ours(zoo, keras_net):
    """Without layer=, tf-keras-vis would seek the last convolution (conv2, before its
    ReLU); the bridge passes crosslens' default CAM layer."""
    model, x = keras_net
    ours = cl.explain(model, x, "grad_cam_plus_plus", target=TARGET)
    theirs = cl.explain(model, x, "grad_cam_plus_plus", target=TARGET,
                        implementation="tf-keras-vis")
    assert theirs.layer == ours.layer
    zoo.assert_close(theirs.attributions, ours.attributions, 1e-10, "default layer")


def test_class_targets_are_checked_before_the_toolset_runs(torch_net):
    model, x = torch_net
    for implementation in ("captum", "zennit"):
        with pytest.raises(cl.TargetError, match="out of range"):
            cl.explain(model, x, "saliency" if implementation == "captum" else "lrp",
                       target=9, implementation=implementation)


def test_score_cam_refuses_callable_targets(keras_net):
    model, x = keras_net
    with pytest.raises(cl.UnsupportedError, match="softmax probabilities"):
        cl.explain(model, x, "score_cam", target=lambda out: out[:, 0], layer="relu2",
                   implementation="tf-keras-vis")


# ----------------------------------------------------------------------------- translation
def test_keras_layout_baseline_through_the_translation_equals_ours(zoo, tmp_path_factory,
                                                                   monkeypatch):
    """A Keras model runs on its PyTorch translation for Captum: a baseline given in the
    Keras layout (NHWC) is converted like the input."""
    pytest.importorskip("tf2onnx")
    monkeypatch.setenv("CROSSLENS_CACHE", str(tmp_path_factory.mktemp("translations")))
    model, x = zoo.model("keras", "small_cnn", "float32"), zoo.nhwc(zoo.x("small_cnn"))
    x = x.astype(np.float32)
    baseline = np.random.default_rng(2).uniform(0, 1, x.shape).astype(np.float32)
    ours = cl.explain(model, x, "integrated_gradients", target=TARGET, steps=8,
                      baseline=baseline).attributions
    theirs = cl.explain(model, x, "integrated_gradients", target=TARGET, steps=8,
                        baseline=baseline, implementation="captum")
    assert theirs.info["translation"] is not None
    zoo.assert_close(theirs.attributions, ours, 1e-4, "IG with an NHWC baseline via Captum")
    per_sample = cl.explain(model, x, "IntegratedGradients", target=TARGET, n_steps=8,
                            baselines=baseline[0], implementation="captum").attributions
    ours_one = cl.explain(model, x, "integrated_gradients", target=TARGET, steps=8,
                          baseline=baseline[0]).attributions
    zoo.assert_close(per_sample, ours_one, 1e-4, "one NHWC baseline via Captum")
