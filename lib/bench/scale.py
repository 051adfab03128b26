"""``python -m lib bench-scale``: chapter 3's pipeline from ml-latest-small's size to MovieLens-32M's.

For each size, seeded synthetic likes with ml-latest-small's shape (``lib.movies.synthetic``)
are written as a MovieLens ``ratings.csv``; a fresh Python process then times, end to end,
*load* (read the CSV, apply the like rule, build the sparse likes matrix), *objective* (the
sparse cost, including ||X0||^2 computed block by block), *floor* (the LOBPCG floor at
``dim``) and *optimiser* (L-BFGS from the chapter's seeded start until within 0.5 % of the
floor), and reports its own peak resident memory. One process per size, so each peak is that
size's alone. No movies x movies matrix is ever formed: memory and time are O(likes x d).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lib.core.errors import ConfigError

RUNS_UNDER_TORCHRUN = True  # users sharded across ranks (LikesObjective); rank 0 writes
NAME = "movies_scale"
# MovieLens-32M: 200,948 users, 87,585 movies, 32,000,204 ratings; likes = ratings x ml-latest-small's
# share of ratings >= 4 (48,580 / 100,836).
ML32M = (200_948, 87_585, round(32_000_204 * 48_580 / 100_836))
TARGETS = {"largest_seconds": 900.0, "largest_peak_gib": 8.0, "loglog_slope": 1.3}


@dataclass(frozen=True)
class ScaleSettings:
    dim: int = 64                 # chapter 3's d on ml-latest-small, kept at every size
    floor_tol: float = 1e-7       # relative change of c that ends the floor: it is then within ~1e-6
                                  # of its limit, far below the 5e-3 target gap
    target_gap: float = 0.005
    max_iterations: int = 1500
    threads: int = 2
    seed: int = 0


def sizes(count: int, reference: tuple[int, int, int], largest: tuple[int, int, int] = ML32M) -> list[tuple]:
    """``count`` (users, movies, likes) sizes, geometrically spaced from ``reference`` to ``largest``."""
    if count < 2:
        raise ConfigError("--sizes must be at least 2")
    steps = np.linspace(0.0, 1.0, count)
    return [tuple(int(round(a * (b / a) ** t)) for a, b in zip(reference, largest)) for t in steps]


def measure(folder: Path, settings: ScaleSettings) -> dict:
    """The timed pipeline on one ``ratings.csv`` (runs in its own process; see :func:`run_size`)."""
    from lib.core.devices import cpu_threads, resolve_device
    from lib.movies import likes as mv
    from lib.movies.config import CONFIG, RunSpec
    from lib.movies.datasets import read_ratings
    from lib.movies.objective import LikesObjective, floor_lobpcg
    from lib.movies.optimise import initial_embeddings, run_optimizer
    from lib.movies.pipeline import _Laps

    with cpu_threads(settings.threads):
        start, lap = time.perf_counter(), _Laps()
        likes = mv.likes_matrix(read_ratings(folder / "ratings.csv"), "threshold", CONFIG.liked_threshold)
        lap("load")
        objective = LikesObjective(likes.matrix, device=resolve_device("auto"))  # torch sparse on CUDA if present
        lap("objective")
        found = floor_lobpcg(objective, settings.dim, settings.floor_tol, seed=settings.seed)
        lap("floor")
        V0 = initial_embeddings(objective.n, settings.dim, settings.seed, CONFIG.init_std)
        run = run_optimizer(objective, RunSpec("lbfgs", 1.0), V0, settings.max_iterations,
                            floor_loss=found.loss, stop_at_target=True,
                            config=replace(CONFIG, target_gap=settings.target_gap))
        lap("optimiser")
        seconds = time.perf_counter() - start
    return {"n_users": likes.n_users, "n_movies": likes.n_movies, "n_likes": likes.n_likes,
            "dim": settings.dim, "seconds": round(seconds, 3), "parts": lap.timings,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "floor_loss": found.loss, "floor_iterations": found.iterations, "floor_converged": found.converged,
            "floor_method": "LOBPCG self-consistent field", "floor_grad_norm": found.grad_norm,
            "floor_remaining_estimate": found.remaining(),
            "device": str(objective.device), "optimiser": "lbfgs lr=1", "optimiser_steps": run.steps,
            "optimiser_evaluations": run.evaluations,
            "reached_target": run.target_step is not None, "final_gap": run.gap(found.loss)}


def run_size(size: tuple[int, int, int], settings: ScaleSettings, workdir: Path, shape) -> dict:
    """Generate one size's likes (untimed), then time :func:`measure` in a fresh process."""
    from lib.movies import synthetic

    n_users, n_movies, n_likes = size
    t0 = time.perf_counter()
    likes = synthetic.generate(n_users, n_movies, n_likes, shape, seed=settings.seed)
    folder = workdir / f"{n_users}x{n_movies}x{n_likes}"
    synthetic.write_ratings(likes, folder, seed=settings.seed)
    generated = time.perf_counter() - t0
    del likes
    code = ("import json, sys; from pathlib import Path; from lib.bench.scale import ScaleSettings, measure; "
            "print(json.dumps(measure(Path(sys.argv[1]), ScaleSettings(**json.loads(sys.argv[2])))))")
    done = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(asdict(settings))],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"size {size} failed:\n{done.stderr[-3000:]}")
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["requested"] = {"n_users": n_users, "n_movies": n_movies, "n_likes": n_likes}
    row["generate_seconds"] = round(generated, 3)
    return row


