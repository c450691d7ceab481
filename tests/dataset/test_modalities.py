"""The dataset store beyond images: token ids of text models (the text methods of
explain_text, per-token scores), tables and series, on the PyTorch / Keras twins of
tests/modalities (float64, the same weights). Every stored array equals the direct call
(cl.explain / explain_text) sample by sample; activations are pooled over every axis but
the layer's channels (sequences of either layout); the manifest says what the data are."""
from __future__ import annotations

import functools

import numpy as np
import pytest

import crosslens as cl
from crosslens.dataset.engine import _sample_seed
from crosslens.modalities.kinds import resolve_modality

from modalities.twins import (keras_series, keras_tabular, keras_text, torch_series,
                              torch_tabular, torch_text)

N = 6
RNG = np.random.default_rng(0)
IDS = RNG.integers(1, 24, (N, 7))
TABLE = RNG.standard_normal((N, 5))
SERIES = RNG.standard_normal((N, 12, 3))  # Keras layout (N, T, C)
VOCAB = {i: f"w{i}" for i in range(24)}


@functools.lru_cache(maxsize=None)
def twins(kind: str):
    if kind == "text":
        keras_model = keras_text("conv")
        return torch_text("conv", keras_model), keras_model
    if kind == "series":
        keras_model = keras_series("conv")
        return torch_series("conv", keras_model), keras_model
    keras_model = keras_tabular(5, 3)
    return torch_tabular(keras_model), keras_model


