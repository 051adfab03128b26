"""Appendix B's scaling artifact re-derived where it can be: sizes, summary and the smallest floor.

Seconds and memory are measurements of one machine at one time and cannot be re-derived;
everything else can. The synthetic likes are seeded, so each row's size is regenerated
exactly; the summary (slope, goals met) is recomputed from the rows; and the smallest size's
floor is rerun through the same files and code path as the benchmark.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from lib.bench.scale import NAME, ScaleSettings, summary
from lib.core.artifacts import load_json
from lib.core.data import MovieLens
from lib.verify.checks import Check, close, equal, not_here

FLOOR_REL = 1e-6  # the LOBPCG floor stops on a relative change of 1e-7; another BLAS may stop one update apart


def scale_checks(data: MovieLens, quick: bool) -> list[Check]:
    """``quick`` regenerates the two smallest sizes; the full check every size (the largest takes ~10 s)."""
    from lib.movies import likes as mv
    from lib.movies import synthetic
    from lib.movies.config import CONFIG

    doc = load_json(NAME)
    settings = ScaleSettings(**doc["settings"])
    rows = sorted(doc["rows"], key=lambda r: r["n_likes"])
    shape = synthetic.Shape.from_likes(mv.likes_matrix(data.ratings, "threshold", CONFIG.liked_threshold).matrix)
    checks = [close(NAME, "log-log slope from the rows", doc["summary"]["loglog_slope"],
                    summary(rows)["loglog_slope"], rel=1e-12),
              equal(NAME, "goals met, from the rows", sorted(doc["summary"]["met"].items()),
                    sorted(summary(rows)["met"].items()))]
    for row in rows[:2] if quick else rows:
        r = row["requested"]
        likes = synthetic.generate(r["n_users"], r["n_movies"], r["n_likes"], shape, seed=settings.seed)
        made = [int((np.diff(likes.indptr) > 0).sum()), int((likes.getnnz(axis=0) > 0).sum()), int(likes.nnz)]
        checks.append(equal(NAME, f"users, movies, likes at {r['n_likes']:,}",
                            [row["n_users"], row["n_movies"], row["n_likes"]], made))
    checks.append(close(NAME, f"floor at {rows[0]['n_likes']:,} likes", rows[0]["floor_loss"],
                        _smallest_floor(rows[0], shape, settings), rel=FLOOR_REL))
    checks.append(not_here(NAME, "seconds and peak memory", f"{rows[-1]['seconds']:.0f} s at the largest",
                           "timings belong to the machine and moment of the run"))
    return checks


def _smallest_floor(row: dict, shape, settings: ScaleSettings) -> float:
    """The benchmark's floor for one size: synthetic likes -> ratings.csv -> like rule -> LOBPCG."""
    import torch

    from lib.movies import likes as mv
    from lib.movies import synthetic
    from lib.movies.config import CONFIG
    from lib.movies.datasets import read_ratings
    from lib.movies.objective import LikesObjective, floor_lobpcg

    r = row["requested"]
    likes = synthetic.generate(r["n_users"], r["n_movies"], r["n_likes"], shape, seed=settings.seed)
    previous = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        with tempfile.TemporaryDirectory(prefix="verify-scale-") as tmp, threadpool_limits(settings.threads):
            synthetic.write_ratings(likes, Path(tmp), seed=settings.seed)
            matrix = mv.likes_matrix(read_ratings(Path(tmp) / "ratings.csv"), "threshold",
                                     CONFIG.liked_threshold).matrix
            return floor_lobpcg(LikesObjective(matrix), settings.dim, settings.floor_tol, seed=settings.seed).loss
    finally:
        torch.set_num_threads(previous)
