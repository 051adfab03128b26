"""What produced a result: code version, library versions, hardware, data and weights."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from lib.core.paths import REPO_ROOT
TRACKED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "scikit-learn",
                    "matplotlib", "efficientnet-lite-pytorch", "onnx", "onnxruntime")


# Outputs, data and caches: never listed as changes (a run writes them).
NOT_CODE = ("results/", "cache/", "checkpoints/", "data/", "_freeze/", "_book/", "notebooks/")
_allow_dirty = False
_git_at_start: dict | None = None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30).stdout


def uncommitted_changes() -> list[str]:
    """Changed or untracked (not ignored) files outside NOT_CODE: what HEAD does not hold."""
    paths = []
    for line in _git("status", "--porcelain=v1", "--untracked-files=all").splitlines():
        path = line[3:].split(" -> ")[-1].strip('"')
        if path and not path.startswith(NOT_CODE):
            paths.append(path)
    return paths


def is_code(path: str) -> bool:
    """Whether a changed file can change what a command computes (what `python -m lib` runs): only these make a
    tree dirty; docs, chapters and a preview's leftovers do not (provenance still lists them as changed)."""
    return path.startswith("lib/") or path == "requirements.txt" or path.endswith(".py")


def changes_sha256(paths: list[str]) -> str:
    """One hash of the uncommitted changes (tracked diffs plus untracked files' bytes)."""
    digest = hashlib.sha256(_git("diff", "HEAD", "--", *paths).encode())
    for path in sorted(paths):
        file = REPO_ROOT / path
        if file.is_file() and not _git("ls-files", "--", path).strip():
            digest.update(path.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def set_allow_dirty(allowed: bool) -> None:
    """``--allow-dirty``: the run may proceed from uncommitted code, and its artifacts say so."""
    global _allow_dirty
    _allow_dirty = bool(allowed)


def record_start() -> dict:
    """Take the code's git state when a run starts: edits made while it runs are not its code."""
    global _git_at_start
    _git_at_start = git_commit()
    return _git_at_start


def require_clean_tree(block: dict | None = None) -> None:
    """Refuse to make committed artifacts from code that no commit holds (unless --allow-dirty).
    ``block``: a ``git_commit()`` result already taken (the run's start), else one is taken now."""
    from lib.core.errors import ReportError

    block = git_commit() if block is None else block
    if _allow_dirty or not block.get("dirty"):
        return
    changes = [path for path in block["changed_files"] if is_code(path)]
    shown = ", ".join(changes[:8]) + (f" and {len(changes) - 8} more" if len(changes) > 8 else "")
    raise ReportError(f"uncommitted changes to code ({shown}): commit them first, so the artifacts "
                      "name the commit that made them, or pass --allow-dirty (recorded in provenance)")


def git_commit() -> dict:
    """Commit hash, whether code had uncommitted changes (``dirty``), and which files (code or
    not) had changes, with their hash."""
    try:
        commit = _git("rev-parse", "--verify", "--quiet", "HEAD^{commit}").strip() or None
        if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
            commit = None  # a copied tree may hold a .git without history
        changes = uncommitted_changes() if commit else []
    except (OSError, subprocess.SubprocessError):
        commit, changes = None, []
    if commit is None and os.environ.get("REPORT_GIT_COMMIT"):
        # A copied source tree without .git (e.g. on a borrowed GPU machine) names its commit here.
        return {"commit": os.environ["REPORT_GIT_COMMIT"], "dirty": None, "from": "REPORT_GIT_COMMIT"}
    block = {"commit": commit, "dirty": any(map(is_code, changes)) if commit else None}
    if changes:
        block.update(allow_dirty=_allow_dirty, changed_files=changes, changes_sha256=changes_sha256(changes))
    return block


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> tuple[float, float, float] | None:
    """1, 5 and 15-minute load averages (2 decimals), None where the OS has none. Other processes
    competing for the CPU make throughput numbers pessimistic, so timed runs record this."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except OSError:
        return None


def load_1min() -> float | None:
    """The 1-minute load average alone (None where the OS has none), as timed rows record it."""
    average = load_average()
    return average[0] if average else None


def hardware() -> dict:
    import torch

    from lib.core import distributed

    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "processes": distributed.world_size(),  # > 1 under torchrun (then rank 0 wrote this)
        "backend": distributed.backend(),
    }


def versions() -> dict:
    found = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def command_line() -> str:
    """How this process was started, as a user would type it."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("lib", "__main__.py")):
        return " ".join(["python -m lib", *argv[1:]])
    return " ".join(argv)


def collect(*, seed: int | None, wall_time_s: float, config: dict,
            weights: dict | None = None, data: dict | None = None) -> dict:
    """The provenance block stored in every artifact."""
    from lib.core.data import dataset_hashes

    return {
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(),
        "git": _git_at_start if _git_at_start is not None else git_commit(),
        "config": config,
        "seed": seed,
        "wall_time_s": round(float(wall_time_s), 3),
        "versions": versions(),
        "hardware": hardware(),
        "data": data if data is not None else dataset_hashes(),
        "weights": weights,
    }
