"""Random image transforms for transformation robustness, with exact adjoints.

Each transform maps a canonical batch ``(N, H, W, C)`` to a (possibly resized) batch,
drawing its random parameters per image from the run's generator, and back-propagates
a gradient through the same draw (:meth:`Transform.adjoint`). All are linear in the
image (up to a constant fill), so the adjoint is the transposed operator.

- :class:`Pad`: pad by ``width`` (constant fill, or a mirror/edge mode).
- :class:`Jitter`: Lucid's jitter: a random crop ``d`` pixels smaller (a random shift).
- :class:`Roll`: a circular shift (DeepDream's tiling jitter); size-preserving.
- :class:`RandomScale`, :class:`RandomRotate`: affine warps about the image centre
  (bilinear, out-of-image samples take ``fill``).
- :class:`Resize`: bilinear resize (the last step, to the model's input size).

Constant padding, jitter, scale and rotation are all affine maps of pixel coordinates:
consecutive ones are fused into a single bilinear resampling (one gather forward, one
``bincount`` scatter for the adjoint), so the standard pipeline costs one resampling.

``STANDARD`` is Lucid's ``standard_transforms`` (pad 12, jitter 8, scale 0.9-1.1,
rotate ±10°, jitter 4), with size-preserving scale and rotation.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core.errors import OptionError


class Transform:
    """Base class: ``forward(images, rng) -> (out, state)``; ``adjoint(grad, state)``."""

    def forward(self, images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Any]:
        raise NotImplementedError

    def adjoint(self, grad: np.ndarray, state: Any) -> np.ndarray:
        raise NotImplementedError


class Warp(Transform):
    """A transform that resamples at affine coordinates: ``source = M @ (y, x, 1)`` for
    each output pixel, bilinearly, with ``fill`` outside the input.

    ``plan(n, size, rng) -> (out_size, M)`` gives the output size and per-image ``(3, 3)``
    matrices. :class:`Compose` multiplies the matrices of consecutive warps with the same
    fill and resamples once (pad, jitter, scale and rotation cost one gather together;
    integer shifts stay exact copies).
    """

    fill = 0.5
    fusable = True

    def plan(self, n: int, size: tuple[int, int],
             rng: np.random.Generator) -> tuple[tuple[int, int], np.ndarray]:
        raise NotImplementedError

    def forward(self, images, rng):
        return Compose([self]).forward(images, rng)

    def adjoint(self, grad, state):
        return Compose([self]).adjoint(grad, state)


def _translation(n: int, dy: np.ndarray | float, dx: np.ndarray | float) -> np.ndarray:
    m = np.tile(np.eye(3), (n, 1, 1))
    m[:, 0, 2], m[:, 1, 2] = dy, dx
    return m


class Pad(Warp):
    """Pad every side by ``width``: ``mode="constant"`` fills with ``value`` (a warp, fused
    with its neighbours); other modes are numpy's index modes (``"reflect"``,
    ``"symmetric"``, ``"edge"``, ``"wrap"``)."""

    def __init__(self, width: int, mode: str = "constant", value: float = 0.5) -> None:
        self.width, self.mode, self.value = int(width), mode, float(value)
        self.fill = self.value
        self.fusable = mode == "constant"

    def plan(self, n, size, rng):
        w = self.width
        return (size[0] + 2 * w, size[1] + 2 * w), _translation(n, -w, -w)

    def _index(self, n: int) -> np.ndarray:
        return np.pad(np.arange(n), self.width, mode=self.mode)

    def forward(self, images, rng):
        if self.fusable:
            return super().forward(images, rng)
        _, h, wd, _ = images.shape
        return images[:, self._index(h)][:, :, self._index(wd)], images.shape

    def adjoint(self, grad, state):
        if self.fusable:
            return super().adjoint(grad, state)
        _, h, wd, _ = state
        return _fold(_fold(grad, self._index(wd), wd, axis=2), self._index(h), h, axis=1)

    def __repr__(self) -> str:
        return f"Pad({self.width}, {self.mode!r})"


def _fold(grad: np.ndarray, index: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Adjoint of ``take(x, index, axis)``: sum the gradient of every copy of a source."""
    moved = np.moveaxis(grad, axis, 0)
    out = np.zeros((n,) + moved.shape[1:])
    np.add.at(out, index, moved)
    return np.moveaxis(out, 0, axis)


class Jitter(Warp):
    """A random crop ``d`` pixels smaller in each dimension (Lucid's ``jitter(d)``): the
    output is the input shifted by a random offset in ``[0, d]`` per axis and image."""

    fill = None  # a crop never samples outside its input: fuses with any fill

    def __init__(self, d: int) -> None:
        self.d = int(d)

    def plan(self, n, size, rng):
        if self.d >= min(size):
            raise OptionError(f"Jitter({self.d}) needs images larger than {self.d} pixels")
        offsets = rng.integers(0, self.d + 1, size=(n, 2))
        return ((size[0] - self.d, size[1] - self.d),
                _translation(n, offsets[:, 0], offsets[:, 1]))

    def __repr__(self) -> str:
        return f"Jitter({self.d})"


