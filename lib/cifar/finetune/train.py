"""Training in the manner of torchvision's ``references/classification/train.py``: ``train_one_epoch``,
``evaluate`` and :func:`fit` (resume, time guard, epoch selected by validation accuracy, a checkpoint
after every epoch: ``last.pt`` resumes exactly, ``best.pt`` holds the selected weights).

Under torchrun the same code runs data parallel: every rank draws the same permutation and augmentation
for each global batch and trains on its share (as ``DistributedSampler`` does); evaluation shards the
images and gathers the probabilities in order. Batch norm is synchronised on GPUs; CPUs have no
SyncBatchNorm, so each rank normalises its own share (appendix B). Every batch comes from a generator
of (seed, epoch, step), so a resumed epoch redraws the same batches.
"""
from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from lib.core import distributed
from lib.core.artifacts import result_path
from lib.core.errors import ConfigError
from lib.cifar.finetune.data import Splits, step_generator
from lib.cifar.finetune.recipe import (CHECKPOINT_FORMAT, N_CLASSES, Context, FinetuneNet, Recipe, RunOptions,
                                       build_model, build_optimizer, build_scheduler, config_diff)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler,
                    splits: Splits, recipe: Recipe, ctx: Context, epoch: int, *, show_progress: bool = False,
                    log_every: int = 10) -> dict:
    """One pass over the training set; the epoch's row of the history (loss, accuracy, time)."""
    from tqdm import tqdm

    n = splits.train_labels.numel()
    steps = n // recipe.batch_size
    order = torch.randperm(n, device=ctx.device, generator=step_generator(ctx.device, recipe.seed, epoch, -1))
    share = distributed.shard(recipe.batch_size)  # this process's part of every global batch
    model.train()
    with tqdm(total=steps, desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch", leave=False,
              file=sys.stderr, dynamic_ncols=True, disable=not show_progress) as bar:
        loss_acc = torch.zeros((), device=ctx.device)
        correct_acc = torch.zeros((), device=ctx.device, dtype=torch.long)
        loss_sum, correct, seen, seconds, timed_images, timed_seconds = 0.0, 0, 0, 0.0, 0, 0.0
        # Sums are read at synchronisation points (every ``log_every`` steps); the first window (one
        # step: allocator warm-up, cuDNN autotuning) counts in ``seconds`` but not in the images/s.
        first_window, window_images, window_start = True, 0, time.perf_counter()
        for step in range(steps):
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            g = step_generator(ctx.device, recipe.seed, epoch, step)
            x = ctx.layout(splits.train_input(idx, recipe, g, share))
            y = splits.train_labels[idx[share]]
            with ctx.autocast():
                logits = model(x)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            loss_acc += loss.detach() * y.numel()
            correct_acc += (logits.detach().argmax(1) == y).sum()
            seen += idx.numel()
            window_images += idx.numel()
            if first_window or (step + 1) % log_every == 0 or step + 1 == steps:
                ctx.sync()
                now = time.perf_counter()
                seconds += now - window_start
                if not first_window:
                    timed_images += window_images
                    timed_seconds += now - window_start
                loss_sum += float(distributed.all_reduce_sum(loss_acc))
                correct += int(distributed.all_reduce_sum(correct_acc))
                loss_acc.zero_()
                correct_acc.zero_()
                bar.update(step + 1 - bar.n)
                bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.3f}", acc=f"{correct / max(seen, 1):.3f}",
                                img_s=f"{window_images / max(now - window_start, 1e-9):.0f}")
                first_window, window_images, window_start = False, 0, now
    return {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "seconds": seconds,
            "images_per_s": timed_images / timed_seconds if timed_seconds > 0 else seen / max(seconds, 1e-9)}


