"""Chapter 3 at scale and its baselines: synthetic likes, --dataset, the block floor, EASE/ALS/cosine,
the scale artifact's schema."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lib.core.errors import ConfigError, DataVerificationError
from lib.movies import baselines as bl
from lib.movies import datasets as ds
from lib.movies import likes as mv
from lib.movies import synthetic as sy
from lib.movies.objective import LikesObjective, cooccurrence_sq_norm, floor, floor_lobpcg


def gini(values: np.ndarray) -> float:
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * x.sum()))


def top_share(values: np.ndarray, q: float = 0.01) -> float:
    x = np.sort(values)[::-1]
    return float(x[:max(1, int(q * x.size))].sum() / x.sum())


@pytest.fixture(scope="module")
def small_likes(data_dirs) -> sp.csr_matrix:
    from lib.core.data import load_movielens

    return mv.likes_matrix(load_movielens(data_dirs).ratings, "threshold", 4.0).matrix


def test_generator_is_seeded_exact_in_size_and_binary():
    shape = sy.Shape(np.linspace(0.2, 3.0, 50) / np.linspace(0.2, 3.0, 50).mean(),
                     np.linspace(0.1, 5.0, 80) / np.linspace(0.1, 5.0, 80).mean())
    a = sy.generate(300, 500, 6000, shape, seed=3)
    b = sy.generate(300, 500, 6000, shape, seed=3)
    c = sy.generate(300, 500, 6000, shape, seed=4)
    assert a.shape == (300, 500) and a.nnz == 6000 and set(np.unique(a.data)) == {1.0}
    assert (a != b).nnz == 0 and (a != c).nnz > 0
    assert np.diff(a.indptr).min() >= 1 and np.bincount(a.indices, minlength=500).min() >= 1
    with pytest.raises(ConfigError):
        sy.generate(10, 10, 60, shape)  # more than a quarter full: refused before any work


def test_generator_matches_ml_latest_small_shape_at_ten_times_its_size(small_likes):
    shape = sy.Shape.from_likes(small_likes)
    users, movies = np.diff(small_likes.indptr), np.bincount(small_likes.indices)
    big = sy.generate(6090, 30000, 10 * small_likes.nnz, shape, seed=0)
    g_users, g_movies = np.diff(big.indptr), np.bincount(big.indices, minlength=30000)
    assert abs(gini(g_users) - gini(users)) < 0.03 and abs(gini(g_movies) - gini(movies)) < 0.03
    assert abs(top_share(g_users) / top_share(users) - 1) < 0.15
    assert abs(top_share(g_movies) / top_share(movies) - 1) < 0.15
    # and a flat generator would fail the same checks
    assert gini(np.full(100, 5.0)) < 0.01


def test_blockwise_norm_equals_dense_norm():
    L = sp.random(60, 40, density=0.2, random_state=1, format="csr")
    L.data[:] = 1.0
    X = (L.T @ L).toarray()
    assert cooccurrence_sq_norm(L, block_nnz=50) == pytest.approx(np.square(X).sum(), rel=1e-14)
    assert LikesObjective(L).offdiag_sq_norm == pytest.approx(np.square(X).sum() - np.square(np.diag(X)).sum())


def test_lobpcg_floor_finds_arpacks_floor(small_likes):
    objective = LikesObjective(small_likes)
    reference = floor(objective, 16)
    fast = floor_lobpcg(objective, 16, tol=1e-13)
    assert fast.converged
    assert fast.loss == pytest.approx(reference.loss, rel=1e-8)
    assert fast.losses[-1] == pytest.approx(fast.loss, rel=1e-10)  # the cheap running loss is the exact one


def test_floor_remaining_is_the_geometric_tail():
    from lib.movies.objective import Floor

    losses = 1.0 + 0.5 ** np.arange(10)  # changes halve: what is left equals the last change
    found = Floor(np.zeros((1, 1)), losses[-1], 10, losses, 0.0, 0.0, True)
    assert found.remaining() == pytest.approx(0.5 ** 9 / losses[-1])
    assert np.isnan(Floor(np.zeros((1, 1)), 1.0, 3, np.array([2.0, 1.0, 1.5]), 0.0, 0.0, True).remaining())


@pytest.mark.parametrize("bad", ["ml-100", "ml-32M", "/nonexistent/ratings.csv", "."])
def test_dataset_option_rejects_bad_values_before_work(bad):
    with pytest.raises(ConfigError):
        ds.parse_dataset(bad)


def test_dataset_path_and_mirrored_release_zip(tmp_path):
    likes = sy.generate(40, 30, 200, sy.Shape(np.ones(3), np.ones(3)), seed=0)
    sy.write_ratings(likes, tmp_path / "set", seed=0)
    dataset = ds.parse_dataset(str(tmp_path / "set" / "ratings.csv"))
    ratings, movies, source = ds.load(dataset, data_dir=tmp_path / "data")
    assert len(ratings) == 200 and set(movies.columns) >= {"movieId", "title"} and "path" in source
    assert mv.likes_matrix(ratings, "threshold", 4.0).n_likes == 200
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "ml-25m.zip", "w") as handle:
        handle.write(tmp_path / "set" / "ratings.csv", "ml-25m/ratings.csv")
    (mirror / "ml-25m.zip.md5").write_text("0" * 32 + "  ml-25m.zip\n")
    with pytest.raises(DataVerificationError):
        ds.load(ds.parse_dataset("ml-25m"), data_dir=tmp_path / "data", mirror=mirror)
    from lib.core.fetch import file_digest

    (mirror / "ml-25m.zip.md5").write_text(file_digest(mirror / "ml-25m.zip", "md5") + "  ml-25m.zip\n")
    ratings, _, source = ds.load(ds.parse_dataset("ml-25m"), data_dir=tmp_path / "data", mirror=mirror)
    assert len(ratings) == 200 and "ml-25m" in source


def test_movies_cli_rejects_a_bad_dataset_before_loading(capsys):
    from lib.cli import main

    assert main(["movies", "--dataset", "ml-99m", "--allow-dirty"]) != 0
    assert "ml-99m" in capsys.readouterr().err


# --- baselines on a tiny example ---------------------------------------------------------------
TINY = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=float))


def test_cosine_similarity_by_hand():
    S = bl.cosine_similarity(TINY)
    # movies 0 and 1: liked together by 2 users, 2 and 3 likes: 2 / sqrt(6)
    assert S[0, 1] == pytest.approx(2 / np.sqrt(6)) and S[0, 3] == 0 and np.all(np.diag(S) == 0)
    assert S[2, 3] == pytest.approx(1 / np.sqrt(3))
    assert bl.cosine_similarity(TINY, shrink=1.0)[0, 1] == pytest.approx(2 / (np.sqrt(6) + 1))
    assert np.all(bl.cosine_similarity(TINY, min_support=2)[:, 3] == 0)  # movie 3 has one like
    with_unliked = sp.hstack([TINY, sp.csr_matrix((4, 1))]).tocsr()
    S = bl.cosine_similarity(with_unliked)
    assert np.all(np.isfinite(S)) and np.all(S[:, 4] == 0) and np.all(S[4] == 0)


def test_ease_matches_its_closed_form_and_least_squares_optimality():
    lam = 0.5
    B = bl.ease_weights(TINY, lam)
    G = (TINY.T @ TINY).toarray()
    assert np.allclose(np.diag(B), 0)
    # the constrained least-squares solution: for each column j, minimise ||L_j - L B_j||^2 + lam ||B_j||^2
    # with B_jj = 0; solve it directly on the other columns
    for j in range(4):
        rest = [i for i in range(4) if i != j]
        direct = np.linalg.solve(G[np.ix_(rest, rest)] + lam * np.eye(3), G[rest, j])
        assert np.allclose(B[rest, j], direct)


def test_als_and_normalised_columns():
    users, items = bl.als_factors(sp.csr_matrix(np.kron(np.eye(2), np.ones((5, 5)))), 4, 0.01, 10.0)
    scores = users @ items.T
    assert scores[0, :5].mean() > scores[0, 5:].mean() + 0.5  # each block prefers its own movies
    Ln = bl.column_normalised(TINY)
    X = (Ln.T @ Ln).toarray()
    assert Ln.has_sorted_indices and LikesObjective(Ln).n == 4  # torch's CSR accepts it
    assert np.allclose(np.diag(X), 1.0) and X[0, 1] == pytest.approx(2 / np.sqrt(6))


def test_neighbour_popularity_counts_rare_neighbours():
    S = np.array([[0, 0.9, 0.1], [0.9, 0, 0.2], [0.1, 0.2, 0]])
    out = bl.neighbour_popularity(S, np.array([1, 50, 100]), k=1, rare=2)
    assert out["share_rare"] == pytest.approx(1 / 3)  # only movie 1 has a rare neighbour (movie 0, 1 like)


# --- the scale artifact --------------------------------------------------------------------------
def test_scale_command_writes_a_valid_artifact(tmp_path, mirror):
    from lib.cli import main

    assert main(["bench-scale", "--sizes", "2", "--largest", "0.004", "--dim", "8", "--threads", "1",
                 "--results-dir", str(tmp_path), "--mirror", str(mirror), "--allow-dirty"]) == 0
    doc = json.loads((tmp_path / "movies_scale.json").read_text())
    assert len(doc["rows"]) == 2 and doc["provenance"]["git"]["commit"]
    for row in doc["rows"]:
        assert {"n_users", "n_movies", "n_likes", "dim", "seconds", "parts", "peak_rss_bytes"} <= set(row)
        assert set(row["parts"]) == {"load", "objective", "floor", "optimiser"}
        assert row["reached_target"] and row["final_gap"] <= 0.005 and row["peak_rss_bytes"] > 2**20
        assert row["seconds"] >= sum(row["parts"].values()) - 0.01
    assert doc["rows"][1]["n_likes"] > doc["rows"][0]["n_likes"]


def test_large_path_reaches_the_target_and_keeps_titles(tmp_path):
    """``python -m lib movies --dataset`` above 20,000 movies: floor, L-BFGS, lists (here on a small set)."""
    from lib.movies.config import CONFIG
    from lib.movies.large import compute_large

    likes = sy.generate(300, 200, 3000, sy.Shape(np.linspace(0.2, 1.8, 9), np.linspace(0.1, 1.9, 9)), seed=0)
    sy.write_ratings(likes, tmp_path / "set", seed=0)
    ratings, movies, _ = ds.load(ds.parse_dataset(str(tmp_path / "set" / "ratings.csv")), data_dir=tmp_path / "d")
    movies.loc[movies.index[0], "title"] = "Toy Story (1995)"
    out = compute_large(mv.likes_matrix(ratings, "threshold", CONFIG.liked_threshold), movies, CONFIG, dim=4,
                        progress=False)
    p = out["payload"]
    assert p["n_likes"] == 3000 and p["floor"]["converged"] and not p["diverged"]
    assert -1e-6 <= p["best_gap"] <= CONFIG.target_gap  # L-BFGS may pass the floor by its stopping tolerance
    assert list(p["recommendations"]) == ["Toy Story (1995)"] and len(p["recommendations"]["Toy Story (1995)"]) == 10
    assert "Toy Story (1995)" not in p["recommendations"]["Toy Story (1995)"]
    assert out["embeddings"].shape == (p["n_movies"], 4)
