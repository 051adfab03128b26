"""Do Adam and RMSprop stop short of the floor because their learning rate is fixed?
``python -m lib movies-decay`` reruns chapter 3's Adam and RMSprop runs from the same start with
the learning rate decayed to zero along a cosine (``results/movies_decay.json``): if a run hovers
at a distance set by its step size, the decayed run ends much closer to the floor."""
from __future__ import annotations

import argparse

import numpy as np
import torch

from lib.movies.config import CONFIG
from lib.movies.objective import floor, torch_dtype
from lib.movies.followup import add_arguments, run_followup  # noqa: F401 (the command's flags)
from lib.movies.optimise import initial_embeddings, run_optimizer

ARTIFACT = "movies_decay"
OPTIMIZERS = ("adam", "rmsprop")


def cosine_decay(iterations: int):
    """A scheduler factory: the learning rate falls from its initial value to 0 over ``iterations`` steps."""
    return lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=iterations)


def decayed(objective, dim: int) -> dict:
    """Every normal-start Adam/RMSprop run of CONFIG, with a cosine-decayed learning rate."""
    floor_loss = floor(objective, dim, CONFIG.floor_tol, CONFIG.floor_max_iter).loss
    dtype = torch_dtype(CONFIG.dtype)
    V0 = initial_embeddings(objective.n, dim, CONFIG.seed, CONFIG.init_std, "normal", dtype)
    rows = []
    for spec in (s for s in CONFIG.runs if s.optimizer in OPTIMIZERS and s.init == "normal"):
        r = run_optimizer(objective, spec, V0, CONFIG.iterations, floor_loss=floor_loss,
                          schedule=cosine_decay(CONFIG.iterations))
        gaps = (r.losses - floor_loss) / floor_loss
        rows.append({"name": spec.name, "optimizer": spec.optimizer, "lr": spec.lr, "schedule": "cosine to 0",
                     "final_gap": r.gap(floor_loss), "min_gap": float(np.nanmin(gaps)), "steps": r.steps,
                     "target_step": r.target_step, "seconds": round(r.seconds, 3), "diverged": r.diverged})
    return {"dim": dim, "floor_loss": floor_loss, "iterations": CONFIG.iterations, "runs": rows}


def run(args: argparse.Namespace) -> int:
    payload = run_followup(args, ARTIFACT, decayed)
    for row in payload["runs"]:
        print(f"{row['name']} with cosine decay: final gap {row['final_gap']:.3e}")
    return 0
