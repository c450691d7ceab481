"""README.md stays true: its methods table is the registry's, its commands exist."""
from pathlib import Path

from crosslens.docs import render_readme

README = Path(__file__).resolve().parents[1] / "README.md"


def test_methods_table_matches_registry():
    text = README.read_text()
    assert render_readme(text) == text, "run `python -m crosslens.docs` to regenerate"


def test_first_commands_are_make_demo_and_make_test():
    text = README.read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
