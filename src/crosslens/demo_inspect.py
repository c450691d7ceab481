"""The demo's inspection pages (static exports, no server): the Clever-Hans digits CNN over
all 1,797 of scikit-learn's digits, where the activation matrix and the projection show the
shortcut, and the pretrained EfficientNet-Lite0 over scikit-image's photos for the channel
and building-blocks views. The screenshots of the README (``docs/screenshots.py``) use the
same digits model, frames and class names."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

CLASS_NAMES = ["digit 0-4", "digit 5-9 (watermark)"]
#: Colour photos (and a few textures) shipped with scikit-image: nothing is downloaded.
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field", "retina",
          "immunohistochemistry", "camera", "brick", "grass", "gravel")
#: Channels of the Lite0 page's default layer whose feature visualizations are computed
#: (512 steps each: readable images, about a quarter of a minute per channel on a CPU).
PHOTO_FEATUREVIS_CHANNELS = 4


def clever_hans_setup(epochs: int = 5) -> tuple[Any, np.ndarray, np.ndarray, Any]:
    """The Clever-Hans digits CNN (PyTorch, trained here on scikit-learn's digits, every
    "5-9" image carrying a corner watermark), the 1,797 images (NCHW), their labels and
    the data set object."""
    from .datasets import clever_hans
    from .evaluate.clever_hans import train_models

    data = clever_hans(seed=0, n=1797)
    models, _ = train_models(data, ("torch",), epochs=epochs)
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    return models["torch"], np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, data


def write_frames(data: Any, folder: Path) -> Path:
    """Three watermarked test digits, each followed by itself without the watermark, as
    PNG frames for the Live view."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    picks = data.watermarked_test(3)
    clean = data.remove_patch(data.x_test[picks])
    for k, i in enumerate(picks):
        for tag, image in (("a_patch", data.x_test[i]), ("b_clean", clean[k])):
            pixels = (np.clip(image[..., 0], 0, 1) * 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{k}{tag}.png")
    return folder


def write_photos(folder: Path, size: int = 224) -> Path:
    """:data:`PHOTOS` squeezed to ``size`` squares as the demo's photos are, as PNG files
    in that order (an image folder, the way a user's data arrives)."""
    from PIL import Image

    from .zoo import load_image

    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(PHOTOS):  # numbered: a folder is read in name order
        pixels = np.round(load_image(name, size) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:02d}_{name}.png")
    return folder


def digits_page(out_dir: str | Path, log=print) -> dict:
    """Store, watermark check and static page of the Clever-Hans digits CNN.

    Writes ``store/`` (the dataset store: saliency and pooled activations of every layer
    for the 1,797 images) and ``report.html`` (the inspection page) under ``out_dir``, and
    logs how much of each class's mean |saliency| lies on the watermark.
    """
    from .inspector import Inspector
    from .inspector.export import export_html

    out = Path(out_dir)
    start = time.perf_counter()
    model, x, y, data = clever_hans_setup()
    shutil.rmtree(out / "store", ignore_errors=True)  # the demo's own output: rewritten
    inspector = Inspector(model, x, out / "store", labels=y, class_names=CLASS_NAMES,
                          frames=write_frames(data, out / "frames"), progress=False,
                          name="Clever-Hans digits CNN")
    store = inspector.store
    accuracy = float(np.mean(store.column("labels") == store.column("predictions")))
    classes, means, counts = store.class_mean("saliency")
    magnitude = np.abs(means).reshape(len(means), -1)
    on_patch = magnitude[:, data.mask.reshape(-1)].sum(1) / magnitude.sum(1)
    page = export_html(inspector, out / "report.html")
    log(f"dataset store: {store} ({time.perf_counter() - start:.0f} s); accuracy "
        f"{accuracy:.3f}, samples per class {counts.tolist()}; share of the mean |saliency| "
        f"on the watermark ({data.mask.mean():.1%} of the pixels) per class: "
        + ", ".join(f"{c}: {v:.0%}" for c, v in zip(classes, on_patch))
        + f" (class {data.patch_class} carries it); inspection page {page} "
        f"({page.stat().st_size / 1e6:.1f} MB)")
    return {"inspector": inspector, "store": store, "page": page,
            "watermark_share": dict(zip(classes.tolist(), on_patch.tolist()))}


def photos_page(out_dir: str | Path, model: Any = None, log=print,
                featurevis_channels: int = PHOTO_FEATUREVIS_CHANNELS) -> dict:
    """Static page ``photos.html`` of the pretrained EfficientNet-Lite0 over
    :data:`PHOTOS`, with ``featurevis_channels`` readable (512-step) feature
    visualizations of its default layer computed first."""
    from .inspector import Inspector
    from .inspector.export import export_html
    from .zoo import efficientnet_lite0, imagenet_labels

    out = Path(out_dir)
    start = time.perf_counter()
    shutil.rmtree(out / "photos_store", ignore_errors=True)
    inspector = Inspector(model if model is not None else efficientnet_lite0(),
                          write_photos(out / "photos"), out / "photos_store", size=224,
                          preprocess="lite", class_names=imagenet_labels(), progress=False,
                          name="EfficientNet-Lite0")
    computed = inspector.precompute_featurevis(featurevis_channels, [inspector.default_layer],
                                               progress=False) if featurevis_channels else 0
    page = export_html(inspector, out / "photos.html", channel_layers=3)
    log(f"EfficientNet-Lite0 over {len(PHOTOS)} scikit-image photos: {computed} feature "
        f"visualizations of {inspector.default_layer} ({inspector.featurevis.steps} steps); "
        f"inspection page {page} ({page.stat().st_size / 1e6:.1f} MB, "
        f"{time.perf_counter() - start:.0f} s)")
    return {"inspector": inspector, "page": page}
