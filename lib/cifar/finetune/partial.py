"""Partial finetuning: split a backbone into a frozen trunk and a trainable tail.

Why: on a 2-core CPU a full finetune spends most of its time in the early, high-resolution
blocks, which change little when adapting an ImageNet network to CIFAR-10. Freezing the first
``frozen_blocks`` blocks lets their activations be computed once (``lib.cifar.finetune.activations``,
with ONNX Runtime) and the cheap last blocks plus a new head be trained for many passes.

The cut is given in *stages* (groups of blocks at one width and resolution), so that one
command means the same for every backbone: ``trainable_stages=2`` trains EfficientNet-Lite0's
last two stages (MBConv blocks 11-15, the head conv) or ResNet18's ``layer3`` and ``layer4``.
The stem always belongs to the trunk. Batch norm in the trunk uses its ImageNet running
statistics (eval mode), which is what computing the activations once implies.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.errors import ConfigError

# The index of each stage's first block (EfficientNet-Lite0: 16 MBConv blocks in 7 stages;
# ResNet18: 8 BasicBlocks in layer1..layer4).
STAGE_STARTS = {"efficientnet_lite0": (0, 1, 3, 5, 8, 11, 15), "resnet18": (0, 2, 4, 6)}


def frozen_blocks(backbone: str, trainable_stages: int) -> int:
    """How many blocks the trunk holds when the last ``trainable_stages`` stages train."""
    starts = STAGE_STARTS.get(backbone)
    if starts is None:
        raise ConfigError(f"--trainable-stages is not defined for backbone {backbone!r}")
    if (isinstance(trainable_stages, bool) or not isinstance(trainable_stages, int)
            or not 1 <= trainable_stages < len(starts)):
        raise ConfigError(f"invalid --trainable-stages {trainable_stages!r}: {backbone} has {len(starts)} "
                          f"stages; choose 1 to {len(starts) - 1} (or 0, the default, to finetune everything)")
    return starts[-trainable_stages]


class _LiteTrunk(nn.Module):
    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.conv_stem, self.bn0, self.act = net._conv_stem, net._bn0, net._swish
        self.blocks = nn.ModuleList(net._blocks[:k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.conv_stem(x)))
        for block in self.blocks:
            x = block(x, drop_connect_rate=None)
        return x


class _LiteTail(nn.Module):
    """Blocks ``k..15`` (stochastic depth as in the full network), the head conv and pooling."""

    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.blocks = nn.ModuleList(net._blocks[k:])
        self.first, self.n_total = k, len(net._blocks)
        self.rate = net._global_params.drop_connect_rate or 0.0
        self.conv_head, self.bn1, self.act = net._conv_head, net._bn1, net._swish

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, drop_connect_rate=self.rate * (self.first + i) / self.n_total or None)
        x = self.act(self.bn1(self.conv_head(x)))
        return F.adaptive_avg_pool2d(x, 1).flatten(1)


def _resnet_blocks(net: nn.Module) -> list[nn.Module]:
    return [block for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for block in layer]


class _ResNetTrunk(nn.Module):
    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.blocks = nn.Sequential(*_resnet_blocks(net)[:k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class _ResNetTail(nn.Module):
    def __init__(self, net: nn.Module, k: int):
        super().__init__()
        self.blocks = nn.Sequential(*_resnet_blocks(net)[k:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1)


def split_backbone(name: str, features: nn.Module, trainable_stages: int) -> tuple[nn.Module, nn.Module]:
    """``(trunk, tail)`` sharing ``features``' modules: ``tail(trunk(x)) == features(x)`` in eval mode."""
    k = frozen_blocks(name, trainable_stages)
    if name == "efficientnet_lite0":
        return _LiteTrunk(features.net, k).eval(), _LiteTail(features.net, k)
    return _ResNetTrunk(features, k).eval(), _ResNetTail(features, k)
