"""The Ray engine: shards explained by worker actors, each loading the model once.

The driver (the process calling :func:`crosslens.explain_dataset`) creates the store and
keeps ``workers`` actors busy, one shard at a time each; an actor explains its shard
exactly as the local engine does (:meth:`crosslens.dataset.engine.Job.shard_values`)
and writes it into the store itself, arrays first and marker last. Actors restart when
their process dies (``max_restarts=-1``) and the shard they were on is retried
(``max_task_retries=-1``): a shard is a fixed range of samples written whole, so a retry
can neither lose nor duplicate a sample. The driver then writes the reductions and the
table, as the local engine does, so both engines give the same store.

Without ``address`` a private local cluster is started on 127.0.0.1 with ``workers``
CPUs and stopped at the end; ``address="auto"`` joins the cluster of ``ray start`` on this
machine, ``"ray://head:10001"`` a remote one (the store's directory must then be on a file
system every node mounts, and the data must be readable there).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..core.errors import OptionError, UnsupportedError

#: Actor names are ``f"{ACTOR_PREFIX}{i}"`` (in the job's namespace), for monitoring.
ACTOR_PREFIX = "crosslens-worker-"


class _Worker:
    """A Ray actor: the model, the job and the store's writer, set up on its first shard
    (again after a restart). They come as object references wrapped in a list, which Ray
    does not resolve per call: the model is fetched once per actor process."""

    def __init__(self, path: str) -> None:
        self.path, self.model = path, None

    def pid(self) -> int:
        return os.getpid()

    def run(self, k: int, refs: list) -> int:
        if self.model is None:
            import ray

            from ..backends import get_backend
            from .store import StoreWriter
            self.model, self.job = ray.get(refs)
            self.backend = get_backend(self.model)
            self.writer = StoreWriter.attach(Path(self.path), self.job.shard)
        self.writer.write(k, self.job.shard_values(self.model, self.backend, k))
        return k


def run_shards(model: Any, job: Any, path: Path, pending: list[int], bar: Any, *,
               address: str | None, workers: int) -> None:
    """Explain and write the ``pending`` shards with Ray actors."""
    try:
        import ray
    except ImportError:
        raise UnsupportedError("engine='ray' needs Ray: pip install 'crosslens[ray]'") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers must be an integer >= 1, got {workers!r}")
    started = not ray.is_initialized()
    if started:
        if address is None:  # a private cluster on this machine, loopback only
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1", configure_logging=False)
        else:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        remote = ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=2)(_Worker)
        refs = [ray.put(model), ray.put(job)]
        actors = [remote.options(num_cpus=1, name=f"{ACTOR_PREFIX}{i}").remote(str(path))
                  for i in range(min(workers, len(pending)))]
        queue = list(pending)
        running = {}
        for actor in actors:
            if queue:
                running[actor.run.remote(queue.pop(0), refs)] = actor
        while running:
            finished, _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(finished[0])
            k = ray.get(finished[0])
            bar.update(job.size(k))
            if queue:
                running[actor.run.remote(queue.pop(0), refs)] = actor
        for actor in actors:
            ray.kill(actor, no_restart=True)
    finally:
        if started:
            ray.shutdown()
