"""Shared fixtures. Tests needing real data read the mirror named by DATA_MIRROR.

Outside CI a missing mirror skips those tests; in CI (CI=true) it fails them,
so a broken data setup can never pass silently.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
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


# --- the rendered book, shared by tests/test_render.py and tests/test_widgets.py (one render per session) ---
@dataclass
class Book:
    root: Path
    seconds: float
    pages: dict[str, BeautifulSoup] = field(default_factory=dict)
    pdf_pages: list[str] = field(default_factory=list)

    @property
    def pdf_text(self) -> str:
        return "\n".join(self.pdf_pages)


_RENDER_FAILURE: list[str] = []


@pytest.fixture(scope="session")
def book(quarto: str, bare_python: str, tmp_path_factory: pytest.TempPathFactory) -> Book:
    """Rendered once; a failed render is reported once and not retried for every test."""
    if _RENDER_FAILURE:
        pytest.fail(_RENDER_FAILURE[0])
    try:
        return _render_book(bare_python, tmp_path_factory)
    except AssertionError as exc:
        _RENDER_FAILURE.append(str(exc))
        raise


def _render_book(bare_python: str, tmp_path_factory: pytest.TempPathFactory) -> Book:
    from bs4 import BeautifulSoup

    from lib.book.quarto import render
    from lib.core.paths import REPO_ROOT

    require(shutil.which("pdftotext") is not None, "pdftotext not found: apt-get install poppler-utils")
    project = copy_project(tmp_path_factory.mktemp("render") / "book")
    assert (project / "_freeze").is_dir(), "_freeze/ is not committed: run `make freeze`"
    result = render(project, bare_python)
    assert result.returncode == 0, (
        "quarto render from _freeze/ with a bare Python failed; a chapter whose _freeze/ is stale is "
        f"re-executed and needs Jupyter: run `make freeze`.\n{result.log[-3000:]}")
    print(f"\nrender from _freeze/ (HTML + PDF, Quarto only): {result.seconds:.1f} s")
    (REPO_ROOT / ".pytest_cache").mkdir(exist_ok=True)
    (REPO_ROOT / ".pytest_cache" / "render_seconds.txt").write_text(f"{result.seconds:.1f}\n")
    out = project / "_book"
    rendered = Book(out, result.seconds)
    for page in sorted(out.rglob("*.html")):
        if "site_libs" not in page.parts:
            rendered.pages[page.relative_to(out).as_posix()] = BeautifulSoup(page.read_text(), "html.parser")
    pdfs = sorted(out.glob("*.pdf"))
    assert len(pdfs) == 1, f"expected one PDF in _book/, found {pdfs}"
    text = subprocess.run(["pdftotext", "-layout", str(pdfs[0]), "-"], capture_output=True, text=True,
                          check=True).stdout
    rendered.pdf_pages = text.split("\f")
    return rendered


