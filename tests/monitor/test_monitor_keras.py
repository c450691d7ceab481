"""The Keras callback in ``model.fit``: logged values equal a direct recomputation on a
copy of the model at each epoch, and the weights are bit-identical with and without it."""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")
pytest.importorskip("tensorboard")

from monitor_helpers import (PROBES, check_logged_step, events, keras_net,  # noqa: E402
                             task)

from crosslens.callbacks import KerasCallback  # noqa: E402

EPOCHS = 3


class Snapshots(keras.callbacks.Callback):
    """Test-only: the weights at the end of every epoch."""

    def __init__(self):
        super().__init__()
        self.weights = {}

    def on_epoch_end(self, epoch, logs=None):
        self.weights[epoch] = [w.copy() for w in self.model.get_weights()]


def fit(callbacks, seed: int = 0):
    """``fit`` with shuffling and active dropout, both drawn from Keras' seeded streams."""
    x, y = task(seed)
    model = keras_net(seed)
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(seed)
    model.fit(x, y, batch_size=16, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=callbacks)
    return model


def test_logged_values_equal_a_direct_recomputation(tmp_path):
    probe_x, probe_y = task(1, PROBES)
    callback = KerasCallback(probe_x, probe_y, methods=["saliency"], layers=["relu1"],
                             log_dir=tmp_path)
    snapshots = Snapshots()
    fit([callback, snapshots])
    callback.close()
    log = events(tmp_path)
    previous = None
    for epoch, weights in snapshots.weights.items():
        model = keras_net()
        model.set_weights(weights)
        relu1 = keras.Model(model.inputs[0], model.get_layer("relu1").output)(probe_x)
        previous = check_logged_step(log, epoch, model, probe_x, probe_y, probe_x,
                                     np.asarray(relu1), previous)


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    probe_x, probe_y = task(1, PROBES)
    plain = fit([])
    callback = KerasCallback(probe_x, probe_y,
                             methods=["saliency", ("smoothgrad", {"samples": 4}),
                                      ("grad_cam", {"layer": "relu2"})],
                             layers=["relu1", "relu2"], targets=["label", "predicted"],
                             featurevis={"layer": "conv2", "channels": [0], "steps": 4},
                             log_dir=tmp_path)
    watched = fit([callback])
    for a, b in zip(plain.get_weights(), watched.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.optimizer.variables, watched.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert sorted(callback.monitor.scalars) == list(range(EPOCHS))
