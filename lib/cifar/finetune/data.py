"""Chapter 2's data on the device: stratified splits, reflect-padded uint8 tensors and batched
random-crop + flip augmentation drawn from per-(epoch, step) generators. :class:`Splits` turns a batch
into the network's input; partial finetuning swaps in ``partial.ActivationSplits`` (cached activations).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib.core.errors import ConfigError
from lib.cifar.backbones import get_backbone, to_model_input
from lib.cifar.finetune.recipe import Recipe
from lib.cifar.metrics import stratified_split


@dataclass
class Splits:
    """Training, validation and test sets (here images; cached activations in the subclass)."""

    train_images: torch.Tensor   # (N, 32+2p, 32+2p, 3) uint8 on the device, reflect-padded
    train_labels: torch.Tensor   # (N,) int64 on the device
    val_images: torch.Tensor     # (V, 32, 32, 3) uint8 (CPU)
    val_labels: torch.Tensor
    test_images: torch.Tensor    # (M, 32, 32, 3) uint8 (CPU), official order
    test_labels: torch.Tensor
    test_pixels: torch.Tensor | None = None  # the test images when test_images holds activations
    activations: dict | None = None          # how the activations were made (partial finetuning)

    @property
    def cached(self) -> bool:
        return self.activations is not None

    def sizes(self) -> dict:
        return {"n_train": int(self.train_labels.numel()), "n_val": int(self.val_labels.numel()),
                "n_test": int(self.test_labels.numel())}

    def train_input(self, idx: torch.Tensor, recipe: Recipe, g: torch.Generator,
                    share: slice = slice(None)) -> torch.Tensor:
        """This process's ``share`` of the augmented global batch ``idx``: random crop + flip, resized and
        normalised (the random draws cover the whole global batch, so every share is what one process gets)."""
        batch = augment(self.train_images[idx[share]], recipe.crop_padding, recipe.hflip, g, len(idx), share)
        return to_model_input(batch, recipe.resolution, get_backbone(recipe.backbone))

    def eval_input(self, batch: torch.Tensor, recipe: Recipe, mirrored: bool = False) -> torch.Tensor:
        """An evaluation batch (or its mirror image) as the network's input."""
        images = torch.flip(batch, dims=[2]) if mirrored else batch
        return to_model_input(images, recipe.resolution, get_backbone(recipe.backbone))


def split_indices(labels: np.ndarray, recipe: Recipe) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices into the official training set (both stratified)."""
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


def load_split(recipe: Recipe, dirs) -> tuple:
    """(train, test, train indices, validation indices, test images used), checked against the recipe."""
    from lib.core.data import load_cifar10

    train = load_cifar10("train", dirs)
    test = load_cifar10("test", dirs)
    train_idx, val_idx = split_indices(train.labels, recipe)
    if recipe.limit_test is not None and recipe.limit_test > test.labels.size:
        raise ConfigError(f"--limit-test {recipe.limit_test} exceeds the {test.labels.size} test images")
    return train, test, train_idx, val_idx, recipe.limit_test or test.labels.size


def prepare_splits(recipe: Recipe, dirs, device: torch.device) -> Splits:
    train, test, train_idx, val_idx, n_test = load_split(recipe, dirs)
    p = recipe.crop_padding
    padded = np.pad(train.images[train_idx], ((0, 0), (p, p), (p, p), (0, 0)), mode="reflect")
    return Splits(
        train_images=torch.from_numpy(padded).to(device),
        train_labels=torch.from_numpy(train.labels[train_idx]).to(device),
        val_images=torch.from_numpy(train.images[val_idx]),
        val_labels=torch.from_numpy(train.labels[val_idx]),
        test_images=torch.from_numpy(test.images[:n_test]),
        test_labels=torch.from_numpy(test.labels[:n_test]))


def step_generator(device: torch.device, seed: int, epoch: int, step: int) -> torch.Generator:
    """A generator determined by (seed, epoch, step): a resumed epoch redraws the same batches."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + epoch) * 1_000_033 + step)
    return g


def augment(padded: torch.Tensor, padding: int, hflip: bool, g: torch.Generator, drawn: int | None = None,
            share: slice = slice(None)) -> torch.Tensor:
    """Random crop (size = unpadded size) + horizontal flip of a uint8 NHWC batch, on its device.

    ``padded`` may be one process's ``share`` of a global batch of ``drawn`` images: the offsets and
    flips are drawn for all of them and this share's are used."""
    n, h, w, _ = padded.shape
    drawn = n if drawn is None else drawn
    rows, cols = crop_windows(padding, h - 2 * padding, w - 2 * padding, g, drawn, share, padded.device)
    out = padded[torch.arange(n, device=padded.device)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if hflip:
        flip = (torch.rand(drawn, device=padded.device, generator=g) < 0.5)[share]
        out = torch.where(flip[:, None, None, None], out.flip(2), out)
    return out


def crop_windows(padding: int, h: int, w: int, g: torch.Generator, drawn: int, share: slice,
                 device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row (n, h) and column (n, w) indices of random ``h`` x ``w`` windows in a map padded by ``padding``,
    drawn for a global batch of ``drawn`` and cut to this process's ``share``."""
    dy = torch.randint(0, 2 * padding + 1, (drawn,), device=device, generator=g)[share]
    dx = torch.randint(0, 2 * padding + 1, (drawn,), device=device, generator=g)[share]
    return dy[:, None] + torch.arange(h, device=device), dx[:, None] + torch.arange(w, device=device)
