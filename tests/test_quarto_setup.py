"""``make report``'s Quarto step: use the one on PATH, never reinstall over it, fail in a few lines."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core.paths import REPO_ROOT
from lib.book import quarto as quarto_setup


def _fake_quarto(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "quarto"
    script.write_text(f"#!/bin/sh\necho {version}\n")
    script.chmod(0o755)
    return script


def test_a_recent_quarto_on_path_is_used_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    script = _fake_quarto(tmp_path / "bin", "1.11.0")
    monkeypatch.setenv("PATH", str(script.parent))
    monkeypatch.setattr(quarto_setup, "install_quarto_cli", lambda *a: pytest.fail("pip must not run"))
    assert quarto_setup.ensure_quarto() == 0
    assert capsys.readouterr().out.strip() == str(script)


def test_an_old_quarto_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_quarto(tmp_path / "bin", "1.3.450").parent))
    assert quarto_setup.find_quarto() is None


def test_no_quarto_and_no_network_fails_in_five_lines(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path),
           "REPORT_QUARTO_INSTALLER": str(tmp_path / "no-installer.sh")}
    result = subprocess.run([sys.executable, "-m", "lib.book.quarto"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "make notebooks" in result.stderr and "quarto.org" in result.stderr
    assert "pip could not download quarto-cli" in result.stderr


def test_pips_failures_are_said_in_words() -> None:
    build_failed = ("error: metadata-generation-failed\n\n× Encountered error while generating package metadata.\n"
                    "╰─> quarto-cli\n\nnote: This is an issue with the package mentioned above, not pip.\n")
    assert "could not build quarto-cli" in quarto_setup.pip_failure(build_failed)
    assert "╰─>" not in quarto_setup.pip_failure(build_failed)
    assert quarto_setup.pip_failure("ERROR: Something else\n") == "pip failed: ERROR: Something else"


def test_the_offline_build_beside_the_project_is_used_before_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    quarto = _fake_quarto(tmp_path / "install" / "bin", "1.11.0")
    installer = tmp_path / "install.sh"
    installer.write_text(f"#!/bin/sh\necho {tmp_path / 'install'}\n")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setattr(quarto_setup, "OFFLINE_INSTALLER", installer)
    monkeypatch.setattr(quarto_setup, "install_quarto_cli", lambda *a: pytest.fail("pip must not run"))
    monkeypatch.setattr(quarto_setup, "venv_python", lambda *a: pytest.fail("no venv is needed"))
    assert quarto_setup.locate_quarto(tmp_path / "venv") == str(quarto)


def _book(folder: Path) -> Path:
    """A one-chapter project with its _freeze/ copied from this repository's index."""
    shutil.copy(REPO_ROOT / "index.qmd", folder / "index.qmd")
    frozen = Path("_freeze") / "index" / "execute-results"
    shutil.copytree(REPO_ROOT / frozen, folder / frozen)
    (folder / "chapters").mkdir()
    (folder / "chapters" / "notes.qmd").write_text("# Notes\n\nNo code here.\n")
    return folder


def test_a_current_freeze_needs_no_venv_an_edited_chapter_does(tmp_path: Path) -> None:
    book = _book(tmp_path)
    assert quarto_setup.stale_chapters(book) == []
    (book / "chapters" / "new.qmd").write_text("```{python}\n1 + 1\n```\n")
    with (book / "index.qmd").open("a") as handle:
        handle.write("\nOne more sentence.\n")
    assert quarto_setup.stale_chapters(book) == ["chapters/new.qmd", "index.qmd"]


def _make_dry_run(target: str) -> list[str]:
    """What ``make TARGET`` would run, with the venv taken as built (``-o``: never remade)."""
    command = ["make", "--no-print-directory", "-n", "-o", ".venv/.requirements-installed", "PYTHON=python3",
               "VENV=.venv", target]
    # Under `make test` the outer make's MAKEFLAGS/MAKELEVEL would reach this one (and its
    # "Entering directory" lines would join the commands): run it as a fresh make.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()


def test_make_preview_starts_quarto_with_the_venvs_python() -> None:
    (line,) = _make_dry_run("preview")
    assert f"QUARTO_PYTHON={REPO_ROOT / '.venv' / 'bin' / 'python'} " in line and line.endswith('"$quarto" preview')


def test_make_report_finds_quarto_before_building_the_venv_and_only_for_stale_chapters() -> None:
    find, stale, render = _make_dry_run("report")
    assert find.startswith("python3 -m lib.book.quarto find") and "pip" not in find
    assert stale.startswith("python3 -m lib.book.quarto stale || make") and stale.endswith(".requirements-installed")
    assert render.startswith("python3 -m lib.book.quarto render --venv .venv")


@pytest.mark.parametrize("fails", [False, True])
def test_render_says_where_the_book_went_or_why_it_failed(fails: bool, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    quarto = tmp_path / "quarto"
    body = 'echo "pandoc metadata"; echo "ERROR: bad YAML in x.qmd" >&2; exit 1' if fails else (
        'echo "pandoc metadata"; mkdir -p _book; touch _book/index.html _book/Book.pdf')
    quarto.write_text(f"#!/bin/sh\n{body}\n")
    quarto.chmod(0o755)
    monkeypatch.setattr(quarto_setup, "locate_quarto", lambda venv: str(quarto))
    code = quarto_setup.render_book(None, tmp_path)
    captured = capsys.readouterr()
    if fails:
        assert code == 1 and "ERROR: bad YAML in x.qmd" in captured.err and "quarto render failed" in captured.err
    else:
        assert code == 0 and "pandoc metadata" not in captured.out
        assert captured.out.splitlines()[-2:] == ["  _book/index.html", "  _book/Book.pdf"]
