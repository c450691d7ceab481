"""Progress bars for long work: tqdm when installed, else a minimal bar on stderr.

``progress=True`` always shows one, ``False`` never; ``None`` (the default of
:func:`crosslens.explain`) shows one only when stderr is a terminal and the work takes
more than one pass (:func:`chunks`).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

from .chunking import chunks as _chunks


class _SimpleBar:
    """``\\r``-redrawn text bar on stderr with throughput and time left, at most ~10
    redraws per second."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.n, self._last = max(int(total), 1), desc, 0, 0.0
        self._start, self._first = time.monotonic(), 0

    def update(self, n: int = 1) -> None:
        if self.n == 0 and n and time.monotonic() - self._start < 1e-3:
            self._first = n  # already done when the bar starts (a resumed run)
        self.n += n
        now = time.monotonic()
        if now - self._last >= 0.1 or self.n >= self.total:
            self._last = now
            done = int(30 * self.n / self.total)
            rate = (self.n - self._first) / max(now - self._start, 1e-9)
            left = f", {(self.total - self.n) / rate:.0f} s left" if rate > 0 else ""
            sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (30 - done)}] "
                             f"{self.n}/{self.total} ({rate:.3g}/s{left})")
            sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str = "", enabled: bool = True) -> Any:
    """An object with ``update(n)`` and ``close()``; a no-op when ``enabled`` is false."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _SimpleBar(total, desc)
    return tqdm(total=total, desc=desc, leave=False, file=sys.stderr)


def wanted(setting: bool | None, passes: int) -> bool:
    """Whether to show a bar for ``passes`` passes under the ``progress=`` setting."""
    if setting is not None:
        return bool(setting)
    isatty = getattr(sys.stderr, "isatty", None)
    return passes > 1 and bool(isatty and isatty())


def chunks(total: int, size: int, desc: str, setting: bool | None
           ) -> Iterator[tuple[int, int]]:
    """:func:`crosslens.core.chunking.chunks` with a progress bar over the ``total`` items
    (closed also when the loop ends early or raises)."""
    passes = -(-int(total) // max(int(size), 1))
    bar = progress_bar(total, desc, wanted(setting, passes))
    try:
        for a, b in _chunks(total, size):
            yield a, b
            bar.update(b - a)
    finally:
        bar.close()
