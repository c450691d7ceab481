"""The Lightning callback: a monitor step at the end of each training (or validation)
epoch, on the rank-zero process only."""
from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import Callback

from ..core.errors import OptionError
from ..monitor import Monitor


class LightningCallback(Callback):
    """Run a :class:`~crosslens.monitor.Monitor` on the ``LightningModule``.

    Parameters
    ----------
    probe_x, probe_y, **options
        The :class:`~crosslens.monitor.Monitor` arguments (``probe_x`` NCHW).
    on
        ``"train"`` (``on_train_epoch_end``, default) or ``"validation"``
        (``on_validation_epoch_end``, never during the sanity check).

    Only global rank zero logs (the other processes hold the same weights). The sinks flush
    at every step; :meth:`close` closes them (not done at the end of ``fit``, which may run
    again).
    """

    def __init__(self, probe_x: Any, probe_y: Any = None, *, on: str = "train",
                 **options: Any) -> None:
        if on not in ("train", "validation"):
            raise OptionError(f"on is 'train' or 'validation', got {on!r}")
        super().__init__()
        self.on = on
        self.monitor = Monitor(probe_x, probe_y, **options)

    def _step(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            self.monitor.step(pl_module, trainer.current_epoch)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.on == "train":
            self._step(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.on == "validation":
            self._step(trainer, pl_module)

    def close(self) -> None:
        """Close the monitor's sinks."""
        self.monitor.close()
