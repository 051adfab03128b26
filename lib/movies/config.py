"""Chapter 3's hyperparameters: every one of them, in one frozen dataclass (``CONFIG``), the
follow-up experiments' grids included (curvature sweep, other starts, baselines), so that each
experiment has one grid and it is recorded whole in the artifact's provenance."""
from __future__ import annotations

from dataclasses import dataclass, field

from lib.core.errors import ConfigError


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
    dim_rule: str = ("one-standard-error rule: the smallest d whose validation hit-rate@10 (floor embeddings, "
                     "cosine) is within one binomial standard error of the best d's")
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
    explorer_runs: int = 3                # runs besides floor and best whose embeddings are saved
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
    start_seeds: tuple[int, ...] = (1, 2, 3)  # other random starts (movies-starts): do the lists depend on V0?
    start_runs: tuple[RunSpec, ...] = field(default_factory=lambda: (  # each optimiser at the rate that reached
        RunSpec("sgd", 3e-5), RunSpec("momentum", 1e-5),             # the target gap soonest from seed 0
        RunSpec("adam", 0.03), RunSpec("lbfgs", 1.0),
    ))
    # movies-hessian: curvature at the floor and the learning rates that test the limits it predicts
    curvature_eig_tol: float = 1e-6       # Lanczos tolerance for the Hessian's top eigenvalues
    curvature_top_k: int = 3
    curvature_near_std: float = 0.01      # the 'near' start: the floor plus N(0, near_std²) noise
    curvature_near_iterations: int = 500
    curvature_sweep: tuple[RunSpec, ...] = field(default_factory=lambda: (
        RunSpec("sgd", 3e-5), RunSpec("sgd", 3.3e-5), RunSpec("sgd", 3.6e-5), RunSpec("sgd", 4e-5),
        RunSpec("momentum", 2.5e-5), RunSpec("momentum", 3e-5), RunSpec("momentum", 6e-5), RunSpec("momentum", 7e-5),
    ))
    # movie-baselines: each baseline's hyperparameters, chosen on the validation likes
    baseline_ease_lambda: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0)
    baseline_als: tuple[tuple[int, float, float], ...] = tuple(  # (factors, regularization, alpha)
        (f, r, a) for f in (32, 64, 128) for r in (0.01, 0.1, 1.0) for a in (1.0, 10.0))
    baseline_shrink: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
    baseline_min_support: tuple[int, ...] = (2, 3, 5, 10, 20)


CONFIG = MoviesConfig()
OPTIMIZERS = ("sgd", "momentum", "adam", "rmsprop", "adagrad", "lbfgs")
INITS = ("normal", "zeros")


def parse_runs(text: str) -> tuple[RunSpec, ...]:
    """``--runs adam:0.1,sgd:3e-5,adam:0.03:zeros`` -> the RunSpecs (optimiser:lr[:init], comma-separated)."""
    runs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        optimizer, _, rest = item.partition(":")
        lr_text, _, init = rest.partition(":")
        try:
            lr = float(lr_text)
        except ValueError:
            raise ConfigError(f"--runs: {item!r} is not OPTIMIZER:LR[:INIT], e.g. adam:0.1") from None
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"--runs: unknown optimiser {optimizer!r} in {item!r}; one of {', '.join(OPTIMIZERS)}")
        if not lr > 0:
            raise ConfigError(f"--runs: the learning rate in {item!r} must be positive")
        if (init or "normal") not in INITS:
            raise ConfigError(f"--runs: unknown initialisation {init!r} in {item!r}; one of {', '.join(INITS)}")
        runs.append(RunSpec(optimizer, lr, init or "normal"))
    if not runs:
        raise ConfigError("--runs: give at least one run, e.g. --runs adam:0.1,sgd:3e-5")
    return tuple(runs)
