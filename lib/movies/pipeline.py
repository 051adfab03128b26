"""``python -m lib movies``: chapter 3's whole computation, stage by stage (see :func:`compute`), and its
artifacts. Every hyperparameter is in ``lib.movies.config.CONFIG``."""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from lib.core import artifacts
from lib.core.devices import cpu_threads
from lib.core.errors import ConfigError
from lib.core.provenance import collect
from lib.core.stats import binomial_se
from lib.movies import datasets
from lib.movies import evaluation as ev
from lib.movies import likes as mv
from lib.movies import recommend as rec
from lib.movies.config import CONFIG, OPTIMIZERS, MoviesConfig, parse_runs
from lib.movies.objective import Floor, LikesObjective, floor, torch_dtype
from lib.movies.optimise import RunResult, initial_embeddings, run_optimizer
from lib.movies.titles import display_title

RUNS_UNDER_TORCHRUN = True  # users sharded across ranks (LikesObjective); rank 0 writes
ARTIFACT = "movies"
CURVES_FILE = "movies_curves.npz"
RUN_EMBEDDINGS_FILE = "movies_run_embeddings.npz"  # floor, best and far-off runs (float16)
SENSITIVITY_FILE = "movies_sensitivity.csv"
SENSITIVITY_FREQUENT_FILE = "movies_sensitivity_frequent.csv"
FLOOR_NAME = "floor (eigendecomposition)"


