"""Chapter 3: likes, co-occurrence, the cost, its floor, optimiser runs, titles, recommendations."""
from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from lib.movies import config as mcfg
from lib.movies import objective as obj
from lib.movies import optimise as opt
from lib.movies import pipeline as pipe
from lib.movies import evaluation as ev
from lib.movies import likes as mv
from lib.movies import recommend as rec
from lib.movies.titles import display_title

TITLES = ["Toy Story (1995)", "Toy Story 2 (1999)", "Toy Story 3 (2010)", "Apollo 13 (1995)",
          "Home Alone (1990)", "Home Alone 2: Lost in New York (1992)", "Matrix, The (1999)",
          "Matrix Reloaded, The (2003)", "Hamlet (1990)", "Hamlet (1996)", "Haine, La (Hate) (1995)",
          "Seven (a.k.a. Se7en) (1995)", "Shawshank Redemption, The (1994)", "Babylon 5"]


def synthetic_movielens(n_users: int = 90, n_movies: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ratings with two taste groups, and a catalog holding the titles the tests look up."""
    rng = np.random.default_rng(seed)
    titles = TITLES + [f"Movie {k} ({1950 + k})" for k in range(n_movies - len(TITLES))]
    movies = pd.DataFrame({"movieId": np.arange(1, n_movies + 1) * 10, "title": titles,
                           "genres": ["Comedy|Drama" if k % 2 else "Action" for k in range(n_movies)]})
    taste = rng.normal(size=(n_users, 3))
    items = rng.normal(size=(n_movies, 3))
    rows = []
    for user in range(n_users):
        seen = rng.choice(n_movies, size=rng.integers(6, 20), replace=False)
        affinity = taste[user] @ items[seen].T
        stars = np.clip(np.round((3.2 + affinity) * 2) / 2, 0.5, 5.0)
        rows += [(user + 1, int(movies.movieId[m]), float(s), 0) for m, s in zip(seen, stars)]
    ratings = pd.DataFrame(rows, columns=["userId", "movieId", "rating", "timestamp"])
    return ratings, movies


def brute_force_cost(V: np.ndarray, X: np.ndarray) -> float:
    total = 0.0
    for i, j in itertools.product(range(len(V)), repeat=2):
        if i != j:
            total += (float(V[i] @ V[j]) - X[i, j]) ** 2
    return total


def random_likes(n_users=25, n_movies=12, density=0.35, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_movies)) < density).astype(float)
    dense[0] = 1.0  # every movie liked at least once
    return sp.csr_matrix(dense)


# --- likes and co-occurrence ------------------------------------------------------
def test_likes_matrix_threshold_and_user_mean():
    ratings = pd.DataFrame({"userId": [1, 1, 1, 2, 2], "movieId": [10, 20, 30, 10, 40],
                            "rating": [4.0, 3.5, 5.0, 2.0, 3.0]})
    likes = mv.likes_matrix(ratings, "threshold", 4.0)
    assert likes.movie_ids.tolist() == [10, 30] and likes.user_ids.tolist() == [1]
    assert likes.matrix.toarray().tolist() == [[1.0, 1.0]]
    alt = mv.likes_matrix(ratings, "user_mean")  # user 1 mean 4.17, user 2 mean 2.5
    assert alt.movie_ids.tolist() == [30, 40] and alt.n_likes == 2
    X = mv.cooccurrence(likes)
    assert X.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_split_title_and_catalog():
    assert mv.split_title("Toy Story (1995)") == ("Toy Story", 1995)
    assert mv.split_title("Babylon 5") == ("Babylon 5", None)
    assert mv.split_title("Death Note: Desu nôto (2006–2007)") == ("Death Note: Desu nôto", 2006)
    movies = pd.DataFrame({"movieId": [1, 2], "title": ["A (2000)", "B"], "genres": ["Action|Drama", "Comedy"]})
    table = mv.catalog(movies, np.array([2, 1]), np.array([5, 7]))
    assert table["title"].tolist() == ["B", "A (2000)"] and table["genres"][1] == "Action, Drama"
    assert pd.isna(table["year"][0]) and table["year"][1] == 2000 and table["likes"].tolist() == [5, 7]


# --- the cost ------------------------------------------------------------------------
def test_cost_matches_brute_force_loop_and_gradient_matches_autograd():
    L = random_likes()
    X = (L.T @ L).toarray()
    V = np.random.default_rng(1).normal(size=(X.shape[0], 3))
    expected = brute_force_cost(V, X)
    assert obj.cost(torch.from_numpy(V), torch.from_numpy(X)).item() == pytest.approx(expected, rel=1e-10)
    for objective in (obj.LikesObjective(L), obj.DenseObjective(X)):
        loss, grad = objective.value_and_grad(torch.from_numpy(V))
        assert loss == pytest.approx(expected, rel=1e-10)
        assert objective.value(V) == pytest.approx(expected, rel=1e-10)
        Vt = torch.from_numpy(V).clone().requires_grad_(True)
        obj.cost(Vt, torch.from_numpy(X)).backward()
        assert torch.allclose(grad, Vt.grad, rtol=1e-9, atol=1e-9)
    assert obj.LikesObjective(L).offdiag_sq_norm == pytest.approx(brute_force_cost(0 * V, X))


def test_cost_is_invariant_under_orthogonal_rotation():
    X = (random_likes().T @ random_likes()).toarray()
    X = X + X.T
    V = np.random.default_rng(2).normal(size=(X.shape[0], 4))
    Q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(4, 4)))
    objective = obj.DenseObjective(X)
    assert objective.value(V @ Q) == pytest.approx(objective.value(V), rel=1e-12)
    assert pipe.gram_distance(V @ Q, V) < 1e-6
    assert pipe.gram_distance(V * 1.1, V) == pytest.approx(0.21, rel=1e-9)


def test_floor_is_a_stationary_point_below_every_gradient_descent_run():
    L = random_likes(n_users=40, n_movies=14, seed=4)
    objective = obj.LikesObjective(L)
    for dim in (2, 3):
        reference = obj.floor(objective, dim)
        assert reference.converged
        assert reference.grad_norm < 1e-5 * objective.offdiag_sq_norm
        V0 = opt.initial_embeddings(objective.n, dim, seed=0, std=0.1)
        for spec in (mcfg.RunSpec("adam", 0.05), mcfg.RunSpec("lbfgs", 1.0), mcfg.RunSpec("sgd", 1e-3)):
            run = opt.run_optimizer(objective, spec, V0, 300)
            assert not run.diverged
            assert run.final_loss >= reference.loss * (1 - 1e-9)
        # a random V is worse than the floor too
        assert objective.value(np.random.default_rng(0).normal(size=(objective.n, dim))) > reference.loss


def test_lbfgs_reaches_the_floor_and_stop_at_target_stops_early():
    objective = obj.LikesObjective(random_likes(n_users=40, n_movies=14, seed=5))
    reference = obj.floor(objective, 3)
    V0 = opt.initial_embeddings(objective.n, 3, seed=0, std=0.1)
    run = opt.run_optimizer(objective, mcfg.RunSpec("lbfgs", 1.0), V0, 400, floor_loss=reference.loss)
    assert run.gap(reference.loss) < 1e-6 and run.target_step is not None
    stopped = opt.run_optimizer(objective, mcfg.RunSpec("adam", 0.05), V0, 5000, floor_loss=reference.loss,
                               stop_at_target=True, config=replace(mcfg.CONFIG, target_gap=0.005, stall_steps=0))
    assert stopped.target_step is not None and stopped.steps == stopped.target_step
    assert stopped.gap(reference.loss) <= 0.005
    assert stopped.steps < 5000 and len(stopped.losses) == stopped.steps + 1


def test_divergence_is_reported_not_raised():
    objective = obj.LikesObjective(random_likes())
    V0 = opt.initial_embeddings(objective.n, 3, seed=0, std=1.0)
    run = opt.run_optimizer(objective, mcfg.RunSpec("sgd", 10.0), V0, 200)
    assert run.diverged and "step" in run.divergence
    assert run.steps < 200
    assert not np.isfinite(run.final_loss) or run.final_loss > 1e3 * run.losses[0]


def test_zero_initialisation_is_a_saddle_point():
    objective = obj.LikesObjective(random_likes())
    zeros = opt.initial_embeddings(objective.n, 3, seed=0, std=0.1, init="zeros")
    run = opt.run_optimizer(objective, mcfg.RunSpec("adam", 0.1), zeros, 100)
    assert not run.diverged
    assert run.final_loss == pytest.approx(objective.offdiag_sq_norm)
    assert np.all(run.V == 0)


def test_unknown_optimizer_is_a_config_error():
    from lib.core.errors import ConfigError

    objective = obj.LikesObjective(random_likes())
    with pytest.raises(ConfigError):
        opt.run_optimizer(objective, mcfg.RunSpec("newton", 1.0), opt.initial_embeddings(objective.n, 2, 0, 0.1), 5)


# --- titles and recommendations -------------------------------------------------------------
@pytest.fixture(scope="module")
def index() -> rec.TitleIndex:
    return rec.TitleIndex(TITLES)


@pytest.mark.parametrize("query, expected", [
    ("Toy Story", "Toy Story (1995)"), ("toy story", "Toy Story (1995)"),
    ("Toy Story 2", "Toy Story 2 (1999)"), ("matrix", "Matrix, The (1999)"),
    ("The Matrix", "Matrix, The (1999)"), ("Matrix, The", "Matrix, The (1999)"),
    ("  MATRIX, the (1999) ", "Matrix, The (1999)"), ("Home Alone", "Home Alone (1990)"),
    ("Apollo 13", "Apollo 13 (1995)"), ("Hamlet (1996)", "Hamlet (1996)"), ("Se7en", "Seven (a.k.a. Se7en) (1995)"),
    ("La Haine", "Haine, La (Hate) (1995)"), ("Shawshank", "Shawshank Redemption, The (1994)"),
    ("Babylon 5", "Babylon 5"),
])
def test_title_resolution(index, query, expected):
    assert index.titles[index.resolve(query)] == expected


def test_ambiguous_title_lists_candidates(index):
    with pytest.raises(rec.TitleError) as info:
        index.resolve("Hamlet")
    assert set(info.value.candidates) == {"Hamlet (1990)", "Hamlet (1996)"}
    assert "Hamlet (1990)" in str(info.value) and "ambiguous" in str(info.value)


def test_unknown_title_lists_closest_matches(index):
    with pytest.raises(rec.TitleError) as info:
        index.resolve("Toy Stroy")
    assert "Toy Story (1995)" in info.value.candidates and "Toy Story (1995)" in str(info.value)
    with pytest.raises(rec.TitleError):
        index.resolve("Completely Unheard Of")


def test_suggestions_are_near_misses_in_display_form(index):
    noisy = rec.TitleIndex(TITLES + ["Tokyo Story (1953)", "Tommy Boy (1995)", "Love Story (1970)", "Max (2002)",
                                     "Master, The (2012)", "Metro (1997)"])
    with pytest.raises(rec.TitleError) as info:
        noisy.resolve("Matrx")
    assert info.value.candidates == ["Matrix, The (1999)"]
    assert "The Matrix (1999)" in str(info.value) and "Matrix, The" not in str(info.value)
    assert "Love Story (1970)" not in noisy.closest("Toy Stroy")
    with pytest.raises(rec.TitleError, match="Give the full title with its year, e.g. 'Hamlet"):
        noisy.resolve("Hamlet")


def test_query_is_never_recommended_to_itself():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(30, 4))
    V[7] *= 100  # a long vector: its dot product with itself would win
    for similarity in rec.SIMILARITIES:
        for query in range(30):
            indices, scores = rec.top_k(V, query, 10, similarity)
            assert query not in indices and len(indices) == 10
            assert np.all(np.diff(scores) <= 0)
        every = rec.top_k_all(V, 10, similarity, chunk=7)
        assert not np.any(every == np.arange(30)[:, None])
        assert np.array_equal(every[3], rec.top_k(V, 3, 10, similarity)[0])


def test_cosine_ignores_length_dot_does_not():
    V = np.array([[1.0, 0.0], [0.9, 0.1], [5.0, 5.0], [0.0, 1.0]])
    assert rec.top_k(V, 0, 1, "cosine")[0][0] == 1
    assert rec.top_k(V, 0, 1, "dot")[0][0] == 2
    assert rec.topk_overlap(np.array([[1, 2], [0, 3]]), np.array([[2, 1], [3, 2]])) == 0.75


# --- evaluation --------------------------------------------------------------------------
def test_holdout_and_hit_rate():
    L = random_likes(n_users=30, n_movies=10, seed=6)
    split = ev.holdout(L, 2, seed=0)
    assert split.train.nnz == L.nnz - 2 * len(split.test_users)
    assert np.all(L[split.test_users, split.test_items] == 1)
    assert np.all(split.train[split.test_users, split.test_items] == 0)
    assert np.all(split.test_items != split.validation_items)
    users, items = split.test_users, split.test_items
    perfect = np.zeros((len(users), L.shape[1]))
    perfect[np.arange(len(users)), items] = 1.0
    assert ev.hit_rate(perfect, split.train, users, items, k=1) == 1.0
    assert ev.hit_rate(-perfect, split.train, users, items, k=1) == 0.0
    for scores in (ev.popularity_scores(split.train, users), ev.cooccurrence_scores(split.train, users)):
        assert scores.shape == (len(users), L.shape[1])
        assert 0.0 <= ev.hit_rate(scores, split.train, users, items, k=3) <= 1.0
    X = (split.train.T @ split.train).toarray()
    row = split.train[users[0]].toarray().ravel()
    assert np.allclose(ev.cooccurrence_scores(split.train, users)[0], row @ X)


# --- the pipeline end to end, on synthetic data ----------------------------------------------
def test_pipeline_writes_artifacts_and_recommend_cli_reads_them(tmp_path, capsys):
    ratings, movies = synthetic_movielens()
    config = replace(mcfg.CONFIG, dims=(2, 3, 4), iterations=150,
                     runs=(mcfg.RunSpec("sgd", 1e-3), mcfg.RunSpec("sgd", 10.0), mcfg.RunSpec("adam", 0.05),
                           mcfg.RunSpec("lbfgs", 1.0), mcfg.RunSpec("adam", 0.05, init="zeros")))
    result = pipe.compute(ratings, movies, config, progress=False)
    pipe.write_artifacts(result, config, 1.0, tmp_path)
    payload = json.loads((tmp_path / "movies.json").read_text())
    for key in ("liked_threshold", "n_movies", "dim", "floor_loss", "runs", "recommendations", "provenance"):
        assert key in payload
    runs = {r["name"]: r for r in payload["runs"]}
    assert runs["sgd lr=10"]["diverged"] and not runs["lbfgs lr=1"]["diverged"]
    assert all(r["final_loss"] >= payload["floor_loss"] * (1 - 1e-9) for r in payload["runs"] if not r["diverged"])
    assert set(payload["recommendations"]) == {"Apollo 13 (1995)", "Toy Story (1995)", "Home Alone (1990)"}
    for title, titles in payload["recommendations"].items():
        assert len(titles) == 10 and title not in titles
    overlap = pd.read_csv(tmp_path / pipe.SENSITIVITY_FILE, index_col=0)
    assert overlap.loc[pipe.FLOOR_NAME, pipe.FLOOR_NAME] == 1.0
    assert np.isnan(overlap.loc["sgd lr=10", pipe.FLOOR_NAME])
    assert (tmp_path / pipe.SENSITIVITY_FREQUENT_FILE).is_file() and (tmp_path / pipe.CURVES_FILE).is_file()
    assert runs["lbfgs lr=1"]["gram_distance_to_floor"] < 1e-3
    assert runs[payload["best_run"]]["query_lists"]["Toy Story (1995)"] == payload["recommendations"]["Toy Story (1995)"]
    assert runs["sgd lr=10"]["query_lists"]["Toy Story (1995)"] is None
    assert len(payload["floor_query_lists"]["Apollo 13 (1995)"]) == 10
    curves = np.load(tmp_path / pipe.CURVES_FILE)
    lbfgs = list(curves["names"]).index("lbfgs lr=1")
    evals = curves[f"evals_{lbfgs:02d}"]
    assert len(evals) == len(curves[f"loss_{lbfgs:02d}"]) and evals[0] == 1 and np.all(np.diff(evals) >= 0)
    assert evals[-1] <= runs["lbfgs lr=1"]["evaluations"] and evals[-1] > runs["lbfgs lr=1"]["steps"]
    saved = np.load(tmp_path / pipe.RUN_EMBEDDINGS_FILE)
    assert list(saved["names"][:2]) == [pipe.FLOOR_NAME, "lbfgs lr=1"] and saved["vectors"].dtype == np.float16
    assert "sgd lr=10" not in saved["names"] and saved["vectors"].shape[1:] == (payload["n_movies"], payload["dim"])
    frozen = rec.load_frozen(tmp_path)
    assert len(frozen.catalog) == payload["n_movies"] == frozen.embeddings.shape[0]
    assert frozen.embeddings.shape[1] == payload["dim"]
    args = argparse.Namespace(title=["toy", "story"], k=10, similarity="cosine", results_dir=str(tmp_path))
    assert rec.run(args) == 0
    out = capsys.readouterr().out
    printed = [title for title in payload["recommendations"]["Toy Story (1995)"] if display_title(title) in out]
    assert len(printed) == 10


def test_chosen_runs_go_into_a_scratch_folder(tmp_path, monkeypatch):
    import lib.cli
    import lib.core.data

    ratings, movies = synthetic_movielens()
    monkeypatch.setattr(lib.core.data, "load_movielens",
                        lambda dirs=None: lib.core.data.MovieLens(ratings, movies, tmp_path))
    assert lib.cli.main(["movies", "--runs", "adam:0.05, lbfgs:1,sgd:1e-3:zeros", "--iterations", "40", "--dim", "3",
                         "--results-dir", str(tmp_path), "--no-progress"]) == 0
    payload = json.loads((tmp_path / "movies.json").read_text())
    assert [r["name"] for r in payload["runs"]] == ["adam lr=0.05", "lbfgs lr=1", "sgd lr=0.001 (zeros init)"]
    assert payload["provenance"]["config"]["iterations"] == 40 and payload["dim"] == 3


@pytest.mark.parametrize("argv, message", [
    (["--runs", "adam:0.1"], "give a scratch --results-dir"),
    (["--runs", "adamw:0.1", "--results-dir", "x"], "unknown optimiser 'adamw'"),
    (["--runs", "adam", "--results-dir", "x"], "not OPTIMIZER:LR"),
    (["--runs", "adam:0.1:ones", "--results-dir", "x"], "unknown initialisation 'ones'"),
    (["--iterations", "0", "--results-dir", "x"], "--iterations must be positive"),
])
def test_bad_chosen_runs_are_refused_before_any_work(argv, message):
    from lib.core.errors import ConfigError

    parser = argparse.ArgumentParser()
    pipe.add_arguments(parser)
    with pytest.raises(ConfigError, match=message):
        pipe.chosen_config(parser.parse_args(argv))


# --- the real MovieLens data ----------------------------------------------------------------
@pytest.fixture(scope="module")
def movielens(data_dirs):
    from lib.core.data import load_movielens

    return load_movielens(data_dirs)


def test_real_likes_and_cooccurrence(movielens):
    ratings = movielens.ratings
    likes = mv.likes_matrix(ratings, "threshold", mcfg.CONFIG.liked_threshold)
    liked = ratings[ratings["rating"] >= mcfg.CONFIG.liked_threshold]
    assert likes.n_likes == len(liked)
    assert likes.n_movies == liked["movieId"].nunique() < ratings["movieId"].nunique()
    assert likes.movie_counts().min() >= 1
    X = mv.cooccurrence(likes)
    assert np.array_equal(X, X.T)
    assert np.array_equal(np.diag(X), likes.movie_counts())
    assert np.all(X <= np.minimum.outer(np.diag(X), np.diag(X)))
    objective = obj.LikesObjective(likes.matrix)
    X0 = X - np.diag(np.diag(X))
    assert objective.offdiag_sq_norm == pytest.approx(float(np.square(X0).sum()), rel=1e-12)
    V = np.random.default_rng(0).normal(size=(likes.n_movies, 4))
    assert objective.value(V) == pytest.approx(obj.DenseObjective(X).value(V), rel=1e-9)


def test_real_titles_resolve(movielens):
    index = rec.TitleIndex(movielens.movies["title"])
    assert index.titles[index.resolve("Toy Story")] == "Toy Story (1995)"
    assert index.titles[index.resolve("Apollo 13")] == "Apollo 13 (1995)"
    assert index.titles[index.resolve("Home Alone")] == "Home Alone (1990)"
    assert index.titles[index.resolve("matrix")] == "Matrix, The (1999)"
    with pytest.raises(rec.TitleError):
        index.resolve("Hamlet")


def test_real_runs_reproduce_bit_for_bit(movielens):
    """Same machine, same threads, same seed: every optimiser's loss curve is identical when rerun."""
    likes = mv.likes_matrix(movielens.ratings, "threshold", mcfg.CONFIG.liked_threshold)
    objective = obj.LikesObjective(likes.matrix, torch.float64)
    V0 = opt.initial_embeddings(objective.n, 8, 0, mcfg.CONFIG.init_std, "normal", torch.float64)
    for spec in (mcfg.RunSpec("sgd", 1e-5), mcfg.RunSpec("momentum", 1e-6), mcfg.RunSpec("adam", 1.0),
                 mcfg.RunSpec("rmsprop", 0.01), mcfg.RunSpec("adagrad", 1.0), mcfg.RunSpec("lbfgs", 1.0)):
        first, second = (opt.run_optimizer(objective, spec, V0.clone(), 15) for _ in range(2))
        assert np.array_equal(first.losses, second.losses), spec.name
        assert np.array_equal(first.V, second.V), spec.name


def test_recommend_cli_lists_at_most_the_movies_there_are(tmp_path, capsys):
    ratings, movies = synthetic_movielens()
    config = replace(mcfg.CONFIG, dims=(2,), iterations=20, runs=(mcfg.RunSpec("lbfgs", 1.0),))
    pipe.write_artifacts(pipe.compute(ratings, movies, config, dim=2, progress=False), config, 1.0, tmp_path)
    args = argparse.Namespace(title=["toy", "story"], k=100000, similarity="cosine", results_dir=str(tmp_path))
    assert rec.run(args) == 0
    out = capsys.readouterr().out
    n_others = len(rec.load_frozen(tmp_path).catalog) - 1
    assert out.startswith(f"{n_others} movies most similar to")
    assert f"-k 100000 asked, but only {n_others} other movies are embedded" in out.splitlines()[0]


def test_recommend_table_shows_the_year_once_and_cuts_long_cells():
    table = pd.DataFrame({"rank": [1, 2], "title": ["Fugitive, The (1993)", "A" * 200 + " (1999)"],
                          "year": [1993, 1999], "genres": ["Thriller", "Drama"], "score": [0.5, 0.25]})
    lines = rec.format_table(table).splitlines()
    assert lines[0].split() == ["rank", "title", "genres", "score"]
    assert "The Fugitive (1993)" in lines[1] and lines[1].count("1993") == 1
    assert max(map(len, lines)) < rec.MAX_COLUMN + 30


def test_every_display_title_resolves_to_its_movie():
    """Titles as the book and the explorer show them, alternative titles included."""
    catalog = rec.load_frozen().catalog
    index = rec.TitleIndex(catalog["title"])
    unique = catalog["title"].value_counts().loc[lambda n: n == 1].index
    for row, title in enumerate(catalog["title"]):
        if title in unique:
            assert index.resolve(display_title(title)) == row, title
    assert index.titles[index.resolve("The Postman (Il Postino) (1994)")] == "Postman, The (Postino, Il) (1994)"


def test_a_list_change_counts_shared_movies_and_names_the_entrants() -> None:
    from lib.movies.starts import list_change

    reference = np.eye(6)[:, :4] + 0.0
    reference[4] = [0.9, 0.1, 0, 0]    # movie 4 is movie 0's nearest neighbour, then 5
    reference[5] = [0.8, 0, 0.3, 0]
    moved = reference.copy()
    moved[5] = [0, 0, 0, 1]            # movie 5 leaves movie 0's neighbourhood, movie 3 ...
    moved[3] = [0.7, 0, 0.05, 0.1]     # ... enters it
    titles = [f"m{i}" for i in range(6)]
    assert list_change(reference, reference, 0, titles, 2) == {"same_order": True, "shared": 2, "entered": []}
    change = list_change(moved, reference, 0, titles, 2)
    assert change == {"same_order": False, "shared": 1, "entered": ["m3"]}
