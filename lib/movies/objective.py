"""The movie cost c(V), its gradient, and its floor (the lowest c for a given d).

The cost (chapter 3, @eq-cost) for embeddings ``V`` (M x d) and co-occurrence X:

    c(V) = sum_{i != j} (v_i . v_j - X_ij)^2 = ||V Vᵀ - X0||_F^2 - sum_i ||v_i||^4

with ``X0`` = X with its diagonal set to zero. Expanding the Frobenius norm gives
``||X0||^2 - 2 <X0 V, V> + ||VᵀV||^2 - sum_i ||v_i||^4``: no M x M matrix is ever
formed, and when ``X = LᵀL`` the product ``X0 V = Lᵀ(L V) - diag(X) V`` costs
O(nnz(L) d). The gradient is ``4 (V VᵀV - X0 V - diag(||v_i||^2) V)``.

The floor (lowest c for a given d) comes from iterated eigendecompositions,
independently of PyTorch, so the optimisers can be judged against it.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from tqdm import tqdm

from lib.core import distributed
from lib.core.errors import ConfigError


def cost(V: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Reference formula on a dense X: ||VVᵀ - X||_F^2 minus the diagonal terms (O(M^2 d))."""
    G = V @ V.T
    return ((G - X) ** 2).sum() - ((torch.diagonal(G) - torch.diagonal(X)) ** 2).sum()


class Objective:
    """c(V) and its gradient without forming M x M matrices; subclasses supply ``X0 @ V`` as
    ``x0_matmul`` (torch) and ``x0_matmul_np`` (numpy, float64)."""

    def __init__(self, diag: np.ndarray, offdiag_sq_norm: float, dtype: torch.dtype = torch.float64):
        self.diag_np = np.array(diag, dtype=np.float64)  # a writable copy (torch shares its memory)
        self.n = self.diag_np.size
        self.offdiag_sq_norm = float(offdiag_sq_norm)  # ||X0||_F^2 = c(0)
        self.dtype = dtype
        self.diag = torch.as_tensor(self.diag_np, dtype=dtype)
        self.device = torch.device("cpu")  # where value_and_grad runs (LikesObjective can use CUDA)

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
        return self.value_from_product(V, self.x0_matmul_np(V))

    def value_from_product(self, V: np.ndarray, XV: np.ndarray) -> float:
        """c(V) given ``XV`` = X0 V already computed (the large-M floor carries it along)."""
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
    """X = LᵀL for a sparse binary (or any) users x movies matrix L, never formed densely.

    Under torchrun the users are sharded: each rank keeps its users' rows L_r and every product
    ``X0 V = Σ_r L_rᵀ(L_r V) - diag(X) V`` sums the ranks' partial products with one all_reduce
    of an M x d matrix, so every rank holds the same X0 V, and the floor's eigensolver and the
    optimisers take the same steps on every rank as in one process (to rounding: sums in
    another order)."""

    def __init__(self, L: sp.spmatrix, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        L = sp.csr_matrix(L, dtype=np.float64)
        if distributed.world_size() > 1:
            L = L[distributed.shard(L.shape[0])]  # this rank's users
        self.L_np, self.LT_np = L, sp.csr_matrix(L.T)
        diag = _summed(np.asarray(L.multiply(L).sum(axis=0)).ravel())
        sq_norm = cooccurrence_sq_norm(L, self.LT_np) if distributed.world_size() == 1 else sharded_sq_norm(L)
        # ||X0||^2 = ||LᵀL||_F^2 - sum diag^2
        super().__init__(diag, sq_norm - float(np.square(diag).sum()), dtype)
        self.L, self.LT = _torch_csr(L, dtype).to(device), _torch_csr(self.LT_np, dtype).to(device)
        self.diag, self.device = self.diag.to(device), torch.device(device)  # CUDA: cuSPARSE products

    def x0_matmul(self, V: torch.Tensor) -> torch.Tensor:
        return distributed.all_reduce_sum(self.LT @ (self.L @ V)) - self.diag[:, None] * V

    def x0_matmul_np(self, Y: np.ndarray) -> np.ndarray:
        Y = np.asarray(Y, dtype=np.float64)
        diag = self.diag_np if Y.ndim == 1 else self.diag_np[:, None]
        return _summed(self.LT_np @ (self.L_np @ Y)) - diag * Y


def _summed(partial: np.ndarray) -> np.ndarray:
    """A float64 array summed over the ranks (itself in one process)."""
    if distributed.world_size() == 1:
        return partial
    return distributed.all_reduce_sum(torch.from_numpy(np.ascontiguousarray(partial, dtype=np.float64))).numpy()


def cooccurrence_sq_norm(L: sp.csr_matrix, LT: sp.csr_matrix | None = None, block_nnz: float = 2e7) -> float:
    """||LᵀL||_F^2 with memory O(likes) where the dense X would need O(movies^2). Exact for binary L."""
    return _product_sq_norm(sp.csr_matrix(L.T) if LT is None else LT, L, block_nnz)


def _product_sq_norm(A: sp.csr_matrix, B: sp.csr_matrix, block_nnz: float = 2e7) -> float:
    """||A B||_F^2 over blocks of A's rows, each block's product holding about ``block_nnz`` entries."""
    if A.nnz == 0 or B.nnz == 0:
        return 0.0
    work = np.cumsum(A @ np.diff(B.indptr).astype(np.float64))  # entries of A B up to each row
    edges = np.unique(np.r_[0, np.searchsorted(work, np.arange(block_nnz, work[-1], block_nnz)), A.shape[0]])
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:]):
        total += float(np.square((A[a:b] @ B).data).sum())
    return total


