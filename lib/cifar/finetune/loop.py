"""One training run: build, resume from a checkpoint, train epoch by epoch under a time
guard, select the epoch by validation accuracy, checkpoint on every epoch and on interrupt."""
from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from lib.core.errors import ConfigError
from lib.cifar.finetune.checkpoint import _rng_state, _set_rng_state, load_checkpoint, save_checkpoint
from lib.cifar.finetune.data import Splits
from lib.cifar.finetune.engine import EpochProgress, _out_of_memory, evaluate, train_one_epoch
from lib.cifar.finetune.model import FinetuneNet, build_model, build_optimizer, build_scheduler
from lib.cifar.finetune.recipe import CHECKPOINT_FORMAT, Context, Recipe, RunOptions


@dataclass
class TrainOutcome:
    model: FinetuneNet
    history: list[dict]
    best_epoch: int | None
    stopped_early: bool
    stop_reason: str | None
    weights: dict | None
    resumed_from: dict | None
    session_seconds: float


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. a scheduler's kill) saves a checkpoint like Ctrl-C does."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class _Run:
    """Everything a checkpoint holds: the trained objects and the bookkeeping around them."""

    model: FinetuneNet
    optimizer: torch.optim.Optimizer
    lr_scheduler: Any
    history: list[dict] = field(default_factory=list)
    progress: EpochProgress = field(default_factory=EpochProgress)
    completed: int = 0
    best_epoch: int | None = None
    best_acc: float = -1.0
    resumed_from: dict | None = None
    best_state: dict | None = None


def _resume(run: _Run, last_path: Path, recipe: Recipe) -> None:
    """Restore ``run`` from ``last_path`` (checked against ``recipe``)."""
    ckpt = load_checkpoint(last_path, recipe)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    _set_rng_state(ckpt["rng"])
    run.completed = int(ckpt["epoch"])
    run.history = list(ckpt["history"])[:run.completed]  # a row appended just before a kill is redone
    run.progress = EpochProgress(**ckpt["progress"])
    run.best_epoch, run.best_acc = ckpt["best_epoch"], float(ckpt["best_val_accuracy"])
    run.resumed_from = {"epoch": run.completed, "step": run.progress.step}
    print(f"resuming from {last_path}: epoch {run.completed + 1}, step {run.progress.step}", flush=True)


def _save_last(run: _Run, path: Path, recipe: Recipe, options: RunOptions) -> None:
    """``last.pt``: everything needed to resume exactly, mid-epoch included."""
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "lr_scheduler": run.lr_scheduler.state_dict(), "epoch": run.completed, "progress": asdict(run.progress),
        "history": run.history, "best_epoch": run.best_epoch, "best_val_accuracy": run.best_acc,
        "rng": _rng_state(), "config": asdict(recipe),
        "args": {k: str(v) for k, v in asdict(options).items()}})


def _time_guard(options: RunOptions, history: list[dict], session_start: float) -> str | None:
    """Why another epoch would overrun ``--max-minutes`` (None: it fits, or there is no limit)."""
    if options.max_minutes is None or not history:
        return None
    elapsed = time.perf_counter() - session_start
    last = history[-1]["seconds"] + history[-1].get("val_seconds", 0.0)
    if elapsed + last <= options.max_minutes * 60:
        return None
    return (f"time guard: {elapsed / 60:.1f} min used of --max-minutes {options.max_minutes}; "
            f"another epoch (~{last / 60:.1f} min) would exceed it")


def _epoch_row(run: _Run, splits: Splits, recipe: Recipe, ctx: Context, options: RunOptions,
               epoch: int) -> dict:
    """The history row of a finished epoch, with its validation score when there is a split."""
    progress = run.progress
    row = {"epoch": epoch + 1, "train_loss": progress.loss_sum / max(progress.seen, 1),
           "train_accuracy": progress.correct / max(progress.seen, 1),
           "seconds": progress.seconds,
           "images_per_s": (progress.timed_images / progress.timed_seconds
                            if progress.timed_seconds > 0 else
                            progress.seen / max(progress.seconds, 1e-9)),
           "lr_head": _group_lr(run.optimizer, "head"),
           "lr_backbone": _group_lr(run.optimizer, "backbone")}
    if splits.val_labels.numel():
        val = evaluate(run.model, splits.val_images, splits.val_labels, recipe, ctx, options.eval_batch_size)
        row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_seconds=val["seconds"])
    return row


