"""The pilot: images/s and early validation accuracy per resolution, to choose the resolution."""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

from lib.core.errors import ConfigError
from lib.cifar.finetune.data import prepare_splits
from lib.cifar.finetune.loop import train
from lib.cifar.finetune.recipe import Context, Recipe, RunOptions


def pilot(recipe: Recipe, options: RunOptions, ctx: Context, dirs, resolutions: list[int],
          train_images: int, val_images: int, mirror: Path | None = None) -> Path:
    """Per resolution: a fresh pretrained net trained on ``train_images`` images (one pass, the
    recipe's schedule compressed onto it), then validation accuracy on ``val_images`` images."""
    from lib.core import artifacts
    from lib.core import provenance
    wall_start = time.perf_counter()
    rows, weights = [], None
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
        row, weights = outcome.history[-1], outcome.weights  # the same pretrained file at every size
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
                              weights=weights)
    return artifacts.save_json(name, payload, prov, options.results_dir)
