"""The Keras 3 callback: a monitor step at the end of each epoch of ``model.fit``."""
from __future__ import annotations

from typing import Any

import keras

from ..monitor import Monitor


class KerasCallback(keras.callbacks.Callback):
    """Run a :class:`~crosslens.monitor.Monitor` on ``self.model`` in ``on_epoch_end``.

    Takes the arguments of :class:`~crosslens.monitor.Monitor` (``probe_x`` channels-last).
    The monitor is ``self.monitor``; its sinks are flushed per step and closed with
    :meth:`close` (not at the end of ``fit``, which may be called again).

    Examples
    --------
    >>> model.fit(x, y, epochs=5, callbacks=[KerasCallback(x[:8], y[:8], log_dir="runs/a")])
    """

    def __init__(self, probe_x: Any, probe_y: Any = None, **options: Any) -> None:
        super().__init__()
        self.monitor = Monitor(probe_x, probe_y, **options)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.monitor.step(self.model, epoch)

    def close(self) -> None:
        """Close the monitor's sinks."""
        self.monitor.close()