def _keep_if_best(run: _Run, row: dict, epoch: int, recipe: Recipe, best_path: Path,
                  checkpoints: bool) -> None:
    """Validation selects the epoch: its weights go to ``best.pt`` (or memory without checkpoints)."""
    score = row.get("val_accuracy", float(epoch))
    if not (score >= run.best_acc or run.best_epoch is None):
        return
    run.best_epoch, run.best_acc = epoch + 1, score
    if checkpoints:
        save_checkpoint(best_path, {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                    "model": run.model.state_dict(), "config": asdict(recipe)})
    run.best_state = None if checkpoints else {k: v.detach().clone() for k, v in run.model.state_dict().items()}


def _start(recipe: Recipe, splits: Splits, ctx: Context, mirror: Path | None) -> tuple[_Run, dict | None]:
    """A fresh model (seeded), its optimiser and per-step schedule."""
    model, weights = build_model(recipe, mirror)
    model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.contiguous_format)
    optimizer = build_optimizer(model, recipe)
    steps_per_epoch = splits.train_labels.numel() // recipe.batch_size
    return _Run(model, optimizer, build_scheduler(optimizer, recipe, steps_per_epoch)), weights


def train(recipe: Recipe, options: RunOptions, splits: Splits, ctx: Context, mirror: Path | None = None,
          checkpoints: bool = True) -> TrainOutcome:
    """Train (or resume) under ``recipe``; returns the model holding the validation-selected weights."""
    session_start = time.perf_counter()
    run, weights = _start(recipe, splits, ctx, mirror)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    last_path, best_path = options.checkpoint_dir / "last.pt", options.checkpoint_dir / "best.pt"
    if checkpoints and options.fresh:
        for path in (last_path, best_path):
            path.unlink(missing_ok=True)
    if checkpoints and last_path.is_file():
        _resume(run, last_path, recipe)
    else:
        torch.manual_seed(recipe.seed + 1)  # drop-connect / dropout stream
    show = sys.stderr.isatty() if options.progress is None else options.progress
    stop_reason = None
    try:
        with _sigterm_as_interrupt():
            for epoch in range(run.completed, recipe.epochs):
                stop_reason = _time_guard(options, run.history, session_start)
                if stop_reason:
                    print(stop_reason, flush=True)
                    break
                train_one_epoch(run.model, criterion, run.optimizer, run.lr_scheduler, splits, recipe, ctx,
                                epoch, run.progress, show_progress=show, log_every=options.log_every)
                row = _epoch_row(run, splits, recipe, ctx, options, epoch)
                run.history.append(row)
                _keep_if_best(run, row, epoch, recipe, best_path, checkpoints)
                run.progress, run.completed = EpochProgress(), epoch + 1
                if checkpoints:
                    _save_last(run, last_path, recipe, options)
                print(_epoch_line(row, recipe.epochs), flush=True)
    except KeyboardInterrupt:
        if checkpoints:
            _save_last(run, last_path, recipe, options)
            print(f"\ninterrupted: checkpoint saved to {last_path} (epoch {run.completed + 1}, step "
                  f"{run.progress.step}); rerun the same command to resume", file=sys.stderr, flush=True)
        raise
    except Exception as exc:
        _raise_if_out_of_memory(exc, recipe, ctx)
        raise
    _restore_best(run, best_path, ctx, checkpoints)
    return TrainOutcome(run.model, run.history, run.best_epoch, stop_reason is not None, stop_reason, weights,
                        run.resumed_from, time.perf_counter() - session_start)


def _restore_best(run: _Run, best_path: Path, ctx: Context, checkpoints: bool) -> None:
    """Load the validation-selected weights when a later epoch was trained after them."""
    if run.best_epoch is None or run.best_epoch == len(run.history):
        return
    if checkpoints:
        run.model.load_state_dict(torch.load(best_path, map_location=ctx.device, weights_only=True)["model"])
    elif run.best_state is not None:
        run.model.load_state_dict(run.best_state)


def _raise_if_out_of_memory(exc: BaseException, recipe: Recipe, ctx: Context) -> None:
    if _out_of_memory(exc):
        raise ConfigError(
            f"out of memory on {ctx.device} with --batch-size {recipe.batch_size} at "
            f"{recipe.resolution} px: rerun with a smaller batch, e.g. --batch-size "
            f"{max(2, recipe.batch_size // 2)} (with --fresh, since the batch size is part of the "
            "recipe), a smaller --eval-batch-size, or a lower --resolution") from exc


def _group_lr(optimizer: torch.optim.Optimizer, name: str) -> float:
    for group in optimizer.param_groups:
        if group.get("name") == name:
            return float(group["lr"])
    return float("nan")


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.4f}, {row['images_per_s']:.1f} img/s, {row['seconds']:.1f} s")
    if "val_accuracy" in row:
        text += f"; val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}"
    return text
