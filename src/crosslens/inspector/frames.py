"""The Live view's frames: a folder of images, an animated image (GIF, WebP, APNG) or a
short video file (MP4, WebM, MOV, AVI, MKV, decoded by PyAV), each frame as RGB floats in
``[0, 1]`` with a name the page shows."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..core.errors import InputError, UnsupportedError
from .instances import decode_image

IMAGE_EXTENSIONS = (".png", ".apng", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".webm", ".mov", ".avi", ".mkv", ".mpg", ".mpeg")
#: More frames than this is not a "short" video: the page keeps every frame in memory.
MAX_FRAMES = 1000
MAX_PIXELS = 40_000_000


def read_frames(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """``(name, rgb)`` for every frame of ``path``, in order.

    Parameters
    ----------
    path
        A folder (its image files sorted by name; an animated file in it contributes its
        first frame), an image file (every frame of an animated one) or a video file.

    Raises
    ------
    InputError
        The path does not exist, holds no frame, has a kind not listed above, or more
        than :data:`MAX_FRAMES` frames.
    UnsupportedError
        A video file without PyAV installed.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        _check_count(len(files), path)
        frames = [(p.name, decode_image(p.read_bytes())) for p in files]
    elif not path.is_file():
        raise InputError(f"--frames {str(path)!r} does not exist; give a folder of images, "
                         "an animated image or a video file")
    elif path.suffix.lower() in IMAGE_EXTENSIONS:
        frames = list(_animated(path))
    elif path.suffix.lower() in VIDEO_EXTENSIONS:
        frames = list(_video(path))
    else:
        raise InputError(f"--frames {str(path)!r}: {path.suffix!r} is neither an image "
                         f"({', '.join(IMAGE_EXTENSIONS)}) nor a video "
                         f"({', '.join(VIDEO_EXTENSIONS)})")
    if not frames:
        raise InputError(f"--frames {str(path)!r} holds no frame")
    return frames


def _check_count(count: int, path: Path) -> None:
    if count > MAX_FRAMES:
        raise InputError(f"--frames {str(path)!r} holds more than {MAX_FRAMES} frames; "
                         "give a shorter clip or a folder of sampled frames")


def _animated(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Every frame of an image file (one for a still image), decoded by Pillow."""
    from PIL import Image, ImageSequence

    decode_image(path.read_bytes())  # the size limits and the "is an image" check
    with Image.open(path) as image:
        count = getattr(image, "n_frames", 1)
        _check_count(count, path)
        for k, frame in enumerate(ImageSequence.Iterator(image)):
            name = path.name if count == 1 else f"{path.name}#{k:04d}"
            yield name, np.asarray(frame.convert("RGB"), dtype=np.float64) / 255.0


def _video(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Every frame of the first video stream, decoded by PyAV (FFmpeg's libraries)."""
    try:
        import av
    except ImportError:
        raise UnsupportedError(
            f"reading the video {path.name!r} needs PyAV: pip install 'crosslens[inspect]' "
            "(or give a folder of frames)") from None
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise InputError(f"--frames {str(path)!r} is not a video FFmpeg can read "
                         f"({error})") from None
    with container:
        if not container.streams.video:
            raise InputError(f"--frames {str(path)!r} has no video stream")
        stream = container.streams.video[0]
        if stream.width * stream.height > MAX_PIXELS:
            raise InputError(f"the video has {stream.width}x{stream.height} pixels per "
                             f"frame; at most {MAX_PIXELS} are decoded")
        for k, frame in enumerate(container.decode(stream)):
            _check_count(k + 1, path)
            yield f"{path.name}#{k:04d}", frame.to_ndarray(format="rgb24") / 255.0
