"""A real browser for the web UI's tests: Debian's chromium driven by Playwright.

Playwright's own browser download is not used (it needs a CDN this project must not
depend on); `make test` installs Debian's `chromium` instead. Without a chromium the
browser tests skip on a laptop and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"


def chromium_path() -> str | None:
    configured = os.environ.get("OWNKEY_TEST_CHROMIUM")
    if configured:
        return configured
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def launch_chromium() -> Iterator[object]:
    """Yields a Playwright `Browser`; skips (or fails in CI) without chromium."""
    path = chromium_path()
    if path is None:
        message = "no chromium found (make test installs Debian's chromium package)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {message}")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            # root in a container has no user namespaces for chromium's sandbox
            args=["--no-sandbox"] if os.geteuid() == 0 else [],
        )
        try:
            yield browser
        finally:
            browser.close()
