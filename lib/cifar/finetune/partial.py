"""Partial finetuning: a frozen trunk and a trainable tail. On a 2-core CPU a full finetune spends most
of its time in the early, high-resolution blocks, which change little from ImageNet to CIFAR-10; their
activations (of every image and its mirror image, float16, in the resumable features cache) are
computed once and the last stages plus a new head train on them (:class:`ActivationSplits`).

The cut counts *stages* (blocks at one width and resolution), so ``trainable_stages=2`` means the
same for every backbone. The stem belongs to the trunk, whose batch norm keeps its ImageNet statistics
(eval mode), as computing the activations once implies. Under torchrun the ranks share out the chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.core import distributed
from lib.core.errors import ConfigError
from lib.cifar.finetune.data import Splits, crop_windows, load_split
from lib.cifar.finetune.recipe import Recipe

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


# --- the cached activations as a data source -----------------------------------------------
@dataclass
class ActivationSplits(Splits):
    """:class:`Splits` of the frozen trunk's activations: ``train_images`` etc. are (N, 2, C, H, W)
    float16, an image and its mirror image."""

    def train_input(self, idx: torch.Tensor, recipe: Recipe, g: torch.Generator,
                    share: slice = slice(None)) -> torch.Tensor:
        batch = self.train_images[idx[share]]
        cells = padding_in_cells(recipe.crop_padding, batch.shape[-1])
        return pick_views(batch, recipe.hflip, cells, g, len(idx), share)

    def eval_input(self, batch: torch.Tensor, recipe: Recipe, mirrored: bool = False) -> torch.Tensor:
        return batch[:, int(mirrored)].float()


def pick_views(batch: torch.Tensor, hflip: bool, padding_cells: int, g: torch.Generator, drawn: int | None = None,
               share: slice = slice(None)) -> torch.Tensor:
    """Augment cached activations (B, 2, C, H, W): each image or its mirror (random flip), then a
    random shift by up to ``padding_cells`` cells with reflect padding (a random crop, in the
    trunk's coarser grid). As in ``augment``, the draws cover a global batch of ``drawn``."""
    n, dev, p = batch.shape[0], batch.device, padding_cells
    drawn = n if drawn is None else drawn
    view = ((torch.rand(drawn, device=dev, generator=g) < 0.5).long()[share] if hflip
            else torch.zeros(n, dtype=torch.long, device=dev))
    x = batch[torch.arange(n, device=dev), view].float()
    if not p:
        return x
    rows, cols = crop_windows(p, x.shape[-2], x.shape[-1], g, drawn, share, dev)
    return F.pad(x, (p, p, p, p), mode="reflect")[torch.arange(n, device=dev)[:, None, None, None],
                                                  torch.arange(x.shape[1], device=dev)[None, :, None, None],
                                                  rows[:, None, :, None], cols[:, None, None, :]]


def padding_in_cells(crop_padding: int, grid: int) -> int:
    """``crop_padding`` source (32 px) pixels in cells of a ``grid`` x ``grid`` activation map."""
    return round(crop_padding * grid / 32)


def prepare_cached_splits(recipe: Recipe, dirs, device: torch.device, cache_dir: Path | None,
                          mirror: Path | None = None, threads: int | None = None,
                          progress: bool = True) -> ActivationSplits:
    """Splits of the frozen trunk's activations, computed or loaded from the cache; the same
    stratified split as full finetuning."""
    train, test, train_idx, val_idx, n_test = load_split(recipe, dirs)
    needed = np.sort(np.concatenate([train_idx, val_idx]))
    act_train, act_test, described = compute_activations(recipe, train.images[needed], test.images[:n_test],
                                                         device, cache_dir, mirror, threads, progress)
    position = np.searchsorted(needed, np.arange(train.labels.size))  # official index -> row of act_train
    return ActivationSplits(
        train_images=act_train[position[train_idx]].to(device),
        train_labels=torch.from_numpy(train.labels[train_idx]).to(device),
        val_images=act_train[position[val_idx]], val_labels=torch.from_numpy(train.labels[val_idx]),
        test_images=act_test, test_labels=torch.from_numpy(test.labels[:n_test]),
        test_pixels=torch.from_numpy(test.images[:n_test]),
        activations=described)


class _Flattened(nn.Module):
    """The trunk with its (C, H, W) output flattened: the cache stores one row per image."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)


def compute_activations(recipe: Recipe, train_images: np.ndarray, test_images: np.ndarray,
                        device: torch.device, cache_dir: Path | None, mirror: Path | None = None,
                        threads: int | None = None, progress: bool = True) -> tuple:
    """Trunk activations (N, 2, C, H, W) float16 of ``train_images`` and ``test_images`` (uint8 NHWC)
    and their mirror images, with the fastest engine (ONNX Runtime on the CPU, torch on CUDA), and
    how they were made: ``extraction_s`` counts every chunk whenever it was computed (end-to-end
    time), ``reused_extraction_s`` the share of it spent by earlier runs (chunks loaded now)."""
    from lib.cifar.backbones import get_backbone
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    backbone = get_backbone(recipe.backbone)
    torch.manual_seed(recipe.seed)  # random-init trunks (tests) equal the tail's network
    features, identity = backbone.build(pretrained=recipe.pretrained, resolution=recipe.resolution,
                                        mirror=mirror)
    trunk, _ = split_backbone(recipe.backbone, features, recipe.trainable_stages)
    with torch.no_grad():
        shape = tuple(int(s) for s in trunk(torch.zeros(1, 3, recipe.resolution, recipe.resolution)).shape[1:])
    engine = "onnxruntime" if device.type == "cpu" else "torch"
    k = frozen_blocks(recipe.backbone, recipe.trainable_stages)
    weights = {"backbone": identity or {"random_init_seed": recipe.seed}, "trunk": f"stem + first {k} blocks"}
    if threads is None and distributed.world_size() > 1:
        threads = torch.get_num_threads()  # this rank's share of the cores, not all of them
    extractor = Extractor(backbone, recipe.resolution, model=_Flattened(trunk), model_weights=weights,
                          device=str(device), engine=engine, threads=threads)
    layer = (f"output of block {k} (C, H, W) = {shape}", int(np.prod(shape)))
    parts, seconds, computed, reused = {}, 0.0, 0, 0.0
    for name, images in (("train", train_images), ("test", test_images)):
        views = []
        for mirrored in (False, True):
            source = np.ascontiguousarray(images[:, :, ::-1] if mirrored else images)
            label = progress and f"{name}{' mirrored' if mirrored else ''} @{recipe.resolution}px"
            if distributed.world_size() > 1:  # each rank computes its share of the chunks into the cache
                extract_features(source, extractor, cache_dir=cache_dir, progress=label, layer=layer,
                                 share=(distributed.rank(), distributed.world_size()))
                distributed.barrier()
            result = extract_features(source, extractor, cache_dir=cache_dir, progress=label, layer=layer)
            views.append(torch.from_numpy(result.features).view(len(source), *shape))
            seconds += result.seconds
            computed += len(result.computed_chunks)
            n_chunks = len(result.computed_chunks) + len(result.loaded_chunks)
            reused += result.seconds * len(result.loaded_chunks) / max(n_chunks, 1)  # chunks are equal-sized
        parts[name] = torch.stack(views, dim=1)
    described = {"shape": list(shape), "dtype": "float16", "extraction_s": seconds,
                 "chunks_computed_now": computed, "reused_extraction_s": reused, "engine": extractor.describe(),
                 "megabytes": (parts["train"].numel() + parts["test"].numel()) * 2 / 2**20}
    return parts["train"], parts["test"], described
