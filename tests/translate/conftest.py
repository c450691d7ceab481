"""Fixtures for crosslens.translate tests.

Slow tests (``@pytest.mark.slow``, > 20 s each) are skipped unless selected with
``-m slow`` or ``CROSSLENS_RUN_SLOW=1``.  Every test prints the translation reports it
produces (run with ``-s`` to see them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

_SRC = Path(__file__).resolve().parents[2] / "src"
try:  # installed (pip install -e .) or on sys.path already
    import crosslens.translate  # noqa: F401
except ImportError:  # pragma: no cover - plain checkout
    sys.path.insert(0, str(_SRC))

_HERE = Path(__file__).resolve().parent


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: translation of a real architecture (> 20 s)")


def pytest_collection_modifyitems(config, items):
    markexpr = getattr(config.option, "markexpr", "") or ""
    if "slow" in markexpr or os.environ.get("CROSSLENS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow translation test: run with -m slow or CROSSLENS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords and _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"
