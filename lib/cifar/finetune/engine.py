"""One epoch of training and one evaluation pass, in the manner of torchvision's
``references/classification`` (``train_one_epoch``, ``evaluate``)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.cifar.finetune.data import Splits, augment, padding_in_cells, pick_views, step_generator
from lib.cifar.finetune.recipe import N_CLASSES, Context, Recipe


@dataclass
class EpochProgress:
    """Running sums of one epoch; saved mid-epoch so an interrupted epoch resumes exactly."""

    step: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    seconds: float = 0.0
    timed_images: int = 0   # images in steps after the first (warm-up) step
    timed_seconds: float = 0.0


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def train_one_epoch(model: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                    lr_scheduler, splits: Splits, recipe: Recipe, ctx: Context, epoch: int,
                    progress: EpochProgress, *, show_progress: bool = False, log_every: int = 10,
                    steps_limit: int | None = None) -> EpochProgress:
    """One pass over the training images (``progress`` is updated in place and returned)."""
    from lib.cifar.backbones import get_backbone

    backbone = get_backbone(recipe.backbone)
    n = splits.train_labels.numel()
    steps = n // recipe.batch_size
    if steps_limit is not None:
        steps = min(steps, steps_limit)
    order = torch.randperm(n, device=ctx.device, generator=step_generator(ctx.device, recipe.seed, epoch, -1))
    model.train()
    bar = None
    if show_progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=progress.step, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                   unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True)
    loss_acc = torch.zeros((), device=ctx.device)
    correct_acc = torch.zeros((), device=ctx.device, dtype=torch.long)
    # Timing windows end at synchronisation points; the first window of a call (one step:
    # allocator warm-up, cuDNN autotuning) counts in ``seconds`` but not in the images/s.
    first_window = True
    window_images, window_start = 0, time.perf_counter()

    def close_window() -> None:
        nonlocal first_window, window_images, window_start
        ctx.sync()
        now = time.perf_counter()
        progress.seconds += now - window_start
        if not first_window:
            progress.timed_images += window_images
            progress.timed_seconds += now - window_start
        progress.loss_sum += float(loss_acc)
        progress.correct += int(correct_acc)
        loss_acc.zero_()
        correct_acc.zero_()
        if bar is not None:
            rate = window_images / max(now - window_start, 1e-9)
            bar.update(progress.step - bar.n)
            bar.set_postfix(loss=f"{progress.loss_sum / max(progress.seen, 1):.3f}",
                            acc=f"{progress.correct / max(progress.seen, 1):.3f}", img_s=f"{rate:.0f}")
        first_window, window_images, window_start = False, 0, now

    try:
        while progress.step < steps:
            step = progress.step
            idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
            g = step_generator(ctx.device, recipe.seed, epoch, step)
            x = _training_input(splits.train_images[idx], recipe, backbone, ctx, g)
            y = splits.train_labels[idx]
            with ctx.autocast():
                logits = model(x)
                loss = criterion(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            lr_scheduler.step()
            loss_acc += loss.detach() * y.numel()
            correct_acc += (logits.detach().argmax(1) == y).sum()
            progress.step += 1
            progress.seen += y.numel()
            window_images += y.numel()
            if first_window or progress.step % log_every == 0 or progress.step == steps:
                close_window()
    except BaseException:
        # keep what the interrupted window accumulated, so a mid-epoch checkpoint is exact
        first_window = True
        close_window()
        raise
    finally:
        if bar is not None:
            bar.close()
    return progress


def _training_input(batch: torch.Tensor, recipe: Recipe, backbone, ctx: Context,
                    g: torch.Generator) -> torch.Tensor:
    """An augmented batch: random crop + flip of images, or of cached activations (B, 2, C, H, W)."""
    if batch.dtype == torch.uint8:
        return _to_input(augment(batch, recipe.crop_padding, recipe.hflip, g), recipe, backbone, ctx)
    views = pick_views(batch, recipe.hflip, padding_in_cells(recipe.crop_padding, batch.shape[-1]), g)
    return _to_input(views, recipe, backbone, ctx)


def _to_input(images: torch.Tensor, recipe: Recipe, backbone, ctx: Context) -> torch.Tensor:
    """uint8 images -> the network's input; cached activations (B, C, H, W) -> float."""
    from lib.cifar.backbones import to_model_input

    x = to_model_input(images, recipe.resolution, backbone) if images.dtype == torch.uint8 else images.float()
    return x.contiguous(memory_format=torch.channels_last) if ctx.channels_last else x.contiguous()


def _probabilities(model: nn.Module, batch: torch.Tensor, recipe: Recipe, backbone,
                   ctx: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, log-probabilities) of one evaluation batch; with ``flip_average`` the mean
    probabilities over the image and its mirror image."""
    cached = batch.dtype != torch.uint8   # (B, 2, C, H, W) activations: view 1 is the mirror image
    first = batch[:, 0] if cached else batch
    with ctx.autocast():
        logits = model(_to_input(first, recipe, backbone, ctx)).float()
        if not recipe.flip_average:
            return torch.softmax(logits, 1), torch.log_softmax(logits, 1)
        mirror = batch[:, 1] if cached else torch.flip(first, dims=[2])
        mirror_logits = model(_to_input(mirror, recipe, backbone, ctx)).float()
    probs = 0.5 * (torch.softmax(logits, 1) + torch.softmax(mirror_logits, 1))
    return probs, torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe,
             ctx: Context, batch_size: int = 500) -> dict:
    """Loss (plain cross-entropy of the predicted probabilities), accuracy, class probabilities
    (N, 10) and images/s."""
    from lib.cifar.backbones import get_backbone

    backbone = get_backbone(recipe.backbone)
    model.eval()
    probs, loss_sum = [], 0.0
    ctx.sync()
    start = time.perf_counter()
    for i in range(0, labels.numel(), batch_size):
        batch = images[i:i + batch_size].to(ctx.device, non_blocking=True)
        y = labels[i:i + batch_size].to(ctx.device)
        p, log_p = _probabilities(model, batch, recipe, backbone, ctx)
        loss_sum += float(F.nll_loss(log_p, y, reduction="sum"))
        probs.append(p.cpu())
    ctx.sync()
    seconds = time.perf_counter() - start
    p = torch.cat(probs).numpy() if probs else np.zeros((0, N_CLASSES), np.float32)
    n = labels.numel()
    acc = float((p.argmax(1) == labels.numpy()).mean()) if n else float("nan")
    return {"loss": loss_sum / max(n, 1), "accuracy": acc, "probs": p, "seconds": seconds,
            "images_per_s": n / max(seconds, 1e-9)}
