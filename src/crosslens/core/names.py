"""Helpers for errors about names: closest matches for an unknown name."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Return up to ``n`` candidates closest to ``name``.

    Substring matches come first (``"conv"`` should suggest ``"block.conv1"``), then
    difflib's similarity ranking.
    """
    candidates = list(candidates)
    lowered = name.lower()
    contains = [c for c in candidates if lowered and lowered in c.lower()]
    similar = difflib.get_close_matches(name, candidates, n=n, cutoff=0.4)
    ordered = list(dict.fromkeys(contains[:n] + similar))
    return ordered[:n]


def unknown_name_message(kind: str, name: str, candidates: Iterable[str]) -> str:
    """Format ``unknown <kind> 'name'; closest: ...`` with a short list of valid names."""
    candidates = list(candidates)
    near = closest(name, candidates)
    message = f"unknown {kind} {name!r}"
    if near:
        message += "; closest valid names: " + ", ".join(repr(c) for c in near)
    elif candidates:
        shown = ", ".join(repr(c) for c in candidates[:12])
        more = f" (and {len(candidates) - 12} more)" if len(candidates) > 12 else ""
        message += f"; valid names are: {shown}{more}"
    else:
        message += "; the model has no addressable names of that kind"
    return message
