"""Field-by-field comparison of a rerun's artifact with the committed one: JSON key by key, arrays
(``.npy``/``.npz``) element by element or by shape, CSV column by column. Timings, hardware and paths
describe the machine, not the result, and are never compared. A difference keeps its path and both values.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np

from lib.core.stages import STAGES, Tolerance

# Keys that describe the run, not its result (fnmatch on the key itself).
MACHINE_KEYS = ("provenance", "timings", "hardware", "*device*", "export", "exported_now", "*_s", "*seconds*",
                "*per_s", "*load_average*", "*wall*", "created*", "resumed_from", "*chunks*", "reused_*",
                "peak_rss_bytes", "*gflops*", "*speedup*", "*_fraction_of_peak", "this_session*", "projected_*",
                "time_*", "feature_cache", "*_dir", "checkpoint*")  # the last three: paths on this machine
RUNNER_FILES = ("reproduce.json",)  # the summary the runner itself writes


@dataclass(frozen=True)
class Difference:
    path: str
    old: Any
    new: Any
    relative: float = math.inf  # |new - old| / |old| (inf for a changed string, shape or missing value)
    within: bool = False        # inside the stage's tolerance

    def describe(self) -> str:
        shown = f"{self.relative:.1e}" if math.isfinite(self.relative) else "differs"
        return f"{self.path}: {_short(self.old)} -> {_short(self.new)} ({shown})"


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= width else text[:width - 1] + "…"


def _machine(key: str) -> bool:
    return any(fnmatch(key, pattern) for pattern in MACHINE_KEYS)


def owner(filename: str) -> str | None:
    """The stage whose artifact ``filename`` belongs to: the longest stage name it starts with."""
    names = [s.name for s in STAGES if filename.startswith((f"{s.name}.", f"{s.name}_"))]
    return max(names, key=len) if names else None


def stage_files(name: str, folder: Path) -> set[str]:
    """Files of stage ``name`` present in ``folder``."""
    if not folder.is_dir():
        return set()
    return {p.name for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and owner(p.name) == name}


def _matches(path: str, pattern: str) -> bool:
    """A pattern with ':' names a file and a field (``movies_sensitivity*:*``); one without names a
    field only, whatever file holds it (so ``*gallery*`` never skips a whole gallery_sprites file)."""
    return fnmatch(path if ":" in pattern else path.split(":", 1)[-1], pattern)


def _rule(path: str, tol: Tolerance) -> tuple[float, float] | None:
    """(rtol, atol) for ``path``, or None where the path is not compared."""
    if any(_matches(path, pattern) for pattern in tol.skip):
        return None
    fields = ((rtol, atol) for pattern, rtol, atol in tol.fields if _matches(path, pattern))
    return next(fields, (tol.rtol, tol.atol))


def _number(path: str, old: float, new: float, tol: Tolerance) -> Difference | None:
    if old == new or (isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new)):
        return None
    rule = _rule(path, tol)
    if rule is None:
        return None
    gap = abs(new - old)
    relative = gap / abs(old) if old else math.inf
    return Difference(path, old, new, relative, gap <= rule[1] + rule[0] * abs(old))


def compare_values(old: Any, new: Any, tol: Tolerance, path: str = "") -> list[Difference]:
    """Every difference between two JSON values, with its path (``a.b[2].c``)."""
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if is_num(old) and is_num(new):
        found = _number(path, old, new, tol)
        return [found] if found else []
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            if _machine(key):
                continue
            where = f"{path}{key}" if not path or path.endswith(":") else f"{path}.{key}"
            if key not in old or key not in new:
                if _rule(where, tol) is not None:
                    out.append(Difference(where, old.get(key, "<absent>"), new.get(key, "<absent>")))
                continue
            out += compare_values(old[key], new[key], tol, where)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in compare_values(a, b, tol, f"{path}[{i}]")]
    if old == new or _rule(path, tol) is None:
        return []
    return [Difference(path, old, new)]


def compare_arrays(old: np.ndarray, new: np.ndarray, tol: Tolerance, path: str) -> list[Difference]:
    if tol.arrays == "none":
        return []
    if old.shape != new.shape or old.dtype != new.dtype:
        return [Difference(path, f"{old.dtype}{list(old.shape)}", f"{new.dtype}{list(new.shape)}")]
    if (tol.arrays == "shape" or _rule(path, tol) is None
            or np.array_equal(old, new, equal_nan=old.dtype.kind == "f")):
        return []
    if old.dtype.kind not in "fiu":
        return [Difference(f"{path}[{int(np.argmax(old != new))}]", "…", "…")]
    a, b = old.astype(np.float64).ravel(), new.astype(np.float64).ravel()
    gaps = np.abs(a - b)
    gaps[np.isnan(a) & np.isnan(b)] = 0.0          # both missing (a diverged run): the same
    gaps[np.isnan(a) != np.isnan(b)] = np.inf      # one missing: as different as can be
    worst = int(np.argmax(gaps))
    found = _number(f"{path}[{worst}]", float(a[worst]), float(b[worst]), tol)
    return [found] if found else []


def compare_file(old: Path, new: Path, tol: Tolerance) -> list[Difference]:
    """The differences between two versions of one artifact file."""
    name = old.name
    if name.endswith(".json"):
        a, b = json.loads(old.read_text()), json.loads(new.read_text())
        data = [doc.get("provenance", {}).get("data") for doc in (a, b)]
        return compare_values(*data, EXACT_DATA, f"{name}:provenance.data") + compare_values(a, b, tol, f"{name}:")
    if name.endswith(".npy"):
        return compare_arrays(np.load(old, allow_pickle=False), np.load(new, allow_pickle=False), tol, name)
    if name.endswith(".npz"):
        with np.load(old, allow_pickle=False) as a, np.load(new, allow_pickle=False) as b:
            if sorted(a.files) != sorted(b.files):
                return [Difference(name, sorted(a.files), sorted(b.files))]
            return [d for key in a.files if not _machine(key)
                    for d in compare_arrays(a[key], b[key], tol, f"{name}:{key}")]
    if name.endswith(".csv"):
        return _compare_csv(old, new, tol)
    same = old.read_bytes() == new.read_bytes()
    return [] if same else [Difference(name, "bytes", "other bytes", math.inf, tol.arrays == "shape")]


EXACT_DATA = Tolerance(reason="the data a run verified is fixed by its content hashes")


def _compare_csv(old: Path, new: Path, tol: Tolerance) -> list[Difference]:
    import pandas as pd

    a, b = pd.read_csv(old), pd.read_csv(new)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [Difference(old.name, f"{list(a.columns)} x {len(a)}", f"{list(b.columns)} x {len(b)}")]
    out = []
    for column in a.columns:
        if _machine(column):
            continue
        where = f"{old.name}:{column}"
        if pd.api.types.is_numeric_dtype(a[column]) and pd.api.types.is_numeric_dtype(b[column]):
            out += compare_arrays(a[column].to_numpy(), b[column].to_numpy(), tol, where)
        elif not a[column].equals(b[column]):
            row = int(np.argmax((a[column] != b[column]).to_numpy()))
            out += compare_values(a[column].iloc[row], b[column].iloc[row], tol, f"{where}[{row}]")
    return out


def compare_stage(name: str, committed: Path, rerun: Path, tol: Tolerance) -> list[Difference]:
    """Every difference between the committed files of stage ``name`` and the rerun's."""
    old, new = stage_files(name, committed), stage_files(name, rerun)
    found = [Difference(f, "<absent>" if f not in old else f, "<absent>" if f not in new else f)
             for f in sorted(old ^ new)]
    for filename in sorted(old & new):
        found += compare_file(committed / filename, rerun / filename, tol)
    return found
