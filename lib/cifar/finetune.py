"""Chapter 2: finetune an ImageNet-pretrained backbone on CIFAR-10 (all parameters trainable).

Layout follows torchvision's ``references/classification`` (``train_one_epoch``,
``evaluate``, a checkpoint dict with model/optimizer/lr_scheduler/epoch/args) and
airbench (every hyperparameter in one frozen dataclass, :class:`Recipe`; data kept
as one uint8 tensor on the device, augmentation done on whole batches there).

The recipe, in order of the training step:

* data: the training set minus a stratified validation split (``val_size``) is kept
  as reflect-padded uint8 NHWC on the device; each batch is cropped at random
  offsets and flipped left-right with tensor indexing, then upsampled to
  ``resolution`` (bilinear) and normalised as the backbone expects;
* model: the backbone's pooled feature network plus a new dropout + ``Linear(d, 10)`` head;
* optimiser: SGD with Nesterov momentum (or AdamW); the new head gets the peak
  learning rate ``lr``, pretrained layers ``lr * backbone_lr_scale``; ``lr`` is
  quoted for batch 256 and scaled linearly with the batch size; no weight decay
  on biases and batch-norm parameters;
* schedule: linear warm-up then cosine decay to zero (or one-cycle), stepped per batch;
* loss: cross-entropy with label smoothing;
* batch norm: trained in train mode, with momentum raised to ``bn_momentum`` so the
  running statistics re-adapt quickly from ImageNet photos to upsampled CIFAR images;
* precision: bf16 autocast and channels_last on CUDA (off on CPU, where they do not help).

The validation accuracy after each epoch selects the epoch whose weights are
tested; the test set is evaluated once, at the end. A checkpoint is written after
every epoch (and on Ctrl-C / SIGTERM, mid-epoch); rerunning the same command resumes.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import signal
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.core.paths import REPO_ROOT, RESULTS_DIR
from lib.core.artifacts import atomic_path
from lib.core.devices import resolve_device
from lib.core.errors import ConfigError

DEFAULT_CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
REFERENCE_BATCH = 256  # ``lr`` is quoted for this batch size and scaled linearly
N_CLASSES = 10
CHECKPOINT_FORMAT = 1


# --- hyperparameters: one place ---------------------------------------------
def _h(help_text: str, **extra: Any) -> dict:
    return {"help": help_text, **extra}


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained network. A checkpoint resumes only under
    the identical recipe; run options (device, time limit, paths) may differ."""

    backbone: str = field(default="efficientnet_lite0", metadata=_h("pretrained backbone (lib.cifar.backbones)"))
    pretrained: bool = field(default=True, metadata=_h("start from the ImageNet weights"))
    resolution: int = field(default=224, metadata=_h("training/eval resolution in px (multiple of 32)"))
    epochs: int = field(default=8, metadata=_h("planned epochs (schedule length)"))
    batch_size: int = field(default=256, metadata=_h("training batch size"))
    optimizer: str = field(default="sgd", metadata=_h("optimiser", choices=("sgd", "adamw")))
    lr: float = field(default=0.2, metadata=_h("peak learning rate of the new head at batch 256 "
                                                "(scaled linearly with --batch-size)"))
    backbone_lr_scale: float = field(default=0.1, metadata=_h("pretrained layers' lr = lr * this"))
    momentum: float = field(default=0.9, metadata=_h("SGD Nesterov momentum / AdamW beta1"))
    weight_decay: float = field(default=5e-5, metadata=_h("weight decay (not on biases and norm layers)"))
    schedule: str = field(default="cosine", metadata=_h("lr schedule after warm-up",
                                                          choices=("cosine", "onecycle")))
    warmup_epochs: float = field(default=0.5, metadata=_h("linear warm-up length in epochs"))
    label_smoothing: float = field(default=0.1, metadata=_h("cross-entropy label smoothing"))
    crop_padding: int = field(default=4, metadata=_h("random-crop padding in source (32 px) pixels"))
    hflip: bool = field(default=True, metadata=_h("random horizontal flips"))
    bn_momentum: float = field(default=0.1, metadata=_h("batch-norm running-statistics momentum"))
    head_dropout: float = field(default=0.2, metadata=_h("dropout before the new linear head"))
    val_size: int = field(default=5000, metadata=_h("stratified validation images held out of training"))
    limit_train: int | None = field(default=None, metadata=_h("train on a stratified subset of N images"))
    limit_test: int | None = field(default=None, metadata=_h("test on the first M official test images"))
    seed: int = field(default=0, metadata=_h("seed of split, initialisation, order and augmentation"))

    def __post_init__(self) -> None:
        from lib.cifar.backbones import BACKBONES, check_resolution

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"invalid --{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

        if self.backbone not in BACKBONES:
            bad("backbone", f"choose one of {sorted(BACKBONES)}")
        check_resolution(self.resolution)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                bad(name, "must be a positive integer")
        if self.batch_size < 2:
            bad("batch_size", "batch norm in train mode needs at least 2 images per batch")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad("lr", "the learning rate must be a positive number")
        for name in ("backbone_lr_scale", "weight_decay", "warmup_epochs"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                bad(name, "must be a finite number >= 0")
        if self.warmup_epochs > self.epochs:
            bad("warmup_epochs", f"longer than the {self.epochs} planned epochs")
        for name in ("momentum", "label_smoothing", "head_dropout"):
            if not 0 <= getattr(self, name) < 1:
                bad(name, "must be in [0, 1)")
        if not 0 < self.bn_momentum <= 1:
            bad("bn_momentum", "must be in (0, 1]")
        if self.optimizer not in ("sgd", "adamw"):
            bad("optimizer", "choose sgd or adamw")
        if self.schedule not in ("cosine", "onecycle"):
            bad("schedule", "choose cosine or onecycle")
        if not 0 <= self.crop_padding <= 16:
            bad("crop_padding", "must be between 0 and 16 source pixels")
        if self.val_size < 0:
            bad("val_size", "must be >= 0")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and value < 1:
                bad(name, "must be a positive number of images")
        if self.limit_train is not None and self.limit_train < self.batch_size:
            bad("limit_train", f"fewer images than one batch ({self.batch_size})")

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / REFERENCE_BATCH


def config_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two recipe dicts."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: checkpoint {old.get(k, '<absent>')!r}, now {new.get(k, '<absent>')!r}"
            for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]


