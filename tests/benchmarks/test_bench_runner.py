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
    assert "vs captum" in targets and "only 2.00× faster" in targets
