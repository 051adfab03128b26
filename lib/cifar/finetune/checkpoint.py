"""Checkpoints: save atomically, load only under the identical recipe, restore RNG streams."""
from __future__ import annotations

import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from lib.core.artifacts import atomic_path
from lib.core.errors import ConfigError
from lib.cifar.finetune.recipe import CHECKPOINT_FORMAT, Recipe, config_diff


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(tuple(state["python"]) if not isinstance(state["python"], tuple) else state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass  # a different number of GPUs: keep the fresh state


def save_checkpoint(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:  # a kill mid-write never leaves half a checkpoint
        torch.save(payload, tmp)


def load_checkpoint(path: Path, recipe: Recipe) -> dict:
    """Load ``path`` after checking that it was made with ``recipe``."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt or foreign file
        raise ConfigError(f"{path}: not a readable finetuning checkpoint ({exc}); "
                          "delete it or pass --fresh") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT or "config" not in ckpt:
        raise ConfigError(f"{path}: not a finetuning checkpoint of format {CHECKPOINT_FORMAT}; "
                          "delete it or pass --fresh")
    diff = config_diff(ckpt["config"], asdict(recipe))
    if diff:
        raise ConfigError(
            f"checkpoint {path} was made with a different config, so it cannot be resumed:\n  "
            + "\n  ".join(diff)
            + "\nRerun with the checkpoint's options, pass --fresh to discard it, "
              "or use another --checkpoint-dir.")
    return ckpt
