"""Shared pieces of the monitor tests: a tiny 3-class image task, the nets in PyTorch and
Keras, and the check of a logged step against a direct ``cl.explain`` / numpy recomputation
on a copy of the model at that epoch."""
from __future__ import annotations

import io

import numpy as np
from scipy.stats import spearmanr

import crosslens as cl
from crosslens.viz import overlay

SIZE, CLASSES, PROBES = 16, 3, 6
SCALAR_TOL = 1e-5  # TensorBoard stores scalars as float32


def task(seed: int = 0, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Channels-last noise images whose class is the quadrant that is brighter."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, n)
    x = rng.uniform(0, 0.5, (n, SIZE, SIZE, 1)).astype(np.float32)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 8:(r + 1) * 8, q * 8:(q + 1) * 8] += 0.5
    return x, y.astype(np.int64)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


def torch_net(seed: int = 0, dropout: float = 0.3):
    """conv1 -> relu1 -> pool1 -> conv2 -> relu2 -> gap -> drop -> fc (3 classes)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential()
    for name, module in [("conv1", nn.Conv2d(1, 4, 3, padding=1)), ("relu1", nn.ReLU()),
                         ("pool1", nn.MaxPool2d(2)), ("conv2", nn.Conv2d(4, 8, 3, padding=1)),
                         ("relu2", nn.ReLU()), ("gap", nn.AdaptiveAvgPool2d(1)),
                         ("flatten", nn.Flatten()), ("drop", nn.Dropout(dropout)),
                         ("fc", nn.Linear(8, CLASSES))]:
        model.add_module(name, module)
    return model


def keras_net(seed: int = 0, dropout: float = 0.3):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 1), name="input")
    h = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    h = keras.layers.ReLU(name="relu1")(h)
    h = keras.layers.MaxPooling2D(2, name="pool1")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(h)
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dropout(dropout, name="drop")(h)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="fc")(h))


def events(log_dir):
    """Everything in the event files of ``log_dir``, read with tensorboard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={
        "scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def at(items, step):
    (found,) = [item for item in items if item.step == step]
    return found


def decode_png(encoded: bytes) -> np.ndarray:
    from PIL import Image
    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


def spearman_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([spearmanr(p.ravel(), q.ravel()).statistic for p, q in zip(a, b)])


def check_logged_step(log, step: int, model, probe_x, probe_y, images, activations,
                      previous_maps=None, layer: str = "relu1") -> np.ndarray:
    """Compare what the monitor logged at ``step`` (saliency for the label, activation
    statistics of ``layer``: the model's relu1, computed natively by the caller as
    channels-last ``activations``) with a direct recomputation on ``model`` (a copy of the
    trained model at that step); returns the direct maps for the next step's drift."""
    exp = cl.explain(model, probe_x, "saliency", target=probe_y.tolist(), seed=0)
    maps = exp.image_maps()
    histogram = at(log.Histograms("attribution/saliency/label"), step).histogram_value
    assert histogram.num == maps.size
    np.testing.assert_allclose([histogram.min, histogram.max, histogram.sum],
                               [maps.min(), maps.max(), maps.sum()], rtol=1e-6, atol=1e-9)

    image = decode_png(at(log.Images("attribution/saliency/label"), step).encoded_image_string)
    factor = image.shape[0] // SIZE
    expected = np.concatenate([overlay(im, m) for im, m in zip(images, maps)], axis=1)
    np.testing.assert_array_equal(image[::factor, ::factor], expected)

    outputs = exp.outputs
    scalars = {tag: at(log.Scalars(tag), step).value for tag in log.Tags()["scalars"]
               if any(s.step == step for s in log.Scalars(tag))}
    assert abs(scalars["probe/accuracy"] - (outputs.argmax(1) == probe_y).mean()) < SCALAR_TOL
    order = np.argsort(outputs, axis=1)  # the best class that is not the label
    runner_up = np.where(order[:, -1] == probe_y, order[:, -2], order[:, -1])
    other = cl.explain(model, probe_x, "saliency", target=runner_up.tolist(),
                       seed=0).image_maps()
    assert abs(scalars["class_similarity/saliency"]
               - np.nanmean(spearman_reference(maps, other))) < SCALAR_TOL
    if previous_maps is None:
        assert "drift/saliency/label" not in scalars
    else:
        assert abs(scalars["drift/saliency/label"]
                   - np.nanmean(spearman_reference(previous_maps, maps))) < SCALAR_TOL

    per_channel = activations.reshape(-1, activations.shape[-1])  # channels-last
    dead = float(np.mean([not np.any(per_channel[:, c] != 0)
                          for c in range(per_channel.shape[1])]))
    assert abs(scalars[f"dead_share/{layer}"] - dead) < SCALAR_TOL
    channel_mean = at(log.Histograms(f"channel_mean/{layer}"), step).histogram_value
    means = per_channel.mean(axis=0)
    assert channel_mean.num == len(means)
    np.testing.assert_allclose([channel_mean.min, channel_mean.max, channel_mean.sum],
                               [means.min(), means.max(), means.sum()], rtol=1e-5, atol=1e-7)
    return maps
