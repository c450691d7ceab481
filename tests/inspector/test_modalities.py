"""The JSON API on text, tabular and series models (issue 20): the instance view's payload,
attributions on demand equal to explain_text / cl.explain, the activation matrix and the
projection equal to numpy on activations pooled over every axis but the channels, views
that need image inputs answered 422 (never 500), and the static export."""
from __future__ import annotations

import json

import numpy as np
import pytest

import crosslens as cl
from crosslens.inspector import create_app, export_html
from crosslens.viz import feature_order, token_colors

from inspector.modal_models import CHANNELS, FEATURES, VOCAB, inspector

KINDS = ("text", "tabular", "series")


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    from starlette.testclient import TestClient
    made = {}
    for kind in KINDS:
        ins, model, x = inspector(kind, tmp_path_factory.mktemp("modal") / kind)
        made[kind] = (ins, model, x, TestClient(create_app(ins)))
    yield made
    for ins, *_ in made.values():
        ins.jobs.stop()


@pytest.fixture(scope="module")
def keras_series(tmp_path_factory):
    """A Keras series model: (N, T, C), channels last."""
    from crosslens.inspector import Inspector
    from modalities.twins import keras_series as build
    model = build("conv", steps=10, channels=2)
    x = np.random.default_rng(1).standard_normal((16, 10, 2))
    return Inspector(model, x, tmp_path_factory.mktemp("modal") / "keras",
                     labels=np.arange(16) % 2, progress=False), model, x