# --- device, model -----------------------------------------------------------
@dataclass(frozen=True)
class RunOptions:
    """How (not what) to train; free to change between a run and its resumption."""

    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    eval_batch_size: int = 500
    max_minutes: float | None = None
    checkpoint_dir: Path = DEFAULT_CHECKPOINT_DIR / "finetune"
    results_dir: Path = RESULTS_DIR
    name: str = "finetune"
    fresh: bool = False
    progress: bool | None = None  # None: only on a terminal
    log_every: int = 10
    threads: int | None = None  # CPU threads for torch (None: torch's default)

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"invalid --threads {self.threads!r}: must be positive")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"invalid --max-minutes {self.max_minutes!r}: must be positive")
        if self.eval_batch_size < 1:
            raise ConfigError(f"invalid --eval-batch-size {self.eval_batch_size!r}: must be positive")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"invalid --amp {self.amp!r}: choose auto, bf16 or off")
        if self.channels_last not in ("auto", "on", "off"):
            raise ConfigError(f"invalid --channels-last {self.channels_last!r}: choose auto, on or off")


@dataclass(frozen=True)
class Context:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def create(cls, options: RunOptions) -> "Context":
        device = resolve_device(options.device)
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        amp = options.amp if options.amp != "auto" else ("bf16" if device.type == "cuda" else "off")
        cl = options.channels_last == "on" or (options.channels_last == "auto" and device.type == "cuda")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(device, torch.bfloat16 if amp == "bf16" else None, cl)

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        from lib.core.provenance import cpu_model
        return {"device": self.device.type, "device_name": name or cpu_model(),
                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                "channels_last": self.channels_last, "torch_threads": torch.get_num_threads(),
                "load_average_1min": _load_average()}


