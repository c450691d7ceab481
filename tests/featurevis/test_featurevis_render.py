"""The optimization loop: deterministic, the same on PyTorch and Keras, the same as a
hand-written PyTorch Adam loop, and it leaves the model as it was."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl
import crosslens.featurevis as fv
from crosslens.core.errors import InputError, OptionError

STEPS = 12


def run(model, objective, **options):
    defaults = dict(size=16, batch=3, steps=STEPS, seed=0, record=range(1, STEPS + 1))
    defaults.update(options)
    return cl.visualize(model, objective, **defaults)


def sequence(result):
    return np.stack([result.history[k] for k in sorted(result.history)])


@pytest.mark.parametrize("kind,layer", [("small_cnn", "conv2"), ("small_resnet", "block.conv1")])
def test_pytorch_and_keras_give_the_same_image_sequence(zoo, kind, layer):
    """Same weights, same objective, same seed: the same images at every step (pixel
    parameterization, no random transforms), to float64 round-off."""
    objective = lambda flavor: (fv.channel(zoo.layer(flavor, layer), [0, 3, 5])  # noqa: E731
                                + 0.5 * fv.class_logit(2))
    results = [run(zoo.model(f, kind), objective(f), param="pixel", value_range="sigmoid",
                   transforms=None) for f in ("torch", "keras")]
    a, b = sequence(results[0]), sequence(results[1])
    assert np.abs(a[-1] - a[0]).max() > 0.05  # the images did change
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(results[0].scores, results[1].scores, rtol=1e-9)


def test_parity_holds_with_fourier_transforms_and_regularizers(zoo):
    """All randomness and image processing is host-side: the full default pipeline (Fourier,
    standard transforms, penalties, blur) is backend-independent too."""
    options = dict(size=24, model_size=16, batch=2, param="fourier",
                   regularizers=[fv.TotalVariation(0.1), fv.L1(0.05), fv.Blur(0.5, every=3)])
    results = [run(zoo.model(f, "small_cnn"), fv.class_prob([1, 3], log=True), **options)
               for f in ("torch", "keras")]
    np.testing.assert_allclose(sequence(results[0]), sequence(results[1]), atol=1e-9)


def test_seed_makes_runs_deterministic(zoo):
    model = zoo.model("torch", "small_cnn")
    a, b = (run(model, fv.class_logit(1), seed=3) for _ in range(2))
    c = run(model, fv.class_logit(1), seed=4)
    np.testing.assert_array_equal(sequence(a), sequence(b))
    assert not np.allclose(a.images, c.images)


def test_loop_equals_a_hand_written_torch_adam_loop(zoo):
    """pixel + sigmoid + Adam without transforms is exactly: p <- Adam ascent on
    logit(sigmoid(p)) -- checked against torch.optim.Adam."""
    torch = pytest.importorskip("torch")
    model = zoo.model("torch", "small_resnet")
    result = run(model, fv.class_logit([0, 1, 2]), param="pixel", value_range="sigmoid",
                 transforms=None, lr=0.1, init="random")
    rng = np.random.default_rng(0)  # the same start: a uniform random image
    start = np.clip(rng.uniform(0, 1, (3, 16, 16, 3)), 1e-3, 1 - 1e-3)
    p = torch.tensor(np.log(start) - np.log1p(-start), requires_grad=True)
    opt = torch.optim.Adam([p], lr=0.1)
    images = []
    for _ in range(STEPS):
        opt.zero_grad()
        image = torch.sigmoid(p)
        loss = -model(image.permute(0, 3, 1, 2))[[0, 1, 2], [0, 1, 2]].sum()
        loss.backward()
        opt.step()
        images.append(torch.sigmoid(p).detach().numpy())
    np.testing.assert_allclose(sequence(result), np.stack(images), atol=1e-12)


@pytest.mark.parametrize("flavor,param", [("torch", "fourier"), ("keras", "pixel")])
def test_optimization_raises_the_objective(zoo, flavor, param):
    result = run(zoo.model(flavor, "small_cnn"), fv.channel(zoo.layer(flavor, "conv2"), [1, 2, 3]),
                 steps=30, record=(), param=param, lr=0.1, transforms=[fv.Jitter(1)])
    assert np.all(result.final_scores > result.scores[0] + 0.05)
    assert result.images.shape == (3, 16, 16, 3)
    assert 0.0 <= result.images.min() and result.images.max() <= 1.0
    assert result.inputs.shape == ((3, 3, 16, 16) if flavor == "torch" else (3, 16, 16, 3))


def test_normalization_and_upsampling_reach_the_model(zoo):
    """size != model_size: images are resized for the model; inputs carry mean/std."""
    model = zoo.model("torch", "small_cnn")
    result = run(model, 1, size=8, model_size=16, mean=[0.4, 0.5, 0.6], std=0.2, steps=2,
                 transforms=None, record=())
    from crosslens.viz import resize_bilinear
    expected = (resize_bilinear(result.images[0], (16, 16)) - [0.4, 0.5, 0.6]) / 0.2
    np.testing.assert_allclose(result.inputs[0].transpose(1, 2, 0), expected, atol=1e-12)
    scores = model(__import__("torch").tensor(result.inputs)).detach().numpy()[:, 1]
    np.testing.assert_allclose(result.final_scores, scores, rtol=1e-10)


@pytest.mark.parametrize("init", ["mean", "image"])
def test_starting_points(zoo, init):
    model = zoo.model("torch", "small_cnn")
    photo = np.random.default_rng(1).uniform(0.2, 0.8, (16, 16, 3))
    value = photo if init == "image" else "mean"
    result = run(model, 1, steps=0, init=value, mean_image=[0.2, 0.4, 0.6], param="pixel",
                 transforms=None)
    expected = photo if init == "image" else np.broadcast_to([0.2, 0.4, 0.6], (16, 16, 3))
    np.testing.assert_allclose(result.images, np.broadcast_to(expected, (3, 16, 16, 3)),
                               atol=1e-12)
    # channels-first input and resizing are understood too
    chw = np.transpose(photo, (2, 0, 1))[None]
    resized = run(model, 1, steps=0, init=chw, size=8, param="pixel", transforms=None)
    from crosslens.viz import resize_bilinear
    np.testing.assert_allclose(resized.images[0], resize_bilinear(photo, (8, 8)), atol=1e-12)


def test_model_is_unchanged_also_after_errors(zoo):
    torch = pytest.importorskip("torch")
    model = zoo.build("torch", "small_cnn")
    model.train()
    model.fc.weight.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(model, fv.channel("conv2", 1), steps=2)
    with pytest.raises(Exception):
        run(model, fv.channel("conv2", 99), steps=2)
    assert model.training and model.fc.weight.requires_grad and model.conv1.weight.requires_grad
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


def test_errors_name_the_fix(zoo):
    torch_model, keras_model = zoo.model("torch", "small_cnn"), zoo.model("keras", "small_cnn")
    with pytest.raises(InputError, match="model_size"):
        run(keras_model, 1, size=12, model_size=12, steps=1)
    with pytest.raises(OptionError, match="no option 'stepz'"):
        fv.render.run(torch_model, 1, stepz=3)
    with pytest.raises(OptionError, match="init must be"):
        run(torch_model, 1, init="zeros")
    with pytest.raises(OptionError, match="param='pixel'"):
        run(torch_model, 1, regularizers=[fv.NormClip(5)])
    with pytest.raises(OptionError, match="3 channels"):
        run(torch_model, 1, channels=1, decorrelate=True)


def test_keras_model_size_is_read_from_the_model(zoo):
    result = cl.visualize(zoo.model("keras", "small_cnn"), 0, steps=1, seed=0)
    assert result.images.shape == (1, 16, 16, 3) and result.info["model_size"] == (16, 16)


def test_yosinski_regularizers_run_and_clip(zoo):
    """Pixel AM with decay, blur and both clippings (Yosinski's best setting, scaled)."""
    result = run(zoo.model("torch", "small_cnn"), fv.class_logit(2), param="pixel", steps=10,
                 transforms=None, lr=0.05, optimizer="sgd",
                 regularizers=[fv.L2(0.01), fv.Blur(0.5, every=4), fv.NormClip(20),
                               fv.ContributionClip(20)], record=())
    gray = np.isclose(result.images, 0.5).all(axis=-1).mean(axis=(1, 2))
    assert np.all(gray >= 0.19)  # at least the clipped 20% of pixels sit at zero (gray)
    assert set(result.info["penalty_values"]) == {repr(fv.L2(0.01))}


def test_result_figure_and_benchmark_function(zoo, tmp_path):
    result = run(zoo.model("torch", "small_cnn"), fv.class_logit([0, 1, 2]), steps=2)
    path = result.save(str(tmp_path / "fv.png"), titles=["a", "b", "c"])
    assert (tmp_path / "fv.png").stat().st_size > 1000 and path.endswith("fv.png")
    assert "FeatureVisualization(class_logit([0, 1, 2])" in repr(result)
    speed = fv.steps_per_second(zoo.model("torch", "small_cnn"), size=16, batch=2, steps=2,
                                warmup=1)
    assert speed["steps_per_second"] > 0 and speed["backend_ms_per_step"] > 0
    assert abs(speed["ms_per_step"] - speed["backend_ms_per_step"]
               - speed["host_ms_per_step"]) < 1e-6
