"""Per-token attributions of models that take token ids: :func:`explain_text`.

Every text method is an existing method aimed at the right place, so it runs on every
backend and agrees with the image methods it reuses:

==========================  =======================================================
text method                 what runs (``embedding``: the embedding layer's output)
==========================  =======================================================
``saliency``                gradient w.r.t. the embedding's output
``gradient_x_embedding``    gradient × embedding (``gradient_x_input`` there)
``integrated_gradients``    IG on a straight path in embedding space from the
                            baseline's embedding (Captum ``LayerIntegratedGradients``
                            on the embedding layer)
``smoothgrad``              mean gradient over Gaussian noise added to the embedding
                            (``internal_influence`` with ``doi="gaussian"``)
``internal_influence``      internal influence from the embedding (or ``layer=``)
``occlusion``               score drop when a window of tokens becomes the baseline id
``feature_ablation``        score drop when one token at a time becomes the baseline id
``kernel_shap``, ``lime``,  Shapley values / local surrogate with one feature per
``shapley_value_sampling``  token; an absent token becomes the baseline id
==========================  =======================================================

Baselines: ``"pad"`` (every token replaced by ``pad_id``), ``"mask"`` (by ``mask_id``),
``"zero"`` (the zero embedding; gradient methods only), an id, or an array of ids. Ids in
``keep_ids`` (e.g. ``[CLS]``, ``[SEP]``) stay in every baseline, so they are never
removed: ablation, occlusion, Shapley sampling and exact KernelSHAP give them 0 (a sampled
regression, KernelSHAP's or LIME's, gives them small values).

The result's ``attributions`` are the method's raw values (``(N, T, D)`` per embedding
dimension for gradient methods, ``(N, T)`` for perturbation methods); ``scores`` are
one value per token, the sum over the embedding dimensions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..api import _model, explain
from ..core.arrays import to_numpy
from ..core.errors import InputError, OptionError
from ..core.explanation import Explanation
from .result import extended

#: Text method -> (registered method, kind): "gradient" methods attribute in embedding
#: space, "token" methods replace tokens by baseline ids.
TEXT_METHODS: dict[str, tuple[str, str]] = {
    "saliency": ("saliency", "gradient"),
    "gradient_x_embedding": ("gradient_x_input", "gradient"),
    "integrated_gradients": ("integrated_gradients", "gradient"),
    "smoothgrad": ("internal_influence", "gradient"),
    "internal_influence": ("internal_influence", "gradient"),
    "occlusion": ("occlusion", "token"),
    "feature_ablation": ("feature_ablation", "token"),
    "kernel_shap": ("kernel_shap", "token"),
    "lime": ("lime", "token"),
    "shapley_value_sampling": ("shapley_value_sampling", "token"),
}
ALIASES = {"gradient_x_input": "gradient_x_embedding", "gxi": "gradient_x_embedding",
           "ig": "integrated_gradients", "smooth_grad": "smoothgrad",
           "influence": "internal_influence", "ablation": "feature_ablation",
           "token_ablation": "feature_ablation", "kernelshap": "kernel_shap"}


@dataclass(repr=False)
class TextExplanation(Explanation):
    """An :class:`~crosslens.Explanation` of token ids, with one score per token.

    Attributes
    ----------
    scores
        ``(N, T)`` numpy: each token's attribution (summed over the embedding dimensions
        for gradient methods; ``attributions`` keeps the per-dimension values).
    token_ids
        ``(N, T)`` numpy: the explained ids.
    tokens
        The token strings per sample, when a tokenizer or tokens were given.
    """

    scores: np.ndarray | None = None
    token_ids: np.ndarray | None = None
    tokens: list[list[str]] | None = None

    def token_strings(self, i: int) -> list[str]:
        """Sample ``i``'s tokens (the ids as strings when no tokens were given)."""
        if self.tokens is not None:
            return list(self.tokens[i])
        return [str(int(t)) for t in self.token_ids[i]]

    def words(self, i: int = 0, style: str = "auto") -> tuple[list[str], np.ndarray]:
        """Sample ``i``'s words with the summed scores of their pieces
        (:func:`crosslens.viz.merge_subwords`)."""
        from ..viz.tokens import merge_subwords
        return merge_subwords(self.token_strings(i), self.scores[i], style)

    def top_tokens(self, i: int = 0, k: int = 5, merge: bool = False) -> list[tuple[str, float]]:
        """The ``k`` tokens (or words, with ``merge``) of sample ``i`` with the largest
        signed scores, largest first."""
        tokens, scores = self.words(i) if merge else (self.token_strings(i), self.scores[i])
        order = np.argsort(-np.asarray(scores), kind="stable")[:k]
        return [(tokens[j], float(scores[j])) for j in order]

    def html(self, merge: bool = False, style: str = "auto", scale: float | None = None
             ) -> str:
        """Tokens coloured by their signed scores, one row per sample
        (:func:`crosslens.viz.token_html`)."""
        from ..viz.tokens import token_html
        tokens, titles = self._rows()
        return token_html(tokens, self.scores, merge=merge, style=style, scale=scale,
                          titles=titles)

    def _rows(self) -> tuple[list[list[str]], list[str]]:
        """Each sample's tokens and caption (method and target)."""
        rows = range(len(self.scores))
        targets = [self.target[i] if isinstance(self.target, list) else self.target
                   for i in rows]
        return ([self.token_strings(i) for i in rows],
                [f"{self.method} — target {t}" for t in targets])

    def figure(self, merge: bool = False, style: str = "auto", scale: float | None = None,
               **options: Any) -> Any:
        """The tokens on coloured boxes as a matplotlib figure (for PNG files)."""
        from ..viz.tokens import token_figure
        tokens, titles = self._rows()
        return token_figure(tokens, self.scores, merge=merge, style=style, scale=scale,
                            titles=titles, **options)

    def save(self, path: str, **options: Any) -> str:
        """Write ``.html`` (coloured tokens) or an image file of :meth:`figure`."""
        if str(path).endswith((".html", ".htm")):
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(self.html(**options))
            return str(path)
        return super().save(path, **options)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return (f"TextExplanation(method={self.method!r}, target={self.target!r}, "
                f"scores {tuple(self.scores.shape)}, attributions "
                f"{tuple(np.shape(self.attributions))}"
                + (f", layer={self.layer!r}" if self.layer else "") + ")")


