"""Per-token attributions (cl.explain_text) on twin PyTorch / Keras text models.

- PyTorch == Keras (float64, identical weights) for every text method on Embedding ->
  LSTM / GRU / Conv1d / self-attention models, and on a Keras classifier trained here on
  generated sentences (copied into its PyTorch twin);
- references: integrated gradients in embedding space == Captum
  ``LayerIntegratedGradients`` (pad baseline) and Captum ``IntegratedGradients`` on the
  embeddings (zero baseline); completeness against direct forward passes; token ablation
  == score drops computed by hand; KernelSHAP with every coalition == the Shapley values
  by enumeration; kept ids (special tokens) get exactly 0 from every perturbation method;
- the trained classifier's sentiment word is its top token;
- the model is unchanged, also after an error; errors name the fix.
"""
from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

import crosslens as cl
from crosslens.modalities import explain_text
from robustness.fingerprint import assert_unchanged, fingerprint

from modalities.twins import TEXT_KINDS, keras_text, torch_text

IDS = np.random.default_rng(0).integers(1, 24, (2, 7))
TARGET = 1
#: Cheap options per text method (seeded where random).
OPTIONS = {
    "saliency": {}, "gradient_x_embedding": {},
    "integrated_gradients": {"steps": 8}, "integrated_gradients/zero": {"steps": 8,
                                                                       "baseline": "zero"},
    "smoothgrad": {"samples": 3, "seed": 0}, "internal_influence": {"steps": 8},
    "occlusion": {"window": 2, "stride": 1}, "feature_ablation": {},
    "kernel_shap": {"samples": 40, "seed": 1}, "lime": {"samples": 50, "seed": 1},
    "shapley_value_sampling": {"samples": 2, "seed": 1},
}


@functools.lru_cache(maxsize=None)
def twins(kind: str):
    keras_model = keras_text(kind)
    return torch_text(kind, keras_model), keras_model


def run(model, ids, key, **extra):
    method = key.split("/")[0]
    return explain_text(model, ids, method, target=TARGET, **{**OPTIONS[key], **extra})


@pytest.mark.parametrize("kind", TEXT_KINDS)
@pytest.mark.parametrize("key", list(OPTIONS))
def test_torch_equals_keras_for_every_text_method(kind, key):
    torch_model, keras_model = twins(kind)
    ours, theirs = run(torch_model, IDS, key), run(keras_model, IDS, key)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)
    assert np.abs(ours.scores).max() > 1e-4  # not a trivially zero agreement
    per_dimension = ours.numpy()
    if per_dimension.ndim == 3:  # gradient methods: scores sum the embedding dimensions
        np.testing.assert_allclose(ours.scores, per_dimension.sum(-1), rtol=1e-12)
        assert ours.layer == "emb"


def test_internal_influence_at_an_inner_layer_per_token():
    """From the conv layer's output, (N, T, H) in Keras and (N, H, T) in PyTorch: the token
    axis is found in either layout, the frameworks agree, and the values are layer
    integrated gradients at that layer from the pad ids' values there."""
    torch_model, keras_model = twins("conv")
    scores = []
    for model, token_axis in ((torch_model, 2), (keras_model, 1)):
        exp = explain_text(model, IDS, "internal_influence", target=TARGET, layer="conv",
                           steps=16, baseline="pad")
        layer_ig = cl.explain(model, IDS, "integrated_gradients", target=TARGET,
                              layer="conv", steps=16, baseline=np.zeros_like(IDS)).numpy()
        np.testing.assert_allclose(exp.scores, layer_ig.sum(axis=3 - token_axis),
                                   rtol=1e-10)
        assert exp.layer == "conv"
        scores.append(exp.scores)
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5, atol=1e-9)


# --- references -----------------------------------------------------------------------------

def test_ig_with_pad_baseline_equals_captum_layer_integrated_gradients():
    from captum.attr import LayerIntegratedGradients
    model, _ = twins("lstm")
    ids = torch.as_tensor(IDS)
    ours = explain_text(model, ids, "ig", target=TARGET, steps=16, pad_id=3)
    theirs = LayerIntegratedGradients(model, model.emb).attribute(
        ids, baselines=torch.full_like(ids, 3), target=TARGET, n_steps=16)
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-7, atol=1e-10)


