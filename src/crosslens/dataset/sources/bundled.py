"""The bundled sets by name (nothing is downloaded): ``"digits"``, ``"clever_hans"`` and
``"photos"``, as :class:`ArraySource` in the model's layout."""
from __future__ import annotations

from typing import Any

import numpy as np

from ...core.errors import InputError, OptionError
from .arrays import ArraySource
from .common import _normalization, _to_layout

BUNDLED = ("digits", "clever_hans", "photos")
#: The scikit-image photos of the demo (:func:`crosslens.zoo.sample_images`).
PHOTOS = ("chelsea", "coffee")
PHOTO_SIZE = 224


def _bundled(name: str, layout: str | None, size: tuple[int, int] | None,
             preprocess: str | None) -> ArraySource:
    options: dict[str, Any] = {"layout": layout}
    if name in ("digits", "clever_hans") and preprocess is not None:
        raise OptionError(f"preprocess= applies to image folders and 'photos'; {name!r} is "
                          "already in [0, 1] as its models are trained")
    if name == "digits":
        if size is not None:
            raise OptionError("'digits' are 8x8 images: size= does not apply")
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:  # pragma: no cover - scikit-learn is a dev dependency
            raise InputError("'digits' needs scikit-learn (pip install scikit-learn)") \
                from error
        digits = load_digits()
        x = (digits.images / 16.0).astype(np.float32)[..., None]
        return ArraySource(_to_layout(x, layout), name=name, kind="bundled",
                           labels=digits.target.astype(np.int64),
                           class_names=[str(d) for d in range(10)], options=options)
    if name == "clever_hans":
        from ...datasets import clever_hans

        if size is not None and size[0] != size[1]:
            raise OptionError(f"'clever_hans' images are square: give size=s; got {size}")
        data = clever_hans() if size is None else clever_hans(size=size[0])
        options.update(split="test", seed=0, size=int(data.x_test.shape[1]),
                       patch_class=data.patch_class)
        return ArraySource(_to_layout(data.x_test, layout), name=name, kind="bundled",
                           labels=data.y_test.astype(np.int64),
                           class_names=["0-4", "5-9"], options=options)
    from ...zoo import load_image

    size = size or (PHOTO_SIZE, PHOTO_SIZE)
    if size[0] != size[1]:
        raise OptionError(f"'photos' are squeezed to a square, as in the demo: give size=s; "
                          f"got {size}")
    x = np.stack([load_image(photo, size[0]) for photo in PHOTOS])
    if preprocess is not None:
        mean, std = _normalization(preprocess)
        x = ((x - mean) / std).astype(np.float32)
    options.update(photos=list(PHOTOS), size=list(size), preprocess=preprocess)
    return ArraySource(_to_layout(x, layout), name=name, kind="bundled", options=options)

