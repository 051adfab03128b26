"""Finding Quarto and rendering the book, for ``make report``, ``make preview`` and the tests.

``python -m lib.book.quarto [find|stale|render] [--venv DIR]``. ``find`` prints a usable ``quarto``: the
one on PATH (never reinstalled over), else the offline build beside this project, else ``quarto-cli``
from PyPI in DIR's Python; without one it fails in a few readable lines, not a pip traceback. Only the
standard library, so it runs before any venv is built.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lib.core.paths import REPO_ROOT

MIN_VERSION = (1, 5)
# REPORT_QUARTO_INSTALLER: another installer, or a missing path for none (the tests use it).
OFFLINE_INSTALLER = Path(os.environ.get("REPORT_QUARTO_INSTALLER",
                                        REPO_ROOT.parent / "shared" / "tools" / "quarto" / "install.sh"))
EXECUTABLE_CELL = re.compile(r"```\{python|`\{python\}")
OFFLINE_INSTALL = '. "$(../shared/tools/quarto/install.sh)/env.sh"'
INSTALL_HELP = (f"Install Quarto >= {MIN_VERSION[0]}.{MIN_VERSION[1]} from https://quarto.org/docs/get-started/ "
                f"(offline, with the build beside this project: {OFFLINE_INSTALL}), then run make report again.")


def find_quarto(search_path: str | None = None) -> tuple[str, tuple[int, ...]] | None:
    """A ``quarto`` on PATH whose version is at least MIN_VERSION, with that version."""
    executable = shutil.which("quarto", path=search_path)
    if executable is None:
        return None
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    version = tuple(int(part) for part in match.groups() if part is not None) if match else None
    return (executable, version) if version and version[:2] >= MIN_VERSION else None


def pip_failure(stderr: str) -> str:
    """What went wrong in pip's output, in words (its last line, e.g. '╰─> quarto-cli', says nothing)."""
    if "No matching distribution" in stderr or "Could not find a version" in stderr:
        return "pip could not download quarto-cli (no network, or no package index)"
    if "metadata-generation-failed" in stderr or "subprocess-exited-with-error" in stderr:
        return "pip could not build quarto-cli (building it downloads Quarto from GitHub, which needs network)"
    errors = [line.strip() for line in stderr.splitlines() if line.strip().lower().startswith("error")]
    return f"pip failed: {(errors or stderr.strip().splitlines() or ['no output'])[0][:160]}"