def test_ig_with_zero_baseline_is_ig_on_the_embeddings():
    """A zero baseline is the zero embedding: Captum IG on the model from the embeddings."""
    from captum.attr import IntegratedGradients
    model, _ = twins("gru")
    values = model.emb(torch.as_tensor(IDS)).detach()

    def from_embeddings(e):
        return model.fc(model.rnn(e)[0][:, -1])

    theirs = IntegratedGradients(from_embeddings).attribute(values, target=TARGET, n_steps=16)
    ours = explain_text(model, IDS, "ig", target=TARGET, steps=16, baseline="zero")
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("framework", ["torch", "keras"])
@pytest.mark.parametrize("baseline", ["pad", "zero"])
def test_ig_in_embedding_space_is_complete(framework, baseline):
    """sum over tokens of IG == f(x) - f(baseline), with f(baseline) by direct forward
    passes (of the pad ids, or of the model on zero embeddings)."""
    torch_model, keras_model = twins("lstm")
    model = torch_model if framework == "torch" else keras_model
    exp = explain_text(model, IDS, "ig", target=TARGET, steps=64, baseline=baseline,
                       pad_id=0, completeness=True)
    with torch.no_grad():
        f_x = torch_model(torch.as_tensor(IDS))[:, TARGET].numpy()
        if baseline == "pad":
            f_b = torch_model(torch.zeros_like(torch.as_tensor(IDS)))[:, TARGET].numpy()
        else:
            zero = torch.zeros(IDS.shape + (6,), dtype=torch.float64)
            f_b = torch_model.fc(torch_model.rnn(zero)[0][:, -1])[:, TARGET].numpy()
    np.testing.assert_allclose(exp.scores.sum(axis=1), f_x - f_b, rtol=1e-4, atol=1e-7)
    assert exp.info["completeness_error"].max() < 1e-4


def _scores(model, ids):
    with torch.no_grad():
        return model(torch.as_tensor(ids))[:, TARGET].numpy()


def test_token_ablation_is_the_score_drop_of_each_token():
    model, _ = twins("conv")
    exp = explain_text(model, IDS, "ablation", target=TARGET, baseline="mask", mask_id=2)
    want = np.zeros(IDS.shape)
    for t in range(IDS.shape[1]):
        masked = IDS.copy()
        masked[:, t] = 2
        want[:, t] = _scores(model, IDS) - _scores(model, masked)
    np.testing.assert_allclose(exp.scores, want, rtol=1e-10, atol=1e-12)


