"""Gradient-descent runs of the movie cost: one optimiser, one learning rate, one start each;
divergence is recorded, never raised, so every run can be shown beside the others."""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler
from tqdm import tqdm

from lib.core.errors import ConfigError
from lib.movies.config import CONFIG, OPTIMIZERS, MoviesConfig, RunSpec
from lib.movies.objective import Objective


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
    evaluations_at: np.ndarray | None = None  # evaluations done when losses[k] was recorded (L-BFGS's fair x-axis)

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
                  floor_loss: float | None = None, *, config: MoviesConfig = CONFIG,
                  stop_at_target: bool = False, progress: bool = False,
                  schedule: Callable[[torch.optim.Optimizer], LRScheduler] | None = None) -> RunResult:
    """Full-batch descent of c from ``V0``; divergence is recorded, never raised. ``schedule`` builds
    a learning-rate scheduler stepped after every step; ``stop_at_target`` (the benchmark's stopwatch)
    ends the run within ``config.target_gap`` of ``floor_loss``. A run also ends once c has changed
    by less than ``config.stall_tol`` for ``config.stall_steps`` steps: converged as far as float64 allows.
    """
    if stop_at_target and floor_loss is None:
        raise ConfigError("stop_at_target needs floor_loss")
    V = V0.detach().clone().to(objective.device, objective.dtype).requires_grad_(True)
    optimizer = make_optimizer(spec, [V], config)
    is_lbfgs = spec.optimizer == "lbfgs"
    losses: list[float] = []
    times: list[float] = []
    evaluations_at: list[int] = []  # evaluations done when losses[k] was recorded
    evaluations = 0
    start = time.perf_counter()

    def evaluate() -> float:
        """c(V), with its gradient left in ``V.grad`` for the optimiser."""
        nonlocal evaluations
        with torch.no_grad():
            loss, V.grad = objective.value_and_grad(V.detach())
        evaluations += 1
        return loss

    def lbfgs_step() -> tuple[float, int]:
        """One L-BFGS step (several evaluations in its line search): the cost before it, and the
        number of evaluations done when that cost was computed."""
        first: list[tuple[float, int]] = []

        def closure() -> torch.Tensor:
            loss = evaluate()
            if not first:
                first.append((loss, evaluations))
            return torch.tensor(loss if math.isfinite(loss) else math.inf, dtype=objective.dtype)

        optimizer.step(closure)
        return first[0]

    def record(loss: float, at: int | None = None) -> None:
        losses.append(loss)
        times.append(time.perf_counter() - start)
        evaluations_at.append(evaluations if at is None else at)

    scheduler = schedule(optimizer) if schedule is not None else None
    divergence = target_step = target_seconds = None
    stalled = 0
    at_last_point = False  # True when V is still the point whose cost is losses[-1]
    bar = tqdm(range(iterations), desc=spec.name, leave=False, disable=not progress, mininterval=1.0)
    for step in bar:
        at = None
        if is_lbfgs:
            try:
                loss, at = lbfgs_step()
            except RuntimeError as exc:  # e.g. a NaN direction inside the line search
                divergence = f"step {step}: {exc}"
                break
        else:
            loss = evaluate()
        record(loss, at)
        reason = _divergence(loss, losses[0], config.divergence_factor)
        if reason:
            divergence = f"step {step}: {reason}"
            break
        if floor_loss is not None and target_step is None and (loss - floor_loss) / floor_loss <= config.target_gap:
            target_step, target_seconds = step, times[-1]
            if stop_at_target:
                at_last_point = not is_lbfgs
                break
        stalled = stalled + 1 if len(losses) > 1 and abs(losses[-2] - loss) <= config.stall_tol * abs(loss) else 0
        if config.stall_steps and stalled >= config.stall_steps:
            break
        if not is_lbfgs:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
    bar.close()
    steps = len(losses) - 1 if at_last_point else len(losses)
    V_final = V.detach()
    if divergence is None and not at_last_point:
        final = objective.value(V_final)
        record(final)
        reason = _divergence(final, losses[0], config.divergence_factor)
        if reason:
            divergence = f"after step {steps}: {reason}"
    final_loss = losses[-1] if losses else math.nan
    return RunResult(spec, np.asarray(losses, dtype=np.float64), np.asarray(times),
                     V_final.cpu().numpy(), float(final_loss), time.perf_counter() - start,
                     divergence is not None, divergence, steps, evaluations, target_step, target_seconds,
                     np.asarray(evaluations_at, dtype=np.int64))
