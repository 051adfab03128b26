"""Pretrained-feature extraction with an on-disk cache, and the ``features`` command (chapter 1).

Extraction runs batched under ``torch.inference_mode`` with channels_last inputs,
resizing whole batches on the device (``lib.cifar.backbones.to_model_input``). On CUDA the
uint8 images are uploaded once, batches are larger, and the network runs under fp16
autocast; features are stored as float16 either way.

Cache layout: ``<cache>/features/<backbone>-r<res>-<flip|noflip>-<key hash>/`` holds
``meta.json`` (the full key: backbone, weights identity, resolution, options, sha256 of
the exact uint8 images and of the labels) and one ``chunk_NNNNN.npy`` per finished chunk.
Chunks are written atomically, so a killed run resumes with the finished ones. A folder
whose ``meta.json`` key differs from the request is never reused.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lib.core.paths import REPO_ROOT
from lib.core.artifacts import atomic_path, write_npy
from lib.cifar.backbones import (BACKBONES, DEFAULT_BACKBONE, Backbone, check_resolution, get_backbone,
                           to_model_input)
from lib.core.errors import ConfigError
from lib.core.devices import resolve_device

CACHE_VERSION = 1
DEFAULT_CACHE_DIR = REPO_ROOT / "cache"
DEFAULT_CHUNK = 2048
NAME = "features"


def default_batch_size(device: torch.device) -> int:
    return 1024 if device.type == "cuda" else 64


def array_sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float16
    key: dict
    path: Path
    seconds: float        # extraction time of the chunks (whenever they were computed)
    device: str           # device(s) that computed them
    computed_chunks: list[int]
    loaded_chunks: list[int]

    @property
    def images_per_second(self) -> float:
        return len(self.features) / self.seconds if self.seconds > 0 else float("nan")


def cache_key(backbone: Backbone, weights: dict | None, resolution: int, flip: bool,
              images: np.ndarray, labels: np.ndarray | None, precision: str) -> dict:
    return {
        "version": CACHE_VERSION,
        "backbone": backbone.name,
        "feature_layer": backbone.feature_layer,
        "feature_dim": backbone.feature_dim,
        "weights": weights,
        "resolution": int(resolution),
        "flip_average": bool(flip),
        "precision": precision,
        "n_images": int(len(images)),
        "images_sha256": array_sha256(images),
        "labels_sha256": array_sha256(np.asarray(labels)) if labels is not None else None,
    }


def cache_folder(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    flip = "flip" if key["flip_average"] else "noflip"
    return Path(cache_dir) / "features" / f"{key['backbone']}-r{key['resolution']}-{flip}-{digest}"


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _load_chunk(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """A finished chunk, or None if missing or not what it should be (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.shape != (rows, dim) or arr.dtype != np.float16 or not np.isfinite(arr).all():
        return None
    return arr


def optimize_for_cpu(model: torch.nn.Module, resolution: int) -> torch.nn.Module:
    """Trace and freeze ``model`` for CPU inference (``torch.jit.optimize_for_inference``):
    batch norm folded into the convolutions, convolution + ReLU6 fused, MKL-DNN layouts and no
    per-layer padding copies. Outputs agree with the eager network to float32 rounding; eager
    EfficientNet-Lite spends about a third of its CPU time in exactly those separate steps
    (see the performance appendix)."""
    import warnings

    example = torch.zeros(2, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the fastest here
        return torch.jit.optimize_for_inference(torch.jit.trace(model, example))


class Extractor:
    """A built network on a device, turning uint8 NHWC batches into float features."""

    def __init__(self, backbone: Backbone, resolution: int, *, pretrained: bool = True,
                 device: str | None = None, mirror: Path | None = None, seed: int = 0,
                 model: torch.nn.Module | None = None, autocast: bool | None = None,
                 optimize: bool | None = None, precision: str = "auto"):
        """``precision``: "auto" (fp16 autocast on CUDA, fp32 on CPU), "fp32", or "bf16"
        (bfloat16 autocast on the CPU, for processors with bf16 instructions; eager network)."""
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.backbone = backbone
        self.resolution = check_resolution(resolution)
        self.device = resolve_device(device)
        if model is not None:
            self.model, self.weights = model, {"custom_model": type(model).__name__, "seed": seed}
        else:
            if not pretrained:
                torch.manual_seed(seed)
            self.model, weights = backbone.build(pretrained=pretrained, resolution=resolution, mirror=mirror)
            self.weights = weights if pretrained else {"random_init_seed": seed}
        self.model = self.model.to(self.device).eval().to(memory_format=torch.channels_last)
        # On CPU the built network is traced and frozen for inference (default; not for a custom model).
        self.bf16 = precision == "bf16"
        if self.bf16 and self.device.type != "cpu":
            raise ConfigError("precision bf16 is the CPU fast path; CUDA uses fp16 autocast (precision auto)")
        self.optimized = (self.device.type == "cpu" and model is None and not self.bf16) \
            if optimize is None else optimize
        if self.optimized:
            self.model = optimize_for_cpu(self.model, self.resolution)
        self.autocast = (self.device.type == "cuda" and precision == "auto") if autocast is None else autocast
        self.precision = "bf16-autocast" if self.bf16 else ("fp16-autocast" if self.autocast else "fp32")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """``images``: uint8 (B, H, W, 3) tensor (any device) -> float32 (B, D) on CPU."""
        images = images.to(self.device, non_blocking=True)
        if self.bf16:
            ctx = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        elif self.autocast:
            ctx = torch.autocast(device_type="cuda", dtype=torch.float16)
        else:
            ctx = nullcontext()
        with ctx:
            x = to_model_input(images, self.resolution, self.backbone)
            out = self.model(x).float()
            if flip:
                out = 0.5 * (out + self.model(torch.flip(x, dims=[3])).float())
        return out.cpu()


def extract_features(images: np.ndarray, extractor: Extractor, *, labels: np.ndarray | None = None,
                     flip: bool = False, cache_dir: Path | None = DEFAULT_CACHE_DIR,
                     batch_size: int | None = None, chunk_size: int = DEFAULT_CHUNK,
                     progress: bool | str = True,
                     on_chunk: Callable[[int], None] | None = None) -> FeatureSet:
    """Features of ``images`` (N, H, W, 3) uint8, cached in chunks under ``cache_dir``.

    ``cache_dir=None`` disables the cache. ``on_chunk(i)`` is called after chunk ``i``
    is computed and saved (tests use it to simulate a kill)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if chunk_size <= 0:
        raise ConfigError(f"chunk size must be positive, got {chunk_size}")
    backbone, dim = extractor.backbone, extractor.backbone.feature_dim
    key = cache_key(backbone, extractor.weights, extractor.resolution, flip, images, labels,
                    extractor.precision)
    batch_size = batch_size or default_batch_size(extractor.device)
    n = len(images)

    folder = cache_folder(cache_dir, key) if cache_dir is not None else None
    meta = {"key": key, "chunk_size": chunk_size, "chunk_seconds": {}, "chunk_device": {}}
    if folder is not None:
        meta_path = folder / "meta.json"
        if meta_path.is_file():
            try:
                stored = json.loads(meta_path.read_text())
            except ValueError:
                raise ConfigError(f"{meta_path} is unreadable; delete {folder} to recompute") from None
            if stored.get("key") != key:
                raise ConfigError(
                    f"{folder} holds features made with different settings or data\n"
                    f"  stored:    {json.dumps(stored.get('key'), sort_keys=True)}\n"
                    f"  requested: {json.dumps(key, sort_keys=True)}\n"
                    "They were not used. Delete that folder to recompute.")
            meta = stored
            chunk_size = int(meta["chunk_size"])
        else:
            folder.mkdir(parents=True, exist_ok=True)
            _write_json(meta_path, meta)

    n_chunks = (n + chunk_size - 1) // chunk_size
    # On CUDA upload the whole uint8 array once; batches are then slices on the device.
    source = torch.from_numpy(images)
    if extractor.device.type == "cuda":
        source = source.to(extractor.device)
    parts, computed, loaded = [], [], []
    bar = None
    if progress:
        from tqdm import tqdm
        desc = progress if isinstance(progress, str) else f"{backbone.name} @{extractor.resolution}px"
        bar = tqdm(total=n, unit="img", desc=desc, file=sys.stderr, dynamic_ncols=True)
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            chunk_path = folder / f"chunk_{c:05d}.npy" if folder is not None else None
            arr = _load_chunk(chunk_path, hi - lo, dim) if chunk_path is not None else None
            if arr is not None and str(c) in meta["chunk_seconds"]:
                loaded.append(c)
            else:
                if extractor.device.type == "cuda" and not computed:
                    # untimed warm-up: CUDA context, cuDNN autotuning for this input shape
                    extractor(source[lo:min(hi, lo + batch_size)], flip=flip)
                    torch.cuda.synchronize()
                start = time.perf_counter()
                out = []
                for b in range(lo, hi, batch_size):
                    out.append(extractor(source[b:min(hi, b + batch_size)], flip=flip))
                    if bar is not None:
                        bar.update(min(hi, b + batch_size) - b)
                arr = torch.cat(out).numpy().astype(np.float16)
                if not np.isfinite(arr).all():
                    raise FloatingPointError(f"non-finite features in chunk {c} (fp16 overflow?)")
                seconds = time.perf_counter() - start
                if chunk_path is not None:
                    write_npy(chunk_path, arr)
                    meta["chunk_seconds"][str(c)] = seconds
                    meta["chunk_device"][str(c)] = device_name(extractor.device)
                    _write_json(folder / "meta.json", meta)
                else:
                    meta["chunk_seconds"][str(c)] = seconds
                    meta["chunk_device"][str(c)] = device_name(extractor.device)
                computed.append(c)
                if on_chunk is not None:
                    on_chunk(c)
            if c in loaded and bar is not None:
                bar.update(hi - lo)
            parts.append(arr)
    finally:
        if bar is not None:
            bar.close()
    features = np.concatenate(parts) if parts else np.zeros((0, dim), np.float16)
    seconds = float(sum(meta["chunk_seconds"].get(str(c), 0.0) for c in range(n_chunks)))
    devices = sorted(set(meta["chunk_device"].get(str(c), "?") for c in range(n_chunks)))
    return FeatureSet(features, key, folder, seconds, " + ".join(devices), computed, loaded)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    from lib.core.provenance import cpu_model
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


# --- the chapter-1 pipeline ----------------------------------------------------------------
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
    from lib.cifar.linear import fit_logistic, predict_proba, sklearn_reference
    from lib.cifar.metrics import accuracy_ci, stratified_split

    extractor = Extractor(backbone, resolution, pretrained=not args.random_weights,
                          device=args.device, mirror=dirs.mirror, seed=args.seed, precision=args.precision)
    sets = {}
    for split in ("train", "test"):
        images, labels = data[split]
        sets[split] = extract_features(images, extractor, labels=labels, flip=args.flip,
                                       cache_dir=Path(args.cache_dir), batch_size=args.batch_size,
                                       progress=f"{split} {backbone.name} @{resolution}px")
    train_x = sets["train"].features
    train_y = data["train"][1]
    tr_idx, val_idx = stratified_split(train_y, args.val_size, args.seed)
    fit = fit_logistic(train_x[tr_idx], train_y[tr_idx], train_x[val_idx], train_y[val_idx],
                       weight_decays=args.weight_decays, max_iter=args.max_iter, device=args.device)
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


def run_pipeline(args) -> dict:
    import pandas as pd

    from lib.core import artifacts

    from lib.core import provenance
    from lib.core.data import CIFAR_CLASSES, DataDirs, load_cifar10
    from lib.cifar.gallery import gallery_arrays, select_gallery
    from lib.cifar.metrics import confusion_matrix, per_class_accuracy

    start = time.perf_counter()
    backbone = get_backbone(args.backbone)
    resolution = check_resolution(args.resolution)
    sweep = sorted({check_resolution(r) for r in (args.sweep or [])} | {resolution})
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    train, test = load_cifar10("train", dirs), load_cifar10("test", dirs)
    data = {"train": _subset(train, args.limit_train), "test": _subset(test, args.limit_test)}
    n_train = len(data["train"][1])
    if args.val_size is None:
        args.val_size = min(5000, n_train // 10)
    results_dir = Path(args.results_dir) if args.results_dir else None

    rows, main = [], None
    for r in sweep:
        print(f"[features] {backbone.name} at {r} px", file=sys.stderr)
        summary = probe_at_resolution(backbone, r, data, args, dirs, with_sklearn=(r == resolution))
        if r == resolution:
            main = summary
        rows.append({k: v for k, v in summary.items() if not k.startswith("_") and k != "sklearn"})
        print(f"[features]   test accuracy {summary['test_accuracy']:.4f}, extraction "
              f"{summary['extract_images_per_s']:.0f} img/s", file=sys.stderr)

    fit, probs, sets = main["_fit"], main["_probs"], main["_sets"]
    test_images, test_y = data["test"]
    pred = probs.argmax(1)
    selection = select_gallery(probs, test_y, k=5)
    gallery = gallery_arrays(selection, test_images, probs)
    names = {
        "probs": f"{NAME}_test_probs.npy", "curve": f"{NAME}_curve.csv",
        "selection": f"{NAME}_selection.csv", "gallery": f"{NAME}_gallery.npz",
        "confusion": f"{NAME}_confusion.csv",
    }
    artifacts.save_array(names["probs"], probs, results_dir)
    artifacts.save_text(names["curve"], pd.DataFrame(fit.curve).to_csv(index=False), results_dir)
    artifacts.save_text(names["selection"], pd.DataFrame(fit.selection).to_csv(index=False), results_dir)
    artifacts.save_arrays(names["gallery"], results_dir, **gallery)
    cm = confusion_matrix(test_y, pred)
    artifacts.save_text(names["confusion"], pd.DataFrame(cm, index=CIFAR_CLASSES, columns=CIFAR_CLASSES)
                        .to_csv(index_label="true"), results_dir)

    full = args.limit_train is None and args.limit_test is None
    config = {
        "backbone": backbone.name, "pretrained": not args.random_weights, "resolution": resolution,
        "sweep": sweep, "flip_average": args.flip, "val_size": args.val_size, "precision": args.precision,
        "weight_decays": list(args.weight_decays), "max_iter": args.max_iter,
        "limit_train": args.limit_train, "limit_test": args.limit_test,
        "device": args.device, "batch_size": args.batch_size,
    }
    payload = {
        "backbone": backbone.name, "backbone_description": backbone.description,
        "feature_layer": backbone.feature_layer, "feature_dim": backbone.feature_dim,
        "input_convention": backbone.input_convention, "resolution": resolution,
        "flip_average": args.flip, "full_dataset": full,
        "n_train": int(len(main["_split"][0])), "n_val": int(len(main["_split"][1])),
        "n_test": int(len(test_y)),
        "test_accuracy": main["test_accuracy"], "test_ci95": main["test_ci95"],
        "val_accuracy": main["val_accuracy"],
        "weight_decay": fit.weight_decay, "best_iteration": fit.best_iteration,
        "optimizer": "full-batch L-BFGS (strong Wolfe), zero init, early stopping on validation loss",
        "per_class_accuracy": dict(zip(CIFAR_CLASSES, per_class_accuracy(test_y, pred).tolist())),
        "confusion_matrix": cm.tolist(),
        "sklearn": main["sklearn"],
        "timings": {k: main[k] for k in ("extract_train_s", "extract_test_s", "extract_images_per_s",
                                         "extract_device", "extract_precision", "probe_train_s",
                                         "probe_selection_s")},
        "sweep": rows,
        "gallery": {"k": 5, "indices_correct": selection["correct"].tolist(),
                    "indices_incorrect": selection["incorrect"].tolist()},
        "files": list(names.values()),
    }
    prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start, config=config,
                              weights=main["_weights"])
    path = artifacts.save_json(NAME, payload, prov, results_dir)
    print(f"[features] wrote {path} (test accuracy {main['test_accuracy']:.4f} "
          f"[{main['test_ci95'][0]:.4f}, {main['test_ci95'][1]:.4f}])", file=sys.stderr)
    return payload


def run_cpu_timing(args) -> dict:
    """Extraction speed on this machine's CPU for each resolution, on a small test sample."""
    from lib.core import artifacts
    from lib.core import provenance
    from lib.core.data import DataDirs, load_cifar10

    start_all = time.perf_counter()
    backbone = get_backbone(args.backbone)
    sweep = sorted({check_resolution(r) for r in (args.sweep or [args.resolution])})
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    n = args.timing_images
    images = load_cifar10("test", dirs).images[:n]
    batch = args.batch_size or default_batch_size(torch.device("cpu"))
    rows, weights = [], None
    for r in sweep:
        extractor = Extractor(backbone, r, pretrained=not args.random_weights, device="cpu",
                              mirror=dirs.mirror, seed=args.seed, precision=args.precision)
        weights = extractor.weights
        extractor(torch.from_numpy(images[:min(batch, n)]), flip=args.flip)  # warm-up
        load_before = _load_1min()
        repeats = []
        for _ in range(args.timing_repeats):
            t0 = time.perf_counter()
            for b in range(0, n, batch):
                extractor(torch.from_numpy(images[b:b + batch]), flip=args.flip)
            repeats.append(time.perf_counter() - t0)
        seconds = min(repeats)  # the least disturbed pass (the CPU is shared)
        ips = n / seconds
        rows.append({"resolution": r, "images": n, "seconds": seconds, "repeat_seconds": repeats,
                     "images_per_s": ips, "extrapolated_60k_s": 60000 / ips,
                     "load_average_1min": [load_before, _load_1min()]})
        print(f"[cpu-timing] {r} px: {ips:.1f} img/s -> 60k images ≈ {60000 / ips / 60:.1f} min",
              file=sys.stderr)
    payload = {"backbone": backbone.name, "flip_average": args.flip, "batch_size": batch,
               "device": device_name(torch.device("cpu")), "torch_threads": torch.get_num_threads(),
               "precision": extractor.precision, "optimized": extractor.optimized,
               "sample": f"first {n} CIFAR-10 test images",
               "repeats": args.timing_repeats,
               "note": "fastest of the repeated passes over the sample, after one warm-up batch; "
                       "60k-image times are extrapolated linearly, not measured. The CPU may be "
                       "shared: load_average_1min shows the machine's load around each measurement",
               "rows": rows}
    config = {"backbone": backbone.name, "sweep": sweep, "timing_images": n, "batch_size": batch,
              "timing_repeats": args.timing_repeats,
              "flip_average": args.flip, "pretrained": not args.random_weights,
              "precision": args.precision}
    prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start_all,
                              config=config, weights=weights)
    results_dir = Path(args.results_dir) if args.results_dir else None
    path = artifacts.save_json(f"{NAME}_cpu_timing", payload, prov, results_dir)
    print(f"[cpu-timing] wrote {path}", file=sys.stderr)
    return payload


# --- CLI ---------------------------------------------------------------------------------
def _load_1min() -> float | None:
    from lib.core.provenance import load_average

    average = load_average()
    return average[0] if average else None


def _int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments
    from lib.cifar.linear import DEFAULT_WEIGHT_DECAYS

    add_data_arguments(parser)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help=f"one of {', '.join(sorted(BACKBONES))} (default {DEFAULT_BACKBONE})")
    parser.add_argument("--resolution", type=_int, default=224,
                        help="input side in pixels for the main result (multiple of 32; default 224)")
    parser.add_argument("--sweep", type=_int, nargs="+", default=None, metavar="R",
                        help="also extract and fit at these resolutions (accuracy-compute table)")
    parser.add_argument("--flip", action="store_true",
                        help="average features of each image and its horizontal mirror")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: fp16 autocast on CUDA, fp32 (traced) on CPU; bf16: bfloat16 autocast "
                             "on a CPU with bf16 instructions")
    parser.add_argument("--batch-size", type=_int, default=None,
                        help="images per forward pass (default 1024 on CUDA, 64 on CPU)")
    parser.add_argument("--cache-dir", default=str(DEFAULT_CACHE_DIR), help="feature cache (default cache/)")
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")
    parser.add_argument("--limit-train", type=_int, default=None,
                        help="use only the first N training images (development runs)")
    parser.add_argument("--limit-test", type=_int, default=None,
                        help="use only the first N test images (development runs)")
    parser.add_argument("--val-size", type=_int, default=None,
                        help="stratified validation images held out of training (default 5000, "
                             "or a tenth of a smaller training subset)")
    parser.add_argument("--weight-decays", type=float, nargs="+", default=list(DEFAULT_WEIGHT_DECAYS),
                        help="L2 penalties tried on the validation split")
    parser.add_argument("--max-iter", type=_int, default=500, help="L-BFGS iteration cap")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random-weights", action="store_true",
                        help="randomly initialised backbone (smoke tests only)")
    parser.add_argument("--cpu-timing", action="store_true",
                        help="only time extraction on this CPU per resolution "
                             "(writes results/features_cpu_timing.json)")
    parser.add_argument("--timing-images", type=_int, default=256,
                        help="test images timed per resolution with --cpu-timing (default 256)")
    parser.add_argument("--timing-repeats", type=_int, default=2,
                        help="timed passes per resolution with --cpu-timing; the fastest counts")


def run(args: argparse.Namespace) -> int:
    get_backbone(args.backbone)
    check_resolution(args.resolution)
    for r in args.sweep or []:
        check_resolution(r)
    for option in ("batch_size", "timing_images", "timing_repeats", "limit_train", "limit_test",
                   "val_size", "max_iter"):
        value = getattr(args, option)
        if value is not None and value <= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be positive, got {value}")
    if any(wd < 0 for wd in args.weight_decays):
        raise ConfigError("--weight-decays must be non-negative")
    if args.cpu_timing:
        run_cpu_timing(args)
    else:
        run_pipeline(args)
    return 0
