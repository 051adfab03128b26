"""``python -m lib movie-baselines``: chapter 3's hit-rate@10 beside the recommenders practitioners use.

Same likes, same hold-out (``CONFIG.seed``), same scoring rule as ``python -m lib movies``:
every method is fitted on the training likes, its one hyperparameter choice is made on the
validation likes, and it is scored once on the test likes. Each method is compared with the
chapter's method (cosine of the floor embeddings at the chapter's d) by McNemar's test on the
same users. Writes ``results/movies_baselines.json``; ``results/movies.json`` is only read
(for d and as a check that the chapter's row is reproduced exactly).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from lib.core import artifacts
from lib.core.errors import ReportError
from lib.core.provenance import collect
from lib.core.stats import binomial_se, mcnemar
from lib.movies import baselines as bl
from lib.movies import evaluation as ev
from lib.movies import likes as mv
from lib.movies.config import CONFIG
from lib.movies.objective import LikesObjective, floor
from lib.movies.recommend import normalise_rows

NAME = "movies_baselines"
CHAPTER_METHOD = "embeddings, cosine (floor)"
GRIDS = {"ease_lambda": CONFIG.baseline_ease_lambda, "als": CONFIG.baseline_als,  # the artifact's names
         "shrink": CONFIG.baseline_shrink, "min_support": CONFIG.baseline_min_support}


def _hits(split: ev.Holdout, score, which: str, k: int) -> np.ndarray:
    """Hit vector of ``score`` (users -> scores) on the split's validation or test users."""
    users, items = getattr(split, f"{which}_users"), getattr(split, f"{which}_items")
    return ev.hits(score(users), split.train, users, items, k)


def _choose(split: ev.Holdout, candidates: dict, k: int) -> tuple[object, dict]:
    """The candidate (key -> score function) with the highest validation hit-rate; first on ties."""
    rates = {key: float(_hits(split, score, "validation", k).mean()) for key, score in candidates.items()}
    return max(rates, key=lambda key: (rates[key], -list(rates).index(key))), rates


def _methods(split: ev.Holdout, dim: int, k: int) -> tuple[dict, dict]:
    """Score functions of every method (hyperparameters chosen on validation) and the choices."""
    train = split.train
    W, Wn = (floor(LikesObjective(L), dim, CONFIG.floor_tol, CONFIG.floor_max_iter).V
             for L in (train, bl.column_normalised(train)))
    V, Vn = normalise_rows(W), normalise_rows(Wn)
    cosine = bl.cosine_similarity(train)
    builders = {"shrink": lambda b: bl.cosine_similarity(train, shrink=b),
                "min_support": lambda s: bl.cosine_similarity(train, min_support=s),
                "ease_lambda": lambda lam: bl.ease_weights(train, lam)}
    chosen, choices = {}, {}
    for name, build in builders.items():
        candidates = {x: (lambda u, x=x, build=build: bl.item_scores(train, u, build(x))) for x in GRIDS[name]}
        best, rates = _choose(split, candidates, k)
        chosen[name], choices[name] = build(best), {"chosen": best, "validation": rates}
    als = {p: bl.als_factors(train, *p, seed=CONFIG.seed) for p in GRIDS["als"]}
    als_best, als_rates = _choose(split, {p: (lambda u, p=p: als[p][0][u] @ als[p][1].T) for p in als}, k)
    choices["als"] = {"chosen": dict(zip(("factors", "regularization", "alpha"), als_best)),
                      "validation": {str(p): r for p, r in als_rates.items()}}
    (S_shrink, S_support, B), (U, I) = chosen.values(), als[als_best]
    shrink, support, lam = (choices[name]["chosen"] for name in builders)
    methods = {
        "most popular": (lambda u: ev.popularity_scores(train, u), None),
        "co-occurrence counts": (lambda u: ev.cooccurrence_scores(train, u), None),
        "item-item cosine (raw counts)": (lambda u: bl.item_scores(train, u, cosine), cosine),
        f"item-item cosine, shrunk (beta = {shrink:g})": (lambda u: bl.item_scores(train, u, S_shrink), S_shrink),
        f"item-item cosine, >= {support} likes": (lambda u: bl.item_scores(train, u, S_support), S_support),
        "embeddings, dot product (floor)": (lambda u: np.asarray(train[u] @ W) @ W.T, W @ W.T),
        CHAPTER_METHOD: (lambda u: np.asarray(train[u] @ V) @ V.T, V @ V.T),
        "embeddings of the normalised co-occurrence, cosine (floor)": (
            lambda u: np.asarray(train[u] @ Vn) @ Vn.T, Vn @ Vn.T),
        f"EASE (lambda = {lam:g})": (lambda u: bl.item_scores(train, u, B), B),
        f"ALS, implicit (factors {als_best[0]}, reg {als_best[1]:g}, alpha {als_best[2]:g})": (
            lambda u: U[u] @ I.T, None),
    }
    return methods, choices


def compute(ratings, dim: int, k: int = CONFIG.top_k) -> dict:
    likes = mv.likes_matrix(ratings, "threshold", CONFIG.liked_threshold)
    split = ev.holdout(likes.matrix, CONFIG.holdout_per_user, CONFIG.seed)
    methods, choices = _methods(split, dim, k)
    counts = np.asarray(split.train.sum(axis=0)).ravel()
    reference = _hits(split, methods[CHAPTER_METHOD][0], "test", k)
    n = len(split.test_users)
    rows = []
    for name, (score, similarity) in methods.items():
        test = _hits(split, score, "test", k)
        rate = float(test.mean())
        row = {"method": name, "hit_rate": rate, "standard_error": binomial_se(rate, n),
               "validation_hit_rate": float(_hits(split, score, "validation", k).mean())}
        if name != CHAPTER_METHOD:
            row["vs_chapter"] = mcnemar(test, reference).as_dict()  # a_only: this method only
        if similarity is not None:
            row["neighbours"] = bl.neighbour_popularity(similarity, counts, k)
        rows.append(row)
    return {"k": k, "n_users": n, "dim": dim, "seed": CONFIG.seed, "chapter_method": CHAPTER_METHOD,
            "train_likes": int(split.train.nnz), "catalog_median_likes": float(np.median(counts)),
            "methods": rows, "choices": choices, "grids": {k_: list(v) for k_, v in GRIDS.items()}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")


def run(args: argparse.Namespace) -> int:
    from lib.core.data import DataDirs, load_movielens

    start = time.perf_counter()
    results_dir = Path(args.results_dir) if args.results_dir else None
    chapter = artifacts.load_json("movies", results_dir)  # the chapter run beside this one
    data = load_movielens(DataDirs.resolve(args.data_dir, args.mirror))
    with threadpool_limits(CONFIG.threads):
        payload = compute(data.ratings, int(chapter["dim"]))
    ours = next(r for r in payload["methods"] if r["method"] == CHAPTER_METHOD)["hit_rate"]
    expected = next(r for r in chapter["evaluation"]["methods"] if r["method"] == CHAPTER_METHOD)["hit_rate"]
    if abs(ours - expected) > 1e-12:
        raise ReportError(f"the chapter's row is not reproduced: {ours} here, {expected} in movies.json")
    config = {"grids": payload["grids"], "movies_config": asdict(CONFIG)}
    provenance = collect(seed=CONFIG.seed, wall_time_s=time.perf_counter() - start, config=config, weights=None)
    path = artifacts.save_json(NAME, payload, provenance, results_dir)
    for row in payload["methods"]:
        print(f"  {row['method']:<70} {row['hit_rate']:.3f} ± {row['standard_error']:.3f}")
    print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0
