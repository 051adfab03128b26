"""Shared fixtures. Tests needing real data read the mirror named by DATA_MIRROR.

Outside CI a missing mirror skips those tests; in CI (CI=true) it fails them,
so a broken data setup can never pass silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lib.core.data import DataDirs


@pytest.fixture(scope="session")
def mirror() -> Path:
    value = os.environ.get("DATA_MIRROR")
    if not value or not Path(value).is_dir():
        message = f"DATA_MIRROR={value!r} is not a directory holding the data mirror"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(value).resolve()


@pytest.fixture(scope="session")
def data_dirs(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> DataDirs:
    """An empty cache directory plus the mirror, as `--data-dir tmp --mirror M` would give."""
    return DataDirs(tmp_path_factory.mktemp("data"), mirror)
