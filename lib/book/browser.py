"""Headless Chromium driven over the DevTools protocol: screenshots and page checks.

Why not Selenium or Playwright: both need a driver binary or a browser download,
and neither is available offline. Debian's ``chromium`` speaks the DevTools
protocol itself; ``tornado`` (already installed with ipykernel) supplies the
websocket. This module is the small client the book's tests and
``make screenshots`` need: open a page, run JavaScript, record which hosts the
page asked for, and take a full-page screenshot.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tornado.websocket import websocket_connect

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The Chromium executable on PATH (``CHROMIUM`` overrides), or None."""
    override = os.environ.get("CHROMIUM")
    if override:
        return override
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class Browser:
    """One headless Chromium with one tab; use as a context manager."""

    def __init__(self, width: int = 1280, height: int = 900, timeout_s: float = 30.0) -> None:
        executable = find_chromium()
        if executable is None:
            raise RuntimeError("Chromium not found: install Debian's `chromium` (apt-get install chromium)")
        self.timeout_s = timeout_s
        self.width, self.height = width, height
        self._profile = tempfile.mkdtemp(prefix="book-chromium-")
        self._process = subprocess.Popen(
            [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-extensions", "--hide-scrollbars", "--remote-debugging-port=0",
             "--allow-file-access-from-files", f"--user-data-dir={self._profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._loop = asyncio.new_event_loop()
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []
        url = self._page_socket_url()

        async def connect() -> Any:
            return await websocket_connect(url, max_message_size=512 * 2**20)
        self._socket = self._run(connect())
        self.requested_urls: list[str] = []
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")

    def _page_socket_url(self) -> str:
        """Wait for Chromium to announce its DevTools port, then take the tab's websocket."""
        port_file = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("Chromium did not start its DevTools server")
            time.sleep(0.05)
        port = port_file.read_text().split()[0]
        from urllib.request import urlopen
        while time.monotonic() < deadline:
            targets = json.load(urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5))
            pages = [t for t in targets if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.05)
        raise RuntimeError("Chromium opened no tab")

    def _run(self, awaitable: Any) -> Any:
        return self._loop.run_until_complete(asyncio.wait_for(awaitable, self.timeout_s))

    async def _call(self, message_id: int) -> dict[str, Any]:
        while True:
            raw = await self._socket.read_message()
            if raw is None:
                raise RuntimeError("Chromium closed the DevTools connection")
            message = json.loads(raw)
            if message.get("id") == message_id:
                return message
            self._record(message)

    def _record(self, event: dict[str, Any]) -> None:
        if event.get("method") == "Network.requestWillBeSent":
            self.requested_urls.append(event["params"]["request"]["url"])
        self._events.append(event)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (raise on a protocol error)."""
        message_id = next(self._ids)
        self._socket.write_message(json.dumps({"id": message_id, "method": method, "params": params}))
        reply = self._run(self._call(message_id))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def wait_for_event(self, method: str) -> dict[str, Any]:
        """Wait until Chromium reports ``method`` (events already seen count once)."""
        async def wait() -> dict[str, Any]:
            while True:
                for index, event in enumerate(self._events):
                    if event.get("method") == method:
                        return self._events.pop(index)
                raw = await self._socket.read_message()
                if raw is None:
                    raise RuntimeError("Chromium closed the DevTools connection")
                self._record(json.loads(raw))
        return self._run(wait())

    def open(self, url: str) -> None:
        """Navigate and wait for the load event plus two animation frames (layout settled)."""
        self._events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for_event("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")

    def evaluate(self, expression: str) -> Any:
        """Run JavaScript in the page (promises awaited) and return its JSON value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails'].get('text')}: "
                               f"{result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None, interval_s: float = 0.05) -> Any:
        """Poll ``expression`` in the page until it is truthy; return its value (TimeoutError after ``timeout_s``)."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            time.sleep(interval_s)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page; ``full_page`` captures its whole height, not only the window."""
        clip = None
        if full_page:
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": self.width, "height": min(size["height"], 30000), "scale": 1}
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if clip:
            params["clip"] = clip
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._socket.close()
        finally:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._loop.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
