"""Timing and peak-memory measurement of one implementation on one cell.

- Time: one untimed warm-up call per implementation (compilation, allocator warm-up; its
  output is kept for the agreement check), then ``repeats`` timed calls in interleaved
  rounds; the median is reported. An implementation whose warm-up alone takes longer
  than ``budget_s`` is timed by that single call (``timed_runs: 0, warmup_timed:
  true``); otherwise ``repeats`` is cut so that its timed calls fit ``budget_s`` (at
  least 1), and the count is recorded.
- Peak memory: on a GPU, the framework allocator's peak above what was allocated before
  the call (``torch.cuda.max_memory_allocated``, TF ``get_memory_info``); on the CPU,
  the process' peak resident set size above its size before the call, sampled every 2 ms
  by a thread (freed heap is returned with ``malloc_trim`` first, so earlier cells do
  not hide this one's peak).
"""
from __future__ import annotations

import ctypes
import gc
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_PAGE = 4096
try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc
    _LIBC = None


def rss_bytes() -> int:
    """Current resident set size of this process (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return 0


def release_memory() -> None:
    gc.collect()
    if _LIBC is not None:
        try:
            _LIBC.malloc_trim(0)
        except AttributeError:
            pass


class RssPeak:
    """Context manager: peak RSS above the starting RSS, sampled by a thread."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self) -> "RssPeak":
        release_memory()
        self.start = rss_bytes()
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def extra(self) -> int:
        return max(0, self.peak - self.start)


@dataclass
class Device:
    """Where the models run, and how to synchronize and read allocator peaks there."""

    kind: str  # "cpu" or "cuda"
    name: str = ""

    def sync(self, framework: str) -> None:
        if self.kind != "cuda":
            return
        if framework == "torch":
            import torch
            torch.cuda.synchronize()
        else:
            import tensorflow as tf
            sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
            if sync is not None:
                sync()

    def memory_scope(self, framework: str) -> "_Scope":
        return _GpuScope(framework) if self.kind == "cuda" else _CpuScope()


class _Scope:
    extra = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


class _CpuScope(_Scope):
    def __enter__(self):
        self._rss = RssPeak().__enter__()
        return self

    def __exit__(self, *exc):
        self._rss.__exit__(*exc)
        self.extra = self._rss.extra


class _GpuScope(_Scope):
    def __init__(self, framework: str) -> None:
        self.framework = framework

    def __enter__(self):
        release_memory()
        if self.framework == "torch":
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            import tensorflow as tf
            tf.config.experimental.reset_memory_stats("GPU:0")
            self.start = tf.config.experimental.get_memory_info("GPU:0")["current"]
        return self

    def __exit__(self, *exc):
        if self.framework == "torch":
            import torch
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            import tensorflow as tf
            peak = tf.config.experimental.get_memory_info("GPU:0")["peak"]
        self.extra = max(0, peak - self.start)


@dataclass
class Measurement:
    """Timing and memory of one implementation on one cell."""

    seconds: float | None = None  # median of the timed runs
    times: list[float] = field(default_factory=list)
    warmup_s: float | None = None
    timed_runs: int = 0
    warmup_timed: bool = False
    peak_bytes: int | None = None
    error: str | None = None
    output: Any = None  # numpy result of the warm-up call (not serialized)

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "times": self.times, "warmup_s": self.warmup_s,
                "timed_runs": self.timed_runs, "warmup_timed": self.warmup_timed,
                "peak_mb": None if self.peak_bytes is None else self.peak_bytes / 2 ** 20,
                "error": self.error}


def time_call(fn: Callable[[], Any], framework: str, device: Device) -> tuple[float, int, Any]:
    """``(seconds, peak extra bytes, output)`` of one call of ``fn``."""
    with device.memory_scope(framework) as scope:
        start = time.perf_counter()
        out = fn()
        device.sync(framework)
        seconds = time.perf_counter() - start
    return seconds, scope.extra, out


def measure_all(fns: dict[str, Callable[[], Any]], *, framework: str, device: Device,
                repeats: int, budget_s: float, to_numpy: Callable[[Any], np.ndarray]
                ) -> dict[str, Measurement]:
    """Warm every implementation up, then time them in interleaved rounds.

    Interleaving (A, B, C, A, B, C, ...) spreads load bursts of a shared machine over
    all implementations instead of penalizing whichever ran during the burst. Each
    implementation gets ``repeats`` timed runs, cut to what fits ``budget_s`` (at least
    one); one whose warm-up exceeds ``budget_s`` is timed by its warm-up alone.
    """
    results = {name: Measurement() for name in fns}
    runs = {}
    for name, fn in fns.items():
        m = results[name]
        try:
            release_memory()
            m.warmup_s, m.peak_bytes, out = time_call(fn, framework, device)
            m.output = to_numpy(out)
            del out
        except Exception as error:  # a failing implementation must not stop the run
            m.error = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:200]}"
            runs[name] = 0
            continue
        if repeats <= 0 or m.warmup_s > budget_s:
            runs[name] = 0
        else:
            runs[name] = max(1, min(repeats, int(budget_s // max(m.warmup_s, 1e-9))))
    for round_ in range(max(runs.values(), default=0)):
        for name, fn in fns.items():
            if round_ >= runs[name]:
                continue
            m = results[name]
            try:
                release_memory()
                seconds, peak, out = time_call(fn, framework, device)
                del out
            except Exception as error:
                m.error = f"{type(error).__name__}: {str(error)[:200]}"
                runs[name] = 0
                continue
            m.times.append(seconds)
            m.peak_bytes = max(m.peak_bytes or 0, peak)
    for name, m in results.items():
        if m.error is not None and not m.times:
            continue
        m.timed_runs = len(m.times)
        if m.times:
            m.seconds = statistics.median(m.times)
        else:
            m.seconds, m.warmup_timed, m.times = m.warmup_s, True, [m.warmup_s]
    return results


def relative_difference(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """``max |a - b| / max |b|`` (None when a shape or value is missing)."""
    if a is None or b is None:
        return None
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        a = np.squeeze(a)
        b = np.squeeze(b)
        if a.shape != b.shape:
            return None
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a).max())
