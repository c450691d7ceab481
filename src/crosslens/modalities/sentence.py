"""Which tokens make two sentences similar: :func:`explain_similarity`.

For a sentence-embedding model (a ``sentence_transformers.SentenceTransformer`` or a
Hugging Face transformer with its tokenizer, PyTorch), :func:`similarity_model` wraps the
transformer into a model of sentence A's token ids whose single output is the cosine
similarity of A's mean-pooled token embeddings with the (fixed) embedding of sentence B.
:func:`explain_similarity` attributes that similarity to A's tokens with a text method
(default: integrated gradients in embedding space from the padding ids, keeping the
special tokens), so the scores sum to ``sim(A, B) - sim(baseline, B)``.

Each sentence is encoded alone, without padding, so mean pooling over its attention mask
is the plain mean over its tokens (as ``SentenceTransformer.encode`` computes it).
"""
from __future__ import annotations

from typing import Any

from .text import TextExplanation, explain_text


def _parts(encoder: Any, tokenizer: Any) -> tuple[Any, Any]:
    """The Hugging Face transformer and tokenizer of a SentenceTransformer (or as given)."""
    if tokenizer is None:
        tokenizer = getattr(encoder, "tokenizer", None)
    transformer = getattr(encoder[0], "auto_model", None) if hasattr(encoder, "__getitem__") \
        and hasattr(encoder, "tokenizer") else encoder
    if tokenizer is None or transformer is None:
        from ..core.errors import OptionError
        raise OptionError("give a SentenceTransformer, or a Hugging Face transformer with "
                          "tokenizer=<its tokenizer>")
    return transformer, tokenizer


def similarity_model(transformer: Any, reference_ids: Any) -> Any:
    """A ``torch.nn.Module``: token ids ``(N, T)`` -> cosine similarity ``(N, 1)`` of their
    mean-pooled token embeddings with those of ``reference_ids`` ``(1, T')``.

    It shares (does not copy) ``transformer`` and leaves its modes as they are; crosslens
    runs it in eval mode for each call.

    Parameters
    ----------
    transformer
        A Hugging Face PyTorch transformer returning ``last_hidden_state``.
    reference_ids
        Token ids of the reference sentence B (encoded once, without gradients).
    """
    import torch

    class SentenceSimilarity(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer
            ids = torch.as_tensor(reference_ids).reshape(1, -1)
            modes = [(m, m.training) for m in transformer.modules()]
            try:  # B's embedding without dropout; the caller's modes are put back
                transformer.eval()
                with torch.no_grad():
                    reference = self.embed(ids)
            finally:
                for module, training in modes:
                    module.training = training
            self.register_buffer("reference", reference, persistent=False)

        def embed(self, ids: Any) -> Any:
            states = self.transformer(input_ids=ids,
                                      attention_mask=torch.ones_like(ids)).last_hidden_state
            return states.mean(dim=1)

        def forward(self, ids: Any) -> Any:
            a = self.embed(ids)
            return torch.nn.functional.cosine_similarity(a, self.reference, dim=-1)[:, None]

    return SentenceSimilarity()


def explain_similarity(encoder: Any, sentence: str, reference: str,
                       method: str = "integrated_gradients", *, tokenizer: Any = None,
                       **options: Any) -> TextExplanation:
    """Attribute ``cos(embed(sentence), embed(reference))`` to the sentence's tokens.

    Parameters
    ----------
    encoder
        A ``SentenceTransformer`` (PyTorch), or a Hugging Face transformer with
        ``tokenizer=``.
    sentence, reference
        Sentence A (explained) and sentence B (fixed).
    method
        A text method of :func:`crosslens.explain_text`.
    tokenizer
        The tokenizer (default the SentenceTransformer's).
    **options
        Options of :func:`crosslens.explain_text` (``baseline``, ``steps``,
        ``completeness``, ...). By default the baseline is the padding id and the
        special tokens (``[CLS]``, ``[SEP]``) are kept.

    Returns
    -------
    TextExplanation
        With the tokenizer's tokens; ``outputs`` holds the similarity.
    """
    transformer, tokenizer = _parts(encoder, tokenizer)
    a = tokenizer([sentence], return_tensors="pt")["input_ids"]
    b = tokenizer([reference], return_tensors="pt")["input_ids"]
    model = similarity_model(transformer, b.to(next(transformer.parameters()).device))
    special = [i for i in (tokenizer.cls_token_id, tokenizer.sep_token_id,
                           tokenizer.bos_token_id, tokenizer.eos_token_id) if i is not None]
    options.setdefault("keep_ids", special)
    options.setdefault("pad_id", tokenizer.pad_token_id)
    options.setdefault("embedding", _word_embeddings(transformer))
    return explain_text(model, a, method, target=1, tokens=tokenizer, **options)


def _word_embeddings(transformer: Any) -> str:
    """Name (in the similarity model) of the transformer's token embedding table."""
    table = transformer.get_input_embeddings()
    for name, module in transformer.named_modules():
        if module is table:
            return f"transformer.{name}"
    raise LookupError("the transformer's input embeddings are not one of its modules")
