"""The same views on the Keras build of the digit CNN (same weights): numbers against
numpy on its store and its own passes, and parity with the PyTorch build."""
from __future__ import annotations

import numpy as np
import pytest

import crosslens as cl


@pytest.fixture(scope="module")
def client(keras_inspector):
    from starlette.testclient import TestClient

    from crosslens.inspector import create_app
    with TestClient(create_app(keras_inspector)) as client:
        yield client


def test_session_matrix_and_projection_equal_numpy(client, keras_inspector, digits):
    _, labels = digits
    s = client.get("/api/session").json()
    assert s["model"]["framework"] == "keras" and s["model"]["input_shape"] == [8, 8, 1]
    assert s["default_layer"] == "relu2"
    conv2 = next(l for l in s["layers"] if l["name"] == "conv2")
    assert conv2["shape"] == [4, 4, 16] and conv2["channels"] == 16
    pooled = np.asarray(keras_inspector.store.activations("conv2"), np.float64)
    m = client.get("/api/matrix", params={"layer": "conv2", "sort": "difference",
                                          "a": "label:0", "b": "label:1"}).json()
    want = np.argsort(-np.abs(pooled[labels == 0].mean(0) - pooled[labels == 1].mean(0)),
                      kind="stable")
    assert m["order"] == want.tolist()
    rows = {r["subset"]: r for r in m["rows"]}
    np.testing.assert_allclose(rows["label:0"]["values"], pooled[labels == 0].mean(0)[want],
                               rtol=1e-5)
    p = client.get("/api/projection", params={"layer": "conv2"}).json()
    centred = pooled - pooled.mean(0)
    u, sv, _ = np.linalg.svd(centred, full_matrices=False)
    for k in range(2):
        got, ref = np.asarray(p["points"])[:, k], u[:, k] * sv[k]
        np.testing.assert_allclose(got, np.sign(got @ ref) * ref, atol=1e-4)


def test_parity_with_the_torch_build(client, torch_inspector, keras_inspector):
    for layer in ("conv2", "relu2"):
        np.testing.assert_allclose(keras_inspector.store.activations(layer),
                                   torch_inspector.store.activations(layer), rtol=1e-4,
                                   atol=1e-5)
        assert keras_inspector.matrix(layer)["order"] == torch_inspector.matrix(layer)["order"]
    k = client.get("/api/dictionary", params={"layer": "conv2", "index": 9, "y": 1, "x": 2,
                                              "k": 5}).json()
    t = torch_inspector.dictionary("conv2", 9, 1, 2, 5)
    assert [c["channel"] for c in k["channels"]] == [c["channel"] for c in t["channels"]]
    kg = keras_inspector.groups("relu1", 11, 3, 2)
    tg = torch_inspector.groups("relu1", 11, 3, 2)
    np.testing.assert_allclose([g["attribution"] for g in kg["groups"]],
                               [g["attribution"] for g in tg["groups"]], rtol=2e-3, atol=1e-6)


def test_channel_and_attribution_equal_explain(client, keras_inspector):
    c = client.get("/api/channel", params={"layer": "conv2", "channel": 3, "index": 4}).json()
    assert [t["index"] for t in c["top"]] == keras_inspector.store.top_k("conv2", 3, 9)[
        0].tolist()
    request, key = keras_inspector.attribution_request(5, "saliency", {}, "predicted")
    got = keras_inspector.attribution_map(request, key)
    want = cl.explain(keras_inspector.model, keras_inspector.instances.sample(5),
                      "saliency", target=request["target"], seed=0).image_maps()[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-8)
    bad = client.get("/api/attribution", params={"index": 5, "method": "saliency",
                                                 "options": '{"layer": "nope"}'})
    assert bad.status_code == 400 and "nope" in bad.json()["error"]


def test_featurevis_runs_on_a_keras_clone(keras_inspector):
    job = keras_inspector.submit_featurevis("conv2", channel=2, steps=4)
    done = keras_inspector.jobs.wait(job.id, 120)
    assert done.status == "done", done.message
    assert done.result["preview"] is True and done.result["steps"] == 4
    clone = keras_inspector.featurevis._copy
    assert clone is not keras_inspector.model
    np.testing.assert_array_equal(clone.get_weights()[0],
                                  keras_inspector.model.get_weights()[0])
