"""Frozen result artifacts under ``results/``.

Format (one concept, three file kinds):

* ``<name>.json`` — metrics plus a ``provenance`` block (see ``lib.core.provenance``);
  the JSON is the artifact's index: ``files`` lists its companion files.
* ``<name>_<part>.npy`` / ``.npz`` — arrays (probabilities, embeddings, curves).
* ``<name>_<part>.csv`` / ``.png`` — tables and images.

Every write goes to a temporary file in the same folder and is renamed into
place, so a reader never sees half an artifact. Chapters only read from here.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from lib.core.paths import RESULTS_DIR
SCHEMA_VERSION = 1
REQUIRED_PROVENANCE = ("created_utc", "git", "config", "seed", "wall_time_s",
                       "versions", "hardware", "data", "weights")


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
    path = results_path(f"{name}.json", results_dir)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def load_json(name: str, results_dir: Path | None = None) -> dict:
    path = results_path(f"{name}.json", results_dir)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: run the pipeline that produces it (see README, 'Recomputing results')")
    return json.loads(path.read_text())


def write_npy(path: Path, array: np.ndarray) -> Path:
    """``np.save`` to any path, atomically (``np.save`` on a path would append ``.npy`` to the temp name)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, np.asarray(array))
    return path


def save_array(filename: str, array: np.ndarray, results_dir: Path | None = None) -> Path:
    return write_npy(results_path(filename, results_dir), array)


def load_array(filename: str, results_dir: Path | None = None) -> np.ndarray:
    return np.load(results_path(filename, results_dir), allow_pickle=False)


def save_arrays(filename: str, results_dir: Path | None = None, **arrays: np.ndarray) -> Path:
    path = results_path(filename, results_dir)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    return path


def load_arrays(filename: str, results_dir: Path | None = None) -> dict[str, np.ndarray]:
    with np.load(results_path(filename, results_dir), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def save_text(filename: str, text: str, results_dir: Path | None = None) -> Path:
    path = results_path(filename, results_dir)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path
