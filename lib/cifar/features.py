"""``python -m lib features`` (chapter 1): extract features, fit the linear probe, write artifacts.

The main resolution also gets the scikit-learn reference, the gallery and the confusion
matrix; ``--sweep`` repeats extraction and fitting at other resolutions for the
accuracy-compute table; ``--cpu-timing`` only times extraction on this machine's CPU
(``lib.cifar.cpu_timing``).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lib.cifar.backbones import BACKBONES, DEFAULT_BACKBONE, Backbone, check_resolution, get_backbone
from lib.cifar.extract import Extractor
from lib.cifar.feature_cache import DEFAULT_CACHE_DIR, extract_features
from lib.cifar.gallery import gallery_arrays, select_gallery
from lib.cifar.linear import DEFAULT_WEIGHT_DECAYS, ProbeConfig, fit_logistic, predict_proba, sklearn_reference
from lib.cifar.metrics import accuracy_ci, confusion_matrix, per_class_accuracy, stratified_split
from lib.cifar.onnx_engine import ENGINES
from lib.core import artifacts, provenance
from lib.core.data import CIFAR_CLASSES, DataDirs, add_data_arguments, load_cifar10
from lib.core.errors import ConfigError

NAME = "features"


def _subset(split, limit: int | None):
    if limit is None or limit >= len(split.labels):
        return split.images, split.labels
    if limit <= 0:
        raise ConfigError(f"subset size must be positive, got {limit}")
    return split.images[:limit], split.labels[:limit]


def probe_at_resolution(backbone: Backbone, resolution: int, data: dict, args, dirs,
                        with_sklearn: bool = False) -> dict:
    """Extract train and test features at one resolution, fit the probe; a summary dict
    plus the objects the main resolution needs (``_fit``, ``_probs``, ``_sets``)."""
    extractor = Extractor(backbone, resolution, pretrained=not args.random_weights,
                          device=args.device, mirror=dirs.mirror, seed=args.seed, precision=args.precision,
                          engine=args.engine, export_cache=Path(args.cache_dir))
    sets, load_before = {}, provenance.load_average()  # other processes on the CPU slow extraction down
    start = time.perf_counter()
    for split in ("train", "test"):
        images, labels = data[split]
        sets[split] = extract_features(images, extractor, labels=labels, flip=args.flip,
                                       cache_dir=Path(args.cache_dir), batch_size=args.batch_size,
                                       progress=f"{split} {backbone.name} @{resolution}px")
    extract_wall_s, load_after = time.perf_counter() - start, provenance.load_average()
    train_x = sets["train"].features
    train_y = data["train"][1]
    tr_idx, val_idx = stratified_split(train_y, args.val_size, args.seed)
    fit = fit_logistic(train_x[tr_idx], train_y[tr_idx], train_x[val_idx], train_y[val_idx],
                       ProbeConfig.from_flags(args), device=args.device)
    probs = predict_proba(fit.model, sets["test"].features)
    test_y = data["test"][1]
    acc, lo, hi = accuracy_ci(probs.argmax(1) == test_y)
    summary = {
        "resolution": resolution,
        "test_accuracy": acc, "test_ci95": [lo, hi], "val_accuracy": fit.val_accuracy,
        "weight_decay": fit.weight_decay, "best_iteration": fit.best_iteration,
        "extract_train_s": sets["train"].seconds, "extract_test_s": sets["test"].seconds,
        "extract_images_per_s": (len(train_x) + len(test_y)) / (sets["train"].seconds + sets["test"].seconds),
        "extract_device": sets["test"].device,
        "extract_precision": extractor.precision,
        "extract_engine": extractor.describe(),
        "extract_load_average": {"before": load_before, "after": load_after},
        "extract_wall_s": extract_wall_s,
        "probe_train_s": fit.train_seconds, "probe_selection_s": fit.selection_seconds,
        "feature_cache": {s: str(sets[s].path) if sets[s].path else None for s in sets},
    }
    if with_sklearn:
        ref = sklearn_reference(train_x[tr_idx], train_y[tr_idx], sets["test"].features, test_y,
                                fit.weight_decay)
        ref_pred = ref.pop("predictions")
        ref["agreement_with_probe"] = float(np.mean(ref_pred == probs.argmax(1)))
        summary["sklearn"] = ref
    summary["_fit"], summary["_probs"], summary["_sets"] = fit, probs, sets
    summary["_split"] = (tr_idx, val_idx)
    summary["_weights"] = extractor.weights
    return summary


def _load_data(args) -> dict:
    """The (possibly limited) train and test splits, and where they came from."""
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    train, test = load_cifar10("train", dirs), load_cifar10("test", dirs)
    return {"train": _subset(train, args.limit_train), "test": _subset(test, args.limit_test), "dirs": dirs}


def _write_files(main: dict, data: dict, results_dir: Path | None, name: str = NAME) -> dict:
    """Probabilities, curves, selection, gallery and confusion matrix of the main resolution."""
    import pandas as pd

    fit, probs = main["_fit"], main["_probs"]
    test_images, test_y = data["test"]
    selection = select_gallery(probs, test_y, k=5)
    names = {
        "probs": f"{name}_test_probs.npy", "curve": f"{name}_curve.csv",
        "selection": f"{name}_selection.csv", "gallery": f"{name}_gallery.npz",
        "confusion": f"{name}_confusion.csv",
    }
    artifacts.save_array(names["probs"], probs, results_dir)
    artifacts.save_text(names["curve"], pd.DataFrame(fit.curve).to_csv(index=False), results_dir)
    artifacts.save_text(names["selection"], pd.DataFrame(fit.selection).to_csv(index=False), results_dir)
    artifacts.save_arrays(names["gallery"], results_dir, **gallery_arrays(selection, test_images, probs))
    cm = confusion_matrix(test_y, probs.argmax(1))
    artifacts.save_text(names["confusion"], pd.DataFrame(cm, index=CIFAR_CLASSES, columns=CIFAR_CLASSES)
                        .to_csv(index_label="true"), results_dir)
    return {"names": names, "selection": selection, "confusion": cm}


def _payload(args, backbone: Backbone, resolution: int, main: dict, rows: list[dict], test_y: np.ndarray,
             written: dict) -> dict:
    """The JSON document of the run: setup, accuracy, per class, timings, sweep, gallery."""
    fit, selection = main["_fit"], written["selection"]
    return {
        "backbone": backbone.name, "backbone_description": backbone.description,
        "feature_layer": backbone.feature_layer, "feature_dim": backbone.feature_dim,
        "input_convention": backbone.input_convention, "resolution": resolution,
        "flip_average": args.flip, "full_dataset": args.limit_train is None and args.limit_test is None,
        "n_train": int(len(main["_split"][0])), "n_val": int(len(main["_split"][1])),
        "n_test": int(len(test_y)),
        "test_accuracy": main["test_accuracy"], "test_ci95": main["test_ci95"],
        "val_accuracy": main["val_accuracy"],
        "weight_decay": fit.weight_decay, "best_iteration": fit.best_iteration,
        "optimizer": "full-batch L-BFGS (strong Wolfe), zero init, early stopping on validation loss",
        "per_class_accuracy": dict(zip(CIFAR_CLASSES,
                                       per_class_accuracy(test_y, main["_probs"].argmax(1)).tolist())),
        "confusion_matrix": written["confusion"].tolist(),
        "sklearn": main["sklearn"],
        "timings": {k: main[k] for k in ("extract_train_s", "extract_test_s", "extract_images_per_s",
                                         "extract_device", "extract_precision", "extract_engine",
                                         "extract_load_average", "extract_wall_s", "probe_train_s",
                                         "probe_selection_s")},
        "sweep": rows,
        "gallery": {"k": 5, "indices_correct": selection["correct"].tolist(),
                    "indices_incorrect": selection["incorrect"].tolist()},
        "files": list(written["names"].values()),
    }


def run_pipeline(args) -> dict:
    start = time.perf_counter()
    backbone = get_backbone(args.backbone)
    resolution = check_resolution(args.resolution)
    sweep = sorted({check_resolution(r) for r in (args.sweep or [])} | {resolution})
    data = _load_data(args)
    if args.val_size is None:
        args.val_size = min(5000, len(data["train"][1]) // 10)
    results_dir = Path(args.results_dir) if args.results_dir else None
    rows, main = [], None
    for r in sweep:
        print(f"[features] {backbone.name} at {r} px", file=sys.stderr)
        summary = probe_at_resolution(backbone, r, data, args, data["dirs"], with_sklearn=(r == resolution))
        if r == resolution:
            main = summary
        rows.append({k: v for k, v in summary.items() if not k.startswith("_") and k != "sklearn"})
        print(f"[features]   test accuracy {summary['test_accuracy']:.4f}, extraction "
              f"{summary['extract_images_per_s']:.0f} img/s", file=sys.stderr)
    written = _write_files(main, data, results_dir, args.name)
    payload = _payload(args, backbone, resolution, main, rows, data["test"][1], written)
    config = {
        "backbone": backbone.name, "pretrained": not args.random_weights, "resolution": resolution,
        "sweep": sweep, "flip_average": args.flip, "val_size": args.val_size, "precision": args.precision,
        "weight_decays": list(args.weight_decays), "max_iter": args.max_iter,
        "probe": asdict(ProbeConfig.from_flags(args)),
        "limit_train": args.limit_train, "limit_test": args.limit_test,
        "device": args.device, "batch_size": args.batch_size, "engine": args.engine,
    }
    prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start, config=config,
                              weights=main["_weights"])
    path = artifacts.save_json(args.name, payload, prov, results_dir)
    print(f"[features] wrote {path} (test accuracy {main['test_accuracy']:.4f} "
          f"[{main['test_ci95'][0]:.4f}, {main['test_ci95'][1]:.4f}])", file=sys.stderr)
    return payload


# --- CLI ---------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help=f"one of {', '.join(sorted(BACKBONES))} (default {DEFAULT_BACKBONE})")
    parser.add_argument("--resolution", type=int, default=224,
                        help="input side in pixels for the main result (multiple of 32; default 224)")
    parser.add_argument("--sweep", type=int, nargs="+", default=None, metavar="R",
                        help="also extract and fit at these resolutions (accuracy-compute table)")
    parser.add_argument("--flip", action="store_true",
                        help="average features of each image and its horizontal mirror")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: fp16 autocast on CUDA, fp32 on CPU; bf16: bfloat16 autocast "
                             "on a CPU with bf16 instructions (torch engine)")
    parser.add_argument("--engine", default="auto",
                        help="auto (ONNX Runtime on the CPU, torch on CUDA), torch or onnxruntime")
    parser.add_argument("--name", default=NAME,
                        help=f"artifact name: results/<name>.json and its companion files (default {NAME})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images per forward pass (default 1024 on CUDA, 64 on CPU)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="feature cache (default cache/)")
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")
    parser.add_argument("--limit-train", type=int, default=None,
                        help="use only the first N training images (development runs)")
    parser.add_argument("--limit-test", type=int, default=None,
                        help="use only the first N test images (development runs)")
    parser.add_argument("--val-size", type=int, default=None,
                        help="stratified validation images held out of training (default 5000, "
                             "or a tenth of a smaller training subset)")
    parser.add_argument("--weight-decays", type=float, nargs="+", default=list(DEFAULT_WEIGHT_DECAYS),
                        help="L2 penalties tried on the validation split")
    parser.add_argument("--max-iter", type=int, default=500, help="L-BFGS iteration cap")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-weights", action="store_true",
                        help="randomly initialised backbone (smoke tests only)")
    parser.add_argument("--cpu-timing", action="store_true",
                        help="only time extraction on this CPU per resolution "
                             "(writes results/features_cpu_timing.json)")
    parser.add_argument("--timing-images", type=int, default=256,
                        help="test images timed per resolution with --cpu-timing (default 256)")
    parser.add_argument("--timing-repeats", type=int, default=2,
                        help="timed passes per resolution with --cpu-timing; the fastest counts")


def run(args: argparse.Namespace) -> int:
    get_backbone(args.backbone)
    check_resolution(args.resolution)
    if args.engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {args.engine!r}")
    if not args.name or not args.name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"--name must be letters, digits, '_' or '-', got {args.name!r}")
    for r in args.sweep or []:
        check_resolution(r)
    for option in ("batch_size", "timing_images", "timing_repeats", "limit_train", "limit_test",
                   "val_size", "max_iter"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be positive, got {value}")
    ProbeConfig.from_flags(args)  # checks the penalties before any extraction
    if args.cpu_timing:
        from lib.cifar.cpu_timing import run_cpu_timing

        run_cpu_timing(args)
    else:
        run_pipeline(args)
    return 0