def _load_average() -> float | None:
    """Other processes competing for the CPU make throughput numbers pessimistic: record it."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


class FinetuneNet(nn.Module):
    """Pretrained feature network + a new classification head."""

    def __init__(self, features: nn.Module, feature_dim: int, n_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(feature_dim, n_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x)))


def build_model(recipe: Recipe, mirror: Path | None = None) -> tuple[FinetuneNet, dict | None]:
    from lib.cifar.backbones import get_backbone

    backbone = get_backbone(recipe.backbone)
    torch.manual_seed(recipe.seed)  # the head's (and a random-init backbone's) initialisation
    features, identity = backbone.build(pretrained=recipe.pretrained, resolution=recipe.resolution,
                                        mirror=mirror)
    for module in features.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = recipe.bn_momentum
    return FinetuneNet(features, backbone.feature_dim, N_CLASSES, recipe.head_dropout), identity


def count_parameters(model: nn.Module) -> tuple[int, int]:
    params = list(model.parameters())
    return (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))


def build_optimizer(model: FinetuneNet, recipe: Recipe) -> torch.optim.Optimizer:
    """Four groups: {backbone, head} x {decayed weights, biases/norm parameters (no decay)}."""
    groups = []
    for part, scale in ((model.features, recipe.backbone_lr_scale), (model.head, 1.0)):
        decay = [p for p in part.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in part.parameters() if p.requires_grad and p.ndim <= 1]
        name = "backbone" if part is model.features else "head"
        for params, wd, suffix in ((decay, recipe.weight_decay, ""), (no_decay, 0.0, "_no_decay")):
            if params:
                groups.append({"params": params, "lr": recipe.scaled_lr * scale, "weight_decay": wd,
                               "name": name + suffix})
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=recipe.scaled_lr, momentum=recipe.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=recipe.scaled_lr, betas=(recipe.momentum, 0.999))


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    total = recipe.epochs * steps_per_epoch
    warmup = min(total - 1, round(recipe.warmup_epochs * steps_per_epoch))
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total,
            pct_start=max(warmup, 1) / total, anneal_strategy="cos",
            cycle_momentum=recipe.optimizer == "sgd" and recipe.momentum > 0)

    def factor(step: int) -> float:  # multiplies each group's base lr
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# --- data on the device and batched augmentation -----------------------------
@dataclass
class Splits:
    train_images: torch.Tensor   # (N, 32+2p, 32+2p, 3) uint8 on the device, reflect-padded
    train_labels: torch.Tensor   # (N,) int64 on the device
    val_images: torch.Tensor     # (V, 32, 32, 3) uint8 (CPU)
    val_labels: torch.Tensor
    test_images: torch.Tensor    # (M, 32, 32, 3) uint8 (CPU), official order
    test_labels: torch.Tensor
    train_index: np.ndarray      # indices into the official training set
    val_index: np.ndarray

    def sizes(self) -> dict:
        return {"n_train": int(self.train_labels.numel()), "n_val": int(self.val_labels.numel()),
                "n_test": int(self.test_labels.numel())}


def split_indices(labels: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices into the official training set (both stratified)."""
    from lib.cifar.metrics import stratified_split

    n = labels.size
    if recipe.val_size >= n:
        raise ConfigError(f"--val-size {recipe.val_size} leaves no training images (of {n})")
    if recipe.val_size:
        train_idx, val_idx = stratified_split(labels, recipe.val_size, recipe.seed)
    else:
        train_idx, val_idx = np.arange(n), np.arange(0)
    if recipe.limit_train is not None:
        if recipe.limit_train > train_idx.size:
            raise ConfigError(f"--limit-train {recipe.limit_train} exceeds the {train_idx.size} "
                              "training images left after the validation split")
        if recipe.limit_train < train_idx.size:
            _, keep = stratified_split(labels[train_idx], recipe.limit_train, recipe.seed + 1)
            train_idx = train_idx[keep]
    return train_idx, val_idx


