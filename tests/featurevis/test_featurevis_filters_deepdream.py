"""Filter grids (every channel of a layer) with a progress bar, and DeepDream octaves."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import crosslens.featurevis as fv
from crosslens.featurevis.filters import layer_channels
from crosslens.core.progress import _SimpleBar, progress_bar
from reference.builders import torch_capture
from reference.numpy_nets import forward


def channel_means(zoo, images, layer="conv2"):
    _, acts = forward(zoo.spec("small_cnn"), np.transpose(images, (0, 3, 1, 2)), capture=(layer,))
    return acts[layer].mean(axis=(2, 3))  # (images, channels)


def test_every_channel_gets_an_image_that_excites_it(zoo, tmp_path):
    model = zoo.model("torch", "small_cnn")
    assert layer_channels(model, "conv2", model_size=16) == 16
    result = fv.visualize_filters(model, "conv2", batch=6, steps=25, size=16, seed=0,
                                  param="pixel", transforms=[fv.Jitter(1)], progress=False)
    assert result.images.shape == (16, 16, 16, 3) and result.titles[5] == "5"
    means = channel_means(zoo, result.images)
    # image c drives channel c harder than the other channels' images do (on average)
    diagonal = np.diag(means)
    others = (means.sum(axis=0) - diagonal) / 15
    assert np.mean(diagonal > others) >= 0.9, (diagonal, others)
    fig = result.figure(ncols=8)
    assert len(fig.axes) == 16
    result.save(str(tmp_path / "filters.png"))
    assert (tmp_path / "filters.png").stat().st_size > 2000


def test_filters_of_a_keras_layer_match_pytorch(zoo):
    kwargs = dict(channels=[0, 5, 7], batch=2, steps=4, size=16, seed=1, param="pixel",
                  transforms=None, progress=False)
    a = fv.visualize_filters(zoo.model("torch", "small_cnn"), "conv1", **kwargs)
    b = fv.visualize_filters(zoo.model("keras", "small_cnn"), "conv1", **kwargs)
    np.testing.assert_allclose(a.images, b.images, atol=1e-10)
    assert a.titles == ["0", "5", "7"]


def test_progress_bar_falls_back_to_stderr_without_tqdm(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    bar = progress_bar(4, "filters", True)
    assert isinstance(bar, _SimpleBar)
    for _ in range(4):
        bar.update(1)
    bar.close()
    err = capsys.readouterr().err
    assert "filters" in err and "4/4" in err
    silent = progress_bar(4, "x", False)
    silent.update(1)
    silent.close()
    assert capsys.readouterr().err == ""


def test_progress_bar_uses_tqdm_when_installed():
    tqdm = pytest.importorskip("tqdm")
    bar = progress_bar(3, "x", True)
    assert isinstance(bar, tqdm.tqdm)
    bar.close()


def _photo(size=32):
    y, x = np.mgrid[0:size, 0:size] / size
    return np.stack([0.5 + 0.3 * np.sin(6 * x), 0.5 + 0.3 * np.cos(5 * y), 0.4 + 0.2 * x * y],
                    axis=-1)


def test_deepdream_amplifies_the_layer_and_keeps_the_photo(zoo):
    model, photo = zoo.model("torch", "small_cnn"), _photo()
    result = fv.deepdream(model, photo, "conv2", octaves=3, octave_scale=1.4, steps=6,
                          lr=0.02, seed=0)
    assert result.info["octaves"] == [(16, 16), (23, 23), (32, 32)]
    import torch

    def energy(images):  # the 16x16 numpy reference cannot take 32x32 images: hooks
        x = torch.tensor(np.transpose(images, (0, 3, 1, 2)))
        return float((torch_capture(model, x, ["conv2"])["conv2"] ** 2).mean())

    assert energy(result.images) > 2 * energy(photo[None])
    correlation = np.corrcoef(result.images[0].ravel(), photo.ravel())[0, 1]
    assert correlation > 0.5  # a dream of this photo, not a new image


def test_deepdream_on_a_fixed_size_keras_model_matches_pytorch(zoo):
    kwargs = dict(octaves=2, steps=3, lr=0.02, seed=0, model_size=16)
    a = fv.deepdream(zoo.model("torch", "small_cnn"), _photo(24), fv.layer("conv2"), **kwargs)
    b = fv.deepdream(zoo.model("keras", "small_cnn"), _photo(24), fv.layer("conv2"), **kwargs)
    np.testing.assert_allclose(a.images, b.images, atol=1e-10)
