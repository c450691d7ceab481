"""Progress bars: shown over the passes of long methods when asked (or on a terminal),
never changing a result."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import crosslens as cl

CALLS = [("occlusion", {"patch": 2}, "occlusion windows"),
         ("rise", {"samples": 40, "seed": 0}, "rise masks"),
         ("integrated_gradients", {"steps": 16}, "integrated gradients"),
         ("smoothgrad", {"samples": 6, "seed": 0}, "mean of saliency"),
         ("score_cam", {}, "score_cam masks")]


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               torch.nn.Linear(4, 3)).eval()


@pytest.mark.parametrize("method,options,desc", CALLS)
def test_progress_bar_over_the_passes(method, options, desc, capsys):
    model = _model()
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    budget = 64 * 1024  # a few samples per pass: several passes
    quiet = cl.explain(model, x, method, target=1, memory_budget=budget, progress=False,
                       **options).numpy()
    assert capsys.readouterr().err == ""
    shown = cl.explain(model, x, method, target=1, memory_budget=budget, progress=True,
                       **options).numpy()
    err = capsys.readouterr().err
    assert desc in err, err
    np.testing.assert_array_equal(shown, quiet)
    # the default shows nothing when stderr is not a terminal (as under pytest)
    cl.explain(model, x, method, target=1, memory_budget=budget, **options)
    assert capsys.readouterr().err == ""


def test_default_shows_a_bar_on_a_terminal_for_more_than_one_pass(monkeypatch):
    import io

    from crosslens.core.progress import wanted

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Terminal())
    assert wanted(None, 3) and not wanted(None, 1) and not wanted(False, 3)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not wanted(None, 3) and wanted(True, 1)
