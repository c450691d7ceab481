"""External implementations through ``implementation=``, on either framework's models.

The headline of cross-framework introspection: Captum on a Keras model and tf-keras-vis
on a PyTorch model, through verified translation and automatic layer mapping, give the
numbers crosslens gives on the original model.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("captum")
pytest.importorskip("tf_keras_vis")
pytest.importorskip("tf2onnx")

import crosslens as cl  # noqa: E402
from reference.builders import build_keras, build_torch  # noqa: E402
from reference.nets import make_small_cnn  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
TARGETS = [0, 1, 2]


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    import os
    os.environ["CROSSLENS_CACHE"] = str(tmp_path_factory.mktemp("translations"))
    spec = make_small_cnn(0).astype(np.float32)
    x = spec.random_input(7, batch=3).astype(np.float32)
    return {"torch": build_torch(spec, dtype=torch.float32),
            "keras": build_keras(spec, dtype="float32"),
            "x_nchw": x, "x_nhwc": np.ascontiguousarray(np.transpose(x, (0, 2, 3, 1)))}


def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def test_captum_integrated_gradients_on_a_keras_model_equals_ours(nets):
    ours = cl.explain(nets["keras"], nets["x_nhwc"], "integrated_gradients", target=TARGETS,
                      steps=16)
    theirs = cl.explain(nets["keras"], nets["x_nhwc"], "integrated_gradients",
                        target=TARGETS, steps=16, implementation="captum")
    assert theirs.info["translation"] is not None  # it really ran on a PyTorch translation
    assert theirs.attributions.shape == nets["x_nhwc"].shape  # back in the Keras layout
    assert relative(theirs.attributions, ours.attributions) < 1e-5


def test_captum_layer_conductance_on_a_keras_model_maps_the_layer(nets):
    ours = cl.explain(nets["keras"], nets["x_nhwc"], "saliency", target=TARGETS, layer="conv2")
    theirs = cl.explain(nets["keras"], nets["x_nhwc"], "saliency", target=TARGETS,
                        layer="conv2", implementation="captum")
    # layer attributions come back in the original (Keras, channels-last) layout
    assert theirs.attributions.shape == ours.attributions.shape
    assert relative(theirs.attributions, ours.attributions) < 1e-5


def test_tf_keras_vis_grad_cam_on_a_torch_model_equals_ours(nets):
    ours = cl.explain(nets["torch"], nets["x_nchw"], "grad_cam", target=TARGETS, layer="relu2")
    theirs = cl.explain(nets["torch"], nets["x_nchw"], "grad_cam", target=TARGETS,
                        layer="relu2", implementation="tf-keras-vis")
    assert relative(theirs.attributions, ours.attributions) < 1e-5


@pytest.mark.parametrize("method", ["grad_cam_plus_plus", "layer_cam"])
def test_tf_keras_vis_cams_on_a_keras_model_equal_ours(nets, method):
    ours = cl.explain(nets["keras"], nets["x_nhwc"], method, target=TARGETS, layer="relu2")
    theirs = cl.explain(nets["keras"], nets["x_nhwc"], method, target=TARGETS, layer="relu2",
                        implementation="tf-keras-vis")
    assert relative(theirs.attributions, ours.attributions) < 1e-5


@pytest.mark.parametrize("method", ["guided_backprop", "deconvnet"])
def test_zennit_modified_gradients_equal_ours(nets, method):
    ours = cl.explain(nets["torch"], nets["x_nchw"], method, target=TARGETS)
    theirs = cl.explain(nets["torch"], nets["x_nchw"], method, target=TARGETS,
                        implementation="zennit")
    assert relative(theirs.attributions, ours.attributions) < 1e-6


def test_zennit_lrp_conserves_relevance_on_a_bias_free_relu_net():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 8 * 8, 4, bias=False)).eval()
    x = torch.rand(2, 3, 8, 8)
    logits = model(x).detach()
    target = logits.argmax(1).tolist()
    exp = cl.explain(model, x, "lrp", target=target, implementation="zennit",
                     composite="epsilon_plus")
    relevance = exp.attributions.reshape(2, -1).sum(1)
    chosen = logits[torch.arange(2), target]
    # z+ and epsilon rules conserve relevance up to the epsilon stabilizer (no biases)
    assert torch.allclose(relevance, chosen, rtol=1e-3)
    assert torch.equal(torch.tensor([m.training for m in model.modules()]),
                       torch.zeros(len(list(model.modules())), dtype=torch.bool))


def test_seeded_toolset_run_leaves_the_global_rng_alone(nets):
    state = torch.get_rng_state()
    first = cl.explain(nets["torch"], nets["x_nchw"], "smoothgrad", target=TARGETS, samples=4,
                       seed=3, implementation="captum").attributions
    again = cl.explain(nets["torch"], nets["x_nchw"], "smoothgrad", target=TARGETS, samples=4,
                       seed=3, implementation="captum").attributions
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(first, again)


def test_native_captum_classes_are_available_by_name(nets):
    exp = cl.explain(nets["torch"], nets["x_nchw"], "DeepLift", target=TARGETS,
                     implementation="captum")
    ours = cl.explain(nets["torch"], nets["x_nchw"], "gradient_x_input", target=TARGETS)
    # DeepLift (rescale) from a zero baseline on a ReLU net with max-pool: same sign pattern
    # and completeness, not the same numbers; check completeness against the logits.
    logits = nets["torch"](torch.as_tensor(nets["x_nchw"])).detach().numpy()
    zero = nets["torch"](torch.zeros_like(torch.as_tensor(nets["x_nchw"]))).detach().numpy()
    sums = exp.attributions.reshape(3, -1).sum(1)
    expected = logits[np.arange(3), TARGETS] - zero[np.arange(3), TARGETS]
    np.testing.assert_allclose(sums, expected, rtol=1e-4)
    assert ours.attributions.shape == exp.attributions.shape


def test_compare_reports_agreement_and_draws_the_differences(nets, tmp_path):
    comparison = cl.compare(nets["torch"], nets["x_nchw"], "integrated_gradients",
                            implementations=["crosslens", "captum"], target=TARGETS, steps=16)
    (agreement,) = comparison.agreements
    assert agreement.max_relative_difference < 1e-5
    assert agreement.cosine > 1 - 1e-9 and agreement.spearman > 0.999
    path = comparison.save(str(tmp_path / "cmp.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "captum" in str(comparison)


def test_unknown_implementation_lists_the_valid_ones(nets):
    with pytest.raises(cl.UnsupportedError, match="captum"):
        cl.explain(nets["torch"], nets["x_nchw"], "saliency", implementation="captun")


def test_a_method_the_toolset_lacks_is_named(nets):
    with pytest.raises(cl.UnsupportedError, match="eigen_cam"):
        cl.explain(nets["keras"], nets["x_nhwc"], "eigen_cam", implementation="tf-keras-vis")


def test_tf_keras_vis_activation_maximization_raises_the_target_score(nets):
    start = nets["x_nchw"][:1]
    model = nets["torch"]  # a PyTorch model: runs on its Keras translation
    result = cl.explain(model, start, "activation_maximization", target=[3],
                        implementation="tf-keras-vis", steps=30)
    assert result.attributions.shape == start.shape  # optimized image, original layout
    before = model(torch.as_tensor(start)).detach().numpy()[0, 3]
    after = model(torch.as_tensor(result.attributions)).detach().numpy()[0, 3]
    assert after > before + 0.1
