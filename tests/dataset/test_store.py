"""The dataset store: equal to cl.explain sample by sample, independent of the shard size
(per-sample seeds), reductions equal to numpy on the stored arrays, the table, refusals,
and a run killed (SIGKILL) at random moments and resumed equal to an uninterrupted one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import crosslens as cl
from crosslens.dataset.engine import _sample_seed
from reference.nets import SMALL_CNN

N = 10
METHODS = {"saliency": {}, "integrated_gradients": {"steps": 4},
           "smoothgrad": {"samples": 3}, "grad_cam": {"layer": "conv2"}}


def _data(zoo, n=N):
    x = np.concatenate([zoo.x(SMALL_CNN, seed=s) for s in range(4)])[:n]
    labels = np.arange(n) % 5
    return x, labels


@pytest.fixture(scope="module")
def run(zoo, tmp_path_factory):
    x, labels = _data(zoo)
    out = tmp_path_factory.mktemp("store") / "a"
    store = cl.explain_dataset(zoo.model("torch", SMALL_CNN), x, METHODS, ["conv2", "fc"],
                               labels=labels, out=out, batch_size=4, seed=3, top_k=3)
    return store, x, labels


def test_the_store_equals_explain_sample_by_sample(zoo, run):
    store, x, labels = run
    model = zoo.model("torch", SMALL_CNN)
    assert store.complete and len(store) == N
    logits = np.asarray(cl.explain(model, x, "saliency").outputs)
    predicted = logits.argmax(1)
    np.testing.assert_array_equal(store.column("predictions"), predicted)
    np.testing.assert_array_equal(store.column("labels"), labels)
    np.testing.assert_allclose(store.column("target_scores"), logits[np.arange(N), predicted])
    np.testing.assert_array_equal(store.column("top_classes"),
                                  np.argsort(-logits, axis=1, kind="stable")[:, :3])
    for method, options in METHODS.items():
        stored = store.attributions(method)
        for i in range(N):
            seed = _sample_seed(3, i) if method == "smoothgrad" else 3
            want = cl.explain(model, x[i:i + 1], method, target=int(predicted[i]), seed=seed,
                              **options).attributions
            np.testing.assert_allclose(stored[i], np.asarray(want)[0].astype(np.float32),
                                       rtol=1e-5, atol=1e-7, err_msg=f"{method} sample {i}")
    acts = cl.activations(model, x, ["conv2", "fc"])
    conv = np.asarray(acts["conv2"]).astype(np.float32)
    np.testing.assert_allclose(store.activations("conv2"), conv.mean(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(store.activations("conv2", "max"), conv.max(axis=(2, 3)))
    np.testing.assert_array_equal(store.activations("conv2", "argmax"),
                                  conv.reshape(N, conv.shape[1], -1).argmax(2))
    np.testing.assert_allclose(store.activations("fc"), np.asarray(acts["fc"]), rtol=1e-5)


def test_the_shard_size_changes_nothing(zoo, run, tmp_path):
    store, x, labels = run
    other = cl.explain_dataset(zoo.model("torch", SMALL_CNN), x, METHODS, ["conv2", "fc"],
                               labels=labels, out=tmp_path / "b", batch_size=3, seed=3,
                               top_k=3)
    for method in METHODS:
        np.testing.assert_allclose(other.attributions(method), store.attributions(method),
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(other.top_k("conv2", 1)[0], store.top_k("conv2", 1)[0])


def test_reductions_equal_numpy_on_the_stored_arrays(run):
    store, x, labels = run
    for method in METHODS:
        values = store.attributions(method).astype(np.float64)
        classes, mean, count = store.class_mean(method)
        np.testing.assert_array_equal(classes, np.arange(5))
        for c in range(5):
            np.testing.assert_allclose(mean[c], values[labels == c].mean(0), rtol=1e-5)
            assert count[c] == (labels == c).sum()
    for layer in ("conv2", "fc"):
        pooled = store.activations(layer).astype(np.float64)
        m, s = store.channel_stats(layer)
        np.testing.assert_allclose(m, pooled.mean(0), rtol=1e-9)
        np.testing.assert_allclose(s, pooled.std(0), rtol=1e-6, atol=1e-9)
        maxima, where = store.activations(layer, "max"), store.activations(layer, "argmax")
        for channel in range(pooled.shape[1]):
            ids, values, positions = store.top_k(layer, channel)
            order = np.lexsort((np.arange(N), -maxima[:, channel].astype(np.float64)))[:9]
            np.testing.assert_array_equal(ids, order)
            np.testing.assert_array_equal(values, maxima[order, channel])
            np.testing.assert_array_equal(positions, where[order, channel])


def test_the_table(run):
    store, x, labels = run
    table = store.table().to_pydict()
    assert table["id"] == list(range(N))
    assert table["label"] == labels.tolist()
    assert table["correct"] == (labels == store.column("predictions")).tolist()
    np.testing.assert_allclose(table["score"], store.column("target_scores"))
    assert [len(t) for t in table["top_classes"]] == [3] * N


def test_refusals_are_specific(zoo, run, tmp_path):
    store, x, labels = run
    model = zoo.model("torch", SMALL_CNN)
    with pytest.raises(cl.StoreError, match="already holds a store"):
        cl.explain_dataset(model, x, METHODS, ["conv2", "fc"], labels=labels, out=store.path,
                           batch_size=4, seed=3, top_k=3)
    with pytest.raises(cl.StoreError, match="configuration differs"):
        cl.explain_dataset(model, x, {"saliency": {}}, ["conv2", "fc"], labels=labels,
                           out=store.path, batch_size=4, seed=3, top_k=3, resume=True)
    with pytest.raises(cl.StoreError, match="model"):
        cl.explain_dataset(zoo.model("torch", SMALL_CNN, seed=1), x, METHODS,
                           ["conv2", "fc"], labels=labels, out=store.path, batch_size=4,
                           seed=3, top_k=3, resume=True)
    with pytest.raises(cl.UnsupportedError, match="compares the samples"):
        cl.explain_dataset(model, x, ["feature_permutation"], out=tmp_path / "p")
    with pytest.raises(cl.OptionError, match="labels"):
        cl.explain_dataset(model, x, ["saliency"], target="label", out=tmp_path / "l")
    with pytest.raises(cl.OptionError, match="engine"):
        cl.explain_dataset(model, x, ["saliency"], engine="spark", out=tmp_path / "r")
    with pytest.raises(cl.StoreError, match="not a crosslens store"):
        cl.open_store(tmp_path)


def test_a_keras_model_and_float16(zoo, tmp_path):
    x, _ = _data(zoo, 4)
    model = zoo.model("keras", SMALL_CNN)
    store = cl.explain_dataset(model, zoo.nhwc(x), ["saliency"], ["conv2"], out=tmp_path / "k",
                               batch_size=3, float16=True)
    want = np.asarray(cl.explain(model, zoo.nhwc(x), "saliency").attributions)
    assert store.attributions("saliency").dtype == np.float16
    np.testing.assert_allclose(store.attributions("saliency"), want.astype(np.float16),
                               rtol=1e-3, atol=1e-6)


MODEL_FILE = '''
import torch

def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, padding=1),
        torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3)
    ).double().eval()
'''


def _cli(model_file: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "crosslens", "run", f"{model_file}:build", str(data),
            "--method", "saliency", "--method", "smoothgrad", "--option", "samples=8",
            "--layer", "2", "--out", str(out), "--batch-size", "3", "--seed", "5", *extra]


def _done(store: Path) -> int:
    return len(list((store / "shards").glob("*.done"))) if (store / "shards").exists() else 0


def _snapshot(path: Path) -> dict:
    store = cl.open_store(path)
    arrays = {m: store.attributions(m) for m in store.methods}
    arrays.update({f"{k}": store.column(k) for k in ("ids", "predictions", "target_scores")})
    arrays.update({"act": store.activations("2"), "top": store.top_k("2", 0)[0]})
    return {"arrays": arrays, "table": store.table().to_pydict(),
            "manifest": {k: v for k, v in store.manifest.items() if k != "complete"}}


def test_a_run_killed_at_random_moments_resumes_to_the_same_store(tmp_path):
    (tmp_path / "model.py").write_text(MODEL_FILE)
    data = tmp_path / "data.npy"
    np.save(data, np.random.default_rng(0).standard_normal((60, 1, 8, 8)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(cl.__file__).parents[1])] + sys.path), OMP_NUM_THREADS="1")
    whole = tmp_path / "whole"
    start = time.perf_counter()
    subprocess.run(_cli(tmp_path / "model.py", data, whole), check=True, env=env,
                   capture_output=True, timeout=300)
    duration = time.perf_counter() - start
    killed = tmp_path / "killed"
    rng = np.random.default_rng(1)
    # kill points: when a random number of shards is done, plus a random delay (often
    # mid-shard, between a shard's arrays and its marker), and once during startup
    targets = sorted(rng.choice(np.arange(2, 19), size=3, replace=False).tolist())
    kills = 0
    for attempt in range(len(targets) + 2):
        args = _cli(tmp_path / "model.py", data, killed, *(["--resume"] if attempt else []))
        process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        if attempt == 0:
            time.sleep(float(rng.uniform(0.2, 1.0)))
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            continue
        if targets:
            target = targets.pop(0)
            while process.poll() is None and _done(killed) < target:
                time.sleep(0.005)
            time.sleep(float(rng.uniform(0.0, 0.05)))
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
                kills += 1
                continue
        assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
        break
    else:
        pytest.fail("the run never completed")
    assert kills == 4, kills
    done = sorted((killed / "shards").glob("*.done"))
    assert len(done) == 20
    a, b = _snapshot(whole), _snapshot(killed)
    assert a["manifest"] == b["manifest"] and a["table"] == b["table"]
    for key, value in a["arrays"].items():
        np.testing.assert_array_equal(b["arrays"][key], value, err_msg=key)


def test_the_local_engine_imports_no_ray(tmp_path):
    code = (f"import sys, numpy as np, torch, crosslens as cl\n"
            f"m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))\n"
            f"cl.explain_dataset(m, np.ones((3, 4), np.float32), ['saliency'],"
            f" out={str(tmp_path / 's')!r})\n"
            f"assert 'ray' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env=dict(os.environ, PYTHONPATH=str(Path(cl.__file__).parents[1])))
