"""What produced a result: code version, library versions, hardware, data and weights."""
from __future__ import annotations

import datetime as dt
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from lib.core.paths import REPO_ROOT
TRACKED_PACKAGES = ("torch", "torchvision", "numpy", "pandas", "scipy", "scikit-learn",
                    "matplotlib", "efficientnet-lite-pytorch", "onnx", "onnxruntime")


def git_commit() -> dict:
    """Commit hash and whether the working tree had uncommitted changes."""
    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    try:
        commit = run("rev-parse", "--verify", "--quiet", "HEAD^{commit}") or None
        if commit is not None and not re.fullmatch(r"[0-9a-f]{40}", commit):
            commit = None  # a copied tree may hold a .git without history
        dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    if commit is None and os.environ.get("REPORT_GIT_COMMIT"):
        # A copied source tree without .git (e.g. on a borrowed GPU machine) names its commit here.
        return {"commit": os.environ["REPORT_GIT_COMMIT"], "dirty": None, "from": "REPORT_GIT_COMMIT"}
    return {"commit": commit, "dirty": dirty}


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


def hardware() -> dict:
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "gpu": None,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


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
        "git": git_commit(),
        "config": config,
        "seed": seed,
        "wall_time_s": round(float(wall_time_s), 3),
        "versions": versions(),
        "hardware": hardware(),
        "data": data if data is not None else dataset_hashes(),
        "weights": weights,
    }
