"""MovieLens likes: the binary user x movie matrix, its co-occurrence X = LᵀL, titles.

A *like* is a rating at or above a threshold (or, as the alternative studied in
chapter 3, at or above the user's own mean rating). Only movies with at least
one like are kept: a movie nobody liked has an all-zero row and column in X, so
the cost says nothing about its embedding beyond "orthogonal to everything".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lib.core.errors import ConfigError
from lib.movies.titles import split_title

LIKE_RULES = ("threshold", "user_mean")


@dataclass(frozen=True)
class Likes:
    """``matrix[u, m] = 1`` when user ``user_ids[u]`` liked movie ``movie_ids[m]``."""

    matrix: sp.csr_matrix  # float64, users x movies, binary
    user_ids: np.ndarray
    movie_ids: np.ndarray
    rule: str
    threshold: float | None

    @property
    def n_users(self) -> int:
        return self.matrix.shape[0]

    @property
    def n_movies(self) -> int:
        return self.matrix.shape[1]

    @property
    def n_likes(self) -> int:
        return int(self.matrix.nnz)

    def movie_counts(self) -> np.ndarray:
        """Likes per movie (the diagonal of X)."""
        return np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)


def liked_mask(ratings: pd.DataFrame, rule: str = "threshold", threshold: float | None = None) -> pd.Series:
    """Which ratings count as likes under ``rule``."""
    if rule == "threshold":
        if threshold is None:
            raise ConfigError("the 'threshold' like rule needs a threshold")
        return ratings["rating"] >= threshold
    if rule == "user_mean":
        return ratings["rating"] >= ratings.groupby("userId")["rating"].transform("mean")
    raise ConfigError(f"unknown like rule {rule!r}; use one of {LIKE_RULES}")


def likes_matrix(ratings: pd.DataFrame, rule: str = "threshold", threshold: float | None = None,
                 movie_ids: np.ndarray | None = None) -> Likes:
    """Binary sparse user x movie likes matrix.

    Columns are the movies with at least one like (sorted by id), unless
    ``movie_ids`` fixes them; rows are the users with at least one like.
    """
    liked = ratings.loc[liked_mask(ratings, rule, threshold), ["userId", "movieId"]]
    users, user_index = np.unique(liked["userId"].to_numpy(), return_inverse=True)
    if movie_ids is None:
        movies, movie_index = np.unique(liked["movieId"].to_numpy(), return_inverse=True)
    else:
        movies = np.asarray(movie_ids)
        position = pd.Index(movies).get_indexer(liked["movieId"].to_numpy())
        keep = position >= 0
        movie_index, user_index = position[keep], user_index[keep]
    matrix = sp.csr_matrix((np.ones(len(movie_index)), (user_index, movie_index)),
                           shape=(len(users), len(movies)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return Likes(matrix, users, movies, rule, threshold if rule == "threshold" else None)


def cooccurrence(likes: Likes | sp.spmatrix) -> np.ndarray:
    """Dense ``X = LᵀL`` (float64): ``X[i, j]`` users who liked both; ``X[i, i]`` likes of i."""
    matrix = likes.matrix if isinstance(likes, Likes) else sp.csr_matrix(likes)
    return np.asarray((matrix.T @ matrix).toarray(), dtype=np.float64)


# --- titles --------------------------------------------------------------------
def catalog(movies: pd.DataFrame, movie_ids: np.ndarray, like_counts: np.ndarray) -> pd.DataFrame:
    """Title, name, year, genres and likes of ``movie_ids``, in that order (one row per embedding)."""
    table = movies.set_index("movieId").loc[np.asarray(movie_ids)].reset_index()
    parts = table["title"].map(split_title)
    return pd.DataFrame({
        "movieId": table["movieId"].astype(np.int64),
        "title": table["title"].str.strip(),
        "name": parts.map(lambda p: p[0]),
        "year": pd.array(parts.map(lambda p: p[1]).tolist(), dtype="Int64"),
        "genres": table["genres"].str.replace("|", ", ", regex=False),
        "likes": np.asarray(like_counts, dtype=np.int64),
    })


# --- summary statistics --------------------------------------------------------
def likes_summary(ratings: pd.DataFrame, likes: Likes) -> dict:
    """Counts that describe one definition of 'liked'."""
    per_user = np.asarray(likes.matrix.sum(axis=1)).ravel()
    per_movie = likes.movie_counts()
    return {
        "rule": likes.rule,
        "threshold": likes.threshold,
        "n_ratings": int(len(ratings)),
        "n_likes": likes.n_likes,
        "like_fraction": likes.n_likes / len(ratings),
        "n_users": likes.n_users,
        "n_users_rated": int(ratings["userId"].nunique()),
        "n_movies": likes.n_movies,
        "n_movies_rated": int(ratings["movieId"].nunique()),
        "density": likes.n_likes / (likes.n_users * likes.n_movies),
        "likes_per_user_median": float(np.median(per_user)),
        "likes_per_movie_median": float(np.median(per_movie)),
        "movies_with_one_like": int((per_movie == 1).sum()),
        "max_likes_per_movie": int(per_movie.max()),
    }


def cooccurrence_summary(X: np.ndarray, titles: list[str] | pd.Series, top: int = 10) -> dict:
    """Distribution of the off-diagonal entries of X (each pair once) and the top pairs."""
    M = X.shape[0]
    upper = np.triu_indices(M, k=1)
    values = X[upper]
    counts = values.astype(np.int64)
    nonzero = values[values > 0]
    best = np.argpartition(-values, top)[:top]
    best = best[np.argsort(-values[best], kind="stable")]
    titles = list(titles)
    pairs = [{"a": titles[upper[0][k]], "b": titles[upper[1][k]], "count": int(values[k])} for k in best]
    return {
        "n_pairs": int(values.size),
        "nonzero_pairs": int(nonzero.size),
        "nonzero_fraction": nonzero.size / values.size,
        "mean": float(values.mean()),
        "nonzero_median": float(np.median(nonzero)),
        "nonzero_quantiles": {str(q): float(np.quantile(nonzero, q)) for q in (0.5, 0.9, 0.99, 0.999)},
        "max": float(values.max()),
        "offdiag_sq_norm": float(2.0 * np.square(values).sum()),
        "diag_sq_norm": float(np.square(np.diag(X)).sum()),
        "value_counts": np.bincount(counts).tolist(),  # value_counts[v] = pairs liked together by v users
        "top_pairs": pairs,
    }


def ratings_summary(ratings: pd.DataFrame) -> dict:
    """Facts used to justify the like threshold."""
    user_means = ratings.groupby("userId")["rating"].mean()
    shares = ratings["rating"].value_counts(normalize=True).sort_index()
    return {
        "mean_rating": float(ratings["rating"].mean()),
        "median_rating": float(ratings["rating"].median()),
        "rating_shares": {f"{k:g}": float(v) for k, v in shares.items()},
        "user_mean_median": float(user_means.median()),
        "user_mean_min": float(user_means.min()),
        "user_mean_max": float(user_means.max()),
        "users_mean_below_3": int((user_means < 3.0).sum()),
        "users_mean_at_least_4": int((user_means >= 4.0).sum()),
        "n_users": int(user_means.size),
    }