def prepare_splits(recipe: Recipe, dirs, device: torch.device) -> Splits:
    from lib.core.data import load_cifar10

    train = load_cifar10("train", dirs)
    test = load_cifar10("test", dirs)
    train_idx, val_idx = split_indices(train.labels, recipe)
    if recipe.limit_test is not None and recipe.limit_test > test.labels.size:
        raise ConfigError(f"--limit-test {recipe.limit_test} exceeds the {test.labels.size} test images")
    n_test = recipe.limit_test or test.labels.size
    p = recipe.crop_padding
    padded = np.pad(train.images[train_idx], ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return Splits(
        train_images=torch.from_numpy(padded).to(device),
        train_labels=torch.from_numpy(train.labels[train_idx]).to(device),
        val_images=torch.from_numpy(train.images[val_idx]),
        val_labels=torch.from_numpy(train.labels[val_idx]),
        test_images=torch.from_numpy(test.images[:n_test]),
        test_labels=torch.from_numpy(test.labels[:n_test]),
        train_index=train_idx, val_index=val_idx)


def step_generator(device: torch.device, seed: int, epoch: int, step: int) -> torch.Generator:
    """A generator determined by (seed, epoch, step): resuming mid-epoch redraws the same batches."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + step)
    return g


def augment(padded: torch.Tensor, padding: int, hflip: bool, g: torch.Generator) -> torch.Tensor:
    """Random crop (size = unpadded size) + horizontal flip of a uint8 NHWC batch, on its device."""
    n, h, w, _ = padded.shape
    size_h, size_w = h - 2 * padding, w - 2 * padding
    dev = padded.device
    dy = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=g)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=dev, generator=g)
    rows = dy[:, None] + torch.arange(size_h, device=dev)  # (n, H)
    cols = dx[:, None] + torch.arange(size_w, device=dev)  # (n, W)
    out = padded[torch.arange(n, device=dev)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if hflip:
        flip = torch.rand(n, device=dev, generator=g) < 0.5
        out = torch.where(flip[:, None, None, None], out.flip(2), out)
    return out


# --- training and evaluation ---------------------------------------------------
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
            crops = augment(splits.train_images[idx], recipe.crop_padding, recipe.hflip, g)
            x = _to_input(crops, recipe, backbone, ctx)
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


def _to_input(images: torch.Tensor, recipe: Recipe, backbone, ctx: Context) -> torch.Tensor:
    from lib.cifar.backbones import to_model_input

    x = to_model_input(images, recipe.resolution, backbone)
    return x if ctx.channels_last else x.contiguous()


@torch.inference_mode()
def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, recipe: Recipe,
             ctx: Context, batch_size: int = 500) -> dict:
    """Loss (plain cross-entropy), accuracy, class probabilities (N, 10) and images/s."""
    from lib.cifar.backbones import get_backbone

    backbone = get_backbone(recipe.backbone)
    model.eval()
    probs, loss_sum = [], 0.0
    ctx.sync()
    start = time.perf_counter()
    for i in range(0, labels.numel(), batch_size):
        x = _to_input(images[i:i + batch_size].to(ctx.device, non_blocking=True), recipe, backbone, ctx)
        y = labels[i:i + batch_size].to(ctx.device)
        with ctx.autocast():
            logits = model(x).float()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        probs.append(torch.softmax(logits, 1).cpu())
    ctx.sync()
    seconds = time.perf_counter() - start
    p = torch.cat(probs).numpy() if probs else np.zeros((0, N_CLASSES), np.float32)
    n = labels.numel()
    acc = float((p.argmax(1) == labels.numpy()).mean()) if n else float("nan")
    return {"loss": loss_sum / max(n, 1), "accuracy": acc, "probs": p, "seconds": seconds,
            "images_per_s": n / max(seconds, 1e-9)}


# --- checkpoints -------------------------------------------------------------------
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


# --- one training run -----------------------------------------------------------
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


def train(recipe: Recipe, options: RunOptions, splits: Splits, ctx: Context, mirror: Path | None = None,
          checkpoints: bool = True) -> TrainOutcome:
    """Train (or resume) under ``recipe``; returns the model holding the validation-selected weights."""
    session_start = time.perf_counter()
    model, weights = build_model(recipe, mirror)
    model.to(ctx.device, memory_format=torch.channels_last if ctx.channels_last else torch.contiguous_format)
    steps_per_epoch = splits.train_labels.numel() // recipe.batch_size
    optimizer = build_optimizer(model, recipe)
    lr_scheduler = build_scheduler(optimizer, recipe, steps_per_epoch)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    last_path = options.checkpoint_dir / "last.pt"
    best_path = options.checkpoint_dir / "best.pt"
    history: list[dict] = []
    progress = EpochProgress()
    start_epoch, best_epoch, best_acc, resumed_from = 0, None, -1.0, None
    if checkpoints and options.fresh:
        for path in (last_path, best_path):
            path.unlink(missing_ok=True)
    if checkpoints and last_path.is_file():
        ckpt = load_checkpoint(last_path, recipe)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
        _set_rng_state(ckpt["rng"])
        start_epoch = int(ckpt["epoch"])
        history = list(ckpt["history"])[:start_epoch]  # a row appended just before a kill is redone
        progress = EpochProgress(**ckpt["progress"])
        best_epoch, best_acc = ckpt["best_epoch"], float(ckpt["best_val_accuracy"])
        resumed_from = {"epoch": start_epoch, "step": progress.step}
        print(f"resuming from {last_path}: epoch {start_epoch + 1}, step {progress.step}", flush=True)
    else:
        torch.manual_seed(recipe.seed + 1)  # drop-connect / dropout stream

    def checkpoint(epoch: int) -> None:
        if not checkpoints:
            return
        save_checkpoint(last_path, {
            "format": CHECKPOINT_FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(), "epoch": epoch, "progress": asdict(progress),
            "history": history, "best_epoch": best_epoch, "best_val_accuracy": best_acc,
            "rng": _rng_state(), "config": asdict(recipe),
            "args": {k: str(v) for k, v in asdict(options).items()}})

    show = sys.stderr.isatty() if options.progress is None else options.progress
    stopped_early, stop_reason = False, None
    completed, best_state = start_epoch, None
    try:
        with _sigterm_as_interrupt():
            for epoch in range(start_epoch, recipe.epochs):
                if options.max_minutes is not None and history:
                    elapsed = time.perf_counter() - session_start
                    last = history[-1]["seconds"] + history[-1].get("val_seconds", 0.0)
                    if elapsed + last > options.max_minutes * 60:
                        stopped_early = True
                        stop_reason = (f"time guard: {elapsed / 60:.1f} min used of --max-minutes "
                                       f"{options.max_minutes}; another epoch (~{last / 60:.1f} min) "
                                       "would exceed it")
                        print(stop_reason, flush=True)
                        break
                train_one_epoch(model, criterion, optimizer, lr_scheduler, splits, recipe, ctx, epoch,
                                progress, show_progress=show, log_every=options.log_every)
                row = {"epoch": epoch + 1, "train_loss": progress.loss_sum / max(progress.seen, 1),
                       "train_accuracy": progress.correct / max(progress.seen, 1),
                       "seconds": progress.seconds,
                       "images_per_s": (progress.timed_images / progress.timed_seconds
                                        if progress.timed_seconds > 0 else
                                        progress.seen / max(progress.seconds, 1e-9)),
                       "lr_head": _group_lr(optimizer, "head"),
                       "lr_backbone": _group_lr(optimizer, "backbone")}
                if splits.val_labels.numel():
                    val = evaluate(model, splits.val_images, splits.val_labels, recipe, ctx,
                                   options.eval_batch_size)
                    row.update(val_loss=val["loss"], val_accuracy=val["accuracy"], val_seconds=val["seconds"])
                history.append(row)
                score = row.get("val_accuracy", float(epoch))
                if score >= best_acc or best_epoch is None:
                    best_epoch, best_acc = epoch + 1, score
                    if checkpoints:
                        save_checkpoint(best_path, {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                                    "model": model.state_dict(), "config": asdict(recipe)})
                    best_state = None if checkpoints else {k: v.detach().clone()
                                                            for k, v in model.state_dict().items()}
                progress, completed = EpochProgress(), epoch + 1
                checkpoint(completed)
                print(_epoch_line(row, recipe.epochs), flush=True)
    except KeyboardInterrupt:
        checkpoint(completed)
        if checkpoints:
            print(f"\ninterrupted: checkpoint saved to {last_path} (epoch {completed + 1}, step "
                  f"{progress.step}); rerun the same command to resume", file=sys.stderr, flush=True)
        raise
    except Exception as exc:
        _raise_if_out_of_memory(exc, recipe, ctx)
        raise
    # the validation-selected weights
    if best_epoch is not None and best_epoch != len(history):
        if checkpoints:
            model.load_state_dict(torch.load(best_path, map_location=ctx.device, weights_only=True)["model"])
        elif best_state is not None:
            model.load_state_dict(best_state)
    return TrainOutcome(model, history, best_epoch, stopped_early, stop_reason, weights, resumed_from,
                        time.perf_counter() - session_start)


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


# --- artifacts ---------------------------------------------------------------------
def write_run_artifacts(recipe: Recipe, options: RunOptions, ctx: Context, splits: Splits,
                        outcome: TrainOutcome, test: dict, wall_start: float) -> Path:
    import pandas as pd

    from lib.core import artifacts

    from lib.core import provenance
    from lib.cifar.backbones import get_backbone
    from lib.core.data import CIFAR_CLASSES
    from lib.cifar.metrics import accuracy_ci, per_class_accuracy

    name, out = options.name, options.results_dir
    labels = splits.test_labels.numpy()
    pred = test["probs"].argmax(1)
    acc, lo, hi = accuracy_ci(pred == labels)
    per_class = per_class_accuracy(labels, pred, N_CLASSES)
    trainable, total = count_parameters(outcome.model)
    history = outcome.history
    train_s = float(sum(r["seconds"] for r in history))
    val_s = float(sum(r.get("val_seconds", 0.0) for r in history))
    files = [f"{name}_test_probs.npy", f"{name}_test_labels.npy", f"{name}_history.csv"]
    artifacts.save_array(files[0], test["probs"].astype(np.float32), out)
    artifacts.save_array(files[1], labels.astype(np.uint8), out)
    artifacts.save_text(files[2], pd.DataFrame(history).to_csv(index=False), out)
    best = history[outcome.best_epoch - 1] if outcome.best_epoch else {}
    images_trained = splits.sizes()["n_train"] // recipe.batch_size * recipe.batch_size * len(history)
    payload = {
        "backbone": recipe.backbone,
        "backbone_description": get_backbone(recipe.backbone).description,
        "pretrained": recipe.pretrained,
        "resolution": recipe.resolution,
        "epochs": len(history),
        "epochs_planned": recipe.epochs,
        "best_epoch": outcome.best_epoch,
        "selected_by": "validation accuracy" if splits.val_labels.numel() else "last epoch (no validation split)",
        "stopped_early": outcome.stopped_early,
        "stop_reason": outcome.stop_reason,
        "test_accuracy": acc, "test_ci_low": lo, "test_ci_high": hi, "ci_method": "Wilson score, 95%",
        "test_correct": int((pred == labels).sum()), "test_n": int(labels.size),
        "val_accuracy": best.get("val_accuracy"),
        "per_class_accuracy": dict(zip(CIFAR_CLASSES, per_class.tolist())),
        "trainable_params": trainable, "total_params": total,
        "subsets": {**splits.sizes(), "limit_train": recipe.limit_train, "limit_test": recipe.limit_test,
                    "full": recipe.limit_train is None and recipe.limit_test is None},
        "hardware": ctx.describe(),
        "timings": {"train_s": train_s, "val_eval_s": val_s, "test_eval_s": test["seconds"],
                    "train_plus_val_s": train_s + val_s,
                    "train_images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
                    "test_images_per_s": test["images_per_s"], "images_trained": images_trained,
                    "this_session_wall_s": time.perf_counter() - wall_start},
        "resumed_from": outcome.resumed_from,
        "recipe": {**asdict(recipe), "scaled_lr": recipe.scaled_lr, "reference_batch": REFERENCE_BATCH},
        "history": history,
        "files": files + [f"{name}_gallery.npz"],
    }
    config = {"recipe": asdict(recipe), "run": {k: str(v) for k, v in asdict(options).items()},
              **ctx.describe()}
    prov = provenance.collect(seed=recipe.seed, wall_time_s=train_s + val_s + test["seconds"], config=config,
                              weights=outcome.weights)
    path = artifacts.save_json(name, payload, prov, out)
    write_gallery(name, out, splits.test_images.numpy(), test["probs"], labels)
    return path


def write_gallery(name: str, results_dir: Path, images: np.ndarray, probs: np.ndarray,
                  labels: np.ndarray, features_name: str = "features") -> list[Path]:
    """Gallery tiles (chapter 1's selection rule) and, when chapter 1's test probabilities
    exist, the test images that flipped between the feature classifier and the finetuned net."""
    from lib.core import artifacts
    from lib.cifar.gallery import gallery_arrays, select_gallery

    written = [artifacts.save_arrays(f"{name}_gallery.npz", results_dir,
                                     **gallery_arrays(select_gallery(probs, labels, k=5), images, probs))]
    feature_probs_path = artifacts.results_path(f"{features_name}_test_probs.npy", results_dir)
    if feature_probs_path.is_file():
        fprobs = np.load(feature_probs_path)[:labels.size]
        if fprobs.shape == probs.shape:
            written.append(artifacts.save_arrays(f"{name}_flips.npz", results_dir,
                                                 **flip_examples(fprobs, probs, labels, images)))
    return written


def flip_examples(before: np.ndarray, after: np.ndarray, labels: np.ndarray, images: np.ndarray,
                  per_class: int = 2) -> dict[str, np.ndarray]:
    """Test images wrong before and right after: per true class, the ones the earlier model
    was most confident about in its wrong answer (ties: lower index)."""
    pb, pa = before.argmax(1), after.argmax(1)
    conf_b = before[np.arange(labels.size), pb]
    chosen = []
    for c in range(N_CLASSES):
        idx = np.flatnonzero((labels == c) & (pb != c) & (pa == c))
        chosen.extend(idx[np.lexsort((idx, -conf_b[idx]))][:per_class].tolist())
    idx = np.asarray(chosen, dtype=np.int64)
    return {"indices": idx, "images": images[idx].astype(np.uint8), "labels": labels[idx].astype(np.int64),
            "before_pred": pb[idx].astype(np.int64), "before_prob": conf_b[idx].astype(np.float64),
            "after_pred": pa[idx].astype(np.int64),
            "after_prob": after[idx, pa[idx]].astype(np.float64) if idx.size else np.zeros(0)}


# --- pilot ---------------------------------------------------------------------------
def pilot(recipe: Recipe, options: RunOptions, ctx: Context, dirs, resolutions: list[int],
          train_images: int, val_images: int, mirror: Path | None = None) -> Path:
    """Per resolution: a fresh pretrained net trained on ``train_images`` images (one pass, the
    recipe's schedule compressed onto it), then validation accuracy on ``val_images`` images."""
    from lib.core import artifacts
    from lib.core import provenance
    wall_start = time.perf_counter()
    rows = []
    base = replace(recipe, epochs=1, limit_train=train_images, warmup_epochs=min(recipe.warmup_epochs, 1.0),
                   limit_test=None)
    splits = prepare_splits(base, dirs, ctx.device)
    if val_images > splits.val_labels.numel():
        raise ConfigError(f"--pilot-val {val_images} exceeds the {splits.val_labels.numel()} validation images")
    splits.val_images, splits.val_labels = splits.val_images[:val_images], splits.val_labels[:val_images]
    full_train = 50000 - recipe.val_size
    for resolution in resolutions:
        r = replace(base, resolution=resolution)
        print(f"pilot {resolution} px: training on {train_images} images", flush=True)
        outcome = train(r, replace(options, max_minutes=None), splits, ctx, mirror, checkpoints=False)
        row = outcome.history[-1]
        val = {"accuracy": row["val_accuracy"], "loss": row["val_loss"],
               "images_per_s": val_images / max(row["val_seconds"], 1e-9)}
        epoch_s = full_train / row["images_per_s"] + recipe.val_size / val["images_per_s"]
        rows.append({"resolution": resolution, "train_images": int(splits.train_labels.numel()),
                     "epoch_fraction": splits.train_labels.numel() / full_train,
                     "steps": int(splits.train_labels.numel() // r.batch_size),
                     "train_seconds": row["seconds"], "train_images_per_s": row["images_per_s"],
                     "train_loss": row["train_loss"], "train_accuracy": row["train_accuracy"],
                     "val_images": val_images, "val_accuracy": val["accuracy"], "val_loss": val["loss"],
                     "eval_images_per_s": val["images_per_s"],
                     "projected_epoch_s": epoch_s,
                     "projected_epochs_in_2h": 7200.0 / epoch_s})
        print(f"  {row['images_per_s']:.1f} img/s train, {val['images_per_s']:.1f} img/s eval, "
              f"val acc {val['accuracy']:.4f}; projected full epoch {epoch_s / 60:.1f} min", flush=True)
        del outcome
    name = options.name
    payload = {"kind": "pilot", "backbone": recipe.backbone, "batch_size": recipe.batch_size,
               "hardware": ctx.describe(), "full_train_images": full_train, "val_size": recipe.val_size,
               "rows": rows,
               "note": "projected_* values are extrapolations from the measured throughput, not runs"}
    config = {"recipe": asdict(base), "resolutions": resolutions, "train_images": train_images,
              "val_images": val_images, **ctx.describe()}
    prov = provenance.collect(seed=recipe.seed, wall_time_s=time.perf_counter() - wall_start, config=config,
                              weights=None)
    return artifacts.save_json(name, payload, prov, options.results_dir)


# --- command line ---------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    recipe = parser.add_argument_group("recipe (a checkpoint resumes only under the same recipe)")
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            if f.name == "pretrained":
                recipe.add_argument("--random-init", dest="pretrained", action="store_false",
                                    help="random initialisation instead of the ImageNet weights (tests)")
            else:
                recipe.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name, action="store_false",
                                    help=f"disable: {help_text}")
            continue
        kind = {"int": int, "float": float, "str": str, "int | None": int}[str(f.type)]
        recipe.add_argument(flag, type=kind, default=f.default, choices=f.metadata.get("choices"),
                            help=f"{help_text} (default {f.default})")
    run_group = parser.add_argument_group("run options")
    run_group.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    run_group.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"),
                           help="autocast dtype (auto: bf16 on CUDA, off on CPU)")
    run_group.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"),
                           help="channels_last memory format (auto: on for CUDA)")
    run_group.add_argument("--eval-batch-size", type=int, default=500)
    run_group.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    run_group.add_argument("--max-minutes", type=float, default=None,
                           help="time guard: stop after the epoch that would overrun; artifacts are still written")
    run_group.add_argument("--checkpoint-dir", type=Path, default=None,
                           help="default checkpoints/<name>/ (git-ignored)")
    run_group.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    run_group.add_argument("--name", default=None,
                           help="artifact name (default finetune, or finetune_pilot_<device> with --pilot)")
    run_group.add_argument("--fresh", action="store_true", help="discard an existing checkpoint")
    run_group.add_argument("--progress", dest="progress", action="store_true", default=None,
                           help="force the progress bar (default: only on a terminal)")
    run_group.add_argument("--no-progress", dest="progress", action="store_false")
    pilot_group = parser.add_argument_group("pilot: measure images/s and early accuracy per resolution")
    pilot_group.add_argument("--pilot", action="store_true", help="run the pilot instead of training")
    pilot_group.add_argument("--pilot-resolutions", default="64,96,128",
                             help="comma-separated resolutions (default 64,96,128)")
    pilot_group.add_argument("--pilot-train", type=int, default=1024, help="training images per resolution")
    pilot_group.add_argument("--pilot-val", type=int, default=1000, help="validation images scored")
    parser.add_argument("--gallery-only", action="store_true",
                        help="rewrite <name>_gallery.npz / <name>_flips.npz from existing artifacts")
    add_data_arguments(parser)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    return Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe) if hasattr(args, f.name)})


