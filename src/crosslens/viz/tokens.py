"""Tokens coloured by their signed attribution: HTML (notebooks, reports) and a figure.

Numpy and strings only (matplotlib is imported by :func:`token_figure` on call). Colours
are diverging and symmetric around 0: red for positive scores (pushing the target up),
blue for negative ones, white for 0, saturating at ``scale`` (default the largest
``|score|`` shown), the same convention as the image overlays.

Word pieces are merged into words on request (:func:`merge_subwords`): WordPiece
continuations (``"##ing"``) join the previous piece; with SentencePiece / byte-level BPE
a piece starting with ``"▁"`` / ``"Ġ"`` starts a new word and the others continue it.
A merged word's score is the sum of its pieces' scores (attributions are additive).
"""
from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["merge_subwords", "token_colors", "token_html", "token_figure"]

#: Colour of the largest positive / negative score (matplotlib's "bwr" ends).
POSITIVE = np.array([1.0, 0.0, 0.0])
NEGATIVE = np.array([0.0, 0.0, 1.0])
#: Strength of the strongest colour (1 would hide black text on pure red / blue).
MAX_ALPHA = 0.75
_WORD_STARTS = ("▁", "Ġ")


def _style(tokens: Sequence[str]) -> str:
    if any(t.startswith("##") for t in tokens):
        return "wordpiece"
    if any(t.startswith(_WORD_STARTS) for t in tokens):
        return "sentencepiece"
    return "none"


def _is_special(token: str) -> bool:
    return len(token) > 2 and ((token[0], token[-1]) in (("[", "]"), ("<", ">")))


