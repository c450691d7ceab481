"""Long work (attributions, feature visualizations) on one background worker thread,
with progress for the jobs endpoint.

One worker, because the model is not thread-safe: every model call also holds the
model's lock (:func:`crosslens.backends.model_lock`), so view requests and jobs are
serialized. A job's id is derived from what it computes, so posting the same job twice
returns the same job (and a finished one at once). Jobs that share a ``batch_key`` and
wait together run as one batch (feature visualizations of several channels of one layer
are one optimization).
"""
from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import CrosslensError
from .errors import NotFoundError, status_of

#: Most jobs batched into one run.
MAX_BATCH = 8
#: Finished jobs remembered (the oldest are forgotten first).
MAX_FINISHED = 2000


@dataclass
class Job:
    """One unit of work and its state."""

    id: str
    kind: str
    run: Callable[[list["Job"], Callable[[float], None]], list[Any]]
    params: dict = field(default_factory=dict)
    batch_key: Any = None
    status: str = "queued"  # queued | running | done | error
    progress: float = 0.0
    message: str = ""
    result: Any = None
    error_status: int | None = None
    created: float = field(default_factory=time.time)

    def describe(self) -> dict:
        return {"job": self.id, "kind": self.kind,
                "status": "running" if self.status == "queued" else self.status,
                "progress": round(float(self.progress), 4), "message": self.message,
                "result": self.result}


class JobQueue:
    """The queue and its single worker thread (started on the first job)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._jobs: dict[str, Job] = {}
        self._pending: list[Job] = []
        self._thread: threading.Thread | None = None
        self._stopped = False

    def submit(self, job: Job) -> Job:
        """Queue ``job`` unless a job with its id is queued, running or done."""
        with self._cond:
            existing = self._jobs.get(job.id)
            if existing is not None and existing.status != "error":
                return existing
            self._jobs[job.id] = job
            if job.status == "done":  # a cached result: nothing to run
                return job
            job.message = "queued"
            self._pending.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="crosslens-inspect",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
            self._trim()
        return job

    def get(self, job_id: str) -> Job:
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; post one to /api/jobs")
        return job

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job has finished (for the exporter and tests)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._jobs[job_id].status in ("queued", "running"):
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(left)
            return self._jobs[job_id]

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.status in ("done", "error")]
        for job in sorted(finished, key=lambda j: j.created)[:max(0, len(finished)
                                                                    - MAX_FINISHED)]:
            del self._jobs[job.id]

    def _next(self) -> list[Job] | None:
        with self._cond:
            while not self._pending and not self._stopped:
                self._cond.wait()
            if self._stopped:
                return None
            first = self._pending.pop(0)
            batch = [first]
            if first.batch_key is not None:
                for job in list(self._pending):
                    if len(batch) >= MAX_BATCH:
                        break
                    if job.batch_key == first.batch_key:
                        self._pending.remove(job)
                        batch.append(job)
            for job in batch:
                job.status, job.message = "running", "running"
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next()
            if batch is None:
                return

            def progress(value: float, batch=batch) -> None:
                for job in batch:
                    job.progress = min(max(float(value), 0.0), 1.0)

            try:
                results = batch[0].run(batch, progress)
            except Exception as error:  # reported through the jobs endpoint, never lost
                message = str(error) if isinstance(error, CrosslensError) else \
                    f"{type(error).__name__}: {error}"
                if not isinstance(error, CrosslensError):
                    traceback.print_exc()
                with self._cond:
                    for job in batch:
                        job.status, job.message = "error", message
                        job.error_status = status_of(error)
                    self._cond.notify_all()
                continue
            with self._cond:
                for job, result in zip(batch, results):
                    job.status, job.progress, job.message, job.result = "done", 1.0, "done", \
                        result
                self._cond.notify_all()
