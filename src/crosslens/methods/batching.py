"""Chunk sizes of methods that evaluate many points per input (paths, noise, masks).

Each point is a perturbed or interpolated copy of the whole batch, so a pass holds
``per_pass · N`` samples; ``per_pass`` comes from the backend's estimate of one sample's
memory and the call's memory budget (``cl.explain(..., memory_budget=...)``), and on a
CPU from the cache-sized pass cap (:meth:`~crosslens.core.backend.Backend.pass_size`).
When one point of the batch is already more than a pass holds, the backend's primitives
split it further.
"""
from __future__ import annotations

from .base import Context


def points_per_pass(ctx: Context, count: int, backward: bool = True) -> int:
    """How many of ``count`` points (each a copy of the batch) fit in one pass.

    ``backward=False`` for forward-only passes (perturbation methods), which need less
    memory per sample than a forward-backward pass.
    """
    n = max(ctx.n, 1)
    return max(1, ctx.backend.pass_size(ctx.x, backward, total=n * count) // n)