@torch.inference_mode()
def evaluate(model: nn.Module, splits: Splits, split: str, recipe: Recipe, ctx: Context,
             batch_size: int = 500) -> dict:
    """Loss (plain cross-entropy of the predicted probabilities), accuracy, class probabilities (N, 10)
    and images/s on ``split`` ("val" or "test"); with ``flip_average`` the probabilities are the
    mean over the image and its mirror image. Under torchrun each rank scores a disjoint shard and
    every rank gets all N rows, in order."""
    images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
    mine = distributed.shard(labels.numel())
    images, labels_here = images[mine], labels[mine]
    model.eval()
    probs, loss_sum = [], 0.0
    ctx.sync()
    start = time.perf_counter()
    for i in range(0, labels_here.numel(), batch_size):
        batch = images[i:i + batch_size].to(ctx.device, non_blocking=True)
        y = labels_here[i:i + batch_size].to(ctx.device)
        with ctx.autocast():
            logits = model(ctx.layout(splits.eval_input(batch, recipe))).float()
            if recipe.flip_average:
                mirror_logits = model(ctx.layout(splits.eval_input(batch, recipe, mirrored=True))).float()
            else:
                p, log_p = torch.softmax(logits, 1), torch.log_softmax(logits, 1)
        if recipe.flip_average:
            p = 0.5 * (torch.softmax(logits, 1) + torch.softmax(mirror_logits, 1))
            log_p = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
        loss_sum += float(F.nll_loss(log_p, y, reduction="sum"))
        probs.append(p.cpu())
    ctx.sync()
    seconds = time.perf_counter() - start
    p = torch.cat(probs) if probs else torch.zeros((0, N_CLASSES))
    p = distributed.gather_shards(p.to(ctx.device)).cpu().numpy()
    loss_sum = float(distributed.all_reduce_sum(torch.tensor(loss_sum, dtype=torch.float64, device=ctx.device)))
    n = labels.numel()
    acc = float((p.argmax(1) == labels.numpy()).mean()) if n else float("nan")
    return {"loss": loss_sum / max(n, 1), "accuracy": acc, "probs": p, "seconds": seconds,
            "images_per_s": n / max(seconds, 1e-9)}


# --- checkpoints ----------------------------------------------------------------------------
def save_checkpoint(path: Path, payload: dict) -> None:
    with result_path(path) as tmp:  # a kill mid-write never leaves half a checkpoint; rank 0 alone writes
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


def rng_state() -> dict:
    """The global random-number states (dropout, drop-connect); batches come from their own generators."""
    return {"torch": torch.get_rng_state(), **({"cuda": torch.cuda.get_rng_state_all()}
                                               if torch.cuda.is_available() else {})}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except (RuntimeError, IndexError):
            pass  # a different number of GPUs: keep the fresh state


# --- one run -------------------------------------------------------------------------------
@dataclass
class TrainOutcome:
    model: FinetuneNet
    history: list[dict]
    best_epoch: int | None
    stopped_early: bool
    stop_reason: str | None
    weights: dict | None
    resumed_from: dict | None


