"""Finding Quarto and rendering the book, for ``make report``, ``make screenshots`` and the tests.

``make report`` must never reinstall over a Quarto the user already has, and must fail in a few
readable lines (not a pip traceback) when none can be had. ``python -m lib.book.quarto`` prints
the path of a usable ``quarto`` on stdout, installing ``quarto-cli`` from PyPI only when none is
found.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (1, 5)
OFFLINE_INSTALL = '. "$(../shared/tools/quarto/install.sh)/env.sh"'
INSTALL_HELP = (f"Install Quarto >= {MIN_VERSION[0]}.{MIN_VERSION[1]} from https://quarto.org/docs/get-started/ "
                f"(offline, with the build beside this project: {OFFLINE_INSTALL}), then run make report again.")


def quarto_version(executable: str) -> tuple[int, ...] | None:
    """The version ``executable --version`` reports, or None if it does not run."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def find_quarto(search_path: str | None = None) -> tuple[str, tuple[int, ...]] | None:
    """A ``quarto`` on PATH whose version is at least MIN_VERSION, with that version."""
    executable = shutil.which("quarto", path=search_path)
    if executable is None:
        return None
    version = quarto_version(executable)
    return (executable, version) if version and version[:2] >= MIN_VERSION else None


def install_quarto_cli() -> tuple[str | None, str]:
    """``pip install quarto-cli`` into this Python's environment: (quarto path or None, pip's last line)."""
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "quarto-cli"],
                            capture_output=True, text=True)
    last_line = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
    if result.returncode != 0:
        return None, last_line
    found = find_quarto(str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    return (found[0] if found else None), last_line


def ensure_quarto() -> int:
    """Print a usable quarto's path (installing quarto-cli only if none is found); 1 with a short message."""
    found = find_quarto()
    if found:
        print(found[0])
        return 0
    on_path = shutil.which("quarto")
    if on_path:
        print(f"note: {on_path} is older than Quarto {MIN_VERSION[0]}.{MIN_VERSION[1]}; "
              "trying pip install quarto-cli", file=sys.stderr)
    executable, pip_line = install_quarto_cli()
    if executable:
        print(executable)
        return 0
    print(f"error: no Quarto >= {MIN_VERSION[0]}.{MIN_VERSION[1]} on PATH, and `pip install quarto-cli` failed:\n"
          f"  {pip_line[:200]}\n{INSTALL_HELP}\n"
          "Without Quarto, `make notebooks` gives every chapter as an executed notebook.", file=sys.stderr)
    return 1


@dataclass
class RenderResult:
    returncode: int
    seconds: float
    log: str


def render(project: Path, python: str, extra_args: tuple[str, ...] = (), timeout_s: int = 1200) -> RenderResult:
    """``quarto render`` in ``project`` with ``QUARTO_PYTHON=python``; the time is measured, not asserted."""
    found = find_quarto()
    if found is None:
        raise RuntimeError(f"no quarto >= {MIN_VERSION} on PATH. {INSTALL_HELP}")
    env = {**os.environ, "QUARTO_PYTHON": python}
    start = time.perf_counter()
    result = subprocess.run([found[0], "render", *extra_args], cwd=project, env=env, capture_output=True,
                            text=True, timeout=timeout_s)
    return RenderResult(result.returncode, time.perf_counter() - start, result.stdout + result.stderr)


if __name__ == "__main__":
    raise SystemExit(ensure_quarto())
