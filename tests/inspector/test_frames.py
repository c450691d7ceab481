"""The Live view's frames from a folder, an animated image and a video file."""
from __future__ import annotations

import numpy as np
import pytest

from crosslens.core.errors import InputError
from crosslens.inspector.frames import read_frames


def _clip(count: int = 5, side: int = 32) -> np.ndarray:
    """``count`` gray frames with a bright square moving left to right."""
    frames = np.full((count, side, side, 3), 40, np.uint8)
    for k in range(count):
        frames[k, 8:20, 4 * k:4 * k + 12] = 220
    return frames


def test_animated_gif_gives_every_frame_exactly(tmp_path):
    from PIL import Image
    clip = _clip()
    path = tmp_path / "clip.gif"
    images = [Image.fromarray(f) for f in clip]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    frames = read_frames(path)
    assert [name for name, _ in frames] == [f"clip.gif#{k:04d}" for k in range(5)]
    np.testing.assert_array_equal(np.stack([f for _, f in frames]), clip / 255.0)


def test_video_frames_decoded_in_order(tmp_path):
    av = pytest.importorskip("av")
    clip = _clip()
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.options = {"qscale": "1"}
        for frame in clip:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    frames = read_frames(path)
    assert [name for name, _ in frames] == [f"clip.mp4#{k:04d}" for k in range(5)]
    decoded = np.stack([f for _, f in frames])
    assert decoded.shape == (5, 32, 32, 3)
    # lossy codec: close to the clip, and the square is where it was drawn in every frame
    assert np.abs(decoded - clip / 255.0).mean() < 0.03
    for k in range(5):
        column = decoded[k, 14].mean(axis=-1)
        assert abs(int(np.argmax(column > 0.5)) - 4 * k) <= 1


def test_folder_sorted_by_name_and_bad_paths_named(tmp_path):
    from PIL import Image
    for name, value in (("b.png", 10), ("a.png", 200)):
        Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = read_frames(tmp_path)
    assert [name for name, _ in frames] == ["a.png", "b.png"]
    with pytest.raises(InputError, match="does not exist"):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(InputError, match="neither an image"):
        read_frames(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    with pytest.raises(InputError, match="not a video"):
        read_frames(tmp_path / "broken.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no frame"):
        read_frames(empty)
