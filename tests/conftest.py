"""Shared fixtures. Tests needing real data read the mirror named by DATA_MIRROR.

Outside CI a missing mirror skips those tests; in CI (CI=true) it fails them,
so a broken data setup can never pass silently.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from lib.core.data import DataDirs


def in_ci() -> bool:
    """CI sets CI=true; ``CI=false`` or ``CI=0`` (as some shells export) is not CI."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def require(available: bool, message: str) -> None:
    """Skip locally, fail in CI: a missing tool or dataset can never pass CI silently."""
    if available:
        return
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mirror() -> Path:
    value = os.environ.get("DATA_MIRROR")
    if not value or not Path(value).is_dir():
        require(False, f"DATA_MIRROR={value!r} is not a directory holding the data mirror")
    return Path(value).resolve()


@pytest.fixture(scope="session")
def data_dirs(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> DataDirs:
    """An empty cache directory plus the mirror, as `--data-dir tmp --mirror M` would give."""
    return DataDirs(tmp_path_factory.mktemp("data"), mirror)


def copy_project(destination: Path) -> Path:
    """The working tree as a fresh clone would have it (tracked + untracked-not-ignored files).

    Renders happen in such a copy so a test never writes ``_book/`` or ``_freeze/`` into the
    developer's checkout, and so a file that git ignores cannot make a render pass by accident.
    """
    import shutil
    import subprocess

    from lib.core.paths import REPO_ROOT

    listing = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listing.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="session")
def quarto() -> str:
    """Quarto on PATH (>= 1.5). CI installs the offline build in .ci/run."""
    from lib.book.quarto import OFFLINE_INSTALL, find_quarto

    found = find_quarto()
    require(found is not None, f"no quarto >= 1.5 on PATH; install it with: {OFFLINE_INSTALL}")
    return found[0]


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Python with nothing installed: a render that needs it proves the book needs only Quarto."""
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("bare-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    return str(venv / "bin" / "python")
