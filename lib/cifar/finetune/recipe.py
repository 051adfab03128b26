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

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lib.core.devices import resolve_device
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT, RESULTS_DIR

DEFAULT_CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
REFERENCE_BATCH = 256  # ``lr`` is quoted for this batch size and scaled linearly
N_CLASSES = 10
CHECKPOINT_FORMAT = 1


def _h(help_text: str, **extra: Any) -> dict:
    return {"help": help_text, **extra}


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
        from lib.cifar.backbones import BACKBONES, check_resolution

        def bad(name: str, why: str) -> None:
            raise ConfigError(f"invalid --{name.replace('_', '-')} {getattr(self, name)!r}: {why}")

        if self.backbone not in BACKBONES:
            bad("backbone", f"choose one of {sorted(BACKBONES)}")
        check_resolution(self.resolution)
        if self.trainable_stages:
            from lib.cifar.finetune.partial import frozen_blocks
            frozen_blocks(self.backbone, self.trainable_stages)
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