def _predicted(model, x):
    return np.asarray(cl.explain(model, x, "saliency").outputs).argmax(1)


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_text_stores_explain_text_scores_per_token(framework, tmp_path):
    model = dict(zip(("torch", "keras"), twins("text")))[framework]
    methods = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 3},
               "feature_ablation": {}}
    store = cl.explain_dataset(model, IDS, methods, ["emb", "conv"], out=tmp_path / "s",
                               batch_size=4, seed=2, tokens=VOCAB, progress=False)
    predicted = _predicted(model, IDS)
    np.testing.assert_array_equal(store.column("predictions"), predicted)
    np.testing.assert_array_equal(store.column("token_ids"), IDS)
    for method, options in methods.items():
        stored = store.attributions(method)
        assert stored.shape == (N, 7)
        for i in range(N):
            seed = _sample_seed(2, i) if method == "smoothgrad" else 2
            want = cl.explain_text(model, IDS[i:i + 1], method, target=int(predicted[i]),
                                   seed=seed, **options).scores[0]
            np.testing.assert_allclose(stored[i], want.astype(np.float32), rtol=1e-5,
                                       atol=1e-7, err_msg=f"{method} sample {i}")
    acts = cl.activations(model, IDS, ["emb", "conv"])
    emb, conv = (np.asarray(acts[k], np.float32) for k in ("emb", "conv"))
    conv_channels = conv if framework == "torch" else conv.transpose(0, 2, 1)  # (N, C, T)
    np.testing.assert_allclose(store.activations("emb"), emb.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(store.activations("conv"), conv_channels.mean(axis=2),
                               rtol=1e-5, atol=1e-7)
    # the top positions of a sequence are token indices
    ids, values, positions = store.top_k("conv", 1)
    j = int(ids[0])
    assert positions[0] == int(conv_channels[j, 1].argmax())
    assert values[0] == pytest.approx(float(conv_channels[j, 1].max()), rel=1e-6)
    manifest = store.manifest
    assert manifest["config"]["modality"] == "text" and store.modality["kind"] == "text"
    assert store.modality["vocabulary"] == {str(i): VOCAB[i] for i in np.unique(IDS)}
    assert manifest["channel_axes"] == {"emb": 1, "conv": 0 if framework == "torch" else 1}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_tables_store_explain_per_feature(framework, tmp_path):
    model = dict(zip(("torch", "keras"), twins("tabular")))[framework]
    methods = {"saliency": {}, "kernel_shap": {"samples": 40}}
    names = ["age", "income", "height", "weight", "score"]
    store = cl.explain_dataset(model, TABLE, methods, ["hidden"], out=tmp_path / "s",
                               batch_size=4, seed=1, feature_names=names, progress=False)
    predicted = _predicted(model, TABLE)
    for method, options in methods.items():
        want = cl.explain(model, TABLE, method, target=predicted, seed=1, **options).numpy()
        np.testing.assert_allclose(store.attributions(method), want.astype(np.float32),
                                   rtol=1e-5, atol=1e-7, err_msg=method)
    hidden = np.asarray(cl.activations(model, TABLE, ["hidden"])["hidden"], np.float32)
    np.testing.assert_allclose(store.activations("hidden"), hidden, rtol=1e-5)
    np.testing.assert_array_equal(store.activations("hidden", "argmax"), 0)
    assert store.modality == {"kind": "tabular", "feature_names": names}


@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_series_store_explain_over_time_and_channels(framework, tmp_path):
    model = dict(zip(("torch", "keras"), twins("series")))[framework]
    x = np.ascontiguousarray(SERIES.transpose(0, 2, 1)) if framework == "torch" else SERIES
    methods = {"saliency": {}, "occlusion": {"patch": (3, 3), "stride": 2}}
    store = cl.explain_dataset(model, x, methods, ["conv"], out=tmp_path / "s", batch_size=4,
                               channel_names=["x", "y", "z"], progress=False)
    predicted = _predicted(model, x)
    for method, options in methods.items():
        want = cl.explain(model, x, method, target=predicted, seed=0, **options).numpy()
        np.testing.assert_allclose(store.attributions(method), want.astype(np.float32),
                                   rtol=1e-5, atol=1e-7, err_msg=method)
    conv = np.asarray(cl.activations(model, x, ["conv"])["conv"], np.float32)
    conv = conv if framework == "torch" else conv.transpose(0, 2, 1)  # (N, C, T)
    np.testing.assert_allclose(store.activations("conv"), conv.mean(axis=2), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_array_equal(store.activations("conv", "argmax"), conv.argmax(axis=2))
    layout = "channels_first" if framework == "torch" else "time_first"
    assert store.modality == {"kind": "series", "layout": layout,
                              "channel_names": ["x", "y", "z"]}


def test_modality_is_detected_and_checked():
    torch_model, _ = twins("text")
    from crosslens.backends import get_backend
    backend = get_backend(torch_model)
    assert resolve_modality(None, (7,), np.int64, backend).kind == "text"
    assert resolve_modality(None, (5,), np.float32).kind == "tabular"
    assert resolve_modality(None, (3, 12), np.float32).series_layout == "channels_first"
    assert resolve_modality(None, (12, 3), np.float32).series_layout == "time_first"
    assert resolve_modality(None, (8, 8, 1), np.float32).kind == "image"
    with pytest.raises(cl.ModalityError, match="integer token ids"):
        resolve_modality("text", (7,), np.float32)
    with pytest.raises(cl.ModalityError, match="2 names for 5 features"):
        resolve_modality("tabular", (5,), np.float32, feature_names=["a", "b"])
    with pytest.raises(cl.ModalityError, match="feature_names= applies to tabular"):
        resolve_modality(None, (3, 12), np.float32, feature_names=["a"])
    with pytest.raises(cl.ModalityError, match="modality must be one of"):
        resolve_modality("audio", (5,), np.float32)


def test_bad_text_data_and_methods_are_refused(tmp_path):
    model, _ = twins("text")
    with pytest.raises(cl.ModalityError, match="integer token ids"):
        cl.explain_dataset(model, IDS.astype(np.float32), "saliency", modality="text",
                           out=tmp_path / "a", progress=False)
    with pytest.raises(cl.OptionError, match="unknown text method"):
        cl.explain_dataset(model, IDS, "grad_cam", out=tmp_path / "b", progress=False)
