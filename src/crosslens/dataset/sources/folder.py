"""Image folders: one sub-folder per class (or images only), loaded with PIL, resized,
normalized and transposed to the model's layout."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ...core.errors import InputError
from .common import _normalization, _SourceBase, _to_layout

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class FolderSource(_SourceBase):
    """Images under a folder: one sub-folder per class, or images only (no labels)."""

    kind = "folder"

    def __init__(self, root: str | os.PathLike, *, layout: str | None = None,
                 size: tuple[int, int] | None = None, preprocess: str | None = None) -> None:
        root = Path(root).resolve()
        super().__init__(root.name, str(root), {"layout": layout,
                                                "size": None if size is None else list(size),
                                                "preprocess": preprocess})
        self._root = root
        self._files, labels, self.class_names = _scan_folder(root)
        self._labels = labels
        self._has_labels = labels is not None
        self._length = len(self._files)
        self._layout = layout
        self._norm = None if preprocess is None else _normalization(preprocess)
        self._size = size if size is not None else self._common_size()
        height, width = self._size
        self.sample_shape = (3, height, width) if layout == "channels_first" \
            else (height, width, 3)
        self.dtype = np.dtype("float32")

    def _common_size(self) -> tuple[int, int]:
        """The one ``(height, width)`` of every image (header reads), or an InputError."""
        from PIL import Image, UnidentifiedImageError

        first: tuple[int, int] | None = None
        for path in self._files:
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except (UnidentifiedImageError, OSError) as error:
                raise _unreadable(path, error) from error
            if first is None:
                first, first_path = (height, width), path
            elif (height, width) != first:
                raise InputError(f"images differ in size ({self._relative(first_path)} is "
                                 f"{first[0]}x{first[1]}, {self._relative(path)} is "
                                 f"{height}x{width}, height x width): pass size=(height, "
                                 "width) to resize them all")
        assert first is not None
        return first

    def _relative(self, path: Path) -> str:
        return path.relative_to(self._root).as_posix()

    def _load(self, path: Path) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        height, width = self._size
        try:
            with Image.open(path) as image:
                rgb = image.convert("RGB")  # palette, grey and RGBA -> RGB; GIF frame 0
        except (UnidentifiedImageError, OSError) as error:
            raise _unreadable(path, error) from error
        if rgb.size != (width, height):
            if self.options["size"] is None:
                raise InputError(f"{self._relative(path)} is {rgb.size[1]}x{rgb.size[0]} but "
                                 f"the images were {height}x{width} (height x width): pass "
                                 "size=(height, width) to resize them all")
            rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(rgb, dtype=np.float32) / 255.0
        if self._norm is not None:
            pixels = ((pixels - self._norm[0]) / self._norm[1]).astype(np.float32)
        return pixels

    def _read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        images = np.stack([self._load(path) for path in self._files[start:stop]])
        y = None if self._labels is None else self._labels[start:stop].copy()
        return _to_layout(images, self._layout), y

    def _fingerprint_extra(self) -> bytes:
        # renamed, added or moved files change the data even where sampled pixels do not
        names = [self._relative(path) for path in self._files]
        return json.dumps([names, self.class_names]).encode()


def _unreadable(path: Path, error: Exception) -> InputError:
    return InputError(f"cannot read {str(path)!r} as an image ({error}); remove it or "
                      "convert it to PNG / JPEG")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _scan_folder(root: Path) -> tuple[list[Path], np.ndarray | None, list[str] | None]:
    """Image files (sorted), their labels and the class names of a folder."""
    entries = sorted(root.iterdir(), key=lambda p: p.name)
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    direct = [p for p in entries if p.is_file() and _is_image(p)]
    if classes and direct:
        raise InputError(f"{str(root)!r} holds images ({direct[0].name}, ...) next to class "
                         f"folders ({classes[0].name}, ...): move the images into a class "
                         "folder, or point at a folder of images only")
    if not classes:
        files, labels, names = direct, None, None
    else:
        files, ids = [], []
        for label, folder in enumerate(classes):
            found = sorted((p for p in folder.rglob("*") if p.is_file() and _is_image(p)
                            and not any(part.startswith(".")
                                        for part in p.relative_to(folder).parts)),
                           key=lambda p: p.relative_to(folder).as_posix())
            files += found
            ids += [label] * len(found)
        labels = np.asarray(ids, dtype=np.int64)
        names = [folder.name for folder in classes]
    if not files:
        others = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        if not others:
            raise InputError(f"the folder {str(root)!r} is empty: put images in it, one "
                             "sub-folder per class")
        raise InputError(f"the folder {str(root)!r} holds no images ({len(others)} other "
                         f"files, e.g. {others[:3]}); images are "
                         f"{', '.join(IMAGE_EXTENSIONS)} files (any case)")
    return files, labels, names

