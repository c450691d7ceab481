"""Smoke test of the benchmark runner (tiny models) and of the RESULTS.md generator."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BENCH = os.path.join(ROOT, "benchmarks")
METHODS = ("saliency", "ig32", "gradcam", "scorecam", "occlusion")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--quick", "--repeats", "0",
           "--threads", "1", "--only", "method=" + ",".join(METHODS),
           "--out-dir", str(out), "--results-md", str(out / "RESULTS.md")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = [p for p in out.iterdir() if p.suffix == ".json"]
    return json.loads(path.read_text()), (out / "RESULTS.md").read_text()


def test_every_cell_measured_and_equal_to_the_floor(quick_run):
    results, _ = quick_run
    cells = results["cells"]
    assert {(c["framework"], c["method"]) for c in cells} == {
        (fw, m) for fw in ("torch", "keras") for m in METHODS}
    for cell in cells:
        assert cell["status"] == "ok", cell["notes"]
        impls = cell["implementations"]
        assert impls["crosslens"]["seconds"] > 0 and impls["floor"]["seconds"] > 0, cell
        assert cell["ratios"]["floor"] > 0
        # the floor computes exactly what crosslens computes (float32)
        assert cell["agreement"]["floor"] < 1e-4, (cell["framework"], cell["method"],
                                                   cell["agreement"])
        if cell["method"] in ("scorecam", "occlusion"):
            assert "floor_loop" in impls and cell["ratios"]["loop_over_batched_floor"] > 0
    peers = {c["framework"]: c for c in cells if c["method"] == "saliency"}
    assert "captum" in peers["torch"]["implementations"]
    assert "tf-keras-vis" in peers["keras"]["implementations"]
    assert peers["torch"]["agreement"]["captum"] < 1e-5
    ig = [c for c in cells if c["method"] == "ig32" and c["framework"] == "keras"][0]
    assert any("tf-keras-vis has no" in note for note in ig["notes"])


def test_results_md_has_the_tables(quick_run):
    _, text = quick_run
    assert "### torch · resnet50-tiny" in text and "### keras · resnet50-tiny" in text
    assert "crosslens/floor" in text and "## Targets" in text
    for method in METHODS:
        assert f"| {method} | 1 |" in text


def test_unregistered_methods_and_options_are_skipped_with_a_note(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    import cases
    import run
    monkeypatch.setitem(cases.METHODS, "bogus", {"method": "no_such_method", "options": {},
                                                 "passes": "forward"})
    method, _, note = run.crosslens_method("bogus")
    assert method is None and "no_such_method" in note
    monkeypatch.setitem(cases.METHODS, "odd", {"method": "saliency", "options": {"steps": 3},
                                               "passes": "backward"})
    method, _, note = run.crosslens_method("odd")
    assert method is None and "steps" in note


def test_report_lists_missed_targets(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    import report
    cell = {"framework": "torch", "model": "m", "batch": 1, "method": "occlusion",
            "status": "ok", "notes": [], "agreement": {"floor": 0.0},
            "implementations": {name: {"seconds": s, "timed_runs": 3, "peak_mb": 10.0}
                                for name, s in (("crosslens", 1.2), ("floor", 1.0),
                                                ("captum", 1.1), ("floor_loop", 2.0))},
            "ratios": {"floor": 1.2, "captum": 1.2 / 1.1, "floor_loop": 0.6,
                       "loop_over_batched_floor": 2.0}}
    text = report.render({"date": "today", "cells": [cell], "args": {"cell_budget": 60}})
    assert "1.20×" in text
    targets = text[text.index("## Targets"):]
    assert "torch m b1 occlusion (1.20×)" in targets
    # the loop target compares the loop with crosslens (2.0 s / 1.2 s), not with the floor
    assert "vs captum" in targets and "only 1.67× faster" in targets
    assert "| 2 s | 1.67× |" in text  # per-mask loop, loop/crosslens


def _resume(tmp_path, earlier: dict, name: str, *args: str) -> tuple[dict, str]:
    first = tmp_path / f"{name}-earlier.json"
    first.write_text(json.dumps(earlier))
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--quick", "--repeats", "0",
           "--threads", "1", "--resume", str(first), "--out-dir", str(tmp_path / name),
           "--results-md", "", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = (tmp_path / name).iterdir()
    return json.loads(path.read_text()), done.stdout


def test_resume_runs_only_what_is_missing_one_implementation_at_a_time(quick_run, tmp_path):
    earlier, _ = quick_run
    only = ("--only", "method=saliency,smoothgrad16", "framework=torch")
    part, out = _resume(tmp_path, earlier, "a", *only, "--implementations", "crosslens,floor")
    assert "== torch" in out and "saliency" not in out  # measured earlier: not run again
    kept = {(c["framework"], c["method"]): c for c in part["cells"]}
    for cell in earlier["cells"]:  # every earlier cell, unchanged
        assert kept[(cell["framework"], cell["method"])]["implementations"] == \
            cell["implementations"]
    smooth = kept[("torch", "smoothgrad16")]
    assert smooth["status"] == "partial" and set(smooth["implementations"]) == {
        "crosslens", "floor"} and smooth["planned"] == ["crosslens", "floor", "captum"]
    assert smooth["agreement"]["floor"] < 1e-4

    whole, out = _resume(tmp_path, part, "b", *only)  # only Captum is left to run
    smooth = {(c["framework"], c["method"]): c for c in whole["cells"]}[("torch",
                                                                         "smoothgrad16")]
    assert smooth["status"] == "ok" and set(smooth["implementations"]) == {
        "crosslens", "floor", "captum"}
    assert smooth["implementations"]["floor"] == \
        {c["method"]: c for c in part["cells"]}["smoothgrad16"]["implementations"]["floor"]
    assert smooth["ratios"]["captum"] > 0 and len(whole["sources"]) == 3


def _cell(framework, model, batch, method, status="ok", seconds=1.0):
    return {"framework": framework, "model": model, "batch": batch, "method": method,
            "status": status, "notes": [] if status == "ok" else ["estimated 99 min"],
            "agreement": {}, "ratios": {"floor": 1.0},
            "implementations": {"crosslens": {"seconds": seconds, "timed_runs": 1},
                                "floor": {"seconds": seconds, "timed_runs": 1}}}


def test_merge_prefers_measured_cells_and_reports_what_is_missing(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    import cases
    import merge
    import report
    a = {"date": "d1", "args": {"only": ["batch=1"], "threads": 1}, "cells": [
        _cell("keras", "resnet50", 1, "gradcam", seconds=2.0),
        _cell("torch", "resnet50", 16, "scorecam", status="skipped"),
        _cell("torch", "resnet50", 1, "saliency", seconds=5.0)]}
    b = {"date": "d2", "args": {"only": [], "threads": 1}, "cells": [
        _cell("torch", "resnet50", 1, "saliency", seconds=3.0),
        _cell("torch", "resnet50", 16, "scorecam", seconds=9.0),
        _cell("keras", "resnet50", 1, "gradcam", status="error")]}
    merged = merge.merge([a, b])
    got = {report.cell_key(c): c for c in merged["cells"]}
    assert got[("torch", "resnet50", 1, "saliency")]["implementations"]["crosslens"][
        "seconds"] == 3.0  # the later measurement wins
    assert got[("torch", "resnet50", 16, "scorecam")]["status"] == "ok"  # measured > skipped
    assert got[("keras", "resnet50", 1, "gradcam")]["status"] == "ok"  # error never replaces
    assert got[("keras", "resnet50", 1, "gradcam")]["measured"] == "d1"
    order = [cases.matrix().index(report.cell_key(c)) for c in merged["cells"]]
    assert order == sorted(order)
    assert [s["date"] for s in merge.merge([merged, a])["sources"]] == ["d1", "d2"]
    missing = report.missing_cells(merged)
    assert len(missing) == len(cases.matrix()) - 3
    assert ("torch", "resnet50", 1, "saliency") not in missing
    text = report.render(merged)
    assert f"3 of the {len(cases.matrix())} cells of the full matrix measured" in text
    assert "| torch · resnet50 | 1 | ig32, ig128," in text and "Merged from 2 runs" in text


def test_merge_combines_a_cell_measured_in_parts(monkeypatch):
    monkeypatch.syspath_prepend(BENCH)
    import merge
    import report
    first = _cell("torch", "resnet50", 16, "scorecam", seconds=4.0)
    first["planned"] = ["crosslens", "floor", "floor_loop"]
    first["status"] = report.cell_status(first)
    assert first["status"] == "partial"
    text = report.render({"date": "d1", "cells": [first], "args": {}})
    assert "not yet run: floor_loop" in text and "0 cells measured, 1 in part" in text
    second = {"framework": "torch", "model": "resnet50", "batch": 16, "method": "scorecam",
              "status": "partial", "notes": [], "agreement": {},
              "planned": ["crosslens", "floor", "floor_loop"],
              "implementations": {"floor_loop": {"seconds": 20.0, "timed_runs": 1}}}
    (cell,) = merge.merge([{"date": "d1", "cells": [first]},
                           {"date": "d2", "cells": [second]}])["cells"]
    assert cell["status"] == "ok" and set(cell["implementations"]) == {
        "crosslens", "floor", "floor_loop"}
    assert cell["ratios"] == {"floor": 1.0, "floor_loop": 0.2, "loop_over_batched_floor": 5.0}


def test_tf_keras_vis_scorecam_is_left_out_with_the_reason_when_it_cannot_fit(monkeypatch):
    """tf-keras-vis holds three float32 arrays of channels x the whole input at once; a
    cell where that exceeds the available memory records why instead of being killed."""
    monkeypatch.syspath_prepend(BENCH)
    import keras
    import numpy as np
    import peers
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(5, 3, padding="same", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    model = keras.Model(inputs, keras.layers.Dense(4)(pooled))
    x = np.zeros((2, 8, 8, 3), np.float32)
    needed = 3 * 5 * x.size * 4
    monkeypatch.setattr(peers, "_available_bytes", lambda: needed)
    assert callable(peers.tf_keras_vis_peer("scorecam", model, x, np.array([0, 1]), 2, {},
                                            "features"))
    monkeypatch.setattr(peers, "_available_bytes", lambda: needed - 1)
    why = peers.tf_keras_vis_peer("scorecam", model, x, np.array([0, 1]), 2, {}, "features")
    assert isinstance(why, str) and "5 masked copies" in why and "Score-CAM" in why


NATIVE = ("lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box", "kernelshap128")


def test_native_methods_against_zennit_and_captum_on_the_same_inputs(tmp_path, monkeypatch):
    """LRP vs zennit and KernelSHAP vs Captum (same coalitions) on the tiny ResNet: timed
    side by side, equal results, a table in RESULTS.md, kept by merge.py."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    cmd = [sys.executable, os.path.join(BENCH, "run.py"), "--quick", "--repeats", "0",
           "--threads", "1", "--only", "framework=torch", "method=" + ",".join(NATIVE),
           "--out-dir", str(tmp_path), "--results-md", str(tmp_path / "RESULTS.md")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    results = json.loads(path.read_text())
    assert not results["cells"]
    rows = {row["comparison"]: row for row in results["native_peers"]}
    assert set(rows) == set(NATIVE)
    for name, row in rows.items():
        peer = "captum" if name.startswith("kernelshap") else "zennit"
        assert row["status"] == "ok" and row["peer"] == peer, row["notes"]
        assert set(row["implementations"]) == {"crosslens", peer}
        assert row["ratios"][peer] > 0
        # LRP: zennit with an exact batch-norm merge is crosslens' LRP (float32); zennit's
        # own merge leaves x / sqrt(1 + eps) per batch norm. KernelSHAP: Captum's end-point
        # weight of 1e6 instead of crosslens' exact efficiency constraint
        assert row["agreement"] < (1e-4 if peer == "captum" else 1e-5), (name, row)
        if peer == "zennit":
            assert row["agreement_plain_merge"] > row["agreement"]
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Native methods against the library that defined them" in text
    for name in NATIVE:
        assert f"| {name} | resnet50-tiny | 1 |" in text

    monkeypatch.syspath_prepend(BENCH)
    import merge
    failed = dict(rows["kernelshap128"], status="error", measured="later")
    merged = merge.merge([results, {"date": "later", "native_peers": [failed]}])
    assert {r["comparison"]: r["status"] for r in merged["native_peers"]} == dict.fromkeys(
        NATIVE, "ok")  # a failed later run never replaces a measured comparison
