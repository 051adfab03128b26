"""``python -m lib probe-variants`` (chapter 2): how much of finetuning's gain over the linear probe
comes from what only the finetuned network got — horizontal flips and label smoothing — and how
much the probe moves with the validation split. The mirror images' features are one more cached
extraction pass, so the probe can train on both views (flip augmentation) or on their average (also
at test time); label smoothing is one argument of the loss. The seed draws the stratified validation
split (the probe itself is deterministic: L-BFGS from zero weights).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lib.cifar.backbones import DEFAULT_BACKBONE, check_resolution, get_backbone
from lib.cifar.extract import Extractor
from lib.cifar.feature_cache import DEFAULT_CACHE_DIR, extract_features
from lib.cifar.linear import ProbeConfig, fit_logistic, predict_proba
from lib.cifar.metrics import accuracy_ci, stratified_split
from lib.core import artifacts, provenance
from lib.core.data import DataDirs, add_data_arguments, load_cifar10
from lib.core.errors import ConfigError
from lib.core.stats import mcnemar

NAME = "probe_variants"
VARIANTS = {
    "plain": "chapter 1's probe: features of each image as it is",
    "flip_augmented": "training set doubled with the features of each training image's mirror; "
                      "tested on the images as they are",
    "flip_averaged": "features averaged over each image and its mirror, in training and at test time",
    "label_smoothing": "chapter 1's features; cross-entropy with label smoothing 0.1 (as the finetuned network)",
}
LABEL_SMOOTHING = 0.1
SMOOTHING = {"label_smoothing": LABEL_SMOOTHING}  # the probe's label smoothing per variant (default 0)
# Chapter 1's full grid chose 0.01, and every penalty from 1e-5 to 0.03 was within validation noise
# of it; the variants keep that penalty (a fit on 45,000-90,000 rows takes minutes on 2 shared cores),
# so a seed changes only which 5,000 training images are held out and where early stopping ends.
DEFAULT_WEIGHT_DECAYS = (1e-2,)


def mirrored(images: np.ndarray) -> np.ndarray:
    """Each (N, H, W, 3) image flipped left to right; a new array, so its cache key differs."""
    return np.ascontiguousarray(np.asarray(images)[:, :, ::-1])


def extract_views(args) -> dict:
    """Features of the train and test images and of their mirrors (float32), via the feature cache."""
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    extractor = Extractor(get_backbone(args.backbone), check_resolution(args.resolution), device=args.device,
                          mirror=dirs.mirror, seed=0, engine=args.engine, export_cache=Path(args.cache_dir))
    views, seconds = {}, {}
    for split in ("train", "test"):
        data, limit = load_cifar10(split, dirs), getattr(args, f"limit_{split}") or None
        images, labels = data.images[:limit], data.labels[:limit]
        views[f"{split}_y"] = np.asarray(labels, dtype=np.int64)
        for view, pixels in (("plain", images), ("mirror", mirrored(images))):
            fs = extract_features(pixels, extractor, labels=labels, cache_dir=Path(args.cache_dir),
                                  batch_size=args.batch_size, progress=f"{split} {view}")
            views[f"{split}_{view}"] = fs.features.astype(np.float32)
            seconds[f"{split}_{view}"] = {"extract_s": fs.seconds, "device": fs.device,
                                          "computed_chunks": len(fs.computed_chunks)}
    views["_extraction"] = {"engine": extractor.describe(), "precision": extractor.precision, "views": seconds}
    views["_weights"] = extractor.weights
    return views


def variant_data(variant: str, views: dict, tr: np.ndarray, val: np.ndarray) -> tuple:
    """(train_x, train_y, val_x, val_y, test_x) of one variant on one split."""
    y = views["train_y"]
    plain, mirror = views["train_plain"], views["train_mirror"]
    if variant == "flip_averaged":
        both = 0.5 * (plain + mirror)
        return both[tr], y[tr], both[val], y[val], 0.5 * (views["test_plain"] + views["test_mirror"])
    if variant == "flip_augmented":
        return (np.concatenate([plain[tr], mirror[tr]]), np.concatenate([y[tr], y[tr]]),
                plain[val], y[val], views["test_plain"])
    return plain[tr], y[tr], plain[val], y[val], views["test_plain"]


def fit_variant(variant: str, views: dict, seed: int, args) -> dict:
    """One variant on the validation split drawn by ``seed``: the chosen penalty and test accuracy."""
    tr, val = stratified_split(views["train_y"], args.val_size, seed)
    train_x, train_y, val_x, val_y, test_x = variant_data(variant, views, tr, val)
    config = ProbeConfig.from_flags(args, SMOOTHING.get(variant, 0.0))
    fit = fit_logistic(train_x, train_y, val_x, val_y, config, device="cpu")
    pred = predict_proba(fit.model, test_x).argmax(1)
    acc, lo, hi = accuracy_ci(pred == views["test_y"])
    return {"variant": variant, "seed": seed, "test_accuracy": acc, "test_ci95": [lo, hi],
            "val_accuracy": fit.val_accuracy, "weight_decay": fit.weight_decay,
            "best_iteration": fit.best_iteration, "n_train_rows": int(len(train_y)),
            "selection_s": fit.selection_seconds, "selection": fit.selection, "_pred": pred}


def summarise(rows: list[dict], test_y: np.ndarray) -> dict:
    """Per variant: mean and standard deviation over seeds, and McNemar against the plain probe
    on the same split (the paired test of chapter 2, on the images the two disagree on)."""
    plain = {r["seed"]: r["_pred"] == test_y for r in rows if r["variant"] == "plain"}
    plain_mean = float(np.mean([r["test_accuracy"] for r in rows if r["variant"] == "plain"]))
    out = {}
    for variant in VARIANTS:
        mine = [r for r in rows if r["variant"] == variant]
        if not mine:
            continue
        accs = np.array([r["test_accuracy"] for r in mine])
        tests = [mcnemar(plain[r["seed"]], r["_pred"] == test_y).as_dict() for r in mine if r["seed"] in plain]
        out[variant] = {
            "description": VARIANTS[variant], "seeds": [r["seed"] for r in mine],
            "test_accuracy_mean": float(accs.mean()),
            "test_accuracy_sd": float(accs.std(ddof=1)) if len(accs) > 1 else None,
            "gain_over_plain_mean": float(accs.mean()) - plain_mean,
            "mcnemar_vs_plain": tests}
    return out


def fit_order(seeds: list[int], variants: list[str]) -> list[tuple[int, str]]:
    """The plain probe on every split first (the noise level), then the other variants split by split:
    the artifact is rewritten after every fit, so an interrupted run leaves the most useful part."""
    return [(s, "plain") for s in seeds] + [(s, v) for s in seeds for v in variants if v != "plain"]


def save_variants(args, views: dict, rows: list[dict], start: float) -> Path:
    """Write ``results/<name>.json`` for the fits done so far (``complete`` says whether all are)."""
    payload = {
        "backbone": args.backbone, "resolution": args.resolution, "label_smoothing": LABEL_SMOOTHING,
        "n_train": int(len(views["train_y"]) - args.val_size), "n_val": int(args.val_size),
        "n_test": int(len(views["test_y"])), "variants": VARIANTS,
        "complete": len(rows) == len(args.seeds) * len(args.variants),
        "summary": summarise(rows, views["test_y"]),
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        "extraction": views["_extraction"],
    }
    config = {"backbone": args.backbone, "resolution": args.resolution, "engine": args.engine,
              "device": args.device, "seeds": list(args.seeds), "variants": list(args.variants),
              "weight_decays": list(args.weight_decays), "val_size": args.val_size, "max_iter": args.max_iter,
              "batch_size": args.batch_size, "limit_train": args.limit_train, "limit_test": args.limit_test,
              "probe": {v: asdict(ProbeConfig.from_flags(args, SMOOTHING.get(v, 0.0))) for v in args.variants}}
    prov = provenance.collect(seed=None, wall_time_s=time.perf_counter() - start, config=config,
                              weights=views["_weights"])
    return artifacts.save_json(args.name, payload, prov, Path(args.results_dir) if args.results_dir else None)


def run_variants(args) -> list[dict]:
    start = time.perf_counter()
    views = extract_views(args)
    if args.val_size is None:
        args.val_size = min(5000, len(views["train_y"]) // 10)
    rows = []
    for seed, variant in fit_order(args.seeds, args.variants):
        row = fit_variant(variant, views, seed, args)
        rows.append(row)
        path = save_variants(args, views, rows, start)
        print(f"[probe-variants] seed {seed} {variant}: test {row['test_accuracy']:.4f} "
              f"(λ={row['weight_decay']:g}, {row['selection_s']:.0f} s); wrote {path}", file=sys.stderr)
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--engine", default="auto", help="auto (ONNX Runtime on the CPU), torch or onnxruntime")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="validation splits (default 0 1 2)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--weight-decays", type=float, nargs="+", default=list(DEFAULT_WEIGHT_DECAYS))
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--val-size", type=int, default=None)
    parser.add_argument("--limit-train", type=int, default=None, help="first N training images (tests)")
    parser.add_argument("--limit-test", type=int, default=None, help="first N test images (tests)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR))
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--name", default=NAME)


def run(args: argparse.Namespace) -> int:
    if "plain" not in args.variants:
        raise ConfigError("--variants must include plain: every other variant is compared with it")
    ProbeConfig.from_flags(args)  # checks the penalties before any extraction
    run_variants(args)
    return 0