def gram_distance(A: np.ndarray, B: np.ndarray) -> float:
    """||AAᵀ - BBᵀ||_F / ||BBᵀ||_F without forming M x M matrices (0 iff A = BQ, Q orthogonal)."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    aa, bb, ab = (np.square(A.T @ A).sum(), np.square(B.T @ B).sum(), np.square(A.T @ B).sum())
    return float(math.sqrt(max(aa + bb - 2 * ab, 0.0) / bb))


def _data(ratings, movies, config: MoviesConfig, dtype: torch.dtype) -> tuple:
    """Likes, the catalogue, summary statistics and the objective on the full likes."""
    likes = mv.likes_matrix(ratings, "threshold", config.liked_threshold)
    X = mv.cooccurrence(likes)
    catalog = mv.catalog(movies, likes.movie_ids, likes.movie_counts())
    stats = {"ratings": mv.ratings_summary(ratings), "likes": mv.likes_summary(ratings, likes),
             "cooccurrence": mv.cooccurrence_summary(X, catalog["title"])}
    stats["likes"]["n_movies_catalog"] = int(movies["movieId"].nunique())
    return likes, catalog, stats, LikesObjective(likes.matrix, dtype)


def _choose_dim(objective: LikesObjective, train_objective: LikesObjective, split, config: MoviesConfig,
                dim: int | None, progress: bool) -> tuple[list[dict], int, Floor, Floor]:
    """The floor on the full X (fit) and on a hold-out split (validation hit-rate) for each d: the sweep,
    the chosen d, and at that d the floors on all likes and on the training likes."""
    def floors(d: int) -> tuple[Floor, Floor]:
        return tuple(floor(o, d, config.floor_tol, config.floor_max_iter) for o in (objective, train_objective))

    sweep, found = [], {}
    for d in tqdm(config.dims, desc="floor per d", disable=not progress):
        if d >= objective.n:
            continue
        full, train = found[d] = floors(d)
        row = {"dim": d, "floor_loss": full.loss, "explained": 1 - full.loss / objective.offdiag_sq_norm,
               "floor_iterations": full.iterations, "floor_seconds": round(full.seconds, 3)}
        for similarity in ("cosine", "dot"):
            scores = ev.embedding_scores(split.train, split.validation_users, train.V, similarity)
            suffix = "" if similarity == "cosine" else "_dot"
            row[f"validation_hit_rate{suffix}"] = ev.hit_rate(scores, split.train, split.validation_users,
                                                             split.validation_items, config.top_k)
        sweep.append(row)
    if dim is None:  # CONFIG.dim_rule: the smallest d within one standard error of the best d's hit-rate
        rate = max(row["validation_hit_rate"] for row in sweep)
        threshold = rate - binomial_se(rate, len(split.validation_users))
        dim = min(row["dim"] for row in sweep if row["validation_hit_rate"] >= threshold)
    return sweep, dim, *(found[dim] if dim in found else floors(dim))


def _runs(objective: LikesObjective, dim: int, floor_loss: float, config: MoviesConfig, dtype: torch.dtype,
          progress: bool) -> tuple[list[RunResult], RunResult]:
    """Every configured run from one seed and one initialisation; the best finite one."""
    V0 = initial_embeddings(objective.n, dim, config.seed, config.init_std, "normal", dtype)
    results: list[RunResult] = []
    for spec in tqdm(config.runs, desc="optimiser runs", disable=not progress):
        start = V0 if spec.init == "normal" else initial_embeddings(objective.n, dim, config.seed,
                                                                    config.init_std, spec.init, dtype)
        results.append(run_optimizer(objective, spec, start, config.iterations, floor_loss=floor_loss,
                                     config=config, progress=progress))
    finite = [r for r in results if not r.diverged and math.isfinite(r.final_loss)]
    return results, min(finite, key=lambda r: r.final_loss)


def _recommendations(V: np.ndarray, catalog, config: MoviesConfig) -> tuple[dict, dict, dict]:
    """Resolved queries, their top-k tables (cosine and dot) and the titles of the cosine lists."""
    index = rec.TitleIndex(catalog["title"])
    resolved = {q: int(index.resolve(q)) for q in config.query_titles}
    tables: dict[str, dict] = {}
    recommendations: dict[str, list[str]] = {}
    for query, i in resolved.items():
        title = catalog["title"].iloc[i]
        tables[title] = {}
        for similarity in ("cosine", "dot"):
            idx, scores = rec.top_k(V, i, config.top_k, similarity)
            table = catalog.iloc[idx][["title", "year", "genres", "likes"]].assign(score=scores).astype(object)
            tables[title][similarity] = table.where(table.notna(), None).to_dict("records")  # JSON-ready
        recommendations[title] = [row["title"] for row in tables[title]["cosine"]]
    return resolved, tables, recommendations


def _similarity_comparison(V: np.ndarray, counts: np.ndarray, k: int) -> dict:
    """How popular the neighbours are under cosine and dot similarity."""
    from scipy.stats import spearmanr

    top100 = set(np.argsort(-counts, kind="stable")[:100].tolist())
    comparison = {"catalog_median_likes": float(np.median(counts))}
    for similarity in ("cosine", "dot"):
        nb = rec.top_k_all(V, k, similarity)
        liked = counts[nb]
        comparison[similarity] = {
            "median_likes": float(np.median(liked)), "mean_likes": float(liked.mean()),
            "share_top100": float(np.isin(nb, list(top100)).mean()),
            "distinct_movies": int(np.unique(nb).size)}
    comparison["norm_likes_spearman"] = float(spearmanr(np.linalg.norm(V, axis=1), counts).statistic)
    return comparison


@dataclass
class _Sensitivity:
    names: list[str]
    lists: list[np.ndarray | None]   # top-k lists of every run, then of the floor
    overlap: np.ndarray
    overlap_frequent: np.ndarray
    summary: dict


def _sensitivity(results: list[RunResult], best: RunResult, reference: Floor, counts: np.ndarray,
                 config: MoviesConfig) -> _Sensitivity:
    """Top-k lists of every run against each other and the floor (all movies, frequent ones, by likes)."""
    names = [r.spec.name for r in results] + [FLOOR_NAME]
    lists = [rec.top_k_all(r.V, config.top_k) if not r.diverged else None for r in results]
    lists.append(rec.top_k_all(reference.V, config.top_k))
    frequent = counts >= config.frequent_likes
    overlap = np.full((len(names), len(names)), np.nan)
    overlap_frequent = overlap.copy()
    for a in range(len(names)):
        for b in range(a, len(names)):
            if lists[a] is not None and lists[b] is not None:
                overlap[a, b] = overlap[b, a] = rec.topk_overlap(lists[a], lists[b])
                overlap_frequent[a, b] = overlap_frequent[b, a] = rec.topk_overlap(
                    lists[a][frequent], lists[b][frequent])
    best_lists = lists[results.index(best)]
    edges = list(config.likes_buckets) + [int(counts.max()) + 1]
    by_likes = []
    for low, high in zip(edges[:-1], edges[1:]):
        rows = (counts >= low) & (counts < high)
        if rows.any():
            by_likes.append({"min_likes": low, "max_likes": int(high - 1), "movies": int(rows.sum()),
                             "overlap_best_vs_floor": rec.topk_overlap(best_lists[rows], lists[-1][rows])})
    summary = {"names": names, "file": SENSITIVITY_FILE, "frequent_file": SENSITIVITY_FREQUENT_FILE,
               "frequent_likes": config.frequent_likes, "frequent_movies": int(frequent.sum()),
               "best_vs_floor_by_likes": by_likes,
               "best_vs_floor_gram_distance": gram_distance(best.V, reference.V)}
    return _Sensitivity(names, lists, overlap, overlap_frequent, summary)


def _evaluation(split, train_objective: LikesObjective, train_floor: Floor, best: RunResult, dim: int,
                config: MoviesConfig, dtype: torch.dtype, progress: bool) -> dict:
    """Hit-rate@k on the held-out likes: baselines, the best run retrained on training likes, the floor."""
    test_users, test_items = split.test_users, split.test_items
    best_spec = best.spec
    train_V0 = initial_embeddings(train_objective.n, dim, config.seed, config.init_std, best_spec.init, dtype)
    train_run = run_optimizer(train_objective, best_spec, train_V0, config.iterations,
                              floor_loss=train_floor.loss, config=config, progress=progress)
    methods = {
        "most popular": ev.popularity_scores(split.train, test_users),
        "co-occurrence counts": ev.cooccurrence_scores(split.train, test_users),
        f"embeddings, dot product ({best_spec.name})": ev.embedding_scores(split.train, test_users, train_run.V, "dot"),
        f"embeddings, cosine ({best_spec.name})": ev.embedding_scores(split.train, test_users, train_run.V, "cosine"),
        "embeddings, cosine (floor)": ev.embedding_scores(split.train, test_users, train_floor.V, "cosine"),
    }
    rows = []
    for method, scores in methods.items():
        rate = ev.hit_rate(scores, split.train, test_users, test_items, config.top_k)
        rows.append({"method": method, "hit_rate": rate, "standard_error": binomial_se(rate, len(test_users))})
    return {"k": config.top_k, "n_users": int(len(test_users)), "seed": config.seed,
            "held_out_per_user": config.holdout_per_user, "train_likes": int(split.train.nnz),
            "train_run_gap": train_run.gap(train_floor.loss), "methods": rows}


def _alternative(ratings, movies, stats: dict, catalog, resolved: dict, recommendations: dict, dim: int,
                 config: MoviesConfig, dtype: torch.dtype) -> dict:
    """The alternative definition of 'liked' (rating >= the user's own mean), at the same d."""
    alt_likes = mv.likes_matrix(ratings, config.alternative_rule)
    alt_summary = mv.likes_summary(ratings, alt_likes)
    alt_pairs = (alt_likes.matrix.T @ alt_likes.matrix).tocsr()
    alt_pairs.setdiag(0)
    alt_pairs.eliminate_zeros()
    alt_summary["cooccurrence_nonzero_fraction"] = alt_pairs.nnz / (alt_likes.n_movies * (alt_likes.n_movies - 1))
    main_summary = dict(stats["likes"], cooccurrence_nonzero_fraction=stats["cooccurrence"]["nonzero_fraction"])
    alt_floor = floor(LikesObjective(alt_likes.matrix, dtype), dim, config.floor_tol, config.floor_max_iter)
    alt_catalog = mv.catalog(movies, alt_likes.movie_ids, alt_likes.movie_counts())
    alt_index = rec.TitleIndex(alt_catalog["title"])
    alt_recs = {}
    for i in resolved.values():
        title = catalog["title"].iloc[i]
        try:
            j = alt_index.resolve(title)
        except rec.TitleError:
            alt_recs[title] = None
            continue
        idx, _ = rec.top_k(alt_floor.V, j, config.top_k)
        alt_titles = alt_catalog["title"].iloc[idx].tolist()
        alt_recs[title] = {"recommendations": alt_titles,
                           "common_with_main": len(set(alt_titles) & set(recommendations[title]))}
    return {"rule": config.alternative_rule, "main": main_summary, "alternative": alt_summary,
            "recommendations": alt_recs}


def _run_rows(results: list[RunResult], sens: _Sensitivity, reference: Floor, best: RunResult, catalog,
              resolved: dict, k: int) -> list[dict]:
    """One JSON row per optimiser run, with its agreement with the floor and the best run."""
    best_lists = sens.lists[results.index(best)]
    titles = {i: catalog["title"].iloc[i] for i in resolved.values()}
    runs = []
    for r, row_overlap, row_frequent in zip(results, sens.overlap[:len(results)],
                                            sens.overlap_frequent[:len(results)]):
        top = {} if r.diverged else {i: rec.top_k(r.V, i, k)[0] for i in titles}
        runs.append({
            "name": r.spec.name, "optimizer": r.spec.optimizer, "lr": r.spec.lr, "init": r.spec.init,
            "final_loss": r.final_loss, "gap": r.gap(reference.loss), "seconds": round(r.seconds, 3),
            "diverged": r.diverged, "divergence": r.divergence, "steps": r.steps,
            "evaluations": r.evaluations, "target_step": r.target_step,
            "target_seconds": None if r.target_seconds is None else round(r.target_seconds, 3),
            "overlap_with_floor": None if math.isnan(row_overlap[-1]) else float(row_overlap[-1]),
            "overlap_with_floor_frequent": None if math.isnan(row_frequent[-1]) else float(row_frequent[-1]),
            "gram_distance_to_floor": None if r.diverged else gram_distance(r.V, reference.V),
            "query_overlap_with_best": {title: None if r.diverged else int(np.intersect1d(
                top[i], best_lists[i]).size) for i, title in titles.items()},
            "query_lists": {title: None if r.diverged else catalog["title"].iloc[top[i]].tolist()
                            for i, title in titles.items()},
        })
    return runs


class _Laps:
    """Wall time of each stage, in seconds (3 decimals)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.clock, 3)
        self.clock = now


def compute(ratings, movies, config: MoviesConfig = CONFIG, dim: int | None = None,
            progress: bool = True) -> dict:
    """Everything chapter 3 shows, as plain data plus the arrays to save."""
    lap = _Laps()
    dtype = torch_dtype(config.dtype)
    likes, catalog, stats, objective = _data(ratings, movies, config, dtype)
    lap("data")
    split = ev.holdout(likes.matrix, config.holdout_per_user, config.seed)
    train_objective = LikesObjective(split.train, dtype)
    sweep, chosen, reference, train_floor = _choose_dim(objective, train_objective, split, config, dim, progress)
    lap("floors")
    results, best = _runs(objective, chosen, reference.loss, config, dtype, progress)
    lap("runs")
    resolved, tables, recommendations = _recommendations(best.V, catalog, config)
    counts = catalog["likes"].to_numpy()
    similarity_comparison = _similarity_comparison(best.V, counts, config.top_k)
    lap("recommendations")
    sens = _sensitivity(results, best, reference, counts, config)
    lap("sensitivity")
    evaluation = _evaluation(split, train_objective, train_floor, best, chosen, config, dtype, progress)
    lap("evaluation")
    alternative = _alternative(ratings, movies, stats, catalog, resolved, recommendations, chosen, config, dtype)
    lap("alternative")
    payload = {
        "liked_threshold": config.liked_threshold,
        "like_rule": f"rating >= {config.liked_threshold:g}",
        "n_movies": likes.n_movies, "n_users": likes.n_users, "n_likes": likes.n_likes,
        "dim": chosen, "dim_rule": config.dim_rule if dim is None else "set on the command line",
        "dims": sweep, "validation_users": int(len(split.validation_users)),
        "floor_loss": reference.loss,
        "floor": {"iterations": reference.iterations, "grad_norm": reference.grad_norm,
                  "seconds": round(reference.seconds, 3), "converged": reference.converged,
                  "offdiag_sq_norm": objective.offdiag_sq_norm,
                  "explained": 1 - reference.loss / objective.offdiag_sq_norm},
        "target_gap": config.target_gap, "iterations": config.iterations,
        "runs": _run_rows(results, sens, reference, best, catalog, resolved, config.top_k),
        "best_run": best.spec.name, "best_gap": best.gap(reference.loss),
        "queries": {q: catalog["title"].iloc[i] for q, i in resolved.items()},
        "recommendations": recommendations, "recommendation_tables": tables,
        "floor_query_lists": {catalog["title"].iloc[i]: catalog["title"].iloc[
            rec.top_k(reference.V, i, config.top_k)[0]].tolist() for i in resolved.values()},
        "similarity_comparison": similarity_comparison,
        "stats": stats, "alternative": alternative, "evaluation": evaluation,
        "sensitivity": sens.summary, "timings": lap.timings,
    }
    curves = {"names": np.asarray(sens.names[:-1]), "floor_losses": reference.losses}
    for k, r in enumerate(results):
        curves[f"loss_{k:02d}"] = r.losses
        curves[f"time_{k:02d}"] = r.times
        curves[f"evals_{k:02d}"] = r.evaluations_at
    return {"payload": payload, "curves": curves, "overlap": sens.overlap, "overlap_frequent": sens.overlap_frequent,
            "names": sens.names, "embeddings": best.V.astype(np.float32),
            "run_embeddings": run_embeddings(reference, best, results, config.explorer_runs),
            "movie_ids": likes.movie_ids.astype(np.int64), "catalog": catalog}



def run_embeddings(reference: Floor, best: RunResult, results: list[RunResult], extra: int) -> dict:
    """The floor, the best run and the ``extra`` finite runs that ended farthest from the floor,
    in float16: enough for a reader to see how much the recommendations move (chapter 3's explorer)."""
    finite = [r for r in results if not r.diverged and math.isfinite(r.final_loss)
              and r.spec.init == "normal" and r is not best]
    farthest = sorted(finite, key=lambda r: r.final_loss, reverse=True)[:extra]
    chosen = [(FLOOR_NAME, reference.V), (best.spec.name, best.V)] + [(r.spec.name, r.V) for r in farthest]
    return {"names": np.asarray([name for name, _ in chosen]),
            "vectors": np.stack([V.astype(np.float16) for _, V in chosen])}


def write_artifacts(result: dict, config: MoviesConfig, wall_time_s: float, results_dir=None) -> list:
    names = result["names"]
    paths = [
        artifacts.save_arrays(CURVES_FILE, results_dir, **result["curves"]),
        artifacts.save_arrays(rec.EMBEDDINGS_FILE, results_dir, embeddings=result["embeddings"],
                              movie_ids=result["movie_ids"]),
        artifacts.save_arrays(RUN_EMBEDDINGS_FILE, results_dir, movie_ids=result["movie_ids"],
                              **result["run_embeddings"]),
        artifacts.save_text(rec.CATALOG_FILE, result["catalog"].to_csv(index=False), results_dir),
    ] + [artifacts.save_text(name, pd.DataFrame(result[key], index=names, columns=names).to_csv(), results_dir)
         for name, key in ((SENSITIVITY_FILE, "overlap"), (SENSITIVITY_FREQUENT_FILE, "overlap_frequent"))]
    payload = dict(result["payload"], files=[p.name for p in paths])
    provenance = collect(seed=config.seed, wall_time_s=wall_time_s, config=asdict(config), weights=None)
    paths.insert(0, artifacts.save_json(ARTIFACT, payload, provenance, results_dir))
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--dim", type=int, default=None,
                        help="embedding dimension (default: chosen on validation likes, see CONFIG.dim_rule)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"optimiser steps per run (default {CONFIG.iterations})")
    parser.add_argument("--runs", default=None, metavar="OPT:LR[,...]",
                        help="the optimiser runs instead of the chapter's grid (CONFIG.runs), e.g. "
                             "adam:0.1,sgd:3e-5,adam:0.03:zeros (optimisers: " + ", ".join(OPTIMIZERS)
                             + "); needs --results-dir, so results/ keeps the chapter's grid")
    parser.add_argument("--dataset", default="ml-latest-small",
                        help="ml-latest-small (default, the chapter's), ml-25m, ml-32m, or a ratings.csv "
                             "(or its folder) in MovieLens format; others write to results/movies-NAME/")
    parser.add_argument("--results-dir", default=None, help="where to write the artifacts (default results/)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def chosen_config(args: argparse.Namespace) -> MoviesConfig:
    """CONFIG with the command line's ``--iterations`` and ``--runs``; chosen runs never replace
    the chapter's artifacts in results/."""
    if args.iterations is not None and args.iterations < 1:
        raise ConfigError(f"--iterations must be positive, got {args.iterations}")
    config = CONFIG if args.iterations is None else replace(CONFIG, iterations=args.iterations)
    if args.runs is None:
        return config
    if args.results_dir is None:
        raise ConfigError("--runs writes a different set of runs than the chapter's: give a scratch "
                          "--results-dir DIR (results/ keeps the chapter's artifacts)")
    return replace(config, runs=parse_runs(args.runs))


def run(args: argparse.Namespace) -> int:
    from lib.core.data import DataDirs, load_movielens  # looked up when run: the tests replace the loader

    config = chosen_config(args)
    if args.dim is not None and args.dim < 1:
        raise ConfigError(f"--dim must be positive, got {args.dim}")
    dataset = datasets.parse_dataset(args.dataset)  # a bad value stops here, before any work
    if dataset.name != datasets.DEFAULT:
        from lib.movies.large import run_other

        return run_other(args, config, dataset)
    start = time.perf_counter()
    data = load_movielens(DataDirs.resolve(args.data_dir, args.mirror))
    with cpu_threads(config.threads):
        result = compute(data.ratings, data.movies, config, args.dim, progress=not args.no_progress)
    wall = time.perf_counter() - start
    result["payload"]["timings"]["total"] = round(wall, 3)
    paths = write_artifacts(result, config, wall, Path(args.results_dir) if args.results_dir else None)
    p = result["payload"]
    print(f"{p['n_movies']} movies liked (rating >= {p['liked_threshold']:g}) by {p['n_users']} users; d = {p['dim']}")
    print(f"floor c* = {p['floor_loss']:.6g}; best run {p['best_run']}: gap {p['best_gap']:.3e}")
    for title, titles in p["recommendations"].items():
        print(f"  {display_title(title)}: " + "; ".join(display_title(t) for t in titles[:5]) + " ...")
    print(f"wrote {', '.join(path.name for path in paths)} in {wall:.1f} s")
    return 0
