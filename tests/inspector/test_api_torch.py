"""The JSON API on a tiny PyTorch digit CNN: every view's numbers against numpy on the
store's arrays and the model's own passes, the schemas, and errors as 4xx JSON."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.backends import get_backend

LAYER = "relu2"


def wait_job(client, posted, timeout=60.0):
    job = posted
    deadline = time.monotonic() + timeout
    while job["status"] not in ("done", "error"):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
        job = client.get(f"/api/jobs/{posted['job']}").json()
    return job


def test_session_and_graph_schema(torch_client, torch_inspector):
    s = torch_client.get("/api/session").json()
    assert set(s) >= {"model", "dataset", "layers", "default_layer", "methods", "store",
                      "export", "featurevis", "default_difference"}
    assert s["model"]["framework"] == "torch" and s["model"]["input_shape"] == [1, 8, 8]
    assert len(s["model"]["classes"]) == 10
    assert s["dataset"] == {"name": "array", "size": 120, "has_labels": True,
                            "modality": "image"}
    assert [l["name"] for l in s["layers"]] == torch_inspector.store.layers
    conv2 = next(l for l in s["layers"] if l["name"] == "conv2")
    assert conv2 == {"name": "conv2", "type": "Conv2d", "shape": [16, 4, 4], "channels": 16}
    assert s["default_layer"] == LAYER and s["export"] is False
    ig = next(m for m in s["methods"] if m["name"] == "integrated_gradients")
    assert {"name": "steps", "default": 50, "kind": "int"} in ig["options"] or any(
        o["name"] == "steps" for o in ig["options"])
    assert s["featurevis"]["steps"] >= 256
    g = torch_client.get("/api/graph").json()
    ids = [n["id"] for n in g["nodes"]]
    assert ids[0] == "input" and ids[-1] == "output"
    assert ["input", "conv1"] in g["edges"] and ["pool", "conv2"] in g["edges"]
    assert ["fc", "output"] in g["edges"]
    node = next(n for n in g["nodes"] if n["id"] == "conv2")
    assert node["shape"] == [16, 4, 4] and node["params"] == 16 * 8 * 9 + 16 and node["is_layer"]


def test_subsets_and_instances(torch_client, torch_inspector, digits):
    _, labels = digits
    predictions = torch_inspector.store.column("predictions")
    subsets = {s["id"]: s for s in torch_client.get("/api/subsets").json()}
    assert subsets["all"]["size"] == 120
    for c in range(10):
        assert subsets[f"label:{c}"]["size"] == int((labels == c).sum())
    assert subsets["correct"]["size"] == int((labels == predictions).sum())
    assert subsets["wrong"]["size"] == int((labels != predictions).sum())
    page = torch_client.get("/api/instances", params={"subset": "label:3", "offset": 1,
                                                      "limit": 2}).json()
    assert page["total"] == int((labels == 3).sum())
    assert [i["index"] for i in page["items"]] == np.flatnonzero(labels == 3)[1:3].tolist()
    item = page["items"][0]
    assert item["thumb"].startswith("data:image/png;base64,") and item["modality"] == "image"
    assert item["label"] == 3 and item["prediction"] == int(predictions[item["index"]])
    made = torch_client.post("/api/subsets", json={"name": "mine", "indices": [5, 2, 2]}).json()
    assert made["kind"] == "user" and made["size"] == 2
    assert torch_client.get("/api/instances", params={"subset": made["id"]}).json()[
        "total"] == 2


def test_instance_top5_is_the_softmax_of_the_model(torch_client, torch_model, digits):
    x, labels = digits
    got = torch_client.get("/api/instance", params={"index": 7}).json()
    with torch.no_grad():
        logits = torch_model(torch.as_tensor(x[7:8].transpose(0, 3, 1, 2))).numpy()[0]
    p = np.exp(logits - logits.max())
    p /= p.sum()
    assert [t["class"] for t in got["top5"]] == np.argsort(-p, kind="stable")[:5].tolist()
    np.testing.assert_allclose([t["p"] for t in got["top5"]], np.sort(p)[::-1][:5], rtol=1e-5)
    assert got["label"] == labels[7] and got["image"].startswith("data:image/png")


@pytest.mark.parametrize("sort", ["variance", "difference", "index"])
def test_matrix_equals_numpy_on_the_store(torch_client, torch_inspector, digits, sort):
    _, labels = digits
    pooled = np.asarray(torch_inspector.store.activations("conv2"), np.float64)
    params = {"layer": "conv2", "sort": sort}
    if sort == "difference":
        params.update(a="label:1", b="label:7")
    m = torch_client.get("/api/matrix", params=params).json()
    if sort == "variance":
        want = np.argsort(-pooled.var(0), kind="stable")
    elif sort == "difference":
        want = np.argsort(-np.abs(pooled[labels == 1].mean(0) - pooled[labels == 7].mean(0)),
                          kind="stable")
    else:
        want = np.arange(16)
    assert m["order"] == want.tolist()
    rows = {r["subset"]: r for r in m["rows"]}
    np.testing.assert_allclose(rows["all"]["values"], pooled.mean(0)[want], rtol=1e-5)
    np.testing.assert_allclose(rows["label:4"]["values"], pooled[labels == 4].mean(0)[want],
                               rtol=1e-5)
    assert rows["label:4"]["size"] == int((labels == 4).sum())
    flat = [v for r in m["rows"] for v in r["values"]]
    assert m["vmin"] == min(flat) and m["vmax"] == max(flat)
    # the store's pooled values are the model's spatial means
    acts = cl.activations(torch_inspector.model, torch_inspector.instances.samples(range(5)),
                          ["conv2"])["conv2"]
    np.testing.assert_allclose(pooled[:5], np.asarray(acts).mean(axis=(2, 3)), rtol=1e-5)


def test_matrix_rows_can_be_chosen(torch_client):
    m = torch_client.get("/api/matrix", params={"layer": "conv2",
                                                "subsets": "label:0,wrong"}).json()
    assert [r["subset"] for r in m["rows"]] == ["label:0", "wrong"]


def test_projection_is_pca_of_the_pooled_activations(torch_client, torch_inspector):
    pooled = np.asarray(torch_inspector.store.activations(LAYER), np.float64)
    p = torch_client.get("/api/projection", params={"layer": LAYER}).json()
    centred = pooled - pooled.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    points = np.asarray(p["points"])
    for k in range(2):
        want = u[:, k] * s[k]
        np.testing.assert_allclose(points[:, k], np.sign(points[:, k] @ want) * want,
                                   atol=1e-4)
    np.testing.assert_allclose(p["explained_variance"], s[:2] ** 2 / (s ** 2).sum(), rtol=1e-6)
    assert p["label"] == torch_inspector.instances.labels.tolist()


def test_channel_view_top9_is_the_store_top_k(torch_client, torch_inspector):
    c = torch_client.get("/api/channel", params={"layer": "conv2", "channel": 3,
                                                 "index": 4}).json()
    ids, values, positions = torch_inspector.store.top_k("conv2", 3, 9)
    assert [t["index"] for t in c["top"]] == ids.tolist() and len(c["top"]) == 9
    np.testing.assert_allclose([t["value"] for t in c["top"]], values, rtol=1e-6)
    assert c["input_size"] == [8, 8] and c["featurevis"]["status"] in ("missing", "ready")
    for t, position in zip(c["top"], positions):
        y0, x0, y1, x1 = t["box"]
        cy, cx = divmod(int(position), 4)  # the 4x4 map's maximum, on the 8x8 input
        assert y0 <= 2 * cy + 1 and 2 * cy <= y1 - 1 and x0 <= 2 * cx + 1 and 2 * cx <= x1 - 1
    assert c["activation_map"].startswith("data:image/png")


def test_dictionary_top_channels_are_the_argsort_of_the_activation(torch_client,
                                                                    torch_inspector):
    d = torch_client.get("/api/dictionary", params={"layer": "conv2", "index": 9, "y": 1,
                                                    "x": 2, "k": 5}).json()
    act = cl.activations(torch_inspector.model, torch_inspector.instances.sample(9),
                         ["conv2"])["conv2"][0]
    want = np.argsort(-act[:, 1, 2], kind="stable")[:5]
    assert [c["channel"] for c in d["channels"]] == want.tolist()
    np.testing.assert_allclose([c["value"] for c in d["channels"]], act[want, 1, 2], rtol=1e-5)
    assert d["position"] == [1, 2] and d["grid"] == [4, 4]


def test_groups_are_deterministic_nmf_with_gradient_x_activation(torch_client,
                                                                  torch_inspector):
    from crosslens.inspector.nmf import nmf
    params = {"layer": "relu1", "index": 11, "k": 3, "target": 2}
    g = torch_client.get("/api/groups", params=params).json()
    assert g == torch_client.get("/api/groups", params=params).json()
    act = cl.activations(torch_inspector.model, torch_inspector.instances.sample(11),
                         ["relu1"])["relu1"][0]  # (8, 8, 8)
    v = np.maximum(act.reshape(8, -1).T.astype(np.float64), 0)
    w, h = nmf(v, 3, seed=torch_inspector.seed)
    assert np.linalg.norm(v - w @ h) / np.linalg.norm(v) < 0.5
    np.testing.assert_allclose([grp["direction"] for grp in g["groups"]], h, atol=1e-5)
    x = torch.as_tensor(torch_inspector.instances.sample(11))
    store = {}
    handle = dict(torch_inspector.model.named_modules())["relu1"].register_forward_hook(
        lambda m, i, o: store.setdefault("a", o))
    try:
        out = torch_inspector.model(x)
        grad = torch.autograd.grad(out[0, 2], store["a"])[0][0].numpy()
    finally:
        handle.remove()
    gm = grad.reshape(8, -1).T
    want = [float((gm * np.outer(w[:, k], h[k])).sum()) for k in range(3)]
    np.testing.assert_allclose([grp["attribution"] for grp in g["groups"]], want, rtol=1e-4,
                               atol=1e-7)
    assert g["target"] == 2 and g["overlay"].startswith("data:image/png")


def test_group_flow_shape_and_determinism(torch_client):
    params = {"layer": "relu1", "to": "relu2", "index": 3, "k": 2}
    f = torch_client.get("/api/group_flow", params=params).json()
    assert len(f["from"]) == 2 and len(f["to"]) == 2
    assert np.isfinite(np.asarray(f["matrix"])).all() and np.asarray(f["matrix"]).shape == (2, 2)
    assert f == torch_client.get("/api/group_flow", params=params).json()
    bad = torch_client.get("/api/group_flow", params={**params, "layer": "relu2",
                                                      "to": "relu1"})
    assert bad.status_code == 400 and "earlier layer" in bad.json()["error"]


def test_attribution_job_equals_explain_and_is_cached(torch_client, torch_inspector):
    body = {"kind": "attribution", "index": 6, "method": "integrated_gradients",
            "options": {"steps": 8}, "target": "label"}
    job = wait_job(torch_client, torch_client.post("/api/jobs", json=body).json())
    assert job["status"] == "done", job
    result = job["result"]
    label = int(torch_inspector.instances.labels[6])
    assert result["target"] == label and result["options"] == {"steps": 8}
    exp = cl.explain(torch_inspector.model, torch_inspector.instances.sample(6),
                     "integrated_gradients", target=label, steps=8, seed=0)
    request, key = torch_inspector.attribution_request(6, "integrated_gradients",
                                                       {"steps": 8}, "label")
    np.testing.assert_allclose(torch_inspector.attribution_map(request, key),
                               exp.image_maps()[0], rtol=1e-5, atol=1e-7)
    assert result["vmin"] == pytest.approx(float(exp.image_maps()[0].min()), rel=1e-5)
    again = torch_client.post("/api/jobs", json=body).json()
    assert again["status"] == "done" and again["result"]["vmax"] == result["vmax"]
    direct = torch_client.get("/api/attribution", params={
        "index": 6, "method": "integrated_gradients", "target": "label",
        "options": '{"steps":8}'}).json()
    assert direct["cached"] is True and direct["image"] == result["image"]


def test_featurevis_job_marks_a_preview(torch_client):
    posted = torch_client.post("/api/jobs", json={"kind": "featurevis", "layer": "conv2",
                                                  "channel": 5, "steps": 8}).json()
    job = wait_job(torch_client, posted)
    assert job["status"] == "done" and job["result"]["preview"] is True
    assert job["result"]["steps"] == 8 and job["result"]["image"].startswith("data:image/png")
    c = torch_client.get("/api/channel", params={"layer": "conv2", "channel": 5,
                                                 "index": 0}).json()
    assert c["featurevis"]["status"] == "ready" and c["featurevis"]["preview"] is True


@pytest.mark.parametrize("path, params, status, words", [
    ("/api/matrix", {"layer": "nope"}, 400, "nope"),
    ("/api/matrix", {"layer": "conv2", "sort": "random"}, 400, "sort"),
    ("/api/matrix", {"layer": "conv2", "subsets": "label:99"}, 404, "label:99"),
    ("/api/matrix", {"layer": "conv2", "color": "red"}, 400, "color"),
    ("/api/projection", {"layer": "conv2", "method": "tsne"}, 400, "method"),
    ("/api/instance", {"index": 120000}, 404, "120000"),
    ("/api/instance", {"index": "abc"}, 400, "index"),
    ("/api/instance", {}, 400, "index"),
    ("/api/channel", {"layer": "conv2", "channel": 16, "index": 0}, 400, "channel 16"),
    ("/api/dictionary", {"layer": "conv2", "index": 0, "y": 9, "x": 0}, 400, "outside"),
    ("/api/groups", {"layer": "conv2", "index": 0, "k": 99}, 400, "k must be"),
    ("/api/groups", {"layer": "conv2", "index": 0, "target": "cat"}, 400, "target"),
    ("/api/attribution", {"index": 0, "method": "no_such_method"}, 400, "no_such_method"),
    ("/api/attribution", {"index": 0, "method": "saliency", "options": '{"stepz": 3}'}, 400,
     "stepz"),
    ("/api/attribution", {"index": 0, "method": "integrated_gradients",
                          "options": '{"steps": "many"}'}, 400, "steps"),
    ("/api/jobs/abc", {}, 404, "abc"),
    ("/api/instances", {"subset": "user:77"}, 404, "user:77"),
    ("/api/nothing", {}, 404, "/api/nothing"),
])
def test_bad_requests_are_4xx_json_naming_the_problem(torch_client, path, params, status,
                                                      words):
    response = torch_client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert words in response.json()["error"]


@pytest.mark.parametrize("body, words", [
    ({"kind": "attribution", "index": 0, "method": "saliency", "options": {"x": 1}}, "'x'"),
    ({"kind": "attribution", "index": 0, "method": "bogus"}, "bogus"),
    ({"kind": "attribution", "index": -1, "method": "saliency"}, "-1"),
    ({"kind": "attribution", "index": 0, "method": "saliency", "colour": 1}, "colour"),
    ({"kind": "featurevis", "layer": "conv2", "channel": 99}, "channel 99"),
    ({"kind": "featurevis", "layer": "conv2", "direction": [1, 2]}, "direction"),
    ({"kind": "sing"}, "kind"),
])
def test_bad_jobs_are_refused_naming_the_problem(torch_client, body, words):
    response = torch_client.post("/api/jobs", json=body)
    assert 400 <= response.status_code < 500 and words in response.json()["error"]


@pytest.mark.parametrize("path", [
    "/static/../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2fetc%2fpasswd", "/static/%2e%2e%5c%2e%2e%5cetc%5cpasswd",
    "/static//etc/passwd", "/static/.hidden", "/static/app.js%00.png",
    "/static/%252e%252e/etc/passwd"])
def test_path_traversal_is_refused(torch_client, path):
    response = torch_client.get(path)
    assert response.status_code == 404 and "root:" not in response.text
    assert response.json()["error"]


def test_static_files_and_page_are_served(torch_client):
    assert torch_client.get("/").status_code == 200
    script = torch_client.get("/static/app.js")
    assert script.status_code == 200 and "CROSSLENS_EXPORT" in script.text


def _png(size=(20, 14)):
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, size + (3,), np.uint8)).save(
        buffer, format="PNG")
    return buffer.getvalue()


def test_uploads_become_instances(torch_client, torch_inspector):
    response = torch_client.post("/api/upload", files={"file": ("cat.png", _png(), "image/png")})
    assert response.status_code == 200, response.text
    index = response.json()["index"]
    assert index >= 120 and torch_inspector.instances.sample(index).shape == (1, 1, 8, 8)
    detail = torch_client.get("/api/instance", params={"index": index}).json()
    assert detail["label"] == -1 and detail["name"] == "cat.png"
    raw = torch_client.post("/api/upload", content=_png(), headers={"content-type": "image/png"})
    assert raw.json()["index"] == index + 1
    c = torch_client.get("/api/dictionary", params={"layer": "conv2", "index": index, "y": 0,
                                                    "x": 0}).json()
    assert len(c["channels"]) == 6


@pytest.mark.parametrize("content, kind, status", [
    (b"\x80\x04\x95 pickle os.system", "application/octet-stream", 415),
    (b"GIF89a not really", "image/gif", 415),
    (b"x" * (5 * 2 ** 20 + 10), "image/png", 413),
])
def test_bad_uploads_are_refused(torch_client, content, kind, status):
    response = torch_client.post("/api/upload", content=content, headers={"content-type": kind})
    assert response.status_code == status and response.json()["error"]
    form = torch_client.post("/api/upload", files={"file": ("x.png", content, kind)})
    assert form.status_code == status


def test_openapi_lists_every_route(torch_client):
    doc = torch_client.get("/openapi.json").json()
    routes = [r.path.replace("{path:path}", "{path}") for r in torch_client.app.routes]
    assert set(routes) <= set(doc["paths"])
    assert doc["paths"]["/api/matrix"]["get"]["parameters"][0]["name"] == "layer"
    assert "requestBody" in doc["paths"]["/api/jobs"]["post"]


def test_no_500_for_any_bad_parameter(torch_client):
    values = ["", "-1", "999999999999999999999", "nan", "1e9", "conv2", "../x", "%00",
              "label:0", "[]", "{", "0", "relu2,relu1", "\u00e9"]
    paths = {"/api/instances": ["subset", "offset", "limit"], "/api/instance": ["index"],
             "/api/matrix": ["layer", "sort", "a", "b", "subsets"],
             "/api/projection": ["layer", "method"],
             "/api/channel": ["layer", "channel", "index"],
             "/api/dictionary": ["layer", "index", "y", "x", "k"],
             "/api/groups": ["layer", "index", "k", "target"],
             "/api/group_flow": ["layer", "to", "index", "k"],
             "/api/attribution": ["index", "method", "target", "options"]}
    rng = np.random.default_rng(0)
    for path, names in paths.items():
        for _ in range(12):
            params = {n: str(rng.choice(values)) for n in names if rng.random() < 0.8}
            if "layer" in names and rng.random() < 0.5:
                params["layer"] = "conv2"
            response = torch_client.get(path, params=params)
            assert response.status_code < 500, (path, params, response.text)
            assert response.headers["content-type"].startswith("application/json")
    for body in ([], "x", {"kind": None}, {"kind": "attribution", "index": "0"},
                 {"kind": "featurevis", "layer": ["conv2"]}, {"name": 3, "indices": "1"}):
        for path in ("/api/jobs", "/api/subsets"):
            response = torch_client.post(path, json=body)
            assert 400 <= response.status_code < 500, (path, body, response.text)
    response = torch_client.post("/api/jobs", content=b"{not json",
                                 headers={"content-type": "application/json"})
    assert response.status_code == 400


def test_the_model_is_unchanged_by_the_server(torch_client, torch_inspector, torch_model):
    backend = get_backend(torch_model)
    before = backend.weights_digest()
    torch_model.train()
    try:
        for path, params in [("/api/channel", {"layer": "conv2", "channel": 1, "index": 2}),
                             ("/api/groups", {"layer": "relu1", "index": 2, "k": 2}),
                             ("/api/group_flow", {"layer": "relu1", "to": "relu2",
                                                  "index": 2, "k": 2}),
                             ("/api/attribution", {"index": 2, "method": "saliency"}),
                             ("/api/instance", {"index": 2})]:
            assert torch_client.get(path, params=params).status_code == 200
        assert all(m.training for m in torch_model.modules())
        assert all(not p.requires_grad or p.grad is None for p in torch_model.parameters())
    finally:
        torch_model.eval()
    assert backend.weights_digest() == before == torch_inspector.weights
