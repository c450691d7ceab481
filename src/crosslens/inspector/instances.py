"""The instances the page shows: the data set's samples (read from its source), and
images added while the page runs (uploads, frames of ``--frames``), each with its label,
prediction and display (an image's picture; text, tables and series are shown by their
view, :mod:`.modal`). Every item carries its ``modality``."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import InputError, ModalityError
from ..core.imageops import resize_bilinear
from .errors import MediaTypeError, NotFoundError
from .images import display_image

#: Largest upload (bytes) and decoded image (pixels) accepted.
MAX_UPLOAD = 5 * 2 ** 20
MAX_PIXELS = 40_000_000


class Instances:
    """Samples by index: ``0 .. N-1`` the data set, then the added images.

    Parameters
    ----------
    source
        The data set's :class:`crosslens.dataset.sources.Source`.
    labels, predictions
        ``(N,)`` from the store (labels ``-1`` where unknown).
    layout
        The model's input layout (for display).
    normalization
        ``(mean, std)`` of the model's preprocessing of ``[0, 1]`` pixels, for added
        images; ``None``: pixels in ``[0, 1]``.
    view
        How the samples show (:func:`.modal.make_view`; default: as images).
    """

    def __init__(self, source: Any, labels: np.ndarray, predictions: np.ndarray,
                 layout: str | None, normalization: tuple[np.ndarray, np.ndarray] | None,
                 view: Any = None) -> None:
        from .modal import ImageView
        self.source, self.layout, self.normalization = source, layout, normalization
        self.view = view if view is not None else ImageView(layout)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.predictions = np.asarray(predictions, dtype=np.int64)
        self.size = len(self.labels)
        self.extra: list[dict] = []  # {"x", "name", "prediction", "kind"}
        self._lock = threading.Lock()
        self._thumbs: OrderedDict[int, str] = OrderedDict()

    # --- reading ----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.size + len(self.extra)

    def check(self, index: Any) -> int:
        """``index`` as an int, or :class:`NotFoundError` naming the valid range."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InputError(f"index must be an integer instance index; got {index!r}")
        if not 0 <= int(index) < len(self):
            raise NotFoundError(f"no instance {index}: indices are 0..{len(self) - 1}")
        return int(index)

    def sample(self, index: int) -> np.ndarray:
        """The model's input for instance ``index``, with a batch axis ``(1, ...)``."""
        index = self.check(index)
        if index < self.size:
            return self.source.read(index, index + 1)[0]
        return self.extra[index - self.size]["x"][None]

    def samples(self, indices: Any) -> np.ndarray:
        return np.concatenate([self.sample(int(i)) for i in indices])

    def label(self, index: int) -> int:
        return int(self.labels[index]) if index < self.size else -1

    def prediction(self, index: int) -> int:
        if index < self.size:
            return int(self.predictions[index])
        return int(self.extra[index - self.size]["prediction"])

    def name(self, index: int) -> str:
        return str(index) if index < self.size else self.extra[index - self.size]["name"]

    def display(self, index: int) -> np.ndarray:
        """Instance ``index`` as an RGB image ``(H, W, 3)`` in ``[0, 1]``."""
        return display_image(self.sample(index)[0], self.layout)

    def thumb(self, index: int) -> str | None:
        """A small PNG of an image instance (``None`` for other modalities)."""
        with self._lock:
            if index in self._thumbs:
                self._thumbs.move_to_end(index)
                return self._thumbs[index]
        value = self.view.thumb(self.sample(index)[0])
        with self._lock:
            self._thumbs[index] = value
            while len(self._thumbs) > 4096:
                self._thumbs.popitem(last=False)
        return value

    def item(self, index: int) -> dict:
        label, prediction = self.label(index), self.prediction(index)
        return {"index": index, "label": label, "prediction": prediction,
                "correct": bool(label >= 0 and label == prediction),
                "thumb": self.thumb(index), "modality": self.view.kind}

    def frames(self) -> list[dict]:
        return [{"index": self.size + k, "name": e["name"]}
                for k, e in enumerate(self.extra) if e["kind"] == "frame"]

    # --- adding images ----------------------------------------------------------------
    def add(self, pixels: np.ndarray, name: str, kind: str, predict: Any) -> int:
        """Append an RGB image ``(H, W, 3)`` in ``[0, 1]`` as a new instance; ``predict``
        maps a model input batch to predicted classes."""
        x = self.to_input(pixels)
        prediction = int(predict(x[None])[0])
        with self._lock:
            self.extra.append({"x": x, "name": name, "prediction": prediction, "kind": kind})
            return len(self) - 1

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """An RGB image in ``[0, 1]`` as one model input: resized to the data set's sample
        size, gray when the samples have one channel, normalized, in the model's layout."""
        shape = tuple(self.source.sample_shape)
        if self.view.kind != "image" or len(shape) != 3:
            raise ModalityError(f"images can be added to image data only; this data set "
                                f"is {self.view.kind} (samples of shape {shape})")
        first = self.layout == "channels_first"
        channels, (h, w) = (shape[0], shape[1:]) if first else (shape[2], shape[:2])
        image = np.asarray(pixels, dtype=np.float64)
        if image.shape[:2] != (h, w):
            image = np.stack([resize_bilinear(image[..., c], (h, w)) for c in range(3)], -1)
        if channels == 1:
            image = image @ np.array([0.299, 0.587, 0.114])[:, None]
        elif channels != 3:
            raise InputError(f"samples have {channels} channels; added images must be RGB "
                             "or gray")
        if self.normalization is not None:
            mean, std = self.normalization
            image = (image - mean) / std
        image = np.transpose(image, (2, 0, 1)) if first else image
        return image.astype(self.source.dtype if self.source.dtype.kind == "f" else np.float32)


def decode_image(data: bytes) -> np.ndarray:
    """Bytes of an image file as RGB ``(H, W, 3)`` floats in ``[0, 1]``: decoded by Pillow
    as an image only (never unpickled); anything else is a :class:`MediaTypeError`."""
    from PIL import Image

    if len(data) > MAX_UPLOAD:
        from .errors import PayloadTooLargeError
        raise PayloadTooLargeError(f"the upload has {len(data)} bytes; the limit is "
                                   f"{MAX_UPLOAD} (5 MB): send a smaller image")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise MediaTypeError(f"the image has {image.width}x{image.height} pixels; "
                                     f"at most {MAX_PIXELS} are decoded")
            image.seek(0)
            rgb = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    except MediaTypeError:
        raise
    except Exception as error:  # Pillow raises many kinds for non-images
        raise MediaTypeError(f"the upload is not an image Pillow can read ({type(error).__name__}"
                             "); send a PNG, JPEG, GIF, BMP or WebP file") from None
    return rgb