def explain_text(model: Any, token_ids: Any, method: str = "integrated_gradients", *,
                 target: Any = "predicted", embedding: Any = None, baseline: Any = "pad",
                 pad_id: int | None = 0, mask_id: int | None = None,
                 keep_ids: Any = (), tokens: Any = None, layer: Any = None,
                 seed: int | None = None, memory_budget: Any = None,
                 progress: bool | None = None, **options: Any) -> TextExplanation:
    """Attribute a model's score on token ids to the tokens.

    Parameters
    ----------
    model
        A PyTorch or Keras model taking integer token ids ``(N, T)`` (or a path).
    token_ids
        Integer ids ``(N, T)`` (numpy or the framework's tensor).
    method
        A text method (see the module docstring; aliases ``"ig"``, ``"gxi"``,
        ``"ablation"``).
    target
        As for :func:`crosslens.explain` (class, ``"predicted"``, callable, neuron).
    embedding
        The embedding layer (name or object) whose output gradient methods attribute to;
        default the first embedding layer that runs.
    baseline
        ``"pad"``, ``"mask"``, ``"zero"`` (gradient methods), an id or an array of ids.
    pad_id, mask_id
        The ids of ``"pad"`` and ``"mask"``.
    keep_ids
        Ids kept in every baseline (special tokens such as ``[CLS]`` / ``[SEP]``).
    tokens
        How to show the ids: a tokenizer (``convert_ids_to_tokens``), a vocabulary
        (a dict id -> token, or a callable), or the token strings (one list per sample).
    layer
        ``internal_influence`` only: the from-cut (default the embedding); the per-token
        scores sum over the layer's non-token axes.
    seed, memory_budget, progress
        As for :func:`crosslens.explain`.
    **options
        The underlying method's options (e.g. ``steps``, ``samples``, ``noise_level``,
        ``window`` / ``stride`` for occlusion, ``completeness=True`` for IG).

    Returns
    -------
    TextExplanation
        ``scores`` ``(N, T)``, ``attributions`` (per embedding dimension for gradient
        methods), ``html()`` / notebook display.
    """
    name, registered, kind = text_method(method)
    model = _model(model)
    ids = _ids(token_ids)
    if layer is not None and name != "internal_influence":
        raise OptionError(f"layer= is the from-cut of internal_influence; {name} attributes "
                          "to the embedding (choose it with embedding=)")
    call = dict(options)
    base = _baseline(baseline, ids, kind, pad_id, mask_id, keep_ids, name)
    if kind == "gradient":
        where = layer if layer is not None else embedding
        if registered == "internal_influence":
            if name == "smoothgrad":
                call.setdefault("doi", "gaussian")
                call.setdefault("multiply", False)
            elif call.get("doi", "linear") == "linear":
                call.setdefault("baseline", base)
            if where is not None:
                call["cut"] = where
        else:
            if registered == "integrated_gradients":
                call.setdefault("baseline", base)
            if where is not None:
                call["layer"] = where
    else:
        call["baseline"] = base
        if name == "occlusion":
            call["patch"] = call.pop("window", 1)
        else:  # one feature per token
            call.setdefault("feature_mask", np.arange(ids.shape[1])[None])
    exp = explain(model, token_ids, registered, target=target, seed=seed,
                  memory_budget=memory_budget, progress=progress, **call)
    values = exp.numpy()
    scores = values if values.ndim == 2 else _per_token(values, ids.shape[1])
    result = extended(TextExplanation, exp, scores=scores.astype(np.float64), token_ids=ids,
                      tokens=token_strings(tokens, ids))
    result.method = name
    return result


