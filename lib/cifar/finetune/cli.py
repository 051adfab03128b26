"""``python -m lib finetune``: options from the recipe's fields, then a training run, the pilot or the
gallery, and what each writes to ``results/`` (metrics, probabilities, history, gallery, flips)."""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from lib.core import artifacts, distributed, provenance
from lib.core.data import CIFAR_CLASSES, DataDirs, add_data_arguments
from lib.core.devices import resolve_device
from lib.core.errors import ConfigError
from lib.core.paths import RESULTS_DIR
from lib.cifar.backbones import get_backbone
from lib.cifar.feature_cache import DEFAULT_CACHE_DIR
from lib.cifar.finetune.data import Splits, prepare_splits
from lib.cifar.finetune.recipe import (DEFAULT_CHECKPOINT_DIR, N_CLASSES, REFERENCE_BATCH, Context, Recipe,
                                       RunOptions, count_parameters)
from lib.cifar.finetune.train import TrainOutcome, evaluate, fit, out_of_memory_hint
from lib.cifar.gallery import gallery_arrays, select_gallery
from lib.cifar.metrics import accuracy_ci, per_class_accuracy

RUNS_UNDER_TORCHRUN = True  # DistributedDataParallel; rank 0 writes
BOOK_PROBE = "features_cpu_onnx"  # chapter 1's answer: the probe the flipped examples compare with


def add_arguments(parser: argparse.ArgumentParser) -> None:
    recipe = parser.add_argument_group("recipe (a checkpoint resumes only under the same recipe)")
    for f in fields(Recipe):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata.get("help", "")
        if f.type in ("bool", bool):
            if f.name == "pretrained":
                recipe.add_argument("--random-init", dest="pretrained", action="store_false",
                                    help="random initialisation instead of the ImageNet weights (tests)")
            elif f.default is False:
                recipe.add_argument(flag, dest=f.name, action="store_true", help=help_text)
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
    run_group.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                           help="where --trainable-stages keeps the trunk's activations (default cache/)")
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
    parser.add_argument("--flips-against", default=BOOK_PROBE, metavar="PROBE",
                        help="the probe whose test probabilities <name>_flips.npz compares with "
                             f"(default {BOOK_PROBE}, chapter 1's answer)")
    add_data_arguments(parser)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    return Recipe(**{f.name: getattr(args, f.name) for f in fields(Recipe) if hasattr(args, f.name)})


def run(args: argparse.Namespace) -> int:
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
        if recipe.trainable_stages:
            raise ConfigError("--pilot measures full finetuning; drop --trainable-stages")
        if args.pilot_train < recipe.batch_size or args.pilot_val < 1:
            raise ConfigError(f"--pilot-train must be >= --batch-size ({recipe.batch_size}) "
                              "and --pilot-val >= 1")
        if distributed.world_size() > 1:
            raise ConfigError("--pilot measures one process's speed; run it without torchrun")
    distributed.require_divisible(recipe.batch_size)  # each process trains on batch_size / world size
    args.device = distributed.device_for_rank(args.device)
    device_type = resolve_device(args.device).type
    name = args.name or (f"finetune_pilot_{device_type}" if args.pilot else "finetune")
    options = RunOptions(device=args.device, amp=args.amp, channels_last=args.channels_last,
                         eval_batch_size=args.eval_batch_size, max_minutes=args.max_minutes,
                         checkpoint_dir=Path(args.checkpoint_dir or DEFAULT_CHECKPOINT_DIR / name),
                         results_dir=Path(args.results_dir), name=name, fresh=args.fresh, progress=args.progress,
                         threads=args.threads)
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    ctx = Context.create(options)
    if args.gallery_only:
        return _gallery_only(options, dirs, args.flips_against)
    if args.pilot:
        path = pilot(recipe, options, ctx, dirs, resolutions, args.pilot_train, args.pilot_val, dirs.mirror)
        print(f"wrote {path}")
        return 0
    what = f"the last {recipe.trainable_stages} stages of" if recipe.trainable_stages else "all of"
    print(f"finetune {what} {recipe.backbone} at {recipe.resolution} px on {ctx.device} "
          f"({ctx.describe()['device_name']}), amp {ctx.describe()['amp']}, "
          f"channels_last {ctx.channels_last}", flush=True)
    if recipe.trainable_stages:
        from lib.cifar.finetune.partial import prepare_cached_splits

        splits = prepare_cached_splits(recipe, dirs, ctx.device, args.cache_dir, dirs.mirror, options.threads,
                                       options.show_progress)
        print(f"activations: {splits.activations['shape']} per image, "
              f"{splits.activations['extraction_s']:.0f} s to compute", flush=True)
    else:
        splits = prepare_splits(recipe, dirs, ctx.device)
    print(f"images: {splits.sizes()}", flush=True)
    outcome = fit(recipe, options, splits, ctx, dirs.mirror)
    with out_of_memory_hint(recipe, ctx):
        test = evaluate(outcome.model, splits, "test", recipe, ctx, options.eval_batch_size)
    path = write_run_artifacts(recipe, options, ctx, splits, outcome, test, wall_start)
    print(f"test accuracy {test['accuracy']:.4f} on {splits.sizes()['n_test']} images "
          f"(epoch {outcome.best_epoch} of {len(outcome.history)}); wrote {path}")
    return 0


