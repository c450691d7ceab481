"""The Ray engine on a local cluster (127.0.0.1, 2 CPUs): the same store as the local
engine, also when a worker process is killed (SIGKILL) mid-run and its shard retried."""
from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

import crosslens as cl
from reference.nets import SMALL_CNN

METHODS = {"saliency": {}, "smoothgrad": {"samples": 8}}


def test_ray_equals_local_also_after_a_worker_is_killed(zoo, tmp_path):
    ray = pytest.importorskip("ray")
    from crosslens.dataset.ray_engine import ACTOR_PREFIX
    x = np.concatenate([zoo.x(SMALL_CNN, seed=s) for s in range(10)])
    model = zoo.model("torch", SMALL_CNN)
    options = dict(batch_size=3, seed=4, top_k=3)
    local = cl.explain_dataset(model, x, METHODS, ["conv2"], out=tmp_path / "local", **options)
    result: dict = {}

    def run():
        try:
            result["store"] = cl.explain_dataset(model, x, METHODS, ["conv2"], engine="ray",
                                                 workers=2, out=tmp_path / "ray", **options)
        except BaseException as error:  # surfaced below
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    shards = tmp_path / "ray" / "shards"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive() and (
            not shards.exists() or len(list(shards.glob("*.done"))) < 1):
        time.sleep(0.01)
    assert thread.is_alive(), result.get("error", "the run ended before a worker was killed")
    done_before = len(list(shards.glob("*.done")))
    pid = ray.get(ray.get_actor(f"{ACTOR_PREFIX}0").pid.remote())
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in result, result.get("error")
    assert done_before < len(list(shards.glob("*.done"))) == len(x) // 3
    store = result["store"]
    assert store.complete and not ray.is_initialized()  # the private cluster is stopped
    for method in METHODS:
        np.testing.assert_array_equal(store.attributions(method), local.attributions(method))
    for key in ("ids", "predictions", "target_scores"):
        np.testing.assert_array_equal(store.column(key), local.column(key))
    np.testing.assert_array_equal(store.activations("conv2"), local.activations("conv2"))
    assert store.table().to_pydict() == local.table().to_pydict()
    assert {k: v for k, v in store.manifest.items()} == local.manifest