def sharded_sq_norm(L_local: sp.csr_matrix) -> float:
    """||LᵀL||_F^2 = ||L Lᵀ||_F^2 = Σ_{r,s} ||L_r L_sᵀ||_F^2 with the users sharded: each rank's rows
    travel to the others one shard at a time (no rank ever holds all of L), and the partial sums
    are added. Exact for binary L (integer sums), so equal to :func:`cooccurrence_sq_norm`."""
    import torch.distributed as dist

    total = 0.0
    for source in range(distributed.world_size()):
        box = [L_local if distributed.rank() == source else None]
        dist.broadcast_object_list(box, src=source)
        total += _product_sq_norm(L_local, sp.csr_matrix(box[0].T))
    return float(distributed.all_reduce_sum(torch.tensor(total, dtype=torch.float64)))


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

    def remaining(self, window: int = 5) -> float:
        """Estimated further relative decrease of c had the iteration gone on: the last change times
        r / (1 - r), with r the geometric rate of the last ``window`` changes (nan when not contracting)."""
        changes = -np.diff(self.losses[-window - 1:])
        if changes.size < 2 or changes[0] <= 0 or not 0 < changes[-1] < changes[0]:
            return math.nan
        rate = (changes[-1] / changes[0]) ** (1.0 / (changes.size - 1))
        return float(changes[-1] * rate / (1.0 - rate) / abs(self.losses[-1]))


def _iterate(objective: Objective, solve, tol: float, max_iter: int, desc: str, progress: bool) -> Floor:
    """The floor's fixed-point loop: ``solve(h)`` gives the top eigenpairs (w, U) of X0 + diag(h), largest
    first, and X0 U (or None: c by a fresh product); V = U sqrt(max(w, 0)) and h = its communalities,
    until c changes by less than ``tol`` (relative)."""
    start = time.perf_counter()
    h = objective.diag_np.copy()
    losses, previous, converged = [], math.inf, False
    for iteration in tqdm(range(1, max_iter + 1), desc=desc, leave=False, disable=not progress):
        w, U, XU = solve(h)
        root = np.sqrt(np.clip(w, 0.0, None))
        V = U * root
        loss = objective.value(V) if XU is None else objective.value_from_product(V, XU * root)
        h = np.einsum("ij,ij->i", V, V)
        losses.append(loss)
        if abs(previous - loss) <= tol * max(abs(loss), 1e-300):
            converged = True
            break
        previous = loss
    return Floor(V, loss, iteration, np.asarray(losses), objective.grad_norm(V),
                 time.perf_counter() - start, converged)


def shifted_operator(objective: Objective, h: np.ndarray) -> spla.LinearOperator:
    """X0 + diag(h) as a LinearOperator: the matrix whose top eigenpairs the floor iterates on."""
    return spla.LinearOperator((objective.n, objective.n), dtype=np.float64,
                               matvec=lambda x: objective.x0_matmul_np(x.ravel()) + h * x.ravel(),
                               matmat=lambda Y: objective.x0_matmul_np(Y) + h[:, None] * Y)