class Roll(Transform):
    """A circular shift by a random offset in ``[-shift, shift]`` per axis and image."""

    def __init__(self, shift: int) -> None:
        self.shift = int(shift)

    def forward(self, images, rng):
        offsets = rng.integers(-self.shift, self.shift + 1, size=(len(images), 2))
        out = np.stack([np.roll(img, tuple(o), axis=(0, 1)) for img, o in zip(images, offsets)])
        return out, offsets

    def adjoint(self, grad, offsets):
        return np.stack([np.roll(g, tuple(-o), axis=(0, 1)) for g, o in zip(grad, offsets)])

    def __repr__(self) -> str:
        return f"Roll({self.shift})"


class Affine(Warp):
    """Base of the size-preserving warps about the image centre: ``matrices(n, rng)``
    gives per image the 2x2 ``A`` with ``source = A @ (target - centre) + centre`` in
    ``(y, x)`` pixel coordinates."""

    def matrices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def plan(self, n, size, rng):
        a = self.matrices(n, rng)
        centre = np.array([(size[0] - 1) / 2.0, (size[1] - 1) / 2.0])
        m = np.tile(np.eye(3), (n, 1, 1))
        m[:, :2, :2] = a
        m[:, :2, 2] = centre - a @ centre
        return size, m


class RandomScale(Affine):
    """Zoom about the centre by a factor drawn from ``scales`` (>1 magnifies)."""

    def __init__(self, scales: Sequence[float], fill: float = 0.5) -> None:
        self.scales, self.fill = np.asarray(scales, dtype=np.float64), float(fill)
        if np.any(self.scales <= 0):
            raise OptionError("scales must be positive")

    def matrices(self, n, rng):
        s = rng.choice(self.scales, size=n)
        return np.eye(2)[None] / s[:, None, None]

    def __repr__(self) -> str:
        return f"RandomScale({self.scales.min():g}..{self.scales.max():g})"


class RandomRotate(Affine):
    """Rotate about the centre by an angle (degrees, counter-clockwise as displayed)
    drawn from ``degrees``; 90 is ``np.rot90`` (a transpose, then a vertical flip)."""

    def __init__(self, degrees: Sequence[float], fill: float = 0.5) -> None:
        self.degrees, self.fill = np.asarray(degrees, dtype=np.float64), float(fill)

    def matrices(self, n, rng):
        theta = np.deg2rad(rng.choice(self.degrees, size=n))
        cos, sin = _exact_cos_sin(theta)
        # source(y, x) for a counter-clockwise rotation of the displayed image
        return np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], -2)

    def __repr__(self) -> str:
        return f"RandomRotate({self.degrees.min():g}..{self.degrees.max():g} deg)"


