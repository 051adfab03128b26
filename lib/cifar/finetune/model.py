"""The network, its optimiser and its learning-rate schedule, all built from the recipe."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from lib.cifar.finetune.recipe import N_CLASSES, Recipe


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
    if recipe.trainable_stages:  # partial finetuning: the trainable tail only (its input is cached)
        from lib.cifar.finetune.partial import split_backbone
        _, features = split_backbone(recipe.backbone, features, recipe.trainable_stages)
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
