"""Op coverage of the ONNX -> Keras converter (torch -> Keras) beyond the small CNNs."""

from __future__ import annotations

import numpy as np
import pytest

from crosslens.translate import translate


def _print(tr, title):
    print(f"\n===== {title} =====\n{tr.report}", flush=True)
    return tr


def _op_zoo():
    import torch
    import torch.nn.functional as F
    from torch import nn

    torch.manual_seed(0)

    class Zoo(nn.Module):
        def __init__(self):
            super().__init__()
            self.grouped = nn.Conv2d(4, 8, 3, padding=1, groups=2)
            self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2)
            self.strided = nn.Conv2d(8, 8, 3, stride=2, padding=(0, 1))
            self.maxpool_ceil = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            self.avg_incl = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)
            self.avg_excl = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.lrelu = nn.LeakyReLU(0.1)
            self.gelu = nn.GELU()
            self.hsig = nn.Hardsigmoid()
            self.silu = nn.SiLU()
            self.norm = nn.LayerNorm(8)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            x = self.lrelu(self.grouped(x))
            x = self.dilated(F.pad(x, (1, 1, 1, 1), mode="reflect"))[..., 1:-1, 1:-1]
            a, b = torch.split(x, 4, dim=1)
            x = torch.cat([self.gelu(a), self.hsig(b) * b], dim=1)
            x = self.strided(x)
            x = self.maxpool_ceil(x)
            x = self.avg_incl(x) + self.avg_excl(x)
            x = self.silu(self.up(x))
            x = x.permute(0, 2, 3, 1)  # NHWC inside torch
            x = self.norm(x).mean(dim=(1, 2))
            return torch.tanh(self.fc(x)) + x.sum(-1, keepdim=True) / 8

    return Zoo().eval()


def test_op_zoo_torch_to_keras(tmp_path):
    m = _op_zoo()
    x = np.random.default_rng(0).standard_normal((2, 4, 17, 15)).astype(np.float32)
    tr = _print(translate(m, to="keras", example=x, cache_dir=tmp_path), "torch op zoo -> keras")
    v = tr.report.verification
    assert v.passed and v.worst["output"].rel <= 1e-5
    assert v.worst["grad_class"].rel <= 1e-4
    # reload from the .keras file of the cache (custom layers are serialisable)
    from crosslens.translate import clear_memory_cache

    clear_memory_cache()
    tr2 = translate(m, to="keras", example=x, cache_dir=tmp_path)
    assert tr2.report.cache_hit
    np.testing.assert_allclose(
        np.asarray(tr2.translated(tr.convert_input(x))), np.asarray(tr.translated(tr.convert_input(x))), atol=1e-6
    )


def test_non_image_model_both_directions(tmp_path):
    """Rank-2 inputs: no layout change, identity conversions."""
    import keras
    import torch
    from torch import nn

    torch.manual_seed(0)
    tm = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3), nn.Softmax(-1)).eval()
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    tr = _print(translate(tm, to="keras", example=x, cache_dir=tmp_path), "torch MLP -> keras")
    assert tr.report.verification.passed
    assert tr.convert_input(x) is x or np.array_equal(tr.convert_input(x), x)
    assert tr.layer("2") == tr.layer("1")  # Dropout (eval) passes the ReLU's output through

    class WithUnused(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 3)
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return self.fc(x)

    tr = translate(WithUnused().eval(), to="keras", example=x, cache_dir=tmp_path)
    with pytest.raises(Exception, match="does not influence"):
        tr.layer("unused")

    inp = keras.Input((6,))
    h = keras.layers.Dense(16, activation="tanh", name="d1")(inp)
    out = keras.layers.Dense(3, name="d2")(h)
    km = keras.Model(inp, out)
    tr = _print(translate(km, to="torch", example=x, cache_dir=tmp_path), "keras MLP -> torch")
    assert tr.report.verification.passed
    assert tr.layer("d1") == "d1"
