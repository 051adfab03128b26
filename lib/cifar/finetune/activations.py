"""The frozen trunk's activations of every CIFAR-10 image and its mirror image, computed once.

Partial finetuning (``Recipe.trainable_stages > 0``) trains only the tail; the trunk's output
for a given image never changes, so it is computed once per (backbone, weights, resolution,
cut) with the fastest engine (ONNX Runtime on the CPU, fp16 autocast on CUDA) and kept in
the chunked, resumable features cache (``lib.cifar.feature_cache``) as float16 rows.
Mirror images are separate rows: random flips stay available as augmentation, and the test
prediction can average an image with its mirror image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lib.cifar.backbones import get_backbone
from lib.cifar.extract import Extractor
from lib.cifar.feature_cache import extract_features
from lib.cifar.finetune.partial import frozen_blocks, split_backbone
from lib.cifar.finetune.recipe import Recipe


class _Flattened(nn.Module):
    """The trunk with its (C, H, W) output flattened: the cache stores one row per image."""

    def __init__(self, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x).flatten(1)


@dataclass
class Activations:
    train: torch.Tensor        # (50000, 2, C, H, W) float16: each training image, then its mirror
    test: torch.Tensor         # (M, 2, C, H, W) float16
    shape: tuple[int, int, int]
    seconds: float             # computing every chunk, whenever that happened (end-to-end time)
    computed_now: int          # chunks computed in this run (the rest came from the cache)
    reused_s: float            # the share of ``seconds`` spent by earlier runs (chunks loaded now)
    engine: dict

    def describe(self) -> dict:
        return {"shape": list(self.shape), "dtype": "float16", "extraction_s": self.seconds,
                "chunks_computed_now": self.computed_now, "reused_extraction_s": self.reused_s,
                "engine": self.engine,
                "megabytes": (self.train.numel() + self.test.numel()) * 2 / 2**20}


def trunk_shape(trunk: nn.Module, resolution: int) -> tuple[int, int, int]:
    with torch.no_grad():
        return tuple(int(s) for s in trunk(torch.zeros(1, 3, resolution, resolution)).shape[1:])


def compute_activations(recipe: Recipe, train_images: np.ndarray, test_images: np.ndarray,
                        device: torch.device, cache_dir: Path | None, mirror: Path | None = None,
                        threads: int | None = None, progress: bool = True) -> Activations:
    """Trunk activations of ``train_images`` and ``test_images`` (uint8 NHWC) and their mirrors."""
    backbone = get_backbone(recipe.backbone)
    torch.manual_seed(recipe.seed)  # random-init trunks (tests) equal the tail's network
    features, identity = backbone.build(pretrained=recipe.pretrained, resolution=recipe.resolution,
                                        mirror=mirror)
    trunk, _ = split_backbone(recipe.backbone, features, recipe.trainable_stages)
    shape = trunk_shape(trunk, recipe.resolution)
    engine = "onnxruntime" if device.type == "cpu" else "torch"
    k = frozen_blocks(recipe.backbone, recipe.trainable_stages)
    weights = {"backbone": identity or {"random_init_seed": recipe.seed}, "trunk": f"stem + first {k} blocks"}
    extractor = Extractor(backbone, recipe.resolution, model=_Flattened(trunk), model_weights=weights,
                          device=str(device), engine=engine, threads=threads)
    layer = (f"output of block {k} (C, H, W) = {shape}", int(np.prod(shape)))
    parts, seconds, computed, reused = {}, 0.0, 0, 0.0
    for name, images in (("train", train_images), ("test", test_images)):
        views = []
        for mirrored in (False, True):
            source = np.ascontiguousarray(images[:, :, ::-1] if mirrored else images)
            label = f"{name}{' mirrored' if mirrored else ''} @{recipe.resolution}px"
            result = extract_features(source, extractor, cache_dir=cache_dir, progress=label if progress else False,
                                      layer=layer)
            views.append(torch.from_numpy(result.features).view(len(source), *shape))
            seconds += result.seconds
            computed += len(result.computed_chunks)
            n_chunks = len(result.computed_chunks) + len(result.loaded_chunks)
            reused += result.seconds * len(result.loaded_chunks) / max(n_chunks, 1)  # chunks are equal-sized
        parts[name] = torch.stack(views, dim=1)
        del views
    return Activations(parts["train"], parts["test"], shape, seconds, computed, reused, extractor.describe())
