"""Movie embeddings: the cost, its floor, gradient-descent runs, and ``python -m lib movies``.

The cost (chapter 3, @eq-cost) for embeddings ``V`` (M x d) and co-occurrence X:

    c(V) = sum_{i != j} (v_i . v_j - X_ij)^2 = ||V Vᵀ - X0||_F^2 - sum_i ||v_i||^4

with ``X0`` = X with its diagonal set to zero. Expanding the Frobenius norm gives
``||X0||^2 - 2 <X0 V, V> + ||VᵀV||^2 - sum_i ||v_i||^4``: no M x M matrix is ever
formed, and when ``X = LᵀL`` the product ``X0 V = Lᵀ(L V) - diag(X) V`` costs
O(nnz(L) d). The gradient is ``4 (V VᵀV - X0 V - diag(||v_i||^2) V)``.

Every hyperparameter of the pipeline is in ``CONFIG`` below.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from tqdm import tqdm

from lib.errors import ConfigError


# --- hyperparameters: the one place ----------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One gradient-descent run: optimiser, learning rate and initialisation."""

    optimizer: str
    lr: float
    init: str = "normal"  # "normal" (the shared seeded start) or "zeros" (a saddle point)

    @property
    def name(self) -> str:
        suffix = "" if self.init == "normal" else f" ({self.init} init)"
        return f"{self.optimizer} lr={self.lr:g}{suffix}"


@dataclass(frozen=True)
class MoviesConfig:
    liked_threshold: float = 4.0          # a like is a rating >= this
    alternative_rule: str = "user_mean"   # the alternative definition compared in the chapter
    seed: int = 0                         # initialisation and hold-out split
    dims: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128)  # candidates for d
    dim_rule: str = "highest validation hit-rate@10 of the floor embeddings; ties -> smaller d"
    init_std: float = 0.1                 # V0 ~ N(0, init_std^2), shared by every run
    iterations: int = 2000                # optimiser steps per run
    momentum: float = 0.9                 # for the "momentum" optimiser
    lbfgs_history: int = 20
    divergence_factor: float = 1e3        # loss > factor * initial loss (or NaN/inf) = diverged
    stall_tol: float = 1e-13              # a run ends early once c changes less than this (relative)
    stall_steps: int = 20                 # ... for this many consecutive steps (converged)
    target_gap: float = 0.005             # "within 0.5% of the floor"
    floor_tol: float = 1e-12              # relative change of c that ends the floor iteration
    floor_max_iter: int = 2000
    top_k: int = 10
    query_titles: tuple[str, ...] = ("Apollo 13", "Toy Story", "Home Alone")
    holdout_per_user: int = 2             # one test and one validation like per user
    dtype: str = "float64"
    runs: tuple[RunSpec, ...] = field(default_factory=lambda: (
        RunSpec("sgd", 1e-6), RunSpec("sgd", 1e-5), RunSpec("sgd", 1e-4),
        RunSpec("momentum", 1e-6), RunSpec("momentum", 1e-5),
        RunSpec("adam", 0.003), RunSpec("adam", 0.01), RunSpec("adam", 0.03), RunSpec("adam", 0.1),
        RunSpec("rmsprop", 0.001), RunSpec("rmsprop", 0.01),
        RunSpec("adagrad", 0.1), RunSpec("adagrad", 1.0),
        RunSpec("lbfgs", 1.0),
        RunSpec("adam", 0.03, init="zeros"),
    ))


CONFIG = MoviesConfig()
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad", "lbfgs")


