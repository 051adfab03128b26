"""Frozen result artifacts under ``results/``.

Format (one concept, three file kinds):

* ``<name>.json`` — metrics plus a ``provenance`` block (see ``lib.core.provenance``);
  the JSON is the artifact's index: ``files`` lists its companion files.
* ``<name>_<part>.npy`` / ``.npz`` — arrays (probabilities, embeddings, curves).
* ``<name>_<part>.csv`` / ``.png`` — tables and images.

Every write goes to a temporary file in the same folder and is renamed into
place, so a reader never sees half an artifact. Chapters only read from here.
Every read goes through ``read_artifact``: a missing, unreadable or damaged file is one
line (``ArtifactError``) that names it, says what is wrong and how to restore it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np

from lib.core.errors import ReportError
from lib.core.paths import REPO_ROOT, RESULTS_DIR
SCHEMA_VERSION = 1
REQUIRED_PROVENANCE = ("created_utc", "git", "config", "seed", "wall_time_s",
                       "versions", "hardware", "data", "weights")
RECOMPUTE_HINT = "rerun the command that writes it (README, 'Recompute results')"
# What a damaged file raises while being parsed (json, numpy, zip, zlib, pandas all raise one of these).
DAMAGE_ERRORS = (ValueError, EOFError, KeyError, OSError, zipfile.BadZipFile, zlib.error, UnicodeDecodeError)
T = TypeVar("T")


class ArtifactError(ReportError):
    """An artifact that cannot be read: the message names the file, the problem and the fix."""


class MissingArtifactError(ArtifactError, FileNotFoundError):
    """An artifact that does not exist (a FileNotFoundError too, for readers of optional ones)."""


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        tmp.chmod(0o644)  # mkstemp creates 0600; artifacts are meant to be read by anyone
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def result_path(path: Path) -> Iterator[Path]:
    """:func:`atomic_path` for results and checkpoints, which are written once: under torchrun only
    rank 0's file lands, another rank's goes to a scratch folder and is dropped (caches, which the
    ranks share out, use :func:`atomic_path`)."""
    from lib.core import distributed

    if distributed.is_main():
        with atomic_path(path) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory() as scratch:
        yield Path(scratch) / path.name


def key_digest(key: dict) -> str:
    """A short stable hash of a configuration key (cache folder and file names)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in a JSON artifact")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as strings so the file stays standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def results_path(name: str, results_dir: Path | None = None) -> Path:
    return (results_dir or RESULTS_DIR) / name


def save_json(name: str, payload: dict, provenance: dict, results_dir: Path | None = None) -> Path:
    """Write ``<name>.json`` holding ``payload`` plus ``schema`` and ``provenance``."""
    missing = [key for key in REQUIRED_PROVENANCE if key not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {missing}")
    document = {"schema": SCHEMA_VERSION, "name": name, **payload, "provenance": provenance}
    text = json.dumps(_finite(document), indent=2, default=_json_default, allow_nan=False)
    return save_text(f"{name}.json", text + "\n", results_dir)


def _is_committed(path: Path) -> bool:
    """Whether git holds ``path`` (so ``git checkout`` restores it)."""
    try:
        relative = path.resolve().relative_to(REPO_ROOT.resolve())
        done = subprocess.run(["git", "ls-files", "--error-unmatch", "--", str(relative)], cwd=REPO_ROOT,
                              capture_output=True, timeout=30)
    except (ValueError, OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def restore_hint(path: Path, command: str | None = None) -> str:
    """How to get a good copy of ``path`` back: git's committed copy, else the command that writes it."""
    rerun = f"run '{command}'" if command else RECOMPUTE_HINT
    if _is_committed(path):
        relative = path.resolve().relative_to(REPO_ROOT.resolve())
        return f"restore the committed copy with 'git checkout -- {relative}' or {rerun}"
    return rerun


def _damage(exc: BaseException) -> str:
    """A short reason for a parse failure; never numpy's advice to load pickled data."""
    first = (str(exc).strip().splitlines() or [""])[0]
    if not first or "pickle" in first.lower() or len(first) > 100:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}"


def read_artifact(path: Path, reader: Callable[[Path], T], kind: str, command: str | None = None) -> T:
    """``reader(path)``, with every way it can fail said in one line naming ``path`` (an ArtifactError)."""
    if not path.parent.is_dir():
        raise MissingArtifactError(f"{path.parent} is not a folder, so {path.name} cannot be read from it "
                                   "(a mistyped --results-dir?)")
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not a {kind} file: remove it and {restore_hint(path, command)}")
    if not path.exists():
        raise MissingArtifactError(f"{path} is missing: {restore_hint(path, command)}")
    try:
        return reader(path)
    except PermissionError as exc:
        raise ArtifactError(f"{path} cannot be read (permission denied): give yourself read access "
                            f"(chmod u+r {path}) or {restore_hint(path, command)}") from exc
    except DAMAGE_ERRORS as exc:
        raise ArtifactError(f"{path} is damaged, not a valid {kind} file ({_damage(exc)}): "
                            f"{restore_hint(path, command)}") from exc


def load_json(name: str, results_dir: Path | None = None, command: str | None = None) -> dict:
    return read_artifact(results_path(f"{name}.json", results_dir), lambda p: json.loads(p.read_text()),
                         "JSON", command)


def write_npy(path: Path, array: np.ndarray, once: bool = False) -> Path:
    """``np.save`` to any path, atomically (``np.save`` on a path would append ``.npy`` to the temp name);
    ``once``: a result, written by rank 0 alone under torchrun."""
    with (result_path if once else atomic_path)(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array))
    return path


def save_array(filename: str, array: np.ndarray, results_dir: Path | None = None) -> Path:
    return write_npy(results_path(filename, results_dir), array, once=True)


def load_array(filename: str, results_dir: Path | None = None, command: str | None = None) -> np.ndarray:
    return read_artifact(results_path(filename, results_dir), lambda p: np.load(p, allow_pickle=False),
                         ".npy", command)


def save_arrays(filename: str, results_dir: Path | None = None, **arrays: np.ndarray) -> Path:
    path = results_path(filename, results_dir)
    with result_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_arrays(filename: str, results_dir: Path | None = None,
                command: str | None = None) -> dict[str, np.ndarray]:
    return read_artifact(results_path(filename, results_dir), _read_npz, ".npz", command)


def load_csv(filename: str, results_dir: Path | None = None, command: str | None = None,
             required: tuple[str, ...] = (), **read_csv: Any):
    """A CSV artifact as a DataFrame (``read_csv``: pandas.read_csv's options); a file that lacks
    one of the ``required`` columns is damaged, not a KeyError later."""
    import pandas as pd

    def read(path: Path) -> pd.DataFrame:
        table = pd.read_csv(path, **read_csv)
        missing = [column for column in required if column not in table.columns]
        if missing:
            raise ValueError(f"no column {', '.join(missing)}")
        return table

    return read_artifact(results_path(filename, results_dir), read, "CSV", command)


def save_text(filename: str, text: str, results_dir: Path | None = None) -> Path:
    path = results_path(filename, results_dir)
    with result_path(path) as tmp:
        tmp.write_text(text)
    return path