def wait(client, posted, timeout=60.0):
    import time
    job, deadline = posted, time.monotonic() + timeout
    while job["status"] not in ("done", "error"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{posted['job']}").json()
    return job


def test_text_instance_shows_tokens_and_attributions_equal_explain_text(cases):
    ins, model, ids, client = cases["text"]
    s = client.get("/api/session").json()
    assert s["dataset"]["modality"] == "text" and s["modality"]["kind"] == "text"
    assert [m["name"] for m in s["methods"]][:3] == ["saliency", "gradient_x_embedding",
                                                     "integrated_gradients"]
    ig = next(m for m in s["methods"] if m["name"] == "integrated_gradients")
    assert {"name": "baseline", "kind": "str", "default": "pad"} in ig["options"]
    layers = {l["name"]: l for l in s["layers"]}
    assert layers["emb"]["shape"] == [8, 6] and layers["emb"]["channels"] == 6
    assert layers["conv"]["channels"] == 5 and s["default_layer"] == "relu"
    assert s["featurevis"]["available"] is False
    inst = client.get("/api/instance", params={"index": 3}).json()
    assert inst["modality"] == "text" and "image" not in inst
    assert inst["tokens"] == [VOCAB[i] for i in ids[3]] and inst["token_ids"] == ids[3].tolist()
    items = client.get("/api/instances", params={"limit": 2}).json()["items"]
    assert items[0]["modality"] == "text" and items[0]["thumb"] is None
    target = int(ins.instances.prediction(3))
    for method, options in (("integrated_gradients", {"steps": 8}), ("feature_ablation", {}),
                            ("gradient_x_embedding", {})):
        result = client.get("/api/attribution", params={
            "index": 3, "method": method, "options": json.dumps(options)}).json()
        want = cl.explain_text(model, ids[3:4], method, target=target, seed=0,
                               **options).scores[0]
        np.testing.assert_allclose([t["score"] for t in result["tokens"]], want, rtol=1e-5,
                                   atol=1e-8, err_msg=method)
        assert [t["token"] for t in result["tokens"]] == inst["tokens"]  # as text, unescaped
        assert [t["color"] for t in result["tokens"]] == token_colors(want)
        request, key = ins.attribution_request(3, method, options, "predicted")
        np.testing.assert_allclose(ins.attribution_map(request, key), want, rtol=1e-5,
                                   atol=1e-8)
    job = wait(client, client.post("/api/jobs", json={
        "kind": "attribution", "index": 5, "method": "ig", "options": {"steps": 4,
                                                                       "baseline": "pad"},
        "target": 1}).json())
    assert job["status"] == "done", job
    want = cl.explain_text(model, ids[5:6], "integrated_gradients", target=1, steps=4).scores
    np.testing.assert_allclose([t["score"] for t in job["result"]["tokens"]], want[0],
                               rtol=1e-5, atol=1e-8)
    for options, words in (('{"stepz": 3}', "stepz"), ('{"baseline": "nothing"}', "nothing")):
        bad = client.get("/api/attribution", params={"index": 0, "method": "saliency" if
                                                     "stepz" in options else "ig",
                                                     "options": options})
        assert bad.status_code == 400 and words in bad.json()["error"]
    bad = client.get("/api/attribution", params={"index": 0, "method": "grad_cam"})
    assert bad.status_code == 400 and "text methods are" in bad.json()["error"]
    # Reopened without tokens=, the page shows the vocabulary recorded in the store.
    from crosslens.inspector import Inspector
    again = Inspector(model, ids, ins.store.path, labels=ins.instances.labels, progress=False)
    assert again.instance(3)["tokens"] == inst["tokens"]
    assert again.store.modality["vocabulary"] == {str(i): VOCAB[i] for i in np.unique(ids)}


def test_tabular_instance_shows_features_and_sorted_bars(cases):
    ins, model, x, client = cases["tabular"]
    s = client.get("/api/session").json()
    assert s["modality"] == {"kind": "tabular", "feature_names": FEATURES}
    inst = client.get("/api/instance", params={"index": 2}).json()
    assert [f["name"] for f in inst["features"]] == FEATURES
    np.testing.assert_allclose([f["value"] for f in inst["features"]], x[2], rtol=1e-6)
    target = int(ins.instances.prediction(2))
    for method, options in (("saliency", {}), ("kernel_shap", {"samples": 40})):
        result = client.get("/api/attribution", params={
            "index": 2, "method": method, "options": json.dumps(options)}).json()
        want = cl.explain_tabular(model, x[2:3], method, target=target, seed=0,
                                  feature_names=FEATURES, **options).values[0]
        order = feature_order(want)
        assert [f["index"] for f in result["features"]] == order.tolist()
        assert [f["name"] for f in result["features"]] == [FEATURES[i] for i in order]
        np.testing.assert_allclose([f["attribution"] for f in result["features"]], want[order],
                                   rtol=1e-5, atol=1e-8, err_msg=method)
        np.testing.assert_allclose([f["value"] for f in result["features"]], x[2][order],
                                   rtol=1e-6)
        assert result["vmin"] == pytest.approx(want.min(), rel=1e-5, abs=1e-8)
        request, key = ins.attribution_request(2, method, options, "predicted")
        np.testing.assert_allclose(ins.attribution_map(request, key), want, rtol=1e-5,
                                   atol=1e-8)


def test_series_instance_is_a_plot_and_attributions_equal_explain(cases, keras_series):
    ins, model, x, client = cases["series"]
    s = client.get("/api/session").json()
    assert s["modality"] == {"kind": "series", "layout": "channels_first",
                             "channel_names": CHANNELS}
    inst = client.get("/api/instance", params={"index": 1}).json()
    assert inst["image"].startswith("data:image/png;base64,") and inst["steps"] == 16
    target = int(ins.instances.prediction(1))
    result = client.get("/api/attribution", params={"index": 1, "method": "saliency"}).json()
    assert result["modality"] == "series" and result["image"].startswith("data:image/png")
    want = cl.explain(model, x[1:2], "saliency", target=target).numpy()[0]
    request, key = ins.attribution_request(1, "saliency", {}, "predicted")
    np.testing.assert_allclose(ins.attribution_map(request, key), want, rtol=1e-5, atol=1e-8)
    assert result["vmax"] == pytest.approx(want.max(), rel=1e-5)
    kins, kmodel, kx = keras_series
    assert kins.modality.series_layout == "time_first"
    request, key = kins.attribution_request(4, "integrated_gradients", {"steps": 8}, "label")
    want = cl.explain(kmodel, kx[4:5], "integrated_gradients", target=0, steps=8).numpy()[0]
    np.testing.assert_allclose(kins.attribution_map(request, key), want, rtol=1e-5,
                               atol=1e-8)
    assert kins.instance(4)["image"].startswith("data:image/png")


def _pooled(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over every per-sample axis but the channel ``axis``."""
    values = np.moveaxis(np.asarray(values, np.float64), axis + 1, 1)
    return values.reshape(values.shape[0], values.shape[1], -1).mean(axis=2)


@pytest.mark.parametrize("kind", KINDS + ("keras",))
def test_matrix_and_projection_equal_numpy_on_pooled_activations(cases, keras_series, kind):
    if kind == "keras":
        ins, model, x = keras_series
        axes = {name: len(shape) - 1 for name, shape in ins.shapes.items()}  # (T, C)
    else:
        ins, model, x, _ = cases[kind]
        axes = {"emb": 1}  # token embeddings (T, D); every other layer has channels first
    acts = cl.activations(model, x, ins.layers)
    labels = ins.instances.labels
    for layer in ins.layers:
        want = _pooled(acts[layer], axes.get(layer, 0) if np.ndim(acts[layer]) > 2 else 0)
        stored = np.asarray(ins.store.activations(layer), np.float64)
        np.testing.assert_allclose(stored, want, rtol=1e-5, atol=1e-6, err_msg=layer)
        m = ins.matrix(layer, "variance")
        order = np.argsort(-stored.var(0), kind="stable")
        assert m["order"] == order.tolist()
        rows = {r["subset"]: r for r in m["rows"]}
        np.testing.assert_allclose(rows["all"]["values"], stored.mean(0)[order], rtol=1e-5,
                                   atol=1e-7)
        np.testing.assert_allclose(rows["label:1"]["values"],
                                   stored[labels == 1].mean(0)[order], rtol=1e-5, atol=1e-7)
    layer = ins.default_layer
    stored = np.asarray(ins.store.activations(layer), np.float64)
    points = np.asarray(ins.projection(layer, "pca")["points"])
    u, sv, _ = np.linalg.svd(stored - stored.mean(0), full_matrices=False)
    for k in range(2):
        ref = u[:, k] * sv[k]
        np.testing.assert_allclose(points[:, k], np.sign(points[:, k] @ ref) * ref, atol=1e-4)


@pytest.mark.parametrize("kind", KINDS)
def test_views_that_need_images_are_422(cases, kind):
    ins, _, _, client = cases[kind]
    layer = ins.default_layer
    for path, params in (("/api/channel", {"layer": layer, "channel": 0, "index": 0}),
                         ("/api/dictionary", {"layer": layer, "index": 0, "y": 0, "x": 0}),
                         ("/api/groups", {"layer": layer, "index": 0, "k": 2}),
                         ("/api/group_flow", {"layer": ins.layers[0], "to": layer,
                                              "index": 0, "k": 2})):
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert f"this data set is {kind}" in response.json()["error"]
    posted = client.post("/api/jobs", json={"kind": "featurevis", "layer": layer,
                                            "channel": 0})
    assert posted.status_code == 422 and "needs image inputs" in posted.json()["error"]
    upload = client.post("/api/upload", content=b"\x89PNG", headers={
        "content-type": "image/png"})
    assert upload.status_code == 422 and "upload" in upload.json()["error"]
    assert client.get("/api/frames").json() == {"frames": []}


@pytest.mark.parametrize("kind", KINDS)
def test_static_export_holds_the_instance_views(cases, static_dir, tmp_path, kind):
    from inspector.test_export import read_export
    ins = cases[kind][0]
    page = export_html(ins, tmp_path / "page.html", static_dir=static_dir, instances=2,
                       methods=("saliency",))
    data = read_export(page.read_text())
    assert data["GET /api/session"]["dataset"]["modality"] == kind
    assert not any(k.startswith(("GET /api/channel", "GET /api/groups")) for k in data)
    index = next(int(k.split("=")[-1]) for k in data if k.startswith("GET /api/instance?"))
    field = {"text": "tokens", "tabular": "features", "series": "image"}[kind]
    assert field in data[f"GET /api/instance?index={index}"]
    result = data[f"GET /api/attribution?index={index}&method=saliency&target=predicted"]
    assert result["modality"] == kind and field in result
    assert f"GET /api/matrix?layer={ins.default_layer}&sort=variance" in data


def test_cl_inspect_passes_the_modality_and_names_through(tmp_path):
    import socket

    import httpx

    from inspector.modal_models import tabular_case
    model, x, y = tabular_case()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = cl.inspect(model, x, store=tmp_path / "s", port=port, labels=y, progress=False,
                        modality="tabular", feature_names=FEATURES)
    try:
        session = httpx.get(f"http://127.0.0.1:{port}/api/session", timeout=30).json()
        assert session["modality"] == {"kind": "tabular", "feature_names": FEATURES}
    finally:
        server.stop()
    with pytest.raises(cl.ModalityError, match="tokens= applies to text"):
        cl.inspect(model, x, store=tmp_path / "t", port=port, tokens=VOCAB, progress=False)


def test_cli_reads_vocabularies_and_names(tmp_path):
    import json

    from crosslens.cli import _names, _vocabulary, build_parser
    from crosslens.core.errors import InputError
    (tmp_path / "list.json").write_text(json.dumps(["[PAD]", "the", "cat"]))
    (tmp_path / "vocab.json").write_text(json.dumps({"[PAD]": 0, "the": 1, "cat": 2}))
    (tmp_path / "ids.json").write_text(json.dumps({"0": "[PAD]", "2": "cat"}))
    (tmp_path / "vocab.txt").write_text("[PAD]\nthe\ncat\n")
    assert _vocabulary(str(tmp_path / "list.json")) == ["[PAD]", "the", "cat"]
    assert _vocabulary(str(tmp_path / "vocab.json")) == {0: "[PAD]", 1: "the", 2: "cat"}
    assert _vocabulary(str(tmp_path / "ids.json")) == {0: "[PAD]", 2: "cat"}
    assert _vocabulary(str(tmp_path / "vocab.txt")) == ["[PAD]", "the", "cat"]
    with pytest.raises(InputError, match="cannot be read"):
        _vocabulary(str(tmp_path / "missing.txt"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        _vocabulary(str(tmp_path / "bad.json"))
    assert _names("age, bmi,bp") == ["age", "bmi", "bp"]
    args = build_parser().parse_args(["inspect", "m.pt", "--data", "x.npy", "--modality",
                                      "tabular", "--feature-names", "a,b"])
    assert (args.modality, args.feature_names, args.series_layout) == ("tabular", "a,b", None)