# --- the cost ----------------------------------------------------------------------
def cost(V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Reference formula on a dense X: ||VVᵀ - X||_F^2 minus the diagonal terms (O(M^2 d))."""
    G = V @ V.T
    return ((G - X) ** 2).sum() - ((torch.diagonal(G) - torch.diagonal(X)) ** 2).sum()


class Objective:
    """c(V) and its gradient without forming M x M matrices; subclasses supply ``X0 @ V``."""

    def __init__(self, diag: np.ndarray, offdiag_sq_norm: float, dtype: torch.dtype = torch.float64):
        self.diag_np = np.asarray(diag, dtype=np.float64)
        self.n = self.diag_np.size
        self.offdiag_sq_norm = float(offdiag_sq_norm)  # ||X0||_F^2 = c(0)
        self.dtype = dtype
        self.diag = torch.as_tensor(self.diag_np, dtype=dtype)

    # subclasses
    def x0_matmul(self, V: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def x0_matmul_np(self, Y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def value_and_grad(self, V: torch.Tensor) -> tuple[float, torch.Tensor]:
        XV = self.x0_matmul(V)
        G = V.T @ V
        h = (V * V).sum(dim=1)
        loss = (self.offdiag_sq_norm - 2.0 * (XV * V).sum() + (G * G).sum() - (h * h).sum()).item()
        grad = 4.0 * (V @ G - XV - h[:, None] * V)
        return loss, grad

    def value(self, V: torch.Tensor | np.ndarray) -> float:
        """c(V) in float64 whatever V's dtype (used for every reported number)."""
        V = np.asarray(V.detach().cpu() if isinstance(V, torch.Tensor) else V, dtype=np.float64)
        XV = self.x0_matmul_np(V)
        G = V.T @ V
        h = np.einsum("ij,ij->i", V, V)
        return float(self.offdiag_sq_norm - 2.0 * np.einsum("ij,ij->", XV, V) + np.square(G).sum()
                     - np.square(h).sum())

    def grad_norm(self, V: np.ndarray) -> float:
        V = np.asarray(V, dtype=np.float64)
        h = np.einsum("ij,ij->i", V, V)
        return float(np.linalg.norm(4.0 * (V @ (V.T @ V) - self.x0_matmul_np(V) - h[:, None] * V)))


class DenseObjective(Objective):
    """Any symmetric X given as a dense matrix."""

    def __init__(self, X: np.ndarray, dtype: torch.dtype = torch.float64):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] != X.shape[1] or not np.allclose(X, X.T):
            raise ConfigError("X must be a symmetric square matrix")
        self.X0_np = X - np.diag(np.diag(X))
        super().__init__(np.diag(X), np.square(self.X0_np).sum(), dtype)
        self.X0 = torch.as_tensor(self.X0_np, dtype=dtype)

    def x0_matmul(self, V: torch.Tensor) -> torch.Tensor:
        return self.X0 @ V

    def x0_matmul_np(self, Y: np.ndarray) -> np.ndarray:
        return self.X0_np @ Y


class LikesObjective(Objective):
    """X = LᵀL for a sparse binary (or any) users x movies matrix L, never formed densely."""

    def __init__(self, L: sp.spmatrix, dtype: torch.dtype = torch.float64):
        L = sp.csr_matrix(L, dtype=np.float64)
        self.L_np, self.LT_np = L, sp.csr_matrix(L.T)
        diag = np.asarray(L.multiply(L).sum(axis=0)).ravel()
        # ||X0||^2 = ||LᵀL||_F^2 - sum diag^2 = ||L Lᵀ||_F^2 - sum diag^2 (users x users is small)
        K = (L @ L.T).toarray()
        super().__init__(diag, float(np.square(K).sum() - np.square(diag).sum()), dtype)
        self.L, self.LT = _torch_csr(L, dtype), _torch_csr(self.LT_np, dtype)

    def x0_matmul(self, V: torch.Tensor) -> torch.Tensor:
        return self.LT @ (self.L @ V) - self.diag[:, None] * V

    def x0_matmul_np(self, Y: np.ndarray) -> np.ndarray:
        Y = np.asarray(Y, dtype=np.float64)
        diag = self.diag_np if Y.ndim == 1 else self.diag_np[:, None]
        return self.LT_np @ (self.L_np @ Y) - diag * Y


def _torch_csr(matrix: sp.csr_matrix, dtype: torch.dtype) -> torch.Tensor:
    matrix = sp.csr_matrix(matrix)
    return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                   torch.from_numpy(matrix.indices.astype(np.int64)),
                                   torch.from_numpy(matrix.data).to(dtype), size=matrix.shape)


