"""``python -m lib finetune``: options from the recipe's fields, then train, pilot or gallery."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from lib.core.devices import resolve_device
from lib.core.errors import ConfigError
from lib.core.paths import RESULTS_DIR
from lib.cifar.feature_cache import DEFAULT_CACHE_DIR
from lib.cifar.finetune.data import prepare_cached_splits, prepare_splits
from lib.cifar.finetune.engine import evaluate
from lib.cifar.finetune.loop import _raise_if_out_of_memory, train
from lib.cifar.finetune.outputs import BOOK_PROBE, write_gallery, write_run_artifacts
from lib.cifar.finetune.pilot import pilot
from lib.cifar.finetune.recipe import DEFAULT_CHECKPOINT_DIR, Context, Recipe, RunOptions


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
                        help=f"the probe whose test probabilities <name>_flips.npz compares with (default {BOOK_PROBE}, "
                             "chapter 1's answer)")
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
        if recipe.trainable_stages:
            raise ConfigError("--pilot measures full finetuning; drop --trainable-stages")
        if args.pilot_train < recipe.batch_size or args.pilot_val < 1:
            raise ConfigError(f"--pilot-train must be >= --batch-size ({recipe.batch_size}) "
                              "and --pilot-val >= 1")
    device_type = resolve_device(args.device).type
    options = options_from_args(args, device_type)
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
        show = sys.stderr.isatty() if options.progress is None else options.progress
        splits = prepare_cached_splits(recipe, dirs, ctx.device, args.cache_dir, dirs.mirror, options.threads, show)
        print(f"activations: {splits.activations['shape']} per image, "
              f"{splits.activations['extraction_s']:.0f} s to compute", flush=True)
    else:
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


def _gallery_only(options: RunOptions, dirs, flips_against: str = BOOK_PROBE) -> int:
    from lib.core import artifacts
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
