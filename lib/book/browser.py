"""Headless Chromium for the book's page checks and screenshots, through Playwright.

Playwright drives Debian's own ``chromium`` (``executable_path``), so nothing is downloaded: its
bundled browsers need the network, the system one does not.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright


def find_chromium() -> str | None:
    """The Chromium executable on PATH (``CHROMIUM`` overrides), or None."""
    names = ("chromium", "chromium-browser", "google-chrome")
    return os.environ.get("CHROMIUM") or next((path for name in names if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout_s: float = 30.0) -> None:
        executable = find_chromium()
        if executable is None:
            raise RuntimeError("Chromium not found: install Debian's `chromium` (apt-get install chromium)")
        self.timeout_s = timeout_s
        self.requested_urls: list[str] = []
        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=executable, args=[
            "--no-sandbox", "--allow-file-access-from-files", "--hide-scrollbars"])
        self._page = self._browser.new_page(viewport={"width": width, "height": height})
        self._page.set_default_timeout(timeout_s * 1000)
        self._page.on("request", lambda request: self.requested_urls.append(request.url))

    def open(self, url: str) -> None:
        """Navigate and wait for the load event plus two animation frames (layout settled)."""
        self._page.goto(url, wait_until="load")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page (promises awaited) and return its JSON value."""
        return self._page.evaluate(expression)

    def wait_for(self, expression: str, timeout_s: float | None = None) -> Any:
        """Poll ``expression`` in the page until it is truthy; return its value (Playwright times out)."""
        return self._page.wait_for_function(expression, timeout=(timeout_s or self.timeout_s) * 1000).json_value()

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page; ``full_page`` captures its whole height, not only the window."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self._page.screenshot(path=str(path), full_page=full_page)
        return path

    def close(self) -> None:
        try:
            self._browser.close()
        finally:
            self._playwright.stop()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