def text_method(method: str) -> tuple[str, str, str]:
    """``(text method, registered method, kind)`` of a text method's name or alias (kind
    ``"gradient"``: attributes in embedding space; ``"token"``: replaces token ids)."""
    name = ALIASES.get(method, method) if isinstance(method, str) else method
    if name not in TEXT_METHODS:
        raise OptionError(f"unknown text method {method!r}; text methods are "
                          f"{sorted(TEXT_METHODS)}")
    return (name,) + TEXT_METHODS[name]


def _ids(token_ids: Any) -> np.ndarray:
    ids = to_numpy(token_ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise InputError(f"explain_text takes integer token ids of shape (N, T); got dtype "
                         f"{ids.dtype} and shape {ids.shape}. Tokenize first (e.g. "
                         "tokenizer(texts, return_tensors='np')['input_ids']); for a model "
                         "of floating-point features use cl.explain")
    return ids


def _baseline(baseline: Any, ids: np.ndarray, kind: str, pad_id: int | None,
              mask_id: int | None, keep_ids: Any, name: str) -> Any:
    """The baseline of the underlying method: ids (kept ids unchanged), or ``"zeros"``."""
    if isinstance(baseline, str):
        if baseline in ("zero", "zeros"):
            if kind == "token":
                raise OptionError(f"{name} removes tokens by replacing their ids, and "
                                  "'zero' is not an id: use baseline='pad' (pad_id=...) or "
                                  "'mask' (mask_id=...)")
            return "zeros"
        ids_of = {"pad": pad_id, "mask": mask_id}
        if baseline not in ids_of:
            raise OptionError(f"unknown text baseline {baseline!r}: use 'pad', 'mask', "
                              "'zero', an id or an array of ids")
        if ids_of[baseline] is None:
            raise OptionError(f"baseline={baseline!r} needs {baseline}_id=<the "
                              f"tokenizer's {baseline} id>")
        baseline = ids_of[baseline]
    array = to_numpy(baseline) if hasattr(baseline, "shape") else np.asarray(baseline)
    if array.dtype.kind not in "iu":
        raise OptionError(f"a text baseline is 'pad', 'mask', 'zero', an id or ids; got "
                          f"{baseline!r}")
    array = np.broadcast_to(array, ids.shape).astype(ids.dtype)
    keep = np.isin(ids, np.asarray(list(keep_ids), dtype=ids.dtype))
    return np.where(keep, ids, array)


def _per_token(values: np.ndarray, length: int) -> np.ndarray:
    """Sum over every axis but the batch and the token axis (the first of length T)."""
    axes = [a for a in range(1, values.ndim) if values.shape[a] == length]
    if not axes:
        raise OptionError(f"attributions of shape {values.shape} have no axis of the "
                          f"{length} tokens; choose a layer whose output is per token")
    token_axis = axes[0]
    return values.sum(axis=tuple(a for a in range(1, values.ndim) if a != token_axis))


def token_strings(tokens: Any, ids: np.ndarray) -> list[list[str]] | None:
    """The strings of ``ids`` from a tokenizer, a vocabulary or given tokens."""
    if tokens is None:
        return None
    if hasattr(tokens, "convert_ids_to_tokens"):
        return [list(tokens.convert_ids_to_tokens([int(t) for t in row])) for row in ids]
    if isinstance(tokens, dict):
        return [[str(tokens[int(t)]) for t in row] for row in ids]
    if callable(tokens):
        return [[str(tokens(int(t))) for t in row] for row in ids]
    rows = [tokens] if isinstance(tokens[0], str) else tokens
    if len(rows) != len(ids) or any(len(r) != ids.shape[1] for r in rows):
        raise InputError(f"tokens= gives {[len(r) for r in rows]} tokens per sample for ids "
                         f"of shape {ids.shape}; give one string per id")
    return [list(map(str, r)) for r in rows]
