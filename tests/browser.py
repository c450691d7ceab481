"""Headless Chromium for the browser tests (inspection page, training visual log).

Debian's ``chromium`` driven by Playwright for Python, launched with the flags that keep it
off the network. Where Chromium or Playwright is missing the tests are skipped with the fix,
except under ``CROSSLENS_REQUIRE_BROWSER=1`` (set by CI), where that is a failure.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def _missing(reason: str) -> None:
    if os.environ.get("CROSSLENS_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium_page(**context_options) -> Iterator["object"]:
    """A fresh Playwright page in Debian's headless Chromium; closed on exit."""
    executable = shutil.which("chromium")
    if executable is None:
        _missing("Debian's chromium is not installed (apt-get install -y chromium; `make test` does it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(**context_options)
            yield context.new_page()
        finally:
            browser.close()
