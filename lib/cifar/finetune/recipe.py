"""Chapter 2's recipe (every hyperparameter in one frozen dataclass, as in airbench), the run options
and device context, and the network, optimiser and schedule built from the recipe. The head gets the
peak ``lr`` (quoted for batch 256, scaled linearly), pretrained layers ``lr * backbone_lr_scale``;
biases and norm parameters get no weight decay; batch-norm momentum is raised (``bn_momentum``) so
the running statistics re-adapt quickly from ImageNet photos to upsampled CIFAR images.
"""
from __future__ import annotations

import math
import sys
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.cifar.backbones import BACKBONES, check_resolution, get_backbone
from lib.core import distributed
from lib.core.devices import resolve_device
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT, RESULTS_DIR

DEFAULT_CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
REFERENCE_BATCH = 256  # ``lr`` is quoted for this batch size and scaled linearly
N_CLASSES = 10
CHECKPOINT_FORMAT = 2  # 2: once per epoch (format 1 could hold a mid-epoch state)


def _h(help_text: str, **extra: Any) -> dict:
    return {"help": help_text, **extra}


def _bad(config: Any, name: str, why: str) -> None:
    raise ConfigError(f"invalid --{name.replace('_', '-')} {getattr(config, name)!r}: {why}")


@dataclass(frozen=True)
class Recipe:
    """Everything that determines the trained network. A checkpoint resumes only under
    the identical recipe; run options (device, time limit, paths) may differ."""

    backbone: str = field(default="resnet18", metadata=_h("pretrained backbone (lib.cifar.backbones)"))
    pretrained: bool = field(default=True, metadata=_h("start from the ImageNet weights"))
    trainable_stages: int = field(default=0, metadata=_h(
        "partial finetuning: train only the last N stages (and the head); the frozen stages' "
        "activations are computed once and cached (0: finetune everything)"))
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
    flip_average: bool = field(default=False, metadata=_h(
        "predict (validation, test) with the average of an image's and its mirror image's probabilities"))
    val_size: int = field(default=5000, metadata=_h("stratified validation images held out of training"))
    limit_train: int | None = field(default=None, metadata=_h("train on a stratified subset of N images"))
    limit_test: int | None = field(default=None, metadata=_h("test on the first M official test images"))
    seed: int = field(default=0, metadata=_h("seed of split, initialisation, order and augmentation"))

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            _bad(self, "backbone", f"choose one of {sorted(BACKBONES)}")
        check_resolution(self.resolution)
        if self.trainable_stages:
            from lib.cifar.finetune.partial import frozen_blocks
            frozen_blocks(self.backbone, self.trainable_stages)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                _bad(self, name, "must be a positive integer")
        if self.batch_size < 2:
            _bad(self, "batch_size", "batch norm in train mode needs at least 2 images per batch")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            _bad(self, "lr", "the learning rate must be a positive number")
        for name in ("backbone_lr_scale", "weight_decay", "warmup_epochs"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) < 0:
                _bad(self, name, "must be a finite number >= 0")
        if self.warmup_epochs > self.epochs:
            _bad(self, "warmup_epochs", f"longer than the {self.epochs} planned epochs")
        for name in ("momentum", "label_smoothing", "head_dropout"):
            if not 0 <= getattr(self, name) < 1:
                _bad(self, name, "must be in [0, 1)")
        if not 0 < self.bn_momentum <= 1:
            _bad(self, "bn_momentum", "must be in (0, 1]")
        for f in fields(self):  # --optimizer, --schedule
            if f.metadata.get("choices") and getattr(self, f.name) not in f.metadata["choices"]:
                _bad(self, f.name, "choose " + " or ".join(f.metadata["choices"]))
        if not 0 <= self.crop_padding <= 16:
            _bad(self, "crop_padding", "must be between 0 and 16 source pixels")
        if self.val_size < 0:
            _bad(self, "val_size", "must be >= 0")
        for name in ("limit_train", "limit_test"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                _bad(self, name, "must be a positive number of images")
        if self.limit_train is not None and self.limit_train < self.batch_size:
            _bad(self, "limit_train", f"fewer images than one batch ({self.batch_size})")

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / REFERENCE_BATCH


def config_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two recipe dicts."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: checkpoint {old.get(k, '<absent>')!r}, now {new.get(k, '<absent>')!r}"
            for k in keys if old.get(k, "<absent>") != new.get(k, "<absent>")]


# --- run options and device ---------------------------------------------------
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
        for name in ("threads", "max_minutes", "eval_batch_size"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                _bad(self, name, "must be positive")
        for name, choices in (("amp", ("auto", "bf16", "off")), ("channels_last", ("auto", "on", "off"))):
            if getattr(self, name) not in choices:
                _bad(self, name, f"choose {choices[0]}, {choices[1]} or {choices[2]}")

    @property
    def show_progress(self) -> bool:
        """A progress bar on the main process; by default only on a terminal."""
        return (sys.stderr.isatty() if self.progress is None else self.progress) and distributed.is_main()


@dataclass(frozen=True)
class Context:
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def create(cls, options: RunOptions) -> "Context":
        """``--amp auto`` is bf16 on CUDA and fp32 on the CPU: on the 2-core CPU bf16 autocast was
        faster for some tails and slower for others (chapter 2), so it is chosen per run there;
        whether the CPU has bf16 instructions is recorded."""
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

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the memory format the network runs in."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def describe(self) -> dict:
        name = torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None
        from lib.core.provenance import cpu_model, load_1min
        return {"device": self.device.type, "device_name": name or cpu_model(),
                "amp": str(self.amp_dtype).replace("torch.", "") if self.amp_dtype else "off",
                "channels_last": self.channels_last, "torch_threads": torch.get_num_threads(),
                "cpu_bf16_instructions": cpu_has_bf16() if self.device.type == "cpu" else None,
                "load_average_1min": load_1min()}


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16), from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


# --- network, optimiser, schedule ----------------------------------------------
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
    backbone = get_backbone(recipe.backbone)
    torch.manual_seed(recipe.seed)  # the head's (and a random-init backbone's) initialisation
    features, identity = backbone.build(pretrained=recipe.pretrained, resolution=recipe.resolution,
                                        mirror=mirror)
    if recipe.trainable_stages:  # partial finetuning: the trainable tail only (its input is cached)
        from lib.cifar.finetune.partial import split_backbone
        _, features = split_backbone(recipe.backbone, features, recipe.trainable_stages)
    for module in features.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = recipe.bn_momentum
    return FinetuneNet(features, backbone.feature_dim, N_CLASSES, recipe.head_dropout), identity


def count_parameters(model: nn.Module) -> tuple[int, int]:
    return (sum(p.numel() for p in model.parameters() if p.requires_grad),
            sum(p.numel() for p in model.parameters()))


def build_optimizer(model: FinetuneNet, recipe: Recipe) -> torch.optim.Optimizer:
    """Four groups: {backbone, head} x {decayed weights, biases/norm parameters (no decay)}."""
    groups = []
    for name, part, scale in (("backbone", model.features, recipe.backbone_lr_scale), ("head", model.head, 1.0)):
        decay = [p for p in part.parameters() if p.requires_grad and p.ndim > 1]
        no_decay = [p for p in part.parameters() if p.requires_grad and p.ndim <= 1]
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
