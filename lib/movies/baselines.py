"""Recommenders practitioners use, scored like chapter 3's embeddings (user x movie scores).

* item-item cosine on the raw co-occurrence: S_ij = X_ij / sqrt(X_ii X_jj), no embedding;
  optionally shrunk, X_ij / (sqrt(X_ii X_jj) + beta), or restricted to movies with at
  least ``min_support`` likes -- the usual fixes for neighbours that one or two users liked;
* EASE (Steck 2019): the closed-form item-item model B = I - P diag(1/diag P),
  P = (LᵀL + lambda I)^-1, zero diagonal;
* implicit-feedback ALS (Hu, Koren & Volinsky 2008) from the ``implicit`` library;
* the chapter's cost on a *normalised* co-occurrence D^-1/2 X D^-1/2 (D = diag X): the same
  floor code on the likes matrix with column j scaled by 1/sqrt(X_jj), never forming X.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lib.core.errors import ConfigError


def cosine_similarity(train: sp.csr_matrix, shrink: float = 0.0, min_support: int = 1) -> np.ndarray:
    """Dense movie x movie cosine of the like columns (zero diagonal).

    ``shrink`` adds beta to the denominator; movies with fewer than ``min_support`` likes get
    similarity 0 to everything (they are never recommended as neighbours).
    """
    if shrink < 0 or min_support < 1:
        raise ConfigError("shrink must be >= 0 and min_support >= 1")
    X = np.asarray((train.T @ train).toarray(), dtype=np.float64)
    norms = np.sqrt(np.diag(X))
    empty = norms == 0  # a movie without training likes: similarity 0 to everything, as its embedding gets
    S = X / (np.outer(norms, norms) + shrink + (empty[:, None] | empty[None, :]))
    np.fill_diagonal(S, 0.0)
    S[:, np.asarray(train.sum(axis=0)).ravel() < min_support] = 0.0
    return S


def ease_weights(train: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's item-item weights B (dense movies x movies, zero diagonal), L2 penalty ``lam``."""
    if lam <= 0:
        raise ConfigError(f"EASE needs lambda > 0, got {lam}")
    G = np.asarray((train.T @ train).toarray(), dtype=np.float64)
    G[np.diag_indices_from(G)] += lam
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def item_scores(train: sp.csr_matrix, users: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Score of movie j for user u: the sum over u's likes i of weights[i, j]."""
    return np.asarray(train[users] @ weights)


def als_factors(train: sp.csr_matrix, factors: int, regularization: float, alpha: float,
                iterations: int = 15, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """User and movie factors of implicit-feedback ALS (``implicit``, CPU, one thread: deterministic)."""
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=alpha,
                                    iterations=iterations, random_state=seed, num_threads=1,
                                    calculate_training_loss=False)
    model.fit(sp.csr_matrix(train, dtype=np.float32), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


def column_normalised(train: sp.csr_matrix, power: float = 0.5) -> sp.csr_matrix:
    """L with column j divided by X_jj^power: its Gram matrix is D^-p X D^-p (p = 1/2: cosine)."""
    counts = np.asarray(train.sum(axis=0)).ravel()
    scale = np.divide(1.0, counts ** power, out=np.zeros_like(counts, dtype=np.float64), where=counts > 0)
    scaled = sp.csr_matrix(train @ sp.diags(scale))
    scaled.sort_indices()  # the product leaves them unsorted; torch's CSR needs them sorted
    return scaled


def neighbour_popularity(similarity: np.ndarray, counts: np.ndarray, k: int = 10,
                         rare: int = 2) -> dict:
    """How popular each movie's top-k neighbours are: median likes, share liked by <= ``rare`` users."""
    S = np.array(similarity, dtype=np.float64, copy=True)
    np.fill_diagonal(S, -np.inf)
    top = np.argpartition(-S, k, axis=1)[:, :k]
    liked = counts[top]
    return {"median_likes": float(np.median(liked)), "share_rare": float(np.mean(liked <= rare)),
            "rare": rare, "k": k}
