"""Frames for the Live view, and feature visualizations of several channels batched into
one optimization by the job worker."""
from __future__ import annotations

import threading

import numpy as np

from crosslens.inspector.jobs import Job


def test_frames_become_instances(torch_inspector, torch_model, digits, tmp_path):
    from PIL import Image

    from crosslens.inspector import Inspector
    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * k, np.uint8)).save(folder / f"f{k}.png")
    (folder / "notes.txt").write_text("not a frame")
    x, y = digits
    live = Inspector(torch_model, np.ascontiguousarray(x.transpose(0, 3, 1, 2)),
                     torch_inspector.store.path, labels=y, frames=folder, progress=False)
    frames = live.instances.frames()
    assert [f["name"] for f in frames] == ["f0.png", "f1.png", "f2.png"]
    assert [f["index"] for f in frames] == [120, 121, 122]
    np.testing.assert_allclose(live.instances.sample(121), np.full((1, 1, 8, 8), 60 / 255),
                               rtol=1e-5)
    assert live.instance(122)["name"] == "f2.png"
    assert live.channel("conv2", 0, 121)["index"] == 121


def test_featurevis_jobs_of_one_layer_run_as_one_batch(torch_inspector):
    gate = threading.Event()
    blocker = torch_inspector.jobs.submit(Job(id="gate", kind="test",
                                              run=lambda jobs, p: [gate.wait(30)]))
    jobs = [torch_inspector.submit_featurevis("relu1", channel=c, steps=4) for c in (1, 2, 3)]
    gate.set()
    done = [torch_inspector.jobs.wait(j.id, 60) for j in jobs + [blocker]]
    assert all(j.status == "done" for j in done)
    metas = [torch_inspector.cache.load("featurevis", torch_inspector.featurevis.key(
        "relu1", c, 4))[0] for c in (1, 2, 3)]
    assert [m["batch"] for m in metas] == [3, 3, 3]
    assert len({m["image"] for m in metas}) == 3  # one image per channel
    again = torch_inspector.submit_featurevis("relu1", channel=2, steps=4)
    assert again.status == "done"
    # optimized on a private copy (the page's other views are not blocked); model unchanged
    from crosslens.backends import get_backend
    copy = torch_inspector.featurevis._copy
    assert copy is not torch_inspector.model
    assert get_backend(copy).weights_digest() == torch_inspector.weights == \
        get_backend(torch_inspector.model).weights_digest()


def test_precompute_featurevis_skips_cached_channels(torch_inspector):
    torch_inspector.featurevis.steps = 4  # a test-sized default
    try:
        assert torch_inspector.precompute_featurevis(2, ["conv2"], progress=False) == 2
        assert torch_inspector.precompute_featurevis(2, ["conv2"], progress=False) == 0
        channel = torch_inspector.matrix("conv2", "variance")["order"][0]
        status = torch_inspector.channel("conv2", channel, 0)["featurevis"]
        assert status["status"] == "ready" and status["preview"] is False
    finally:
        torch_inspector.featurevis.steps = 512