def test_kernel_shap_over_tokens_is_exact_with_every_coalition():
    model, _ = twins("attention")
    ids = IDS[:, :5]
    exp = explain_text(model, ids, "kernel_shap", target=TARGET, samples=30)  # 2^5 - 2 = 30
    assert exp.info["exact"]
    m = ids.shape[1]
    want = np.zeros(ids.shape)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            for subset in itertools.combinations(others, size):
                kept = np.zeros(m, dtype=bool)
                kept[list(subset)] = True
                weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
                without = np.where(kept, ids, 0)
                kept[i] = True
                with_i = np.where(kept, ids, 0)
                want[:, i] += weight * (_scores(model, with_i) - _scores(model, without))
    np.testing.assert_allclose(exp.scores, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("key,extra", [("occlusion", {"window": 1}), ("feature_ablation", {}),
                                       ("kernel_shap", {"samples": 126}),
                                       ("shapley_value_sampling", {})])
def test_kept_ids_are_never_removed(key, extra):
    """Special tokens (keep_ids) stay in every baseline: perturbing them changes nothing,
    so they are dummy players and get 0 (up to the rounding of batched passes) from the
    methods that are exact for dummies (KernelSHAP with every coalition; a sampled
    regression, or LIME's, gives them small values)."""
    model, _ = twins("gru")
    ids = IDS.copy()
    ids[:, 0], ids[:, -1] = 22, 23  # "[CLS]" ... "[SEP]"
    exp = run(model, ids, key, keep_ids=(22, 23), **extra)
    assert np.abs(exp.scores[:, [0, -1]]).max() < 1e-12
    assert np.abs(exp.scores[:, 1:-1]).max() > 1e-4


# --- a Keras classifier trained on generated sentences ----------------------------------------

VOCAB = ["<pad>", "<mask>", "the", "a", "movie", "film", "plot", "show", "was", "is",
         "really", "very", "quite", "good", "great", "excellent", "wonderful", "bad", "awful",
         "terrible", "boring", "and", "acting", "story"]
POSITIVE, NEGATIVE = VOCAB[13:17], VOCAB[17:21]


def sentences(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``the|a <noun> was|is [<adverb>] <adjective>`` as ids padded to 7, and the labels."""
    rng = np.random.default_rng(seed)
    ids, labels = np.zeros((count, 7), dtype=np.int64), np.zeros(count, dtype=np.int64)
    for row in range(count):
        label = rng.integers(2)
        words = [rng.choice(["the", "a"]), rng.choice(["movie", "film", "plot", "show"]),
                 rng.choice(["was", "is"])]
        if rng.random() < 0.5:
            words.append(rng.choice(["really", "very", "quite"]))
        words.append(rng.choice(POSITIVE if label else NEGATIVE))
        ids[row, :len(words)] = [VOCAB.index(w) for w in words]
        labels[row] = label
    return ids, labels


@functools.lru_cache(maxsize=None)
def trained_classifier():
    import keras
    model = keras_text("conv", vocab=len(VOCAB), dim=8, hidden=8, classes=2, length=7,
                       seed=3)
    ids, labels = sentences(256, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.02),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(ids, labels, epochs=15, batch_size=32, verbose=0)
    return model, torch_text("conv", model)


def test_trained_classifier_learned_the_task():
    keras_model, torch_model = trained_classifier()
    ids, labels = sentences(64, seed=1)
    with torch.no_grad():
        predicted = torch_model(torch.as_tensor(ids)).argmax(1).numpy()
    assert (predicted == labels).mean() > 0.95
    np.testing.assert_allclose(keras_model(ids).numpy(),
                               torch_model(torch.as_tensor(ids)).detach().numpy(), atol=1e-12)


@pytest.mark.parametrize("key", list(OPTIONS))
def test_trained_classifier_torch_equals_keras(key):
    keras_model, torch_model = trained_classifier()
    ids, _ = sentences(3, seed=2)
    ours, theirs = run(torch_model, ids, key), run(keras_model, ids, key)
    np.testing.assert_allclose(ours.scores, theirs.scores, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation", "kernel_shap"])
def test_the_sentiment_word_is_the_top_token(method):
    keras_model, _ = trained_classifier()
    ids, labels = sentences(6, seed=4)
    options = {"steps": 32} if method == "integrated_gradients" else {"seed": 0}
    exp = explain_text(keras_model, ids, method, target=labels.tolist(),
                       tokens=VOCAB.__getitem__, keep_ids=(0,), **options)
    for i in range(len(ids)):
        top = exp.top_tokens(i, k=1)[0][0]
        assert top in (POSITIVE if labels[i] else NEGATIVE), (exp.token_strings(i), exp.scores[i])


# --- display ----------------------------------------------------------------------------------

def test_html_colours_tokens_by_sign_and_has_a_legend(tmp_path):
    keras_model, _ = trained_classifier()
    ids, labels = sentences(2, seed=5)
    exp = explain_text(keras_model, ids, "ig", target=labels.tolist(),
                       tokens={i: w for i, w in enumerate(VOCAB)}, steps=16)
    html = exp._repr_html_()
    assert html.count("<span title=") == ids.size and "crosslens-legend" in html
    for i, j in zip(*np.nonzero(exp.scores)):
        colour = "rgba(255, 0, 0" if exp.scores[i, j] > 0 else "rgba(0, 0, 255"
        assert f'title="{exp.scores[i, j]:+.4g}" style="background: {colour}' in html
    exp.save(str(tmp_path / "tokens.html"))
    exp.save(str(tmp_path / "tokens.png"))
    assert (tmp_path / "tokens.html").read_text() == exp.html()
    assert (tmp_path / "tokens.png").read_bytes()[:4] == b"\x89PNG"


# --- state and errors -------------------------------------------------------------------------

@pytest.mark.parametrize("framework", ["torch", "keras"])
def test_model_is_unchanged_also_after_an_error(framework):
    torch_model, keras_model = twins("lstm")
    model = torch_model if framework == "torch" else keras_model
    before = fingerprint(model)
    for key in ("integrated_gradients", "smoothgrad", "kernel_shap"):
        run(model, IDS, key)
    with pytest.raises(cl.CrosslensError):
        explain_text(model, IDS, "ig", target=TARGET, steps=0)
    assert_unchanged(model, before)


def test_errors_name_the_fix():
    model, _ = twins("lstm")
    with pytest.raises(cl.InputError, match="integer token ids"):
        explain_text(model, IDS.astype(np.float32), "ig")
    with pytest.raises(cl.OptionError, match="baseline='pad'"):
        explain_text(model, IDS, "occlusion", baseline="zero")
    with pytest.raises(cl.OptionError, match="mask_id="):
        explain_text(model, IDS, "ablation", baseline="mask")
    with pytest.raises(cl.OptionError, match="text methods are"):
        explain_text(model, IDS, "grad_cam")
    with pytest.raises(cl.OptionError, match="embedding="):
        explain_text(model, IDS, "saliency", layer="rnn")


def test_ids_into_a_model_without_an_embedding_name_the_fix():
    """Integer ids given to a model of floating-point features: the error says to pass
    floats (the model has no embedding to take ids)."""
    dense = torch.nn.Sequential(torch.nn.Linear(7, 2)).double()
    with pytest.raises(cl.InputError, match="no embedding layer.*floating-point"):
        cl.explain(dense, IDS, "saliency", target=1)


def test_word_pieces_merge_into_words_with_summed_scores():
    from crosslens.viz import merge_subwords, token_html
    words, scores = merge_subwords(["[CLS]", "em", "##bed", "##ding", "works", "[SEP]"],
                                   [0.0, 1.0, 2.0, -0.5, 0.25, 0.0])
    assert words == ["[CLS]", "embedding", "works", "[SEP]"]
    np.testing.assert_allclose(scores, [0.0, 2.5, 0.25, 0.0])
    words, scores = merge_subwords(["▁The", "▁embed", "ding", "s", "▁work", "</s>"],
                                   [1, 2, 3, 4, 5, 6])
    assert words == ["The", "embeddings", "work", "</s>"]
    np.testing.assert_allclose(scores, [1, 9, 5, 6])
    html = token_html(["▁The", "▁embed", "ding"], [1.0, -2.0, 0.5], merge=True)
    assert ">embedding</span>" in html and 'title="-1.5"' in html