def torch_dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "float64": torch.float64}[name]
    except KeyError:
        raise ConfigError(f"dtype must be float32 or float64, got {name!r}") from None


# --- the floor: principal-axis (MINRES) factor analysis -------------------------------
@dataclass
class Floor:
    V: np.ndarray
    loss: float
    iterations: int
    losses: np.ndarray
    grad_norm: float
    seconds: float
    converged: bool


def floor(objective: Objective, dim: int, tol: float = 1e-12, max_iter: int = 2000,
          progress: bool = False) -> Floor:
    """Lowest c for ``dim`` by iterated eigendecomposition (independent of PyTorch).

    With ``h`` the current communalities (squared row norms of V), take the top
    ``dim`` eigenpairs (U, w) of ``X0 + diag(h)`` (ARPACK Lanczos, warm-started)
    and set ``V = U sqrt(max(w, 0))``; repeat until c stops decreasing. A fixed
    point has ``(VVᵀ - X0 - diag(h)) V = 0``, i.e. a zero gradient of c.
    Starts from ``h = diag(X)``: the truncated eigendecomposition of X itself.
    """
    n = objective.n
    if not 0 < dim < n:
        raise ConfigError(f"dim must be in 1..{n - 1}, got {dim}")
    start = time.perf_counter()
    h = objective.diag_np.copy()
    v0 = np.ones(n) / math.sqrt(n)
    losses, previous, converged = [], math.inf, False
    iterator = range(1, max_iter + 1)
    for iteration in tqdm(iterator, desc=f"floor d={dim}", leave=False, disable=not progress):
        if dim < n // 2:
            operator = spla.LinearOperator((n, n), dtype=np.float64,
                                           matvec=lambda x, h=h: objective.x0_matmul_np(x.ravel()) + h * x.ravel(),
                                           matmat=lambda Y, h=h: objective.x0_matmul_np(Y) + h[:, None] * Y)
            w, U = spla.eigsh(operator, k=dim, which="LA", v0=v0)
        else:  # tiny problems (tests): a dense eigendecomposition
            full = objective.x0_matmul_np(np.eye(n)) + np.diag(h)
            w, U = np.linalg.eigh((full + full.T) / 2)
            w, U = w[-dim:], U[:, -dim:]
        order = np.argsort(-w)
        w, U = w[order], U[:, order]
        V = U * np.sqrt(np.clip(w, 0.0, None))
        h = np.einsum("ij,ij->i", V, V)
        v0 = U.sum(axis=1)
        loss = objective.value(V)
        losses.append(loss)
        if abs(previous - loss) <= tol * max(abs(loss), 1e-300):
            converged = True
            break
        previous = loss
    return Floor(V, loss, iteration, np.asarray(losses), objective.grad_norm(V),
                 time.perf_counter() - start, converged)


# --- gradient-descent runs -----------------------------------------------------------
@dataclass
class RunResult:
    spec: RunSpec
    losses: np.ndarray          # losses[k] = c after k steps (the last one evaluated in float64)
    times: np.ndarray           # seconds since the start when losses[k] was computed
    V: np.ndarray
    final_loss: float
    seconds: float
    diverged: bool
    divergence: str | None      # why and when, for diverged runs
    steps: int
    evaluations: int            # cost+gradient evaluations (L-BFGS line searches use several a step)
    target_step: int | None = None      # first step with gap <= target_gap (needs a floor)
    target_seconds: float | None = None

    def gap(self, floor_loss: float) -> float:
        return (self.final_loss - floor_loss) / floor_loss


def initial_embeddings(n: int, dim: int, seed: int, std: float, init: str = "normal",
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
    if init == "zeros":
        return torch.zeros(n, dim, dtype=dtype)
    if init != "normal":
        raise ConfigError(f"unknown init {init!r}; use 'normal' or 'zeros'")
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, dim, generator=generator, dtype=torch.float64) * std).to(dtype)


