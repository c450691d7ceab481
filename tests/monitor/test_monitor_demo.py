"""``crosslens demo --monitor``: the attributions move onto the watermark as the CNN learns
the shortcut, in both frameworks, and the logs are written."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorboard")

from crosslens.cli import main  # noqa: E402
from crosslens.evaluate.clever_hans import available_frameworks  # noqa: E402


def test_demo_monitor_shows_the_shortcut_being_learned(tmp_path, capsys):
    assert main(["demo", "--monitor", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    frameworks = available_frameworks()
    for framework in frameworks:
        line = next(l for l in printed.splitlines() if l.startswith(f"{framework}:"))
        shares = [int(v) / 100 for v in re.findall(r"(\d+)%", line.split("):", 1)[1])]
        assert len(shares) == 5
        # chance is the patch's 6% of the pixels; the rise is the shortcut being learned
        assert shares[0] > 0.06 and shares[-1] > shares[0] + 0.2, line
        assert shares[:4] == sorted(shares[:4]), line  # rising while it is learned
        folder = tmp_path / "monitor" / framework
        assert (folder / "visual_log.html").exists() and list(folder.glob("events.out.*"))