def install_quarto_cli(python: str) -> tuple[str | None, str]:
    """``pip install quarto-cli`` into ``python``'s environment: (quarto path or None, what failed)."""
    result = subprocess.run([python, "-m", "pip", "install", "--quiet", "quarto-cli"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return None, pip_failure(result.stderr)
    found = find_quarto(str(Path(python).parent) + os.pathsep + os.environ.get("PATH", ""))
    return (found[0] if found else None), "pip installed quarto-cli, but it gives no usable quarto"


def offline_quarto() -> str | None:
    """The offline Quarto build beside this project, installed (once, then cached) by its script."""
    if not OFFLINE_INSTALLER.is_file():
        return None
    print(f"note: no Quarto on PATH; installing the offline build with {OFFLINE_INSTALLER} (cached after the "
          "first time)", file=sys.stderr)
    result = subprocess.run(["bash", str(OFFLINE_INSTALLER)], stdout=subprocess.PIPE, text=True)
    folder = (result.stdout.strip().splitlines() or [""])[-1]
    found = find_quarto(str(Path(folder) / "bin")) if result.returncode == 0 and folder else None
    return found[0] if found else None


def venv_python(venv: Path | None) -> str | None:
    """The venv's Python, creating a bare venv (seconds; no requirements) when there is none."""
    if venv is None:
        return None
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return str(python.absolute())


def locate_quarto(venv: Path | None = None) -> str | None:
    """A usable quarto: PATH, else the offline build, else quarto-cli from PyPI (into ``venv``'s
    Python, or this one's); None after a short message on stderr."""
    found = find_quarto()
    if found:
        return found[0]
    on_path = shutil.which("quarto")
    if on_path:
        print(f"note: {on_path} is older than Quarto {MIN_VERSION[0]}.{MIN_VERSION[1]}; looking for another",
              file=sys.stderr)
    executable, reason = offline_quarto(), ""
    if executable is None:
        executable, reason = install_quarto_cli(venv_python(venv) or sys.executable)
    if executable:
        return executable
    print(f"error: no Quarto >= {MIN_VERSION[0]}.{MIN_VERSION[1]} on PATH, and `pip install quarto-cli` failed: "
          f"{reason}.\n{INSTALL_HELP}\n"
          "Without Quarto, `make notebooks` gives every chapter as an executed notebook.", file=sys.stderr)
    return None


def ensure_quarto(venv: Path | None = None) -> int:
    """Print a usable quarto's path; 1 with a short message."""
    executable = locate_quarto(venv)
    if executable is not None:
        print(executable)
    return 0 if executable else 1


@dataclass
class RenderResult:
    returncode: int
    seconds: float
    log: str


def _run_render(executable: str, project: Path, env: dict, timeout_s: int | None = None) -> RenderResult:
    start = time.perf_counter()
    result = subprocess.run([executable, "render"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=timeout_s)
    return RenderResult(result.returncode, time.perf_counter() - start, result.stdout + result.stderr)


def render(project: Path, python: str, timeout_s: int = 1200) -> RenderResult:
    """``quarto render`` in ``project`` with ``QUARTO_PYTHON=python``; the time is measured, not asserted."""
    found = find_quarto()
    if found is None:
        raise RuntimeError(f"no quarto >= {MIN_VERSION} on PATH. {INSTALL_HELP}")
    return _run_render(found[0], project, {**os.environ, "QUARTO_PYTHON": python}, timeout_s)


def stale_chapters(project: Path = REPO_ROOT) -> list[str]:
    """Sources with Python cells whose ``_freeze/`` output is missing or was made from other text
    (Quarto's ``freeze: auto`` compares the same MD5): only these re-execute when rendering."""
    stale = []
    for source in sorted([*project.glob("*.qmd"), *project.glob("chapters/*.qmd")]):
        text = source.read_bytes()
        if not EXECUTABLE_CELL.search(text.decode("utf-8", "replace")):
            continue
        frozen = project / "_freeze" / source.relative_to(project).with_suffix("") / "execute-results/html.json"
        try:
            current = json.loads(frozen.read_text())["hash"] == hashlib.md5(text).hexdigest()
        except (OSError, ValueError, KeyError):
            current = False
        if not current:
            stale.append(source.relative_to(project).as_posix())
    return stale


def render_book(venv: Path | None, project: Path = REPO_ROOT) -> int:
    """``quarto render`` with its per-file chatter kept back (shown only if it fails: ``--quiet``
    would hide the error too), with the venv's Python when there is one; then where the book went."""
    executable = locate_quarto(venv)
    if executable is None:
        return 1
    env = dict(os.environ)
    if venv is not None and (venv / "bin" / "python").exists():
        env["QUARTO_PYTHON"] = str((venv / "bin" / "python").absolute())
    print("rendering the book (HTML and PDF, about a minute) ...", flush=True)
    result = _run_render(executable, project, env)
    if result.returncode != 0:
        print("\n".join(result.log.strip().splitlines()[-40:]), file=sys.stderr)
        print(f"error: quarto render failed (exit {result.returncode}); its last lines are above", file=sys.stderr)
        return result.returncode
    print(f"rendered in {result.seconds:.0f} s:")
    for path in [project / "_book" / "index.html", *sorted((project / "_book").glob("*.pdf"))]:
        print(f"  {path.relative_to(project)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.book.quarto", description=__doc__.splitlines()[0])
    parser.add_argument("action", nargs="?", default="find", choices=("find", "stale", "render"),
                        help="find (default): print a usable quarto's path; stale: list chapters to re-execute "
                             "(exit 1 if any); render: render the book")
    parser.add_argument("--venv", type=Path, default=None, help="the project's virtual environment")
    args = parser.parse_args(argv)
    if args.action == "render":
        return render_book(args.venv)
    if args.action == "find":
        return ensure_quarto(args.venv)
    stale = stale_chapters()
    for chapter in stale:
        print(f"{chapter}: _freeze/ is older than the source; it re-executes with the venv's Python")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
