"""to_layout / Translation layout helpers (pure numpy, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from crosslens.translate import LayerRef, Translation, to_layout
from crosslens.translate.layout import layout_perm


def test_to_layout_batched_and_unbatched():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # NCHW
    y = to_layout(x, "NCHW", "NHWC")
    assert y.shape == (2, 4, 5, 3)
    assert y[1, 2, 3, 0] == x[1, 0, 2, 3]
    np.testing.assert_array_equal(to_layout(y, "channels_last", "channels_first"), x)
    img = x[0]  # CHW
    h = to_layout(img, "NCHW", "NHWC")
    assert h.shape == (4, 5, 3) and h[2, 3, 1] == img[1, 2, 3]
    np.testing.assert_array_equal(to_layout(h, "NHWC", "NCHW"), img)
    # batched rank 3 (N, C, L)
    seq = np.zeros((2, 3, 7))
    assert to_layout(seq, "NCHW", "NHWC", batched=True).shape == (2, 7, 3)
    # ranks < 3 unchanged, same layout unchanged
    v = np.zeros((2, 10))
    assert to_layout(v, "NCHW", "NHWC") is v
    assert to_layout(x, "NCHW", "torch") is x
    assert layout_perm("NHWC", "NCHW", 4) == (0, 3, 1, 2)


def test_to_layout_is_a_transpose_not_a_reshape():
    x = np.random.default_rng(0).random((1, 3, 2, 2))
    y = to_layout(x, "NCHW", "NHWC")
    assert not np.array_equal(y.ravel(), x.ravel())  # a reshape would keep the memory order
    assert np.array_equal(y, np.transpose(x, (0, 2, 3, 1)))


def test_to_layout_torch_tensor():
    import torch

    t = torch.arange(24.0).reshape(1, 2, 3, 4)
    out = to_layout(t, "NCHW", "NHWC")
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (1, 3, 4, 2)


def test_to_layout_bad_name():
    with pytest.raises(ValueError, match="unknown layout"):
        to_layout(np.zeros((1, 2, 3, 4)), "NCWH", "NHWC")


def test_translation_object_conversions():
    tr = Translation(
        "orig",
        "translated",
        "report",
        {"conv": LayerRef("conv", (0, 2, 3, 1)), "fc": LayerRef("fc", None)},
        "NCHW",
        "NHWC",
        "torch",
        "keras",
    )
    model, report = tr
    assert (model, report) == ("translated", "report")
    x = np.random.default_rng(0).random((2, 3, 5, 6))
    xi = tr.convert_input(x)
    assert xi.shape == (2, 5, 6, 3)
    np.testing.assert_array_equal(tr.convert_back(xi), x)
    act = np.random.default_rng(1).random((2, 4, 5, 6))  # original NCHW activation
    np.testing.assert_array_equal(tr.activation_to_original("conv", tr.activation_to_translation("conv", act)), act)
    assert tr.layer_names == ["conv", "fc"]
    with pytest.raises(KeyError, match="closest valid names: 'conv'"):
        tr.layer("conv1")
