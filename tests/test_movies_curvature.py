"""Chapter 3's curvature analysis and decayed-rate runs: the Hessian-vector product, its eigenvalues,
the predicted learning-rate limits, and the per-step evaluation counts."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.movies import config as mcfg
from lib.movies import curvature as cv
from lib.movies import objective as obj
from lib.movies import optimise as opt
from lib.movies import schedule
from tests.test_movies import random_likes

NO_STALL = replace(mcfg.CONFIG, stall_steps=0)  # run every iteration asked for


def dense_hessian(objective: obj.Objective, V: np.ndarray) -> np.ndarray:
    """The full Hessian by autograd on the reference cost (tiny problems only)."""
    X = torch.as_tensor(objective.x0_matmul_np(np.eye(objective.n)) + np.diag(objective.diag_np))
    flat = torch.from_numpy(V.ravel().copy())
    H = torch.autograd.functional.hessian(lambda x: obj.cost(x.reshape(V.shape), X), flat)
    return H.numpy()


@pytest.fixture(scope="module")
def small():
    objective = obj.LikesObjective(random_likes(n_users=40, n_movies=14, seed=4))
    return objective, obj.floor(objective, 3)


def test_hessian_vector_product_matches_finite_differences_and_autograd(small):
    objective, _ = small
    rng = np.random.default_rng(0)
    V, W = rng.normal(size=(objective.n, 3)), rng.normal(size=(objective.n, 3))
    eps = 1e-6
    grad = lambda U: objective.value_and_grad(torch.from_numpy(U))[1].numpy()  # noqa: E731
    finite = (grad(V + eps * W) - grad(V - eps * W)) / (2 * eps)
    exact = cv.hessian_vector_product(objective, V, W)
    assert np.allclose(exact, finite, rtol=1e-6, atol=1e-6 * np.abs(exact).max())
    assert np.allclose(exact.ravel(), dense_hessian(objective, V) @ W.ravel(), rtol=1e-9, atol=1e-9)


def test_top_eigenvalues_match_dense_numpy_and_theory_at_the_floor(small):
    objective, ref = small
    dense = np.linalg.eigvalsh(dense_hessian(objective, ref.V))
    lanczos = cv.top_eigen(cv.hessian_operator(objective, ref.V), 3)
    assert np.allclose(lanczos, dense[::-1][:3], rtol=1e-8)
    assert dense.min() > -1e-6 * dense.max()  # a minimum: no negative curvature
    # rotations V S (S skew) cost nothing: d(d-1)/2 zero eigenvalues
    assert np.sum(np.abs(dense) < 1e-6 * dense.max()) >= 3
    # the slow-mode Rayleigh quotient is a curvature the Hessian has, above its smallest non-zero one
    slow = cv.slow_mode_curvature(objective, ref.V, cv.top_eigen(cv.reduced_operator(objective, ref.V), 5,
                                                                   vectors=True)[1][:, 3])
    positive = dense[dense > 1e-6 * dense.max()]
    assert positive.min() * (1 - 1e-9) <= slow <= dense.max()


def test_lambda_max_is_close_to_eight_times_the_top_eigenvalue_of_the_reduced_matrix(small):
    objective, ref = small
    lam = cv.top_eigen(cv.hessian_operator(objective, ref.V), 1)[0]
    a1 = cv.top_eigen(cv.reduced_operator(objective, ref.V), 1)[0]
    assert lam == pytest.approx(8 * a1, rel=0.2)  # the masked diagonal moves it a little


def test_learning_rate_limits():
    assert cv.gd_limit(4.0) == 0.5
    assert cv.heavy_ball_limit(4.0, 0.0) == cv.gd_limit(4.0)
    assert cv.heavy_ball_limit(4.0, 0.9) == pytest.approx(0.95)


def test_gradient_descent_is_stable_below_the_predicted_limit_and_not_above(small):
    objective, ref = small
    lam = cv.top_eigen(cv.hessian_operator(objective, ref.V), 1)[0]
    near = torch.from_numpy(ref.V + 1e-3 * np.random.default_rng(1).normal(size=ref.V.shape))
    for name, limit in (("sgd", cv.gd_limit(lam)), ("momentum", cv.heavy_ball_limit(lam, mcfg.CONFIG.momentum))):
        below = opt.run_optimizer(objective, mcfg.RunSpec(name, 0.8 * limit), near, 400, config=NO_STALL)
        above = opt.run_optimizer(objective, mcfg.RunSpec(name, 1.25 * limit), near, 400, config=NO_STALL)
        assert below.final_loss < objective.value(near.numpy())
        assert above.diverged or above.final_loss > objective.value(near.numpy())


def test_evaluations_are_recorded_per_step_and_cosine_decay_reaches_zero(small):
    objective, ref = small
    V0 = opt.initial_embeddings(objective.n, 3, seed=0, std=0.1)
    sgd = opt.run_optimizer(objective, mcfg.RunSpec("sgd", 1e-3), V0, 50, config=NO_STALL)
    assert list(sgd.evaluations_at[:-1]) == list(range(1, 51))
    lbfgs = opt.run_optimizer(objective, mcfg.RunSpec("lbfgs", 1.0), V0, 30, config=NO_STALL)
    assert np.all(np.diff(lbfgs.evaluations_at) >= 0) and lbfgs.evaluations_at[0] == 1 and lbfgs.evaluations_at[-1] <= lbfgs.evaluations
    assert lbfgs.evaluations > lbfgs.steps
    rates = []
    factory = schedule.cosine_decay(20)
    probe = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.Adam([probe], lr=0.1)
    scheduler = factory(optimizer)
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates[0] < 0.1 and rates[-1] == pytest.approx(0.0, abs=1e-12)
    decayed = opt.run_optimizer(objective, mcfg.RunSpec("adam", 0.05), V0, 300, schedule=factory, config=NO_STALL)
    assert not decayed.diverged and decayed.final_loss >= ref.loss * (1 - 1e-9)
