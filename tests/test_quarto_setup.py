"""``make report``'s Quarto step: use the one on PATH, never reinstall over it, fail in a few lines."""
from __future__ import annotations

import os
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
    monkeypatch.setattr(quarto_setup, "install_quarto_cli", lambda: pytest.fail("pip must not run"))
    assert quarto_setup.ensure_quarto() == 0
    assert capsys.readouterr().out.strip() == str(script)


def test_an_old_quarto_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(_fake_quarto(tmp_path / "bin", "1.3.450").parent))
    assert quarto_setup.find_quarto() is None


def test_no_quarto_and_no_network_fails_in_five_lines(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "lib.book.quarto"], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 5, result.stderr
    assert "Traceback" not in result.stderr
    assert "make notebooks" in result.stderr and "quarto.org" in result.stderr
