"""The monitor in a hand-written PyTorch loop: logged values equal a direct recomputation
on a copy of the model at each epoch, training is bit-identical with and without it, the
time budget skips steps, and no TensorFlow is imported."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from monitor_helpers import (PROBES, at, check_logged_step, decode_png, events,  # noqa: E402
                             nchw, task, torch_net)

import crosslens as cl  # noqa: E402
from crosslens.monitor import HtmlLog, Monitor  # noqa: E402

EPOCHS = 3


def train(monitor: Monitor | None, epochs: int = EPOCHS, snapshots: dict | None = None,
          seed: int = 0):
    """SGD with momentum, dropout active, shuffled batches drawn from torch's global RNG:
    anything the monitor drew from those streams would change the weights."""
    x, y = task(seed)
    xs, ys = torch.as_tensor(nchw(x)), torch.as_tensor(y)
    model = torch_net(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        for index in torch.randperm(len(xs)).split(16):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xs[index]), ys[index]).backward()
            optimizer.step()
        if monitor is not None:
            monitor.step(model, epoch)
        if snapshots is not None:
            snapshots[epoch] = copy.deepcopy(model).eval()
    return model, optimizer


def probes():
    x, y = task(1, PROBES)
    return x, nchw(x), y


def test_logged_values_equal_a_direct_recomputation(tmp_path):
    images, probe_x, probe_y = probes()
    snapshots: dict = {}
    monitor = Monitor(probe_x, probe_y, methods=["saliency"], layers=["relu1"],
                      featurevis={"layer": "conv2", "channels": [3], "steps": 5},
                      log_dir=tmp_path)
    train(monitor, snapshots=snapshots)
    monitor.close()
    log = events(tmp_path)
    previous = None
    for epoch, model in snapshots.items():
        with torch.no_grad():
            relu1 = model.relu1(model.conv1(torch.as_tensor(probe_x))).numpy()
        previous = check_logged_step(log, epoch, model, probe_x, probe_y, images,
                                     np.transpose(relu1, (0, 2, 3, 1)), previous)
        # the feature visualization: a 5-step run, as cl.visualize gives it with the seed
        direct = cl.visualize(model, cl.Channel("conv2", 3), steps=5, seed=0, size=(16, 16),
                              channels=1, transforms=None).images[0]
        logged = decode_png(at(log.Images("featurevis/conv2/channel 3 (5 steps)"), epoch)
                            .encoded_image_string)
        grey = np.rint((direct - direct.min()) / np.ptp(direct) * 255)  # shown min-max scaled
        np.testing.assert_array_equal(logged[::logged.shape[0] // 16, ::logged.shape[0] // 16],
                                      np.repeat(grey, 3, axis=-1))


def test_training_is_identical_with_and_without_the_monitor(tmp_path):
    _, probe_x, probe_y = probes()
    plain, plain_optimizer = train(None)
    monitor = Monitor(probe_x, probe_y, methods=["saliency", ("smoothgrad", {"samples": 4}),
                                                 ("grad_cam", {"layer": "relu2"})],
                      layers=["relu1", "relu2"], targets=["label", "predicted"],
                      featurevis={"layer": "conv2", "channels": [0], "steps": 4},
                      log_dir=tmp_path)
    watched, watched_optimizer = train(monitor)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(plain_optimizer.state.values(), watched_optimizer.state.values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    assert sorted(monitor.scalars) == list(range(EPOCHS))


def test_a_step_leaves_modes_gradients_and_random_streams_as_they_were(tmp_path):
    x, y = task(0, 16)
    model = torch_net(0)
    model.train()
    model.drop.eval()  # a mixed state must come back as it was, not as all-train
    torch.nn.functional.cross_entropy(model(torch.as_tensor(nchw(x))), torch.as_tensor(y)
                                      ).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    modes = {n: m.training for n, m in model.named_modules()}
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    _, probe_x, probe_y = probes()
    Monitor(probe_x, probe_y, methods=["saliency", "integrated_gradients"], layers=["relu2"],
            featurevis={"layer": "conv2", "channels": [1], "steps": 2},
            sinks=[HtmlLog(tmp_path / "log.html")]).step(model, 0)
    assert {n: m.training for n, m in model.named_modules()} == modes
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]) and p.requires_grad, n
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()


def test_over_budget_steps_are_skipped_with_a_note(tmp_path):
    _, probe_x, probe_y = probes()
    monitor = Monitor(probe_x, probe_y, methods=["saliency"], log_dir=tmp_path,
                      time_budget=1e-9)
    train(monitor)
    monitor.close()
    assert list(monitor.scalars) == [0]  # the first step measures the cost, then skips
    log = events(tmp_path)
    assert [e.step for e in log.Scalars("monitor/seconds")] == [0]
    notes = log.Tensors("notes/step")
    assert [e.step for e in notes] == [1, 2]
    assert all(b"time budget" in e.tensor_proto.string_val[0] for e in notes)
    page = (tmp_path / "visual_log.html").read_text()
    assert page.count("over the time budget") == EPOCHS - 1


def test_every_logs_only_every_nth_epoch(tmp_path):
    _, probe_x, probe_y = probes()
    monitor = Monitor(probe_x, probe_y, every=2, sinks=[HtmlLog(tmp_path / "log.html")])
    train(monitor, epochs=5)
    assert sorted(monitor.scalars) == [0, 2, 4]


def test_logging_from_a_torch_loop_imports_no_tensorflow(tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_monitor_torch import train, probes
        from crosslens.monitor import Monitor
        _, probe_x, probe_y = probes()
        monitor = Monitor(probe_x, probe_y, layers=["relu1"], log_dir={str(tmp_path)!r})
        train(monitor, epochs=2)
        monitor.log_images("inputs", probe_x)
        monitor.close()
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not leaked, leaked[:5]
        print("ok")
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
    assert list(tmp_path.glob("events.out.tfevents.*"))
