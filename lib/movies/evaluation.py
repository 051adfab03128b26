"""Offline check of recommendation quality: hold out liked movies at random, rebuild X from the
rest, score each user's candidates from their remaining likes (never one they already like), and
count a *hit* when the held-out movie is among the top k."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lib.core.errors import ConfigError
from lib.movies.recommend import similarity_weights


@dataclass(frozen=True)
class Holdout:
    train: sp.csr_matrix            # users x movies likes with the held-out ones removed
    test_users: np.ndarray
    test_items: np.ndarray
    validation_users: np.ndarray
    validation_items: np.ndarray


def holdout(likes: sp.spmatrix, per_user: int = 2, seed: int = 0) -> Holdout:
    """Remove ``per_user`` random likes from every user with more than that many: the first is the
    user's test item, the second (if any) the validation item."""
    if per_user not in (1, 2):
        raise ConfigError("per_user must be 1 (test only) or 2 (test and validation)")
    likes = sp.csr_matrix(likes, dtype=np.float64)
    rng = np.random.default_rng(seed)
    train = likes.tolil(copy=True)
    chosen: list[list[int]] = [[], []]
    users: list[int] = []
    for user in range(likes.shape[0]):
        items = likes.indices[likes.indptr[user]:likes.indptr[user + 1]]
        if items.size <= per_user:
            continue
        picked = rng.choice(items, size=per_user, replace=False)
        users.append(user)
        for slot, item in enumerate(picked):
            chosen[slot].append(int(item))
            train[user, int(item)] = 0
    train = sp.csr_matrix(train)
    train.eliminate_zeros()
    users_arr = np.asarray(users, dtype=np.int64)
    return Holdout(train, users_arr, np.asarray(chosen[0], dtype=np.int64),
                   users_arr[:len(chosen[1])], np.asarray(chosen[1], dtype=np.int64))


def hit_rate(scores: np.ndarray, train: sp.csr_matrix, users: np.ndarray, items: np.ndarray,
             k: int = 10) -> float:
    """Share of ``users`` whose held-out ``items`` rank in the top ``k`` of ``scores[users]``."""
    return float(np.mean(hits(scores, train, users, items, k)))


def hits(scores: np.ndarray, train: sp.csr_matrix, users: np.ndarray, items: np.ndarray,
         k: int = 10) -> np.ndarray:
    """Per user: whether the held-out item ranks in the top ``k`` (paired tests compare these).
    ``scores`` row r is for user ``users[r]``; movies the user likes in ``train`` never rank."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    if scores.shape != (len(users), train.shape[1]):
        raise ConfigError(f"scores must be {(len(users), train.shape[1])}, got {scores.shape}")
    seen = train[users]
    rows = np.repeat(np.arange(len(users)), np.diff(seen.indptr))
    scores[rows, seen.indices] = -np.inf
    scores[~np.isfinite(scores) & (scores != -np.inf)] = -np.inf  # NaN never ranks
    target = scores[np.arange(len(users)), items]
    # rank = number of candidates scored strictly higher; ties broken against the target
    higher = (scores > target[:, None]).sum(axis=1)
    ties = (scores == target[:, None]).sum(axis=1) - 1
    return (higher + ties < k) & np.isfinite(target)


def popularity_scores(train: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """Baseline 1: every user gets the movies with the most likes."""
    counts = np.asarray(train.sum(axis=0)).ravel()
    return np.tile(counts, (len(users), 1))


def cooccurrence_scores(train: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """Baseline 2: sum over the user's likes i of the raw count X_ij (X = LᵀL, train likes)."""
    rows = train[users]
    return np.asarray(((rows @ train.T) @ train).todense())


def embedding_scores(train: sp.csr_matrix, users: np.ndarray, V: np.ndarray,
                     similarity: str = "cosine") -> np.ndarray:
    """Sum over the user's likes i of sim(v_i, v_j), cosine or raw dot product."""
    W = similarity_weights(V, similarity)
    return np.asarray(train[users] @ W) @ W.T


