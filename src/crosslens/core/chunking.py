"""Memory-bounded batching.

Path, sampling and perturbation methods evaluate many points per input. Instead of a
per-method ``internal_batch_size``, every method receives a memory budget (bytes) and
asks :func:`chunk_size` how many points fit in one forward-backward pass, given the
backend's estimate of the memory one sample costs. Results never depend on the chunk
size: chunks are independent and are combined by sums in a fixed order.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator

from .errors import OptionError

GiB = 1024 ** 3
#: Default budget when neither the caller nor ``CROSSLENS_MEMORY_BUDGET`` sets one.
DEFAULT_BUDGET = 2 * GiB
#: On a CPU, the most estimated memory one pass holds even when the budget allows more
#: (see ``Backend.pass_size``). From ``benchmarks/chunk_sweep.py`` on one core: ResNet50
#: and EfficientNet-Lite0 at 224² are fastest per image at 2-8 images per pass (estimated
#: 0.5-2 GiB) and up to 1.6x slower at the 11-33 the 2 GiB budget allows forward passes.
CPU_PASS_BYTES = 5 * GiB // 4

_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024 ** 2, "mb": 1024 ** 2,
          "mib": 1024 ** 2, "g": GiB, "gb": GiB, "gib": GiB}


def parse_budget(budget: int | float | str | None) -> int:
    """Return a budget in bytes from an int, or a string such as ``"512MB"`` / ``"4GiB"``.

    ``None`` reads ``CROSSLENS_MEMORY_BUDGET`` and falls back to :data:`DEFAULT_BUDGET`.
    """
    if budget is None:
        budget = os.environ.get("CROSSLENS_MEMORY_BUDGET") or DEFAULT_BUDGET
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", budget)
        if not match or match.group(2).lower() not in _UNITS:
            raise OptionError(f"cannot read memory budget {budget!r}; use bytes or e.g. '2GB'")
        budget = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget != budget:
        raise OptionError(f"memory budget must be bytes (an int) or a string such as '2GB'; "
                          f"got {budget!r}")
    budget = int(budget)
    if budget <= 0:
        raise OptionError(f"memory budget must be positive, got {budget}; e.g. '2GB'")
    return budget


def chunk_size(bytes_per_sample: int, budget: int, total: int) -> int:
    """How many samples fit in one pass: at least 1, at most ``total``."""
    per = max(int(bytes_per_sample), 1)
    return max(1, min(int(total), budget // per))


def chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(total)`` in steps of ``size``."""
    for start in range(0, total, size):
        yield start, min(start + size, total)
