"""Curvature of the movie cost at the best stationary point, and the learning-rate limits it
predicts (``python -m lib movies-hessian`` writes ``results/movies_hessian.json``).

With E = offdiag(VVᵀ) - X0 the gradient is 4 E V; its derivative in a direction W is the
Hessian-vector product, computed analytically without any M x M matrix:

    H[W] = 4 (W VᵀV + V WᵀV - 2 diag(<w_i, v_i>) V + V VᵀW - X0 W - diag(||v_i||²) W).

For f = ||VVᵀ - A||² with A = X0 + diag(h) (the floor's matrix, h_i = ||v_i||²) at
V = U_d Λ_d^{1/2}, the curvature is 8 λ_1(A) along the top direction, 4 (λ_i - λ_k) along
u_k e_iᵀ (i ≤ d < k) and 0 along rotations V S (S skew). So λ_max(H) ≈ 8 λ_1(A) sets the
largest stable step (2/λ_max for gradient descent, 2(1+β)/λ_max for heavy-ball momentum), and
the eigengap λ_d - λ_{d+1} sets the slowest modes.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

from lib.movies.config import CONFIG, MoviesConfig
from lib.movies.objective import Objective, floor, shifted_operator, torch_dtype
from lib.movies.followup import add_arguments, run_followup  # noqa: F401 (the command's flags)
from lib.movies.optimise import initial_embeddings, run_optimizer

ARTIFACT = "movies_hessian"


def hessian_vector_product(objective: Objective, V: np.ndarray, W: np.ndarray) -> np.ndarray:
    """H(V)[W] for the cost c, exactly (O(nnz(L) d + M d²))."""
    G = V.T @ V
    h = np.einsum("ij,ij->i", V, V)
    s = np.einsum("ij,ij->i", W, V)
    return 4.0 * (W @ G + V @ (W.T @ V) - 2.0 * s[:, None] * V + V @ (V.T @ W)
                  - objective.x0_matmul_np(W) - h[:, None] * W)


def hessian_operator(objective: Objective, V: np.ndarray) -> spla.LinearOperator:
    """The Hessian at V as a LinearOperator on vectorised M x d matrices."""
    V = np.asarray(V, dtype=np.float64)
    n, d = V.shape
    return spla.LinearOperator((n * d, n * d), dtype=np.float64,
                               matvec=lambda x: hessian_vector_product(objective, V, x.reshape(n, d)).ravel())


def reduced_operator(objective: Objective, V: np.ndarray) -> spla.LinearOperator:
    """A = X0 + diag(||v_i||²): the matrix whose top-d eigenpairs the floor iterates on."""
    return shifted_operator(objective, np.einsum("ij,ij->i", V, V))


def top_eigen(operator: spla.LinearOperator, k: int, tol: float = 0.0,
              vectors: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """The k largest (algebraic) eigenvalues, descending (Lanczos, deterministic start)."""
    v0 = np.ones(operator.shape[0]) / math.sqrt(operator.shape[0])
    if vectors:
        w, U = spla.eigsh(operator, k=k, which="LA", tol=tol, v0=v0)
        order = np.argsort(-w)
        return w[order], U[:, order]
    return np.sort(spla.eigsh(operator, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False))[::-1]


def slow_mode_curvature(objective: Objective, V: np.ndarray, u_next: np.ndarray) -> float:
    """Rayleigh quotient of H along W = u qᵀ: u the (d+1)-th eigenvector of A made orthogonal to V's
    columns, q V's weakest right singular direction. Not a rotation, so an upper bound on the
    smallest non-zero curvature; for the unmasked cost it equals 4 (λ_d - λ_{d+1})."""
    P, _, Qt = np.linalg.svd(V, full_matrices=False)
    u = u_next - P @ (P.T @ u_next)
    W = np.outer(u / np.linalg.norm(u), Qt[-1])
    return float(np.einsum("ij,ij->", W, hessian_vector_product(objective, V, W)))


def gd_limit(lam_max: float) -> float:
    """Largest stable learning rate of gradient descent on a quadratic with top curvature lam_max."""
    return 2.0 / lam_max


def heavy_ball_limit(lam_max: float, beta: float) -> float:
    """Same for heavy-ball momentum (PyTorch's SGD with momentum β, no dampening)."""
    return 2.0 * (1.0 + beta) / lam_max


def _sweep(objective: Objective, starts: dict[str, tuple[torch.Tensor, int]], floor_loss: float,
           config: MoviesConfig) -> list[dict]:
    """Every sweep learning rate from each start; 'converges' = no divergence and the final gap
    below both the start's gap and the 0.5% target."""
    rows = []
    for start_name, (V0, iterations) in starts.items():
        start_gap = (objective.value(V0) - floor_loss) / floor_loss
        for spec in config.curvature_sweep:
            r = run_optimizer(objective, spec, V0, iterations, floor_loss=floor_loss, config=config)
            gap, tail = r.gap(floor_loss), r.losses[-101:]
            rows.append({"start": start_name, "optimizer": spec.optimizer, "lr": spec.lr, "steps": r.steps,
                         "start_gap": start_gap, "final_gap": None if not math.isfinite(gap) else gap,
                         "diverged": r.diverged, "divergence": r.divergence,
                         "tail_oscillation": float(np.ptp(tail) / abs(floor_loss)) if not r.diverged else None,
                         "converges": bool(not r.diverged and gap <= min(start_gap, config.target_gap))})
    return rows


def _observed(rows: list[dict]) -> dict:
    """Per start and optimiser: the largest converging and the smallest failing learning rate."""
    out: dict[str, dict] = {}
    for row in rows:
        entry = out.setdefault(row["start"], {}).setdefault(row["optimizer"], {"stable_max": None, "fails_min": None})
        if row["converges"]:
            entry["stable_max"] = max(entry["stable_max"] or 0.0, row["lr"])
        else:
            entry["fails_min"] = min(entry["fails_min"] or math.inf, row["lr"])
    return out


def analyse(objective: Objective, dim: int, config: MoviesConfig = CONFIG) -> dict:
    """Eigenvalues at the floor, the limits they predict, and the sweep that tests them."""
    dtype = torch_dtype(config.dtype)
    ref = floor(objective, dim, config.floor_tol, config.floor_max_iter)
    start = time.perf_counter()
    a_vals, a_vecs = top_eigen(reduced_operator(objective, ref.V), dim + 2, vectors=True)
    h_vals = top_eigen(hessian_operator(objective, ref.V), config.curvature_top_k, tol=config.curvature_eig_tol)
    slow = slow_mode_curvature(objective, ref.V, a_vecs[:, dim])
    seconds_eigen = time.perf_counter() - start
    lam = float(h_vals[0])
    gen = np.random.default_rng(config.seed)
    near = torch.as_tensor(ref.V + config.curvature_near_std * gen.standard_normal(ref.V.shape), dtype=dtype)
    random_start = initial_embeddings(objective.n, dim, config.seed, config.init_std, "normal", dtype)
    rows = _sweep(objective, {"random": (random_start, config.iterations),
                              "near the floor": (near, config.curvature_near_iterations)}, ref.loss, config)
    return {
        "dim": dim, "floor_loss": ref.loss, "momentum": config.momentum,
        "hessian_top": h_vals.tolist(), "lambda_max": lam,
        "reduced_top": a_vals[:3].tolist(), "reduced_around_d": {f"{k + 1}": float(a_vals[k])
                                                                   for k in range(dim - 2, dim + 2)},
        "eigengap": float(a_vals[dim - 1] - a_vals[dim]), "predicted_lambda_max": 8.0 * float(a_vals[0]),
        "predicted_slow": 4.0 * float(a_vals[dim - 1] - a_vals[dim]), "slow_mode_curvature": slow,
        "condition": lam / slow, "seconds_eigen": round(seconds_eigen, 3),
        "predicted_limits": {"sgd": gd_limit(lam), "momentum": heavy_ball_limit(lam, config.momentum)},
        "sweep": rows, "observed_limits": _observed(rows),
    }


def run(args: argparse.Namespace) -> int:
    payload = run_followup(args, ARTIFACT, analyse)
    lim = payload["predicted_limits"]
    print(f"lambda_max(H) = {payload['lambda_max']:.6g} (8 lambda_1(A) = {payload['predicted_lambda_max']:.6g}); "
          f"slow mode {payload['slow_mode_curvature']:.4g}; limits sgd {lim['sgd']:.3g}, momentum {lim['momentum']:.3g}")
    print(f"observed: {payload['observed_limits']}")
    return 0