def loglog_slope(rows: list[dict]) -> float:
    """Least-squares slope of log(seconds) against log(likes)."""
    x = np.log([r["n_likes"] for r in rows])
    y = np.log([r["seconds"] for r in rows])
    return float(np.polyfit(x, y, 1)[0])


def summary(rows: list[dict]) -> dict:
    largest = max(rows, key=lambda r: r["n_likes"])
    slope = loglog_slope(rows)
    return {"largest_seconds": largest["seconds"], "largest_peak_gib": largest["peak_rss_bytes"] / 2**30,
            "loglog_slope": slope,
            "met": {"largest_seconds": largest["seconds"] <= TARGETS["largest_seconds"],
                    "largest_peak_gib": largest["peak_rss_bytes"] <= TARGETS["largest_peak_gib"] * 2**30,
                    "loglog_slope": slope <= TARGETS["loglog_slope"],
                    "largest_at_least_15m_likes": largest["n_likes"] >= 15_000_000}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--sizes", type=int, default=5,
                        help="number of sizes, ml-latest-small to ML-32M (default 5)")
    parser.add_argument("--largest", type=float, default=1.0,
                        help="fraction of MovieLens-32M's size for the largest row (default 1; tests use less)")
    parser.add_argument("--dim", type=int, default=ScaleSettings.dim, help="embedding dimension (default 64)")
    parser.add_argument("--threads", type=int, default=ScaleSettings.threads, help="threads (default 2)")
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")


def run(args: argparse.Namespace) -> int:
    from lib.core import artifacts
    from lib.core.data import DataDirs, load_movielens
    from lib.core.provenance import collect
    from lib.movies import likes as mv
    from lib.movies.config import CONFIG
    from lib.movies.synthetic import Shape

    if not 0 < args.largest <= 1 or args.dim < 1 or args.threads < 1:
        raise ConfigError("--largest must be in (0, 1], --dim and --threads positive")
    settings = ScaleSettings(dim=args.dim, threads=args.threads)
    start = time.perf_counter()
    reference = mv.likes_matrix(load_movielens(DataDirs.resolve(args.data_dir, args.mirror)).ratings,
                                "threshold", CONFIG.liked_threshold)
    largest = tuple(max(int(round(v * args.largest ** (1 if i == 2 else 0.5))), 2) for i, v in enumerate(ML32M))
    plan = sizes(args.sizes, (reference.n_users, reference.n_movies, reference.n_likes), largest)
    rows = []
    with tempfile.TemporaryDirectory(prefix="movies-scale-") as tmp:
        for size in plan:
            row = run_size(size, settings, Path(tmp), Shape.from_likes(reference.matrix))
            rows.append(row)
            print(f"[bench-scale] {row['n_likes']:>11,} likes: {row['seconds']:8.1f} s, "
                  f"peak {row['peak_rss_bytes'] / 2**30:.2f} GiB {row['parts']}", file=sys.stderr, flush=True)
    payload = {"settings": asdict(settings), "ml32m": dict(zip(("n_users", "n_movies", "n_likes"), ML32M)),
               "targets": TARGETS, "rows": rows, "summary": summary(rows),
               "dense_float32_bytes": [4 * r["n_movies"] ** 2 for r in rows]}
    provenance = collect(seed=settings.seed, wall_time_s=time.perf_counter() - start, config=asdict(settings),
                         weights=None)
    path = artifacts.save_json(NAME, payload, provenance, Path(args.results_dir) if args.results_dir else None)
    print(f"wrote {path}; {json.dumps(payload['summary'])}")
    return 0
