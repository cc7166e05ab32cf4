"""The ops page's browser tests' shared fixture: one headless Chromium per test module (a
module's scope, not the process's: Playwright's sync API must not outlive the module into
another file's asyncio tests)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.needs import missing
from tests.ops.browser import ARGS, CHROMIUM


@pytest.fixture(scope="module")
def browser(request: pytest.FixtureRequest) -> Iterator[Browser]:
    if CHROMIUM is None or not os.access(CHROMIUM, os.X_OK):
        missing(
            request.config,
            "BROWSER",
            "Debian's chromium is not installed: `make setup` installs it as root "
            "(apt-get install chromium), or set PACK391_CHROMIUM to a Chromium or Chrome",
        )
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(autouse=True)
def _pages_closed(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every page a browser test opened is closed when it ends, passed or failed: an open
    console polls every 5 s, and its calls would run in this worker during later tests."""
    yield
    if "browser" in request.fixturenames:
        chromium: Browser = request.getfixturevalue("browser")
        for context in chromium.contexts:
            context.close()
