"""The layering of shared/DESIGN.md holds: import-linter's contracts (pyproject.toml), and
importing crosslens imports no deep-learning framework."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([lint, "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout and " KEPT" in done.stdout, done.stdout[-3000:]


def test_importing_crosslens_imports_no_framework():
    code = ("import sys, crosslens, crosslens.featurevis, crosslens.viz\n"
            "loaded = [m for m in ('torch', 'tensorflow', 'keras', 'jax', 'matplotlib') "
            "if m in sys.modules]\n"
            "assert not loaded, loaded\n"
            "assert len(crosslens.methods()) >= 20  # methods registered on import\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("name", ("torch", "keras"))
def test_static_capabilities_equal_the_backend_class(name):
    """``cl.methods()`` reads capabilities without importing a framework; they must be what
    the backend class derives from its primitives and registered rules."""
    import importlib

    from crosslens.backends import BACKENDS
    info = BACKENDS[name]
    cls = getattr(importlib.import_module(info.module), info.cls)
    assert info.capabilities == cls.capabilities()