def _gallery_only(options: RunOptions, dirs, flips_against: str = BOOK_PROBE) -> int:
    from lib.core.data import load_cifar10

    probs = artifacts.load_array(f"{options.name}_test_probs.npy", options.results_dir)
    labels = artifacts.load_array(f"{options.name}_test_labels.npy", options.results_dir).astype(np.int64)
    test = load_cifar10("test", dirs)
    if not np.array_equal(test.labels[:labels.size], labels):
        raise ConfigError(f"{options.name}_test_labels.npy does not match the official test order")
    for path in write_gallery(options.name, options.results_dir, test.images[:labels.size], probs, labels,
                              features_name=flips_against):
        print(f"wrote {path}")
    return 0


# --- what a run writes ------------------------------------------------------------------
def write_run_artifacts(recipe: Recipe, options: RunOptions, ctx: Context, splits: Splits,
                        outcome: TrainOutcome, test: dict, wall_start: float) -> Path:
    import pandas as pd

    name, out = options.name, options.results_dir
    labels = splits.test_labels.numpy()
    pred = test["probs"].argmax(1)
    acc, lo, hi = accuracy_ci(pred == labels)
    per_class = per_class_accuracy(labels, pred, N_CLASSES)
    trainable, total = count_parameters(outcome.model)
    history = outcome.history
    mean_images_per_s = float(np.mean([r["images_per_s"] for r in history])) if history else None
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
                    "train_images_per_s": mean_images_per_s,
                    "test_images_per_s": test["images_per_s"], "images_trained": images_trained,
                    "this_session_wall_s": time.perf_counter() - wall_start},
        "resumed_from": outcome.resumed_from,
        "partial": ({"trainable_stages": recipe.trainable_stages, "activations": splits.activations}
                    if splits.cached else None),
        "total_wall_time_s": total_wall_time(splits, outcome, wall_start),
        "total_wall_time_covers": ("this command end to end (data, activations, training, validation, test), "
                                   "plus activation chunks and epochs computed by earlier runs"),
        "recipe": {**asdict(recipe), "scaled_lr": recipe.scaled_lr, "reference_batch": REFERENCE_BATCH},
        "history": history,
        "files": files + [f"{name}_gallery.npz"],
    }
    config = {"recipe": asdict(recipe), "run": {k: str(v) for k, v in asdict(options).items()},
              **ctx.describe(), "distributed": distributed.describe(ctx.device)}
    prov = provenance.collect(seed=recipe.seed, wall_time_s=train_s + val_s + test["seconds"], config=config,
                              weights=outcome.weights)
    path = artifacts.save_json(name, payload, prov, out)
    pixels = splits.test_pixels if splits.test_pixels is not None else splits.test_images
    write_gallery(name, out, pixels.numpy(), test["probs"], labels)
    return path


def total_wall_time(splits: Splits, outcome: TrainOutcome, wall_start: float) -> float:
    """Seconds from verified data to test probabilities: this command's wall time, plus what
    earlier runs contributed (activation chunks loaded from the cache, epochs before a resume)."""
    earlier = 0.0
    if splits.cached:
        earlier += splits.activations["reused_extraction_s"]
    if outcome.resumed_from:
        done = outcome.history[:outcome.resumed_from["epoch"]]
        earlier += sum(r["seconds"] + r.get("val_seconds", 0.0) for r in done)
    return time.perf_counter() - wall_start + earlier



def write_gallery(name: str, results_dir: Path, images: np.ndarray, probs: np.ndarray,
                  labels: np.ndarray, features_name: str = BOOK_PROBE) -> list[Path]:
    """Gallery tiles (chapter 1's selection rule) and, when chapter 1's test probabilities
    exist, the test images that flipped between the feature classifier and the finetuned net."""
    written = [artifacts.save_arrays(f"{name}_gallery.npz", results_dir,
                                     **gallery_arrays(select_gallery(probs, labels, k=5), images, probs))]
    feature_probs_path = artifacts.results_path(f"{features_name}_test_probs.npy", results_dir)
    if feature_probs_path.is_file():
        fprobs = artifacts.load_array(feature_probs_path.name, results_dir)[:labels.size]
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


# --- the pilot ------------------------------------------------------------------------------
def pilot(recipe: Recipe, options: RunOptions, ctx: Context, dirs, resolutions: list[int],
          train_images: int, val_images: int, mirror: Path | None = None) -> Path:
    """Per resolution: a fresh pretrained net trained on ``train_images`` images (one pass, the
    recipe's schedule compressed onto it), then validation accuracy on ``val_images`` images."""
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
        outcome = fit(r, replace(options, max_minutes=None), splits, ctx, mirror, checkpoints=False)
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
