"""Seeded synthetic likes with a MovieLens set's shape, at any size (appendix B's scaling runs).

The large MovieLens sets cannot be downloaded here, so the scaling benchmark runs on likes
drawn to look like ml-latest-small's: every user's and every movie's number of likes is
drawn from ml-latest-small's distribution of likes per user (per movie) *relative to its
mean*, scaled to the requested mean, and the likes are wired by a bipartite configuration
model (shuffled movie "stubs" dealt to user stubs, duplicates removed by random swaps).
Both degree sequences are kept exactly, so the heavy tails -- a few users with hundreds of
likes, a few movies liked by a large share of users -- survive any scaling. What is not kept:
correlations beyond the degrees (taste), which the timing does not depend on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lib.core.errors import ConfigError


@dataclass(frozen=True)
class Shape:
    """Sorted likes per user and per movie of a reference set, each divided by its mean."""

    per_user: np.ndarray
    per_movie: np.ndarray

    @classmethod
    def from_likes(cls, likes: sp.spmatrix) -> "Shape":
        likes = sp.csr_matrix(likes)
        users = np.diff(likes.indptr).astype(np.float64)
        movies = np.bincount(likes.indices, minlength=likes.shape[1]).astype(np.float64)
        users, movies = users[users > 0], movies[movies > 0]
        return cls(np.sort(users / users.mean()), np.sort(movies / movies.mean()))


def _degrees(shape: np.ndarray, n: int, total: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` integer degrees in [1, cap] summing to ``total``, drawn from ``shape``'s quantile function."""
    grid = np.linspace(0.0, 1.0, shape.size)
    raw = np.interp(rng.random(n), grid, shape) * (total / n)
    degrees = np.floor(raw + rng.random(n)).astype(np.int64)  # stochastic rounding keeps the mean
    degrees = np.clip(degrees, 1, cap)
    for _ in range(1000):  # add or remove single likes, in proportion to degree, until the sum is exact
        missing = total - int(degrees.sum())
        if missing == 0:
            return degrees
        room = (degrees < cap) if missing > 0 else (degrees > 1)
        weights = degrees * room
        picks = rng.choice(n, size=min(abs(missing), int(room.sum())), replace=False,
                           p=weights / weights.sum())
        degrees[picks] += 1 if missing > 0 else -1
    raise ConfigError(f"cannot spread {total} likes over {n} rows with at most {cap} each")


def generate(n_users: int, n_movies: int, n_likes: int, shape: Shape, seed: int = 0,
             max_rounds: int = 200) -> sp.csr_matrix:
    """Binary users x movies likes with exactly the drawn degrees (duplicates swapped away).

    Raises ``ConfigError`` for impossible sizes before any work.
    """
    if min(n_users, n_movies) < 2 or n_likes < max(n_users, n_movies):
        raise ConfigError("need >= 2 users and movies and at least one like per user and per movie")
    if n_likes > 0.25 * n_users * n_movies:
        raise ConfigError(f"{n_likes} likes fill more than a quarter of {n_users} x {n_movies}: not sparse")
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), _degrees(shape.per_user, n_users, n_likes, n_movies // 2, rng))
    movies = np.repeat(np.arange(n_movies), _degrees(shape.per_movie, n_movies, n_likes, n_users // 2, rng))
    movies = rng.permutation(movies)
    for _ in range(max_rounds):
        key = users * np.int64(n_movies) + movies
        _, first = np.unique(key, return_index=True)
        duplicate = np.ones(key.size, dtype=bool)
        duplicate[first] = False
        bad = np.flatnonzero(duplicate)
        if bad.size == 0:
            break
        # swap each duplicate's movie with a random other like's (distinct partners keep every degree)
        partners, first_pick = np.unique(rng.integers(0, key.size, size=bad.size), return_index=True)
        keep = ~duplicate[partners]
        partners, bad = partners[keep], bad[first_pick[keep]]
        movies[bad], movies[partners] = movies[partners], movies[bad]
    else:
        raise ConfigError(f"duplicates remain after {max_rounds} rounds of swaps")
    matrix = sp.csr_matrix((np.ones(users.size), (users, movies)), shape=(n_users, n_movies))
    matrix.sort_indices()
    return matrix


def write_ratings(likes: sp.csr_matrix, folder: Path, seed: int = 0) -> Path:
    """``ratings.csv`` in MovieLens format (every row a like: rating 4.0, 4.5 or 5.0) and a
    ``movies.csv`` with placeholder titles, so ``--dataset PATH`` loads it like a real set."""
    rng = np.random.default_rng(seed)
    coo = likes.tocoo()
    folder.mkdir(parents=True, exist_ok=True)
    ratings = pd.DataFrame({"userId": coo.row + 1, "movieId": coo.col + 1,
                            "rating": rng.choice([4.0, 4.5, 5.0], size=coo.nnz),
                            "timestamp": rng.integers(8e8, 1.7e9, size=coo.nnz)})
    path = folder / "ratings.csv"
    ratings.to_csv(path, index=False)
    ids = np.arange(1, likes.shape[1] + 1)
    pd.DataFrame({"movieId": ids, "title": [f"Movie {i} (2000)" for i in ids],
                  "genres": "(no genres listed)"}).to_csv(folder / "movies.csv", index=False)
    return path
