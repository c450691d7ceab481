"""``crosslens demo --monitor``: watch a CNN learn the Clever-Hans shortcut.

The small CNN of the Clever-Hans benchmark (:mod:`crosslens.evaluate.models`) trains for
a few epochs on the watermarked digits (:func:`crosslens.datasets.clever_hans`), in
PyTorch with a hand-written loop calling ``monitor.step`` and in Keras with
``model.fit(callbacks=[KerasCallback(...)])``. The probes are watermarked test images;
the monitor logs saliency and integrated gradients for their label, and the share of
the absolute attribution on the corner patch (``patch_share/...``) per epoch, which
rises as the model takes the shortcut. The training starts from the benchmark's zero
classifier with a modest learning rate, so the shortcut is learned over the epochs, not
in the first one. TensorBoard logs and the visual log go under ``OUT/<framework>``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..datasets import CleverHans, clever_hans
from ..evaluate.clever_hans import available_frameworks
from ..evaluate.models import batches, build_keras, build_torch, init_weights
from .core import Monitor
from .measures import mass_share

EPOCHS = 5
LEARNING_RATE = 0.02
MOMENTUM = 0.9
BATCH = 32
PROBES = 8
SHARE_METHOD = "integrated_gradients"


def monitor_options(data: CleverHans, log_dir: Path, seed: int) -> dict[str, Any]:
    """The monitor's arguments (without the probes) for one framework's run."""
    return dict(methods=["saliency", (SHARE_METHOD, {"steps": 16})],
                layers=["relu1", "relu2", "relu3"], log_dir=log_dir, seed=seed,
                measures={"patch_share": lambda maps: mass_share(maps, data.mask)})


def train_torch(data: CleverHans, log_dir: Path, seed: int = 0,
                epochs: int = EPOCHS) -> Monitor:
    """The CNN trained in PyTorch by a plain loop that calls ``monitor.step`` per epoch."""
    import torch
    import torch.nn.functional as F

    model = build_torch(init_weights(seed))
    probes = data.watermarked_test(PROBES)
    monitor = Monitor(data.to_layout(data.x_test[probes], "channels_first"),
                      data.y_test[probes], **monitor_options(data, log_dir, seed))
    x = torch.as_tensor(data.to_layout(data.x_train, "channels_first"))
    y = torch.as_tensor(data.y_train)
    monitor.log_images("training images", data.x_train[:16])
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    plan = batches(seed + 1, len(x), BATCH, epochs)
    per_epoch = len(plan) // epochs
    for epoch in range(epochs):
        model.train()
        for index in plan[epoch * per_epoch:(epoch + 1) * per_epoch]:
            index = torch.as_tensor(index)
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        monitor.step(model, epoch)
    monitor.close()
    return monitor


def train_keras(data: CleverHans, log_dir: Path, seed: int = 0,
                epochs: int = EPOCHS) -> Monitor:
    """The CNN trained in Keras by ``model.fit`` with a :class:`KerasCallback`."""
    import keras

    from ..callbacks import KerasCallback

    keras.utils.set_random_seed(seed)
    model = build_keras(init_weights(seed), data.x_train.shape[1])
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    probes = data.watermarked_test(PROBES)
    callback = KerasCallback(data.x_test[probes], data.y_test[probes],
                             **monitor_options(data, log_dir, seed))
    callback.monitor.log_images("training images", data.x_train[:16])
    model.fit(data.x_train, data.y_train, batch_size=BATCH, epochs=epochs, verbose=0,
              callbacks=[callback])
    callback.close()
    return callback.monitor


def patch_shares(monitor: Monitor, method: str = SHARE_METHOD) -> list[float]:
    """The logged mean patch share of ``method``'s maps, per logged epoch."""
    return [scalars[f"patch_share/{method}/label"] for _, scalars in
            sorted(monitor.scalars.items())]


def run(out: str | Path = "out/demo/monitor", *, epochs: int = EPOCHS, seed: int = 0,
        frameworks: list[str] | None = None, log: Any = print) -> dict[str, list[float]]:
    """Train in each framework with the monitor; print and return the per-epoch patch
    share of the integrated-gradients maps."""
    out = Path(out)
    data = clever_hans(seed)
    trainers = {"torch": train_torch, "keras": train_keras}
    shares = {}
    chance = float(data.mask.mean())
    for framework in frameworks or available_frameworks():
        start = time.perf_counter()
        monitor = trainers[framework](data, out / framework, seed, epochs)
        shares[framework] = patch_shares(monitor)
        log(f"{framework}: share of |{SHARE_METHOD}| on the corner patch per epoch "
            f"(chance {chance:.0%}): " + ", ".join(f"{s:.0%}" for s in shares[framework])
            + f" ({time.perf_counter() - start:.0f} s; logs in {out / framework}, visual log "
            f"{out / framework / 'visual_log.html'})")
    log(f"tensorboard --logdir {out}")
    return shares
