"""Downloads are atomic: interrupted or corrupt transfers leave nothing a later run would use."""
from __future__ import annotations

import hashlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from lib.core import fetch
from lib.core.errors import DataVerificationError, DownloadError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    mode = "full"

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.server.mode == "truncated":  # type: ignore[attr-defined]
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(PAYLOAD)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    httpd.mode = "full"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()


def _url(httpd: HTTPServer) -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/file.bin"


def test_download_verifies_and_renames(server, tmp_path: Path) -> None:
    dest = fetch.download(_url(server), tmp_path / "file.bin", PAYLOAD_SHA256)
    assert dest.read_bytes() == PAYLOAD
    assert not fetch.partial_path(dest).exists()


def test_interrupted_download_leaves_nothing(server, tmp_path: Path) -> None:
    server.mode = "truncated"
    dest = tmp_path / "file.bin"
    with pytest.raises(DownloadError):
        fetch.download(_url(server), dest, PAYLOAD_SHA256)
    assert list(tmp_path.iterdir()) == []
    server.mode = "full"  # the next run starts clean and succeeds
    assert fetch.download(_url(server), dest, PAYLOAD_SHA256).read_bytes() == PAYLOAD


def test_wrong_hash_download_is_deleted(server, tmp_path: Path) -> None:
    with pytest.raises(DataVerificationError, match="expected 0000") as info:
        fetch.download(_url(server), tmp_path / "file.bin", "0" * 64)
    assert PAYLOAD_SHA256 in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_silent_server_times_out_quickly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    monkeypatch.setattr(fetch, "CONNECT_TIMEOUT_S", 0.5)
    start = time.monotonic()
    try:
        with pytest.raises(DownloadError, match="--mirror"):
            fetch.download(f"http://127.0.0.1:{listener.getsockname()[1]}/x.tar.gz", tmp_path / "x.tar.gz", "0" * 64)
    finally:
        listener.close()
    assert time.monotonic() - start < 10
    assert list(tmp_path.iterdir()) == []


def test_verify_file_names_file_and_hashes(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"hello")
    with pytest.raises(DataVerificationError) as info:
        fetch.verify_file(path, "f" * 64)
    assert str(path) in str(info.value) and hashlib.sha256(b"hello").hexdigest() in str(info.value)