def make_optimizer(spec: RunSpec, params: list[torch.Tensor], config: MoviesConfig = CONFIG):
    name, lr = spec.optimizer, spec.lr
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    if name == "lbfgs":
        return torch.optim.LBFGS(params, lr=lr, max_iter=1, max_eval=25, history_size=config.lbfgs_history,
                                 tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    raise ConfigError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def _divergence(loss: float, initial: float, factor: float) -> str | None:
    if not math.isfinite(loss):
        return f"cost is {loss}"
    if loss > factor * initial:
        return f"cost {loss:.3g} is {loss / initial:.3g} x the initial cost"
    return None


def run_optimizer(objective: Objective, spec: RunSpec, V0: torch.Tensor, iterations: int,
                  floor_loss: float | None = None, target_gap: float = CONFIG.target_gap,
                  stop_at_target: bool = False, divergence_factor: float = CONFIG.divergence_factor,
                  stall_tol: float = CONFIG.stall_tol, stall_steps: int = CONFIG.stall_steps,
                  config: MoviesConfig = CONFIG, progress: bool = False) -> RunResult:
    """Full-batch descent of c from ``V0``; divergence is recorded, never raised.

    ``stop_at_target`` (needs ``floor_loss``) ends the run at the first step whose
    cost is within ``target_gap`` (relative) of the floor: the benchmark's stopwatch.
    A run also ends once c has changed by less than ``stall_tol`` (relative) for
    ``stall_steps`` consecutive steps: it has converged as far as float64 allows.
    """
    if stop_at_target and floor_loss is None:
        raise ConfigError("stop_at_target needs floor_loss")
    V = V0.detach().clone().to(objective.dtype).requires_grad_(True)
    optimizer = make_optimizer(spec, [V], config)
    is_lbfgs = spec.optimizer == "lbfgs"
    losses, times = [], []
    evaluations, diverged, divergence = 0, False, None
    target_step = target_seconds = None
    stalled = 0
    start = time.perf_counter()

    def evaluate() -> float:
        nonlocal evaluations
        with torch.no_grad():
            loss, grad = objective.value_and_grad(V.detach())
        V.grad = grad
        evaluations += 1
        return loss

    at_last_point = False  # True when V is still the point whose cost is losses[-1]
    bar = tqdm(range(iterations), desc=spec.name, leave=False, disable=not progress, mininterval=1.0)
    for step in bar:
        if is_lbfgs:
            first: list[float] = []

            def closure() -> torch.Tensor:
                loss = evaluate()
                if not first:
                    first.append(loss)
                return torch.tensor(loss if math.isfinite(loss) else math.inf, dtype=objective.dtype)

            try:
                optimizer.step(closure)
            except RuntimeError as exc:  # e.g. a NaN direction inside the line search
                diverged, divergence = True, f"step {step}: {exc}"
                break
            loss = first[0]
        else:
            loss = evaluate()
        losses.append(loss)
        times.append(time.perf_counter() - start)
        reason = _divergence(loss, losses[0], divergence_factor)
        if reason:
            diverged, divergence = True, f"step {step}: {reason}"
            break
        if floor_loss is not None and target_step is None and (loss - floor_loss) / floor_loss <= target_gap:
            target_step, target_seconds = step, times[-1]
            if stop_at_target:
                at_last_point = not is_lbfgs
                break
        stalled = stalled + 1 if len(losses) > 1 and abs(losses[-2] - loss) <= stall_tol * abs(loss) else 0
        if stall_steps and stalled >= stall_steps:
            break
        if not is_lbfgs:
            optimizer.step()
    bar.close()
    steps = len(losses) - 1 if at_last_point else len(losses)
    V_final = V.detach()
    if not diverged and not at_last_point:
        final = objective.value(V_final)
        losses.append(final)
        times.append(time.perf_counter() - start)
        reason = _divergence(final, losses[0], divergence_factor)
        if reason:
            diverged, divergence = True, f"after step {steps}: {reason}"
    seconds = time.perf_counter() - start
    final_loss = losses[-1] if losses else math.nan
    return RunResult(spec, np.asarray(losses, dtype=np.float64), np.asarray(times), V_final.cpu().numpy(),
                     float(final_loss), seconds, diverged, divergence, steps, evaluations,
                     target_step, target_seconds)
