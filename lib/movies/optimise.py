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


class _Descent:
    """The state of one run: the tensor being optimised and what has been recorded so far."""

    def __init__(self, objective: Objective, spec: RunSpec, V0: torch.Tensor, config: MoviesConfig):
        self.objective = objective
        self.V = V0.detach().clone().to(objective.device, objective.dtype).requires_grad_(True)
        self.optimizer = make_optimizer(spec, [self.V], config)
        self.is_lbfgs = spec.optimizer == "lbfgs"
        self.losses: list[float] = []
        self.times: list[float] = []
        self.evaluations_at: list[int] = []
        self.evaluations = 0
        self.start = time.perf_counter()

    def evaluate(self) -> float:
        """c(V), with its gradient left in ``V.grad`` for the optimiser."""
        with torch.no_grad():
            loss, grad = self.objective.value_and_grad(self.V.detach())
        self.V.grad = grad
        self.evaluations += 1
        return loss

    def lbfgs_step(self) -> tuple[float, int]:
        """One L-BFGS step (several evaluations in its line search): the cost before it, and the
        number of evaluations done when that cost was computed."""
        first: list[tuple[float, int]] = []

        def closure() -> torch.Tensor:
            loss = self.evaluate()
            if not first:
                first.append((loss, self.evaluations))
            return torch.tensor(loss if math.isfinite(loss) else math.inf, dtype=self.objective.dtype)

        self.optimizer.step(closure)
        return first[0]

    def record(self, loss: float, evaluations: int | None = None) -> None:
        self.losses.append(loss)
        self.times.append(time.perf_counter() - self.start)
        self.evaluations_at.append(self.evaluations if evaluations is None else evaluations)


def run_optimizer(objective: Objective, spec: RunSpec, V0: torch.Tensor, iterations: int,
                  floor_loss: float | None = None, *, config: MoviesConfig = CONFIG,
                  stop_at_target: bool = False, progress: bool = False,
                  schedule: Callable[[torch.optim.Optimizer], LRScheduler] | None = None) -> RunResult:
    """Full-batch descent of c from ``V0``; divergence is recorded, never raised.

    ``schedule`` (optional) builds a learning-rate scheduler stepped after every step
    (e.g. a cosine decay, to test whether adaptive methods hover because of a fixed rate).

    ``stop_at_target`` (needs ``floor_loss``) ends the run at the first step whose
    cost is within ``config.target_gap`` (relative) of the floor: the benchmark's stopwatch.
    A run also ends once c has changed by less than ``config.stall_tol`` (relative) for
    ``config.stall_steps`` consecutive steps: it has converged as far as float64 allows.
    """
    if stop_at_target and floor_loss is None:
        raise ConfigError("stop_at_target needs floor_loss")
    run = _Descent(objective, spec, V0, config)
    scheduler = schedule(run.optimizer) if schedule is not None else None
    divergence = target_step = target_seconds = None
    stalled = 0
    at_last_point = False  # True when V is still the point whose cost is losses[-1]
    bar = tqdm(range(iterations), desc=spec.name, leave=False, disable=not progress, mininterval=1.0)
    for step in bar:
        evaluations = None
        if run.is_lbfgs:
            try:
                loss, evaluations = run.lbfgs_step()
            except RuntimeError as exc:  # e.g. a NaN direction inside the line search
                divergence = f"step {step}: {exc}"
                break
        else:
            loss = run.evaluate()
        run.record(loss, evaluations)
        reason = _divergence(loss, run.losses[0], config.divergence_factor)
        if reason:
            divergence = f"step {step}: {reason}"
            break
        if floor_loss is not None and target_step is None and (loss - floor_loss) / floor_loss <= config.target_gap:
            target_step, target_seconds = step, run.times[-1]
            if stop_at_target:
                at_last_point = not run.is_lbfgs
                break
        losses = run.losses
        stalled = stalled + 1 if len(losses) > 1 and abs(losses[-2] - loss) <= config.stall_tol * abs(loss) else 0
        if config.stall_steps and stalled >= config.stall_steps:
            break
        if not run.is_lbfgs:
            run.optimizer.step()
        if scheduler is not None:
            scheduler.step()
    bar.close()
    steps = len(run.losses) - 1 if at_last_point else len(run.losses)
    V_final = run.V.detach()
    if divergence is None and not at_last_point:
        final = objective.value(V_final)
        run.record(final)
        reason = _divergence(final, run.losses[0], config.divergence_factor)
        if reason:
            divergence = f"after step {steps}: {reason}"
    final_loss = run.losses[-1] if run.losses else math.nan
    return RunResult(spec, np.asarray(run.losses, dtype=np.float64), np.asarray(run.times),
                     V_final.cpu().numpy(), float(final_loss), time.perf_counter() - run.start,
                     divergence is not None, divergence, steps, run.evaluations, target_step, target_seconds,
                     np.asarray(run.evaluations_at, dtype=np.int64))
