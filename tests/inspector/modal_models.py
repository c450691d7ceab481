"""Tiny PyTorch models of token ids, tables and series for the inspection page's modality
tests (seeded initialization; labels from a simple rule of the inputs), and the data
they take. The vocabulary holds markup so the tests see it shown as text, not HTML."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

N = 24
VOCAB = ["<pad>", "the", "cat", "<b>bold</b>", "&amp;", "\"q\"", "sat", "on", "a", "mat",
         "<script>x()</script>", "dog", "ran", "far", "away", "."]
FEATURES = ["age", "income <usd>", "height", "weight"]
CHANNELS = ["acc x", "acc y"]


class TokenCNN(nn.Module):
    """Embedding "emb" -> Conv1d "conv" -> ReLU "relu" -> max pool "pool" -> Linear "fc"."""

    def __init__(self, vocab: int = len(VOCAB), dim: int = 6, hidden: int = 5,
                 classes: int = 2) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.conv = nn.Conv1d(dim, hidden, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveMaxPool1d(1)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv(self.emb(ids).transpose(1, 2)))
        return self.fc(self.pool(h)[:, :, 0])


def text_case(seed: int = 0):
    """``(model, ids (N, 8) int64, labels)``: label 1 when "cat" (id 2) occurs."""
    torch.manual_seed(seed)
    ids = np.random.default_rng(seed).integers(1, len(VOCAB), (N, 8))
    return TokenCNN().eval(), ids, (ids == 2).any(axis=1).astype(np.int64)


def tabular_case(seed: int = 0):
    """``(model, table (N, 4) float32, labels)``: 3 classes by the sign of two features."""
    torch.manual_seed(seed)
    x = np.random.default_rng(seed).standard_normal((N, len(FEATURES))).astype(np.float32)
    model = nn.Sequential(nn.Linear(len(FEATURES), 6), nn.ReLU(), nn.Linear(6, 3)).eval()
    return model, x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0).astype(np.int64)


def series_case(seed: int = 0):
    """``(model, series (N, 2, 16) float32 channels first, labels)``: label 1 when the
    first channel's mean is positive."""
    torch.manual_seed(seed)
    x = np.random.default_rng(seed).standard_normal((N, len(CHANNELS), 16)).astype(
        np.float32)
    model = nn.Sequential(nn.Conv1d(len(CHANNELS), 4, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    return model, x, (x[:, 0].mean(axis=1) > 0).astype(np.int64)


def inspector(kind: str, path, **options):
    """The :class:`~crosslens.inspector.Inspector` of a case, its model and data."""
    from crosslens.inspector import Inspector
    model, x, y = {"text": text_case, "tabular": tabular_case, "series": series_case}[kind]()
    names = {"text": {"tokens": VOCAB}, "tabular": {"feature_names": FEATURES},
             "series": {"channel_names": CHANNELS}}[kind]
    return Inspector(model, x, path, labels=y, progress=False, name=f"tiny_{kind}",
                     **names, **options), model, x
