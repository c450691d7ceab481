"""Clever-Hans benchmark: the data set, the two trained CNNs, and where methods look."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from crosslens.datasets import clever_hans
from crosslens.evaluate import clever_hans_benchmark, train_models
from crosslens.evaluate.cli import add_arguments, run_evaluate

GRADIENT = ("saliency", "gradient_x_input", "integrated_gradients", "smoothgrad")


@pytest.fixture(scope="module")
def data():
    return clever_hans(0)


@pytest.fixture(scope="module")
def result(data):
    models, _ = train_models(data, ("torch", "keras"), seed=0)
    return clever_hans_benchmark(0, data=data, models=models,
                                 method_options={"smoothgrad": {"samples": 16}})


def test_data_set_watermarks_exactly_one_class(data):
    assert data.x_train.shape[1:] == (16, 16, 1) and data.x_train.dtype == np.float32
    assert data.mask.sum() == 16 and data.mask[:4, :4].all()
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        patch = x[:, data.mask, 0]
        assert np.all(patch[y == data.patch_class] > 0.9)
        assert np.all(patch[y != data.patch_class] < 0.2)
        assert 0.3 < y.mean() < 0.7
    again = clever_hans(0)
    np.testing.assert_array_equal(again.x_test, data.x_test)
    assert not np.array_equal(clever_hans(1).x_test, data.x_test)
    bars = clever_hans(0, n=50, source="synthetic", size=24)
    assert bars.x_train.shape[1:] == (24, 24, 1) and bars.source == "synthetic"
    removed = data.remove_patch(data.x_test)
    assert np.all(removed[:, data.mask] == 0) and np.all(data.x_test[:, data.mask].max() > 0)


def test_both_frameworks_learn_the_shortcut(result):
    for fw in ("torch", "keras"):
        assert result.accuracy[fw]["test"] >= 0.97
        assert result.accuracy[fw]["patch_removed"] <= 0.7  # near chance without the patch


def test_gradient_methods_put_most_positive_relevance_in_the_patch(result):
    chance = result.data.mask.mean()
    for method in GRADIENT:
        for fw in ("torch", "keras"):
            score = result.score(fw, method)
            assert score.status == "ok", score.note
            assert score.relevance_mass > 0.5, (fw, method, score.relevance_mass)
            assert score.pointing_game >= 0.75
        # same architecture, weights and batches: the two frameworks agree
        assert result.score("torch", method).relevance_mass == pytest.approx(
            result.score("keras", method).relevance_mass, abs=0.02)
    for method in ("gradient_x_input", "integrated_gradients"):
        for fw in ("torch", "keras"):
            assert result.score(fw, method).relevance_mass > max(0.75, 10 * chance)


def test_native_relevance_and_shapley_methods_find_the_watermark(result):
    """LRP, Deep Taylor and the coalition / expected-gradient methods point at the patch
    on both frameworks and agree across them; feature permutation (a batch's global
    importance) is skipped by default, with the reason, and runs when named."""
    from crosslens.evaluate.clever_hans import attribution_methods
    chance = result.data.mask.mean()
    for method in ("lrp", "deep_taylor", "lime", "kernel_shap", "shapley_value_sampling",
                   "gradient_shap"):
        for fw in ("torch", "keras"):
            score = result.score(fw, method)
            assert score.status == "ok", score.note
            assert score.relevance_mass > 5 * chance, (fw, method, score.relevance_mass)
            assert score.pointing_game >= 0.75, (fw, method, score.pointing_game)
        assert result.score("torch", method).relevance_mass == pytest.approx(
            result.score("keras", method).relevance_mass, abs=0.02)
    for fw in ("torch", "keras"):
        skipped = result.score(fw, "feature_permutation")
        assert skipped.status == "skipped" and "watermark" in skipped.note
    assert attribution_methods("torch", ["feature_permutation"]) == [("feature_permutation",
                                                                      "")]


def test_every_registered_method_is_reported(result):
    import crosslens as cl
    names = [row["name"] for row in cl.methods()]
    for fw in ("torch", "keras"):
        assert [s.method for s in result.scores if s.framework == fw] == names
        assert not [s for s in result.scores if s.framework == fw and s.status == "error"], \
            [(s.method, s.note) for s in result.scores if s.status == "error"]
    table = result.table()
    assert all(name in table for name in names) and "chance" in table


def test_html_report_is_self_contained(result, tmp_path):
    path = result.save_html(str(tmp_path / "report.html"), columns=3)
    text = open(path, encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 2  # one figure per framework
    assert "http://" not in text and "https://" not in text
    assert "saliency" in text


def test_cli_function(tmp_path, capsys):
    parser = add_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--frameworks", "torch", "--methods", "saliency", "occlusion",
                              "--n", "200", "--epochs", "2", "--samples", "4",
                              "--report", str(tmp_path / "r.html"),
                              "--json", str(tmp_path / "r.json")])
    assert run_evaluate(args) == 0
    out = capsys.readouterr().out
    assert "saliency" in out and "occlusion" in out and "report written" in out
    rows = json.load(open(tmp_path / "r.json"))["rows"]
    assert [r["method"] for r in rows] == ["saliency", "occlusion"]
    assert (tmp_path / "r.html").exists()