def merge_subwords(tokens: Sequence[str], scores: Any, style: str = "auto"
                   ) -> tuple[list[str], np.ndarray]:
    """Merge word pieces into words, summing their scores.

    Parameters
    ----------
    tokens
        The tokens of one sequence, as the tokenizer writes them.
    scores
        One score per token.
    style
        ``"wordpiece"`` (``##`` continues a word, BERT), ``"sentencepiece"`` (``▁`` or
        ``Ġ`` starts a word, T5 / GPT-2), ``"none"``, or ``"auto"`` (from the tokens).
        Special tokens (``[CLS]``, ``<s>``) always stand alone.

    Returns
    -------
    words, word_scores
        The words (markers removed) and the sum of their pieces' scores.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    style = _style(tokens) if style == "auto" else style
    if style not in ("wordpiece", "sentencepiece", "none"):
        raise ValueError(f"style must be 'auto', 'wordpiece', 'sentencepiece' or 'none'; "
                         f"got {style!r}")
    words: list[str] = []
    totals: list[float] = []
    previous_special = True
    for token, score in zip(tokens, scores):
        special = _is_special(token)
        if style == "wordpiece":
            joins = token.startswith("##") and not special
            piece = token[2:] if joins else token
        elif style == "sentencepiece":
            joins = not token.startswith(_WORD_STARTS) and not special
            piece = token.lstrip("".join(_WORD_STARTS)) or token
        else:
            joins, piece = False, token
        if joins and words and not previous_special:
            words[-1] += piece
            totals[-1] += score
        else:
            words.append(piece)
            totals.append(score)
        previous_special = special
    return words, np.asarray(totals)


def token_colors(scores: Any, scale: float | None = None) -> list[str]:
    """CSS ``rgba(...)`` background colours for signed scores (see the module docstring).

    Parameters
    ----------
    scores
        Signed scores.
    scale
        The ``|score|`` that gets the strongest colour; default the largest ``|score|``.
    """
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    scale = _scale(values, scale)
    colours = []
    for value in values:
        strength = min(abs(value) / scale, 1.0) * MAX_ALPHA
        rgb = (POSITIVE if value >= 0 else NEGATIVE) * 255
        colours.append(f"rgba({int(rgb[0])}, {int(rgb[1])}, {int(rgb[2])}, {strength:.3f})")
    return colours


def _scale(values: np.ndarray, scale: float | None) -> float:
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        return float(scale)
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def token_html(tokens: Sequence[Sequence[str]] | Sequence[str], scores: Any, *,
               merge: bool = False, style: str = "auto", scale: float | None = None,
               titles: Sequence[str] | None = None, legend: bool = True) -> str:
    """Self-contained HTML: each token on a background coloured by its signed score.

    Parameters
    ----------
    tokens
        One sequence of tokens, or one per row.
    scores
        Scores shaped like ``tokens`` (one row per sequence).
    merge
        Merge word pieces into words (:func:`merge_subwords`) before colouring.
    style
        Word-piece style for ``merge`` (see :func:`merge_subwords`).
    scale
        ``|score|`` of the strongest colour, shared by every row; default the largest
        ``|score|`` shown.
    titles
        A caption per row (e.g. the target and the method).
    legend
        Add a colour legend from ``-scale`` to ``+scale``.

    Returns
    -------
    str
        An HTML ``<div>``; each token's exact score is in its tooltip.
    """
    rows_tokens, rows_scores, scale = _prepared(tokens, scores, merge, style, scale)
    parts = ['<div class="crosslens-tokens" style="font-family: sans-serif; '
             'line-height: 2.0;">']
    for r, (row_tokens, row_scores) in enumerate(zip(rows_tokens, rows_scores)):
        if titles is not None:
            parts.append(f'<div style="font-size: 0.85em; color: #555;">'
                         f'{html.escape(str(titles[r]))}</div>')
        spans = [f'<span title="{value:+.4g}" style="background: {colour}; padding: 2px 3px; '
                 f'margin: 1px; border-radius: 3px; color: #000;">{html.escape(token)}</span>'
                 for token, value, colour in zip(row_tokens, row_scores,
                                                 token_colors(row_scores, scale))]
        parts.append("<div>" + " ".join(spans) + "</div>")
    if legend:
        parts.append(_legend_html(scale))
    parts.append("</div>")
    return "".join(parts)


def _legend_html(scale: float) -> str:
    alpha = MAX_ALPHA
    gradient = (f"linear-gradient(to right, rgba(0, 0, 255, {alpha}), rgba(255, 255, 255, 0), "
                f"rgba(255, 0, 0, {alpha}))")
    return ('<div class="crosslens-legend" style="display: flex; align-items: center; '
            'gap: 6px; font-size: 0.8em; margin-top: 6px;">'
            f'<span>{-scale:.3g}</span><span style="display: inline-block; width: 160px; '
            f'height: 10px; background: {gradient}; border: 1px solid #ccc;"></span>'
            f'<span>+{scale:.3g}</span><span style="color: #555;">(blue lowers the target, '
            'red raises it)</span></div>')


def _prepared(tokens: Any, scores: Any, merge: bool, style: str, scale: float | None
              ) -> tuple[list[list[str]], list[np.ndarray], float]:
    """Rows of tokens and scores (word pieces merged on request) and the shared scale."""
    rows_tokens, rows_scores = _rows(tokens, scores)
    if merge:
        merged = [merge_subwords(t, s, style) for t, s in zip(rows_tokens, rows_scores)]
        rows_tokens, rows_scores = [m[0] for m in merged], [m[1] for m in merged]
    return rows_tokens, rows_scores, _scale(np.concatenate([np.ravel(s) for s in rows_scores]),
                                            scale)


def _rows(tokens: Any, scores: Any) -> tuple[list[list[str]], list[np.ndarray]]:
    values = np.asarray(scores, dtype=np.float64)
    if tokens and isinstance(tokens[0], str):
        tokens, values = [list(tokens)], values.reshape(1, -1)
    rows = [np.asarray(v).reshape(-1) for v in values]
    if len(tokens) != len(rows) or any(len(t) != len(v) for t, v in zip(tokens, rows)):
        raise ValueError(f"tokens ({[len(t) for t in tokens]} per row) and scores "
                         f"({[len(v) for v in rows]} per row) do not match")
    return [list(t) for t in tokens], rows


def token_figure(tokens: Sequence[Sequence[str]] | Sequence[str], scores: Any, *,
                 merge: bool = False, style: str = "auto", scale: float | None = None,
                 titles: Sequence[str] | None = None, width: float = 8.0,
                 colorbar: bool = True) -> Any:
    """A matplotlib figure of the tokens on coloured boxes (the PNG twin of
    :func:`token_html`; same options), wrapping rows at ``width`` inches."""
    from matplotlib.colors import LinearSegmentedColormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.cm import ScalarMappable

    rows_tokens, rows_scores, scale = _prepared(tokens, scores, merge, style, scale)
    char, line = 0.085, 0.32  # inches per character and per text line at fontsize 10
    lines: list[list[tuple[str, float, float]]] = []  # (token, score, x in inches)
    for r, (row_tokens, row_scores) in enumerate(zip(rows_tokens, rows_scores)):
        if titles is not None:
            lines.append([(str(titles[r]), np.nan, 0.0)])
        current, x = [], 0.0
        for token, value in zip(row_tokens, row_scores):
            w = char * (len(token) + 1.5)
            if current and x + w > width:
                lines.append(current)
                current, x = [], 0.0
            current.append((token, float(value), x))
            x += w + 0.05
        lines.append(current)
    bottom = 0.7 if colorbar else 0.1  # inches below the text: the colour bar
    height = line * len(lines) + bottom
    fig = Figure(figsize=(width + 0.2, height))
    ax = fig.add_axes((0.0, bottom / height, 1.0, line * len(lines) / height))
    ax.set_xlim(0, width + 0.2)
    ax.set_ylim(len(lines), 0)
    ax.axis("off")
    colours = LinearSegmentedColormap.from_list(
        "crosslens_tokens", [(0, 0, 1, MAX_ALPHA), (1, 1, 1, 0), (1, 0, 0, MAX_ALPHA)])
    for y, items in enumerate(lines):
        for token, value, x in items:
            if np.isnan(value):
                ax.text(x + 0.05, y + 0.6, token, fontsize=9, color="#555")
                continue
            colour = colours(0.5 + 0.5 * float(np.clip(value / scale, -1, 1)))
            ax.text(x + 0.05, y + 0.6, token, fontsize=10, family="monospace",
                    bbox=dict(boxstyle="round,pad=0.2", facecolor=colour, edgecolor="none"))
    if colorbar:
        bar = fig.add_axes((0.3, 0.35 / height, 0.4, 0.15 / height))
        fig.colorbar(ScalarMappable(Normalize(-scale, scale), colours), cax=bar,
                     orientation="horizontal")
        bar.tick_params(labelsize=7)
    return fig
