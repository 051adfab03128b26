"""The follow-up commands of chapter 3 (``movies-hessian``, ``movies-decay``, ``movies-starts``): the same
data and d as ``python -m lib movies``, one computation, one artifact with provenance."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

from lib.core import artifacts
from lib.core.devices import cpu_threads
from lib.core.provenance import collect
from lib.movies.objective import torch_dtype
from lib.movies.pipeline import ARTIFACT, CONFIG, _data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--results-dir", default=None, help="where to write the artifact (default results/)")


def run_followup(args: argparse.Namespace, artifact: str, compute) -> dict:
    """``compute(objective, d)`` on all likes at the d this chapter chose, on CONFIG's threads; writes
    ``artifact`` with provenance (CONFIG whole)."""
    from lib.core.data import DataDirs, load_movielens

    results_dir = Path(args.results_dir) if args.results_dir else None
    dim = artifacts.load_json(ARTIFACT, results_dir)["dim"]  # the chapter run beside this one
    start = time.perf_counter()
    data = load_movielens(DataDirs.resolve(args.data_dir, args.mirror))
    with cpu_threads(CONFIG.threads):
        payload = compute(_data(data.ratings, data.movies, CONFIG, torch_dtype(CONFIG.dtype))[3], dim)
    wall = time.perf_counter() - start
    provenance = collect(seed=CONFIG.seed, wall_time_s=wall, config=asdict(CONFIG), weights=None)
    path = artifacts.save_json(artifact, payload, provenance, results_dir)
    print(f"wrote {path.name} in {wall:.1f} s")
    return payload
