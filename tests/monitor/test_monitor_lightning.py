"""The Lightning callback on a CPU Trainer: logged values equal a direct recomputation on
a copy of the module at each epoch, and the weights are bit-identical with and without
it."""
from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")
pytest.importorskip("tensorboard")

from monitor_helpers import (PROBES, check_logged_step, events, nchw, task,  # noqa: E402
                             torch_net)

from crosslens.callbacks import LightningCallback  # noqa: E402

EPOCHS = 3


class Classifier(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch_net(0)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class Snapshots(pl.Callback):
    """Test-only: a copy of the module at the end of every training epoch."""

    def __init__(self):
        self.models = {}

    def on_train_epoch_end(self, trainer, module):
        self.models[trainer.current_epoch] = copy.deepcopy(module.net).eval()


def fit(callbacks):
    pl.seed_everything(0, verbose=False)
    x, y = task(0)
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.as_tensor(nchw(x)), torch.as_tensor(y)),
        batch_size=16, shuffle=True)
    module = Classifier()
    trainer = pl.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1,
                         enable_progress_bar=False, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=callbacks)
    trainer.fit(module, data)
    return module, trainer


def test_logged_values_equal_a_direct_recomputation(tmp_path):
    images, probe_y = task(1, PROBES)
    probe_x = nchw(images)
    callback = LightningCallback(probe_x, probe_y, methods=["saliency"], layers=["net.relu1"],
                                 log_dir=tmp_path)
    snapshots = Snapshots()
    fit([callback, snapshots])
    callback.close()
    log = events(tmp_path)
    previous = None
    for epoch, net in snapshots.models.items():
        with torch.no_grad():
            relu1 = net.relu1(net.conv1(torch.as_tensor(probe_x))).numpy()
        previous = check_logged_step(log, epoch, net, probe_x, probe_y, images,
                                     np.transpose(relu1, (0, 2, 3, 1)), previous,
                                     layer="net.relu1")


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    probe_x, probe_y = nchw(task(1, PROBES)[0]), task(1, PROBES)[1]
    plain, plain_trainer = fit([])
    callback = LightningCallback(probe_x, probe_y,
                                 methods=["saliency", ("grad_cam", {"layer": "net.relu2"})],
                                 layers=["net.relu1"], targets=["label", "predicted"],
                                 featurevis={"layer": "net.conv2", "channels": [0], "steps": 4},
                                 log_dir=tmp_path)
    watched, watched_trainer = fit([callback])
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name
    states = [t.optimizers[0].state_dict()["state"] for t in (plain_trainer, watched_trainer)]
    for key in states[0]:
        assert torch.equal(states[0][key]["momentum_buffer"], states[1][key]["momentum_buffer"])
    assert sorted(callback.monitor.scalars) == list(range(EPOCHS))
    assert watched.training == plain.training