def options_from_args(args: argparse.Namespace, device_type: str | None = None) -> RunOptions:
    name = args.name or ("finetune" if not args.pilot else f"finetune_pilot_{device_type or 'cpu'}")
    checkpoint_dir = args.checkpoint_dir or DEFAULT_CHECKPOINT_DIR / name
    return RunOptions(device=args.device, amp=args.amp, channels_last=args.channels_last,
                      eval_batch_size=args.eval_batch_size, max_minutes=args.max_minutes,
                      checkpoint_dir=Path(checkpoint_dir), results_dir=Path(args.results_dir), name=name,
                      fresh=args.fresh, progress=args.progress, threads=args.threads)


def run(args: argparse.Namespace) -> int:
    from lib.core.data import DataDirs

    wall_start = time.perf_counter()
    # Everything is validated before any data, weights or devices are touched.
    recipe = recipe_from_args(args)
    if args.pilot:
        try:
            resolutions = [int(r) for r in str(args.pilot_resolutions).split(",") if r.strip()]
        except ValueError:
            raise ConfigError(f"invalid --pilot-resolutions {args.pilot_resolutions!r}") from None
        for r in resolutions:
            replace(recipe, resolution=r)  # validates each resolution
        if args.pilot_train < recipe.batch_size or args.pilot_val < 1:
            raise ConfigError(f"--pilot-train must be >= --batch-size ({recipe.batch_size}) "
                              "and --pilot-val >= 1")
    device_type = resolve_device(args.device).type
    options = options_from_args(args, device_type)
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    ctx = Context.create(options)
    if args.gallery_only:
        return _gallery_only(options, dirs)
    if args.pilot:
        path = pilot(recipe, options, ctx, dirs, resolutions, args.pilot_train, args.pilot_val, dirs.mirror)
        print(f"wrote {path}")
        return 0
    print(f"finetune {recipe.backbone} at {recipe.resolution} px on {ctx.device} "
          f"({ctx.describe()['device_name']}), amp {ctx.describe()['amp']}, "
          f"channels_last {ctx.channels_last}", flush=True)
    splits = prepare_splits(recipe, dirs, ctx.device)
    print(f"images: {splits.sizes()}", flush=True)
    outcome = train(recipe, options, splits, ctx, dirs.mirror)
    try:
        test = evaluate(outcome.model, splits.test_images, splits.test_labels, recipe, ctx,
                        options.eval_batch_size)
    except Exception as exc:
        _raise_if_out_of_memory(exc, recipe, ctx)
        raise
    path = write_run_artifacts(recipe, options, ctx, splits, outcome, test, wall_start)
    print(f"test accuracy {test['accuracy']:.4f} on {splits.sizes()['n_test']} images "
          f"(epoch {outcome.best_epoch} of {len(outcome.history)}); wrote {path}")
    return 0


def _gallery_only(options: RunOptions, dirs) -> int:
    from lib.core import artifacts
    from lib.core.data import load_cifar10

    probs = artifacts.load_array(f"{options.name}_test_probs.npy", options.results_dir)
    labels = artifacts.load_array(f"{options.name}_test_labels.npy", options.results_dir).astype(np.int64)
    test = load_cifar10("test", dirs)
    if not np.array_equal(test.labels[:labels.size], labels):
        raise ConfigError(f"{options.name}_test_labels.npy does not match the official test order")
    for path in write_gallery(options.name, options.results_dir, test.images[:labels.size], probs, labels):
        print(f"wrote {path}")
    return 0
