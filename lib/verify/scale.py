"""Appendix B's scaling artifact re-derived where it can be: the seeded synthetic sizes exactly, the
summary (slope, goals met) from the rows, the smallest size's floor through the benchmark's own path.
Seconds and memory belong to one machine at one time and cannot be re-derived.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from lib.bench.scale import NAME, ScaleSettings, measure, summary
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
    recomputed = summary(rows)
    checks = [close(NAME, "log-log slope from the rows", doc["summary"]["loglog_slope"],
                    recomputed["loglog_slope"], rel=1e-12),
              equal(NAME, "goals met, from the rows", sorted(doc["summary"]["met"].items()),
                    sorted(recomputed["met"].items()))]
    generated = {}
    for row in rows[:2] if quick else rows:
        r = row["requested"]
        likes = generated[r["n_likes"]] = synthetic.generate(r["n_users"], r["n_movies"], r["n_likes"], shape,
                                                             seed=settings.seed)
        made = [int((np.diff(likes.indptr) > 0).sum()), int((likes.getnnz(axis=0) > 0).sum()), int(likes.nnz)]
        checks.append(equal(NAME, f"users, movies, likes at {r['n_likes']:,}",
                            [row["n_users"], row["n_movies"], row["n_likes"]], made))
    smallest = rows[0]
    checks.append(close(NAME, f"floor at {smallest['n_likes']:,} likes", smallest["floor_loss"],
                        _benchmark_floor(generated[smallest["requested"]["n_likes"]], settings), rel=FLOOR_REL))
    checks.append(not_here(NAME, "seconds and peak memory", f"{rows[-1]['seconds']:.0f} s at the largest",
                           "timings belong to the machine and moment of the run"))
    return checks


def _benchmark_floor(likes, settings: ScaleSettings) -> float:
    """The benchmark's own path for one size (ratings.csv -> like rule -> floor -> L-BFGS), in process."""
    from lib.movies import synthetic

    with tempfile.TemporaryDirectory(prefix="verify-scale-") as tmp:
        synthetic.write_ratings(likes, Path(tmp), seed=settings.seed)
        return measure(Path(tmp), settings)["floor_loss"]
