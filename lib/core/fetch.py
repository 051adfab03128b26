"""Hashing and verified downloads.

Every download goes to a temporary name beside its destination and is renamed
only after its checksum matched, so an interrupted or corrupted transfer never
leaves a file that a later run would pick up.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from lib.core.errors import DataVerificationError, DownloadError

CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks so large files need little memory."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def bytes_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_file(path: Path, expected: str, algorithm: str = "sha256") -> None:
    """Raise DataVerificationError naming the file and both hashes on mismatch."""
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise DataVerificationError(
            f"{path}: {algorithm} mismatch\n  expected {expected}\n  actual   {actual}\n"
            "The file is corrupt or not the official release; delete it and fetch it again."
        )


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".partial")


def download(url: str, dest: Path, expected: str | None, algorithm: str = "sha256",
             mirror_hint: str = "--mirror DIR (or DATA_MIRROR)") -> Path:
    """Download ``url`` to ``dest`` atomically, checking its ``algorithm`` digest against ``expected``
    (None: an archive whose contents the caller verifies); offline, fails within ``CONNECT_TIMEOUT_S``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(dest)
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "cifar-movies-report"})
        with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            digest = hashlib.new(algorithm)
            with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True,
                                               desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    bar.update(len(block))
            if total is not None and bar.n != total:
                raise ConnectionError(f"transfer interrupted after {bar.n:,} of {total:,} bytes")
    except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise DownloadError(
            f"could not download {dest.name} from {url}: {exc}\n"
            f"Offline? Point {mirror_hint} at a folder holding a copy "
            f"(e.g. one containing {dest.name} or its extracted contents)."
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        tmp.unlink(missing_ok=True)
        raise DataVerificationError(
            f"{dest.name} downloaded from {url}: {algorithm} mismatch\n"
            f"  expected {expected}\n  actual   {actual}\nThe partial file was deleted."
        )
    os.replace(tmp, dest)
    return dest
