"""``quarto preview`` serves the book on a loopback port (the edit loop users rely on)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from conftest import copy_project


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_quarto_preview_serves_the_index(quarto: str, bare_python: str,
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    project = copy_project(tmp_path_factory.mktemp("preview") / "book")
    port = _free_port()
    log = project / "preview.log"
    with log.open("w") as out:
        process = subprocess.Popen([quarto, "preview", "--no-browser", "--no-watch-inputs", "--port", str(port)],
                                   cwd=project, env={**os.environ, "QUARTO_PYTHON": bare_python},
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        page = _fetch_until_served(f"http://127.0.0.1:{port}/", process, log, deadline_s=180)
        assert "Transfer learning on CIFAR-10" in page, page[:500]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.poll() is not None, "quarto preview did not stop on SIGTERM"


def _fetch_until_served(url: str, process: subprocess.Popen, log: Path, deadline_s: float) -> str:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"quarto preview exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urlopen(url, timeout=5) as response:
                return response.read().decode()
        except (URLError, ConnectionError, TimeoutError):
            time.sleep(1)
    pytest.fail(f"quarto preview did not serve {url} within {deadline_s:.0f} s:\n{log.read_text()[-2000:]}")