def fit(recipe: Recipe, options: RunOptions, splits: Splits, ctx: Context, mirror: Path | None = None,
        checkpoints: bool = True) -> TrainOutcome:
    """Train (or resume) under ``recipe``; returns the model holding the validation-selected weights."""
    session_start = time.perf_counter()  # --max-minutes counts this session
    net, weights = build_model(recipe, mirror)
    net.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.contiguous_format)
    optimizer = build_optimizer(net, recipe)
    lr_scheduler = build_scheduler(optimizer, recipe, splits.train_labels.numel() // recipe.batch_size)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    last_path, best_path = options.checkpoint_dir / "last.pt", options.checkpoint_dir / "best.pt"
    history, best_epoch, best_acc, best_state, resumed_from, saved = [], None, -1.0, None, None, 0
    if checkpoints and options.fresh and distributed.is_main():
        for path in (last_path, best_path):
            path.unlink(missing_ok=True)
    distributed.barrier()
    if checkpoints and last_path.is_file():
        ckpt = load_checkpoint(last_path, recipe)
        net.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        set_rng_state(ckpt["rng"])
        if not distributed.is_main():  # rank 0 continues the saved dropout stream; the others their own
            torch.manual_seed(dropout_seed(recipe.seed, distributed.rank(), int(ckpt["epoch"])))
        history = list(ckpt["history"])[:int(ckpt["epoch"])]
        best_epoch, best_acc = ckpt["best_epoch"], float(ckpt["best_val_accuracy"])
        resumed_from, saved = {"epoch": len(history), "step": 0}, len(history)
        print(f"resuming from {last_path}: epoch {len(history) + 1}", flush=True)
    else:
        torch.manual_seed(dropout_seed(recipe.seed, distributed.rank()))  # drop-connect / dropout stream
    model = data_parallel(net, ctx)
    stop_reason = None
    try:
        with out_of_memory_hint(recipe, ctx), _sigterm_as_interrupt():
            for epoch in range(len(history), recipe.epochs):
                stop_reason = _time_guard(options, history, session_start)
                if distributed.any_rank(stop_reason is not None):
                    stop_reason = stop_reason or "time guard: another process would overrun --max-minutes"
                if stop_reason:
                    print(stop_reason, flush=True)
                    break
                row = train_one_epoch(model, criterion, optimizer, lr_scheduler, splits, recipe, ctx, epoch,
                                      show_progress=options.show_progress, log_every=options.log_every)
                lrs = {g.get("name"): float(g["lr"]) for g in optimizer.param_groups}
                row.update(lr_head=lrs.get("head", float("nan")), lr_backbone=lrs.get("backbone", float("nan")))
                distributed.broadcast_buffers(net)  # rank 0's batch-norm statistics, as saved
                if splits.val_labels.numel():
                    val = evaluate(net, splits, "val", recipe, ctx, options.eval_batch_size)
                    row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_seconds=val["seconds"])
                history.append(row)
                score = row.get("val_accuracy", float(epoch))  # validation selects the epoch
                if score >= best_acc or best_epoch is None:
                    best_epoch, best_acc = epoch + 1, score
                    if checkpoints:
                        save_checkpoint(best_path, {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                                    "model": net.state_dict(), "config": asdict(recipe)})
                    else:
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                if checkpoints:
                    save_checkpoint(last_path, {
                        "format": CHECKPOINT_FORMAT, "model": net.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "lr_scheduler": lr_scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                        "best_epoch": best_epoch, "best_val_accuracy": best_acc, "rng": rng_state(),
                        "config": asdict(recipe), "args": {k: str(v) for k, v in asdict(options).items()}})
                    saved = epoch + 1
                print(_epoch_line(row, recipe.epochs), flush=True)
    except KeyboardInterrupt:
        if checkpoints and saved:
            print(f"\ninterrupted: {last_path} holds the run after epoch {saved}; rerun the same "
                  "command to resume from there", file=sys.stderr, flush=True)
        raise
    if best_epoch is not None and best_epoch != len(history):  # a later epoch was trained after the best
        distributed.barrier()  # rank 0 has written best.pt
        if checkpoints:
            net.load_state_dict(torch.load(best_path, map_location=ctx.device, weights_only=True)["model"])
        elif best_state is not None:
            net.load_state_dict(best_state)
    return TrainOutcome(net, history, best_epoch, stop_reason is not None, stop_reason, weights, resumed_from)


def dropout_seed(seed: int, rank: int, epoch: int = 0) -> int:
    """The global generator's seed (dropout, drop-connect): one process's is ``seed + 1``, as it always
    was; under torchrun each other rank draws its own stream (a resumed rank a fresh one per epoch)."""
    return seed + 1 if rank == 0 and epoch == 0 else (seed + 1) * 1_000_003 + rank * 1_009 + epoch


def data_parallel(net: nn.Module, ctx: Context) -> nn.Module:
    """``net`` wrapped in DistributedDataParallel under torchrun (itself in one process); on GPUs its
    batch norm synchronised across ranks, since each rank sees only its share of the batch."""
    if distributed.world_size() == 1:
        return net
    if ctx.device.type == "cuda":
        return nn.parallel.DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(net),
                                                   device_ids=[ctx.device.index])
    return nn.parallel.DistributedDataParallel(net)


@contextmanager
def out_of_memory_hint(recipe: Recipe, ctx: Context) -> Iterator[None]:
    """Turn running out of memory into a one-line error that says what to change."""
    try:
        yield
    except Exception as exc:
        text = str(exc).lower()
        if isinstance(exc, torch.OutOfMemoryError) or (
                isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)):
            raise ConfigError(
                f"out of memory on {ctx.device} with --batch-size {recipe.batch_size} at "
                f"{recipe.resolution} px: rerun with a smaller batch, e.g. --batch-size "
                f"{max(2, recipe.batch_size // 2)} (with --fresh, since the batch size is part of the "
                "recipe), a smaller --eval-batch-size, or a lower --resolution") from exc
        raise


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. a scheduler's kill) stops like Ctrl-C does."""
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


def _epoch_line(row: dict, epochs: int) -> str:
    text = (f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f} "
            f"acc {row['train_accuracy']:.4f}, {row['images_per_s']:.1f} img/s, {row['seconds']:.1f} s")
    if "val_accuracy" in row:
        text += f"; val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.4f}"
    return text