def _exact_cos_sin(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin, exact at multiples of 90 degrees (so those rotations move pixels
    exactly onto pixels)."""
    cos, sin = np.cos(theta), np.sin(theta)
    quarter = np.isclose(np.mod(theta, np.pi / 2), 0.0, atol=1e-12)
    cos = np.where(quarter, np.round(cos), cos)
    sin = np.where(quarter, np.round(sin), sin)
    return cos, sin


class _Resample:
    """One bilinear resampling of a batch at per-image affine coordinates, and its
    adjoint (the taps' weights scattered back with ``bincount``)."""

    def __init__(self, matrices: np.ndarray, out_size: tuple[int, int], fill: float,
                 clamp: bool = False) -> None:
        self.matrices, self.out_size, self.fill, self.clamp = matrices, out_size, fill, clamp
        self.shape: tuple[int, ...] | None = None

    def _plan(self, shape: tuple[int, ...]) -> None:
        """The four taps (flat source index, weight) of every output pixel, in 1-D."""
        n, h, w, _ = shape
        oh, ow = self.out_size
        ys, xs = np.meshgrid(np.arange(oh, dtype=np.float64), np.arange(ow, dtype=np.float64),
                             indexing="ij")
        grid = np.stack([ys.ravel(), xs.ravel(), np.ones(oh * ow)])  # (3, P)
        source = self.matrices[:, :2] @ grid  # (N, 2, P)
        if self.clamp:  # border pixels repeat (a resize's half-pixel margin)
            source = np.stack([np.clip(source[:, 0], 0, h - 1), np.clip(source[:, 1], 0, w - 1)],
                              axis=1)
        taps = _bilinear_taps(source[:, 0], source[:, 1], h, w)
        self.taps = [(index.ravel(), weight.ravel()) for index, weight in taps]
        self.total = sum(weight for _, weight in self.taps)
        self.shape = tuple(shape)

    def forward(self, images: np.ndarray) -> np.ndarray:
        if self.shape != images.shape:
            self._plan(images.shape)
        n, h, w, c = images.shape
        oh, ow = self.out_size
        # one channel plane at a time: 1-D gathers are the fastest numpy has
        planes = np.ascontiguousarray(np.moveaxis(images, -1, 0)).reshape(c, n * h * w)
        value = np.zeros((c, n * oh * ow))
        for index, weight in self.taps:
            for k in range(c):
                value[k] += weight * planes[k].take(index)
        if self.fill:
            value += self.fill * (1.0 - self.total)
        return np.ascontiguousarray(value.T).reshape(n, oh, ow, c)

    def adjoint(self, grad: np.ndarray) -> np.ndarray:
        n, h, w, c = self.shape
        planes = np.ascontiguousarray(grad.reshape(-1, c).T)  # (c, N * P), contiguous rows
        out = np.zeros((c, n * h * w))
        for index, weight in self.taps:
            for k in range(c):  # one bincount per channel: no (index, channel) expansion
                out[k] += np.bincount(index, weights=weight * planes[k], minlength=n * h * w)
        return np.ascontiguousarray(out.T).reshape(self.shape)


def _bilinear_taps(sy: np.ndarray, sx: np.ndarray, h: int, w: int) -> list:
    """The four (flat source index into the batch, weight) taps of bilinear sampling at
    ``(sy, sx)`` of shape ``(N, P)``; taps outside the image get weight 0 (their share
    goes to the fill value)."""
    y0, x0 = np.floor(sy), np.floor(sx)
    wy, wx = sy - y0, sx - x0
    base = (np.arange(sy.shape[0]) * h * w)[:, None]
    taps = []
    for dy, fy in ((0, 1.0 - wy), (1, wy)):
        for dx, fx in ((0, 1.0 - wx), (1, wx)):
            yy, xx = (y0 + dy).astype(np.int64), (x0 + dx).astype(np.int64)
            inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
            index = base + np.clip(yy, 0, h - 1) * w + np.clip(xx, 0, w - 1)
            taps.append((index, fy * fx * inside))
    return taps


class Resize(Transform):
    """Bilinear resize to ``size`` (``align_corners=False``, no antialiasing: the sampling of
    ``torch.nn.functional.interpolate``), as one resampling with clamped coordinates."""

    def __init__(self, size: Sequence[int]) -> None:
        self.size = (int(size[0]), int(size[1]))
        self._resample: _Resample | None = None  # the same taps every step: planned once

    def forward(self, images, rng):
        n, h, w, _ = images.shape
        if (h, w) == self.size:
            return images, None
        if self._resample is None or self._resample.shape != images.shape:
            sy, sx = h / self.size[0], w / self.size[1]
            m = np.array([[sy, 0.0, 0.5 * sy - 0.5], [0.0, sx, 0.5 * sx - 0.5], [0, 0, 1.0]])
            self._resample = _Resample(np.tile(m, (n, 1, 1)), self.size, 0.0, clamp=True)
        return self._resample.forward(images), self._resample

    def adjoint(self, grad, state):
        return grad if state is None else state.adjoint(grad)

    def __repr__(self) -> str:
        return f"Resize({self.size[0]}x{self.size[1]})"


class Compose(Transform):
    """Transforms applied in order; consecutive warps with the same fill share one
    resampling (their coordinate maps multiplied)."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def forward(self, images, rng):
        states, out, i = [], images, 0
        while i < len(self.transforms):
            t = self.transforms[i]
            if isinstance(t, Warp) and t.fusable:
                n, size, fill = len(out), tuple(out.shape[1:3]), None
                matrices = np.tile(np.eye(3), (n, 1, 1))
                while i < len(self.transforms) and _joins(self.transforms[i], fill):
                    fill = self.transforms[i].fill if fill is None else fill
                    # output coordinates of the last warp -> input of the first
                    size, m = self.transforms[i].plan(n, size, rng)
                    matrices = matrices @ m
                    i += 1
                resample = _Resample(matrices, size, 0.0 if fill is None else fill)
                out = resample.forward(out)
                states.append(("warp", resample))
                continue
            out, state = t.forward(out, rng)
            states.append((t, state))
            i += 1
        return out, states

    def adjoint(self, grad, states):
        for t, state in reversed(states):
            grad = state.adjoint(grad) if t == "warp" else t.adjoint(grad, state)
        return grad

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


def _joins(t: Transform, fill: float | None) -> bool:
    return isinstance(t, Warp) and t.fusable and (fill is None or t.fill in (None, fill))


def standard_transforms() -> list[Transform]:
    """Lucid's ``standard_transforms`` (size-preserving scale and rotation)."""
    return [Pad(12, mode="constant", value=0.5), Jitter(8),
            RandomScale([1 + (i - 5) / 50.0 for i in range(11)]),
            RandomRotate(list(range(-10, 11)) + 5 * [0]), Jitter(4)]


def make_transforms(transforms: Any) -> list[Transform]:
    """A transform list from ``"standard"``, ``None``/``()`` (none) or a sequence."""
    if transforms is None:
        return []
    if isinstance(transforms, str):
        if transforms == "standard":
            return standard_transforms()
        raise OptionError(f"unknown transforms {transforms!r}: use 'standard', None or a "
                          "list of crosslens.featurevis transforms")
    items = list(transforms)
    for t in items:
        if not isinstance(t, Transform):
            raise OptionError(f"{t!r} is not a crosslens.featurevis Transform")
    return items
