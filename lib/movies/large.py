"""Chapter 3's pipeline on a large MovieLens set (``python -m lib movies --dataset ml-32m``).

The chapter's full study forms the movies x movies co-occurrence for its statistics and runs
sixteen optimisers; at ML-25M/ML-32M size the dense matrix alone needs 15-30 GB. This path keeps
what scales as O(likes x d): the same like rule, the sparse cost, the LOBPCG floor, the best
optimiser (L-BFGS, which needs no learning rate), and the recommendations for the chapter's queries.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from lib.core import artifacts
from lib.core.devices import resolve_device
from lib.core.paths import RESULTS_DIR
from lib.core.provenance import collect
from lib.movies import datasets
from lib.movies import likes as mv
from lib.movies import recommend as rec
from lib.movies.config import MoviesConfig, RunSpec
from lib.movies.objective import LikesObjective, floor_lobpcg, torch_dtype
from lib.movies.optimise import initial_embeddings, run_optimizer
from lib.movies.pipeline import ARTIFACT, _Laps, compute, write_artifacts

LARGE_MOVIES = 20_000  # above this many liked movies, --dataset takes this path
DEFAULT_DIM = 64


def compute_large(likes: mv.Likes, movies, config: MoviesConfig, dim: int | None, progress: bool = True) -> dict:
    """Floor, L-BFGS and the query lists from the likes; plain data for ``movies.json`` plus the embeddings."""
    lap = _Laps()
    dim = dim or DEFAULT_DIM
    catalog = mv.catalog(movies, likes.movie_ids, likes.movie_counts())
    lap("catalog")
    objective = LikesObjective(likes.matrix, torch_dtype(config.dtype), device=resolve_device("auto"))  # cuSPARSE
    lap("objective")
    found = floor_lobpcg(objective, dim, progress=progress)
    lap("floor")
    V0 = initial_embeddings(objective.n, dim, config.seed, config.init_std)
    best = run_optimizer(objective, RunSpec("lbfgs", 1.0), V0, config.iterations, floor_loss=found.loss,
                         config=config, progress=progress)
    lap("runs")
    index = rec.TitleIndex(catalog["title"])
    recommendations = {}
    for query in config.query_titles:
        try:
            i = index.resolve(query)
        except rec.TitleError:
            continue
        recommendations[catalog["title"].iloc[i]] = catalog["title"].iloc[rec.top_k(best.V, i, config.top_k)[0]].tolist()
    lap("recommendations")
    payload = {"like_rule": f"rating >= {config.liked_threshold:g}", "n_movies": likes.n_movies,
               "n_users": likes.n_users, "n_likes": likes.n_likes, "dim": dim, "floor_loss": found.loss,
               "floor": {"method": "LOBPCG self-consistent field", "iterations": found.iterations, "converged": found.converged,
                         "grad_norm": found.grad_norm, "offdiag_sq_norm": objective.offdiag_sq_norm},
               "best_run": best.spec.name, "best_gap": best.gap(found.loss),
               "target_step": best.target_step, "diverged": best.diverged or not math.isfinite(best.final_loss),
               "recommendations": recommendations, "timings": lap.timings}
    return {"payload": payload, "embeddings": best.V.astype(np.float32),
            "movie_ids": likes.movie_ids.astype(np.int64), "catalog": catalog}


def run_other(args: argparse.Namespace, config: MoviesConfig, dataset) -> int:
    """Another MovieLens set: the full study when its co-occurrence fits, else :func:`compute_large`."""
    start = time.perf_counter()
    ratings, movies, source = datasets.load(dataset, args.data_dir, args.mirror)
    slug = dataset.name if dataset.name != "path" else dataset.path.name
    out = Path(args.results_dir) if args.results_dir else RESULTS_DIR / f"movies-{slug}"
    out.mkdir(parents=True, exist_ok=True)
    likes = mv.likes_matrix(ratings, "threshold", config.liked_threshold)
    large = likes.n_movies > LARGE_MOVIES
    with threadpool_limits(config.threads):
        if large:
            result = compute_large(likes, movies, config, args.dim, progress=not args.no_progress)
        else:
            result = compute(ratings, movies, config, args.dim, progress=not args.no_progress)
    result["payload"]["dataset"] = source
    wall = time.perf_counter() - start
    if large:
        artifacts.save_arrays(rec.EMBEDDINGS_FILE, out, embeddings=result["embeddings"],
                              movie_ids=result["movie_ids"])
        artifacts.save_text(rec.CATALOG_FILE, result["catalog"].to_csv(index=False), out)
        artifacts.save_json(ARTIFACT, result["payload"], collect(seed=config.seed, wall_time_s=wall,
                                                                 config=asdict(config), weights=None), out)
    else:
        write_artifacts(result, config, wall, out)
    p = result["payload"]
    print(f"{source}: {p['n_likes']} likes, {p['n_movies']} movies; best gap {p['best_gap']:.3e}; wrote {out}")
    return 0