def floor(objective: Objective, dim: int, tol: float = 1e-12, max_iter: int = 2000,
          progress: bool = False) -> Floor:
    """Lowest c for ``dim`` by iterated eigendecomposition (ARPACK, warm-started; independent of PyTorch),
    from ``h = diag(X)``. A fixed point has ``(VVᵀ - X0 - diag(h)) V = 0``: a zero gradient of c."""
    n = objective.n
    if not 0 < dim < n:
        raise ConfigError(f"dim must be in 1..{n - 1}, got {dim}")
    v0 = [np.ones(n) / math.sqrt(n)]

    def solve(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, None]:
        if dim < n // 2:
            w, U = spla.eigsh(shifted_operator(objective, h), k=dim, which="LA", v0=v0[0])
        else:  # tiny problems (tests): a dense eigendecomposition
            full = objective.x0_matmul_np(np.eye(n)) + np.diag(h)
            w, U = np.linalg.eigh((full + full.T) / 2)
            w, U = w[-dim:], U[:, -dim:]
        order = np.argsort(-w)
        w, U = w[order], U[:, order]
        v0[0] = U.sum(axis=1)
        return w, U, None

    return _iterate(objective, solve, tol, max_iter, f"floor d={dim}", progress)


def floor_lobpcg(objective: Objective, dim: int, tol: float = 1e-9, max_iter: int = 1000, seed: int = 0,
                 progress: bool = False) -> Floor:
    """The same fixed point as :func:`floor`, for large M: one sparse product per communality update.

    :func:`floor`'s ARPACK reads the likes hundreds of times per update of h; here h moves after every
    Rayleigh-Ritz step of LOBPCG (Knyazev 2001) on the basis [U, P, R] (subspace, last step, residual),
    and only R is new to multiply by X0. The reported loss is recomputed exactly from the final V.
    """
    n = objective.n
    if not 0 < dim or 3 * dim >= n:
        raise ConfigError(f"floor_lobpcg needs 0 < 3 * dim < {n}, got dim={dim}")
    U = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, dim)))[0]
    state = {"U": U, "XU": _times_x0(objective, U), "P": None, "XP": None}

    def solve(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        blocks = [(state["U"], state["XU"])]
        if state["P"] is not None:
            blocks.append(_orthonormalise(state["P"], state["XP"], blocks))
        residual = state["XU"] + h[:, None] * state["U"]
        residual -= state["U"] * np.einsum("ij,ij->j", state["U"], residual)
        R = _orthonormalise(residual, None, blocks)[0]
        blocks.append((R, _times_x0(objective, R)))
        B, XB = np.hstack([b for b, _ in blocks]), np.hstack([x for _, x in blocks])
        G = B.T @ (XB + h[:, None] * B)
        w, Z = np.linalg.eigh((G + G.T) / 2)
        w, Z = w[::-1][:dim], Z[:, ::-1][:, :dim]
        state["U"], state["XU"] = B @ Z, XB @ Z
        Z[:dim] = 0.0  # the step taken outside the old subspace: LOBPCG's P
        state["P"], state["XP"] = B @ Z, XB @ Z
        return w, state["U"], state["XU"]

    found = _iterate(objective, solve, tol, max_iter, f"LOBPCG floor d={dim}", progress)
    return replace(found, loss=objective.value(found.V))


def _times_x0(objective: Objective, Y: np.ndarray) -> np.ndarray:
    """X0 @ Y through torch (its sparse products use every thread, scipy's one; CUDA when there)."""
    with torch.no_grad():
        Yt = torch.from_numpy(np.ascontiguousarray(Y)).to(objective.device, objective.dtype)
        return objective.x0_matmul(Yt).cpu().numpy().astype(np.float64, copy=False)


def _orthonormalise(B: np.ndarray, XB: np.ndarray | None,
                    against: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray | None]:
    """An orthonormal basis of B's part outside the orthonormal blocks ``against`` (pairs Q, X0 Q),
    with ``XB`` = X0 B carried through the same linear map; numerically dependent directions drop."""
    for _ in range(2):  # twice is enough (Kahan-Parlett)
        for Q, XQ in against:
            C = Q.T @ B
            B = B - Q @ C
            XB = None if XB is None else XB - XQ @ C
    s, W = np.linalg.eigh(B.T @ B)
    keep = s > 1e-20 * max(float(s.max()), 1e-300)
    T = W[:, keep] / np.sqrt(s[keep])
    return B @ T, None if XB is None else XB @ T
