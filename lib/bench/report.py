"""Part 4 of the benchmark: wall time of ``python -m lib notebooks`` from the frozen artifacts."""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time

from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT

EXECUTED = re.compile(r"executed (\S+) in ([0-9.]+) s")


def bench_report(timeout: int = 900) -> dict:
    """Part 4: ``python -m lib notebooks`` in a subprocess, into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lib", "notebooks", "--out", out], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ConfigError(f"python -m lib notebooks failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    chapters = {name: float(s) for name, s in EXECUTED.findall(proc.stdout)}
    return {"command": "python -m lib notebooks --out <temporary folder>", "seconds": seconds,
            "chapters": chapters}

