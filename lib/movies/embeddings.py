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
import warnings
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from tqdm import tqdm

from lib.core.errors import ConfigError


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
    iterations: int = 1500                # optimiser steps per run (at most)
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
    frequent_likes: int = 10              # sensitivity is also reported for movies with this many likes
    likes_buckets: tuple[int, ...] = (1, 2, 5, 10, 20, 50)  # lower edges: overlap by popularity
    dtype: str = "float64"
    threads: int = 1                      # torch/BLAS threads: sparse, memory-bound work runs
                                          # faster on one thread than on two contended ones
    runs: tuple[RunSpec, ...] = field(default_factory=lambda: (
        RunSpec("sgd", 1e-5), RunSpec("sgd", 3e-5), RunSpec("sgd", 1e-4),
        RunSpec("momentum", 1e-6), RunSpec("momentum", 1e-5), RunSpec("momentum", 3e-5),
        RunSpec("adam", 0.01), RunSpec("adam", 0.03), RunSpec("adam", 0.1), RunSpec("adam", 1.0),
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
        self.diag_np = np.array(diag, dtype=np.float64)  # a writable copy (torch shares its memory)
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(torch.from_numpy(matrix.indptr.astype(np.int64)),
                                       torch.from_numpy(matrix.indices.astype(np.int64)),
                                       torch.from_numpy(matrix.data.copy()).to(dtype), size=matrix.shape,
                                       check_invariants=True)  # scipy's CSR is valid; checked once here


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


# --- the pipeline: python -m lib movies ------------------------------------------------
ARTIFACT = "movies"
CURVES_FILE = "movies_curves.npz"
SENSITIVITY_FILE = "movies_sensitivity.csv"
SENSITIVITY_FREQUENT_FILE = "movies_sensitivity_frequent.csv"
FLOOR_NAME = "floor (eigendecomposition)"


def choose_dim(sweep: list[dict], n_users: int) -> int:
    """Smallest d whose validation hit-rate is within one standard error of the best d's."""
    best = max(sweep, key=lambda row: row["validation_hit_rate"])
    rate = best["validation_hit_rate"]
    threshold = rate - math.sqrt(rate * (1 - rate) / n_users)
    return min(row["dim"] for row in sweep if row["validation_hit_rate"] >= threshold)


def gram_distance(A: np.ndarray, B: np.ndarray) -> float:
    """||AAᵀ - BBᵀ||_F / ||BBᵀ||_F without forming M x M matrices (0 iff A = BQ, Q orthogonal)."""
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    aa, bb, ab = (np.square(A.T @ A).sum(), np.square(B.T @ B).sum(), np.square(A.T @ B).sum())
    return float(math.sqrt(max(aa + bb - 2 * ab, 0.0) / bb))


def _records(table, columns: list[str]) -> list[dict]:
    """DataFrame rows as JSON-ready dicts (numpy scalars unwrapped, missing values None)."""
    import pandas as pd

    out = []
    for row in table[columns].itertuples(index=False):
        out.append({key: (None if pd.isna(value) else value.item() if hasattr(value, "item") else value)
                    for key, value in zip(columns, row)})
    return out


def compute(ratings, movies, config: MoviesConfig = CONFIG, dim: int | None = None,
            progress: bool = True) -> dict:
    """Everything chapter 3 shows, as plain data plus the arrays to save."""
    from lib.movies import evaluation as ev
    from lib.movies import likes as mv
    from lib.movies import recommend as rec
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    dtype = torch_dtype(config.dtype)
    likes = mv.likes_matrix(ratings, "threshold", config.liked_threshold)
    X = mv.cooccurrence(likes)
    catalog = mv.catalog(movies, likes.movie_ids, likes.movie_counts())
    stats = {"ratings": mv.ratings_summary(ratings), "likes": mv.likes_summary(ratings, likes),
             "cooccurrence": mv.cooccurrence_summary(X, catalog["title"])}
    stats["likes"]["n_movies_catalog"] = int(movies["movieId"].nunique())
    del X
    objective = LikesObjective(likes.matrix, dtype)
    lap("data")

    # choice of d: the floor on the full X (fit) and on a hold-out split (validation)
    split = ev.holdout(likes.matrix, config.holdout_per_user, config.seed)
    train_objective = LikesObjective(split.train, dtype)
    sweep, floors, train_floors = [], {}, {}
    for d in tqdm(config.dims, desc="floor per d", disable=not progress):
        if d >= likes.n_movies:
            continue
        full = floors[d] = floor(objective, d, config.floor_tol, config.floor_max_iter)
        train = train_floors[d] = floor(train_objective, d, config.floor_tol, config.floor_max_iter)
        row = {"dim": d, "floor_loss": full.loss, "explained": 1 - full.loss / objective.offdiag_sq_norm,
               "floor_iterations": full.iterations, "floor_seconds": round(full.seconds, 3)}
        for similarity in ("cosine", "dot"):
            scores = ev.embedding_scores(split.train, split.validation_users, train.V, similarity)
            suffix = "" if similarity == "cosine" else "_dot"
            row[f"validation_hit_rate{suffix}"] = ev.hit_rate(scores, split.train, split.validation_users,
                                                             split.validation_items, config.top_k)
        sweep.append(row)
    chosen = dim if dim is not None else choose_dim(sweep, len(split.validation_users))
    if chosen not in floors:
        floors[chosen] = floor(objective, chosen, config.floor_tol, config.floor_max_iter)
        train_floors[chosen] = floor(train_objective, chosen, config.floor_tol, config.floor_max_iter)
    reference = floors[chosen]
    lap("floors")

    # gradient-descent runs from one seed and one initialisation
    V0 = initial_embeddings(objective.n, chosen, config.seed, config.init_std, "normal", dtype)
    results: list[RunResult] = []
    for spec in tqdm(config.runs, desc="optimiser runs", disable=not progress):
        start = V0 if spec.init == "normal" else initial_embeddings(objective.n, chosen, config.seed,
                                                                    config.init_std, spec.init, dtype)
        results.append(run_optimizer(objective, spec, start, config.iterations, floor_loss=reference.loss,
                                     target_gap=config.target_gap, config=config, progress=progress))
    finite = [r for r in results if not r.diverged and math.isfinite(r.final_loss)]
    best = min(finite, key=lambda r: r.final_loss)
    lap("runs")

    # recommendations from the best run
    V = best.V
    index = rec.TitleIndex(catalog["title"])
    resolved = {q: int(index.resolve(q)) for q in config.query_titles}
    tables: dict[str, dict] = {}
    recommendations: dict[str, list[str]] = {}
    columns = ["title", "year", "genres", "likes", "score"]
    for query, i in resolved.items():
        title = catalog["title"].iloc[i]
        tables[title] = {}
        for similarity in ("cosine", "dot"):
            idx, scores = rec.top_k(V, i, config.top_k, similarity)
            table = catalog.iloc[idx][["title", "year", "genres", "likes"]].assign(score=scores)
            tables[title][similarity] = _records(table, columns)
        recommendations[title] = [row["title"] for row in tables[title]["cosine"]]
    neighbours = {s: rec.top_k_all(V, config.top_k, s) for s in ("cosine", "dot")}
    counts = catalog["likes"].to_numpy()
    top100 = set(np.argsort(-counts, kind="stable")[:100].tolist())
    similarity_comparison = {"catalog_median_likes": float(np.median(counts))}
    for similarity, nb in neighbours.items():
        liked = counts[nb]
        similarity_comparison[similarity] = {
            "median_likes": float(np.median(liked)), "mean_likes": float(liked.mean()),
            "share_top100": float(np.isin(nb, list(top100)).mean()),
            "distinct_movies": int(np.unique(nb).size)}
    from scipy.stats import spearmanr
    similarity_comparison["norm_likes_spearman"] = float(
        spearmanr(np.linalg.norm(V, axis=1), counts).statistic)
    lap("recommendations")

    # sensitivity: top-10 lists of every run against each other and the floor
    names = [r.spec.name for r in results] + [FLOOR_NAME]
    lists = [rec.top_k_all(r.V, config.top_k) if not r.diverged else None for r in results]
    lists.append(rec.top_k_all(reference.V, config.top_k))
    frequent = counts >= config.frequent_likes
    overlap = np.full((len(names), len(names)), np.nan)
    overlap_frequent = overlap.copy()
    for a in range(len(names)):
        for b in range(a, len(names)):
            if lists[a] is not None and lists[b] is not None:
                overlap[a, b] = overlap[b, a] = rec.topk_overlap(lists[a], lists[b])
                overlap_frequent[a, b] = overlap_frequent[b, a] = rec.topk_overlap(
                    lists[a][frequent], lists[b][frequent])
    best_lists = lists[results.index(best)]
    edges = list(config.likes_buckets) + [int(counts.max()) + 1]
    by_likes = []
    for low, high in zip(edges[:-1], edges[1:]):
        rows = (counts >= low) & (counts < high)
        if rows.any():
            by_likes.append({"min_likes": low, "max_likes": int(high - 1), "movies": int(rows.sum()),
                             "overlap_best_vs_floor": rec.topk_overlap(best_lists[rows], lists[-1][rows])})
    sensitivity = {"names": names, "file": SENSITIVITY_FILE, "frequent_file": SENSITIVITY_FREQUENT_FILE,
                   "frequent_likes": config.frequent_likes, "frequent_movies": int(frequent.sum()),
                   "best_vs_floor_by_likes": by_likes,
                   "best_vs_floor_gram_distance": gram_distance(best.V, reference.V)}
    lap("sensitivity")

    # evaluation on the held-out likes, at the chosen d
    test_users, test_items = split.test_users, split.test_items
    best_spec = best.spec
    train_V0 = initial_embeddings(train_objective.n, chosen, config.seed, config.init_std, best_spec.init, dtype)
    train_run = run_optimizer(train_objective, best_spec, train_V0, config.iterations,
                              floor_loss=train_floors[chosen].loss, config=config, progress=progress)
    methods = {
        "most popular": ev.popularity_scores(split.train, test_users),
        "co-occurrence counts": ev.cooccurrence_scores(split.train, test_users),
        f"embeddings, dot product ({best_spec.name})": ev.embedding_scores(split.train, test_users, train_run.V, "dot"),
        f"embeddings, cosine ({best_spec.name})": ev.embedding_scores(split.train, test_users, train_run.V, "cosine"),
        "embeddings, cosine (floor)": ev.embedding_scores(split.train, test_users, train_floors[chosen].V, "cosine"),
    }
    evaluation_rows = []
    for method, scores in methods.items():
        rate = ev.hit_rate(scores, split.train, test_users, test_items, config.top_k)
        evaluation_rows.append({"method": method, "hit_rate": rate,
                                "standard_error": ev.standard_error(rate, len(test_users))})
    evaluation = {"k": config.top_k, "n_users": int(len(test_users)), "seed": config.seed,
                  "held_out_per_user": config.holdout_per_user, "train_likes": int(split.train.nnz),
                  "train_run_gap": train_run.gap(train_floors[chosen].loss),
                  "methods": evaluation_rows}
    lap("evaluation")

    # the alternative definition of 'liked': rating >= the user's own mean
    alt_likes = mv.likes_matrix(ratings, config.alternative_rule)
    alt_summary = mv.likes_summary(ratings, alt_likes)
    alt_pairs = (alt_likes.matrix.T @ alt_likes.matrix).tocsr()
    alt_pairs.setdiag(0)
    alt_pairs.eliminate_zeros()
    alt_summary["cooccurrence_nonzero_fraction"] = alt_pairs.nnz / (alt_likes.n_movies * (alt_likes.n_movies - 1))
    main_summary = dict(stats["likes"])
    main_summary["cooccurrence_nonzero_fraction"] = stats["cooccurrence"]["nonzero_fraction"]
    alt_floor = floor(LikesObjective(alt_likes.matrix, dtype), chosen, config.floor_tol, config.floor_max_iter)
    alt_catalog = mv.catalog(movies, alt_likes.movie_ids, alt_likes.movie_counts())
    alt_index = rec.TitleIndex(alt_catalog["title"])
    alt_recs = {}
    for query, i in resolved.items():
        title = catalog["title"].iloc[i]
        try:
            j = alt_index.resolve(title)
        except rec.TitleError:
            alt_recs[title] = None
            continue
        idx, _ = rec.top_k(alt_floor.V, j, config.top_k)
        alt_titles = alt_catalog["title"].iloc[idx].tolist()
        alt_recs[title] = {"recommendations": alt_titles,
                           "common_with_main": len(set(alt_titles) & set(recommendations[title]))}
    lap("alternative")

    runs = []
    for r, row_overlap, row_frequent in zip(results, overlap[:len(results)], overlap_frequent[:len(results)]):
        runs.append({
            "name": r.spec.name, "optimizer": r.spec.optimizer, "lr": r.spec.lr, "init": r.spec.init,
            "final_loss": r.final_loss, "gap": r.gap(reference.loss), "seconds": round(r.seconds, 3),
            "diverged": r.diverged, "divergence": r.divergence, "steps": r.steps,
            "evaluations": r.evaluations, "target_step": r.target_step,
            "target_seconds": None if r.target_seconds is None else round(r.target_seconds, 3),
            "overlap_with_floor": None if math.isnan(row_overlap[-1]) else float(row_overlap[-1]),
            "overlap_with_floor_frequent": None if math.isnan(row_frequent[-1]) else float(row_frequent[-1]),
            "gram_distance_to_floor": None if r.diverged else gram_distance(r.V, reference.V),
            "query_overlap_with_best": {catalog["title"].iloc[i]: (
                None if r.diverged else int(np.intersect1d(
                    rec.top_k(r.V, i, config.top_k)[0], best_lists[i]).size)) for i in resolved.values()},
        })
    payload = {
        "liked_threshold": config.liked_threshold,
        "like_rule": f"rating >= {config.liked_threshold:g}",
        "n_movies": likes.n_movies, "n_users": likes.n_users, "n_likes": likes.n_likes,
        "dim": chosen, "dim_rule": config.dim_rule if dim is None else "set on the command line",
        "dims": sweep, "validation_users": int(len(split.validation_users)),
        "floor_loss": reference.loss,
        "floor": {"iterations": reference.iterations, "grad_norm": reference.grad_norm,
                  "seconds": round(reference.seconds, 3), "converged": reference.converged,
                  "offdiag_sq_norm": objective.offdiag_sq_norm,
                  "explained": 1 - reference.loss / objective.offdiag_sq_norm},
        "target_gap": config.target_gap, "iterations": config.iterations,
        "runs": runs, "best_run": best.spec.name, "best_gap": best.gap(reference.loss),
        "queries": {q: catalog["title"].iloc[i] for q, i in resolved.items()},
        "recommendations": recommendations, "recommendation_tables": tables,
        "similarity_comparison": similarity_comparison,
        "stats": stats,
        "alternative": {"rule": config.alternative_rule, "main": main_summary, "alternative": alt_summary,
                        "recommendations": alt_recs},
        "evaluation": evaluation,
        "sensitivity": sensitivity,
        "timings": timings,
    }
    curves = {"names": np.asarray(names[:-1]), "floor_losses": reference.losses}
    for k, r in enumerate(results):
        curves[f"loss_{k:02d}"] = r.losses
        curves[f"time_{k:02d}"] = r.times
    return {"payload": payload, "curves": curves, "overlap": overlap, "overlap_frequent": overlap_frequent,
            "names": names,
            "embeddings": V.astype(np.float32), "movie_ids": likes.movie_ids.astype(np.int64),
            "catalog": catalog}


def write_artifacts(result: dict, config: MoviesConfig, wall_time_s: float, results_dir=None) -> list:
    import pandas as pd

    from lib.core import artifacts
    from lib.core.provenance import collect
    from lib.movies.recommend import CATALOG_FILE, EMBEDDINGS_FILE

    paths = [
        artifacts.save_arrays(CURVES_FILE, results_dir, **result["curves"]),
        artifacts.save_arrays(EMBEDDINGS_FILE, results_dir, embeddings=result["embeddings"],
                              movie_ids=result["movie_ids"]),
        artifacts.save_text(CATALOG_FILE, result["catalog"].to_csv(index=False), results_dir),
        artifacts.save_text(SENSITIVITY_FILE, pd.DataFrame(result["overlap"], index=result["names"],
                                                           columns=result["names"]).to_csv(), results_dir),
        artifacts.save_text(SENSITIVITY_FREQUENT_FILE, pd.DataFrame(
            result["overlap_frequent"], index=result["names"], columns=result["names"]).to_csv(), results_dir),
    ]
    payload = dict(result["payload"], files=[p.name for p in paths])
    provenance = collect(seed=config.seed, wall_time_s=wall_time_s, config=asdict(config), weights=None)
    paths.insert(0, artifacts.save_json(ARTIFACT, payload, provenance, results_dir))
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--dim", type=int, default=None,
                        help="embedding dimension (default: chosen on validation likes, see CONFIG.dim_rule)")
    parser.add_argument("--iterations", type=int, default=None,
                        help=f"optimiser steps per run (default {CONFIG.iterations})")
    parser.add_argument("--results-dir", default=None, help="where to write the artifacts (default results/)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from threadpoolctl import threadpool_limits

    from lib.core.data import DataDirs, load_movielens

    config = CONFIG if args.iterations is None else replace(CONFIG, iterations=args.iterations)
    if args.dim is not None and args.dim < 1:
        raise ConfigError(f"--dim must be positive, got {args.dim}")
    start = time.perf_counter()
    data = load_movielens(DataDirs.resolve(args.data_dir, args.mirror))
    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with threadpool_limits(config.threads):
            result = compute(data.ratings, data.movies, config, args.dim, progress=not args.no_progress)
    finally:
        torch.set_num_threads(previous)
    wall = time.perf_counter() - start
    result["payload"]["timings"]["total"] = round(wall, 3)
    paths = write_artifacts(result, config, wall, Path(args.results_dir) if args.results_dir else None)
    p = result["payload"]
    print(f"{p['n_movies']} movies liked (rating >= {p['liked_threshold']:g}) by {p['n_users']} users; d = {p['dim']}")
    print(f"floor c* = {p['floor_loss']:.6g}; best run {p['best_run']}: gap {p['best_gap']:.3e}")
    for title, titles in p["recommendations"].items():
        print(f"  {title}: " + "; ".join(titles[:5]) + " ...")
    print(f"wrote {', '.join(path.name for path in paths)} in {wall:.1f} s")
    return 0
