"""``python -m lib features --cpu-timing``: extraction speed on this machine's CPU per resolution.

Why a separate measurement: the chapter-1 features were computed on a GPU; a CPU reader needs
to know what extraction costs on an ordinary CPU, with which engine, and whether the input
pipeline keeps up with the network. Each resolution times the chosen engine and, when that is
ONNX Runtime, torch's eager network in the same run (ratios only make sense within one run on
a shared machine), and ONNX Runtime's per-node profile of the input preparation.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from lib.cifar.backbones import Backbone, check_resolution, get_backbone, to_model_input
from lib.cifar.extract import Extractor, default_batch_size, extractor_device_name
from lib.cifar.onnx_engine import input_share
from lib.core import artifacts, provenance
from lib.core.data import DataDirs, load_cifar10
from lib.core.provenance import load_1min
from lib.core.stats import relative_difference

NAME = "features_cpu_timing"


def time_passes(extractor: Extractor, images: np.ndarray, batch: int, repeats: int,
                flip: bool) -> tuple[list[float], np.ndarray]:
    """Seconds of each full pass over ``images`` after one untimed warm-up batch, and the
    features of the last pass (float32)."""
    extractor(torch.from_numpy(images[:batch]), flip=flip)
    seconds, out = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = [extractor(torch.from_numpy(images[b:b + batch]), flip=flip) for b in range(0, len(images), batch)]
        seconds.append(time.perf_counter() - t0)
    return seconds, torch.cat(out).numpy()


def torch_input_seconds(images: np.ndarray, resolution: int, backbone: Backbone, batch: int) -> float:
    """Seconds torch takes to prepare ``images`` (uint8 -> float, resize, normalise) outside
    the network: what the input pipeline costs when it runs in front of the engine."""
    with torch.inference_mode():
        to_model_input(torch.from_numpy(images[:batch]), resolution, backbone)
        t0 = time.perf_counter()
        for b in range(0, len(images), batch):
            to_model_input(torch.from_numpy(images[b:b + batch]), resolution, backbone)
        return time.perf_counter() - t0


def time_resolution(args, backbone: Backbone, r: int, images: np.ndarray, batch: int,
                    mirror: Path | None) -> tuple[dict, Extractor]:
    """One row of the timing table: the chosen engine, torch eager beside ONNX Runtime, input share."""
    n = len(images)
    extractor = Extractor(backbone, r, pretrained=not args.random_weights, device="cpu", mirror=mirror,
                          seed=args.seed, precision=args.precision, engine=args.engine,
                          export_cache=Path(args.cache_dir))
    load_before = load_1min()
    repeats, features = time_passes(extractor, images, batch, args.timing_repeats, args.flip)
    seconds = min(repeats)  # the least disturbed pass (the CPU is shared)
    ips = n / seconds
    row = {"resolution": r, "images": n, "seconds": seconds, "repeat_seconds": repeats,
           "images_per_s": ips, "extrapolated_60k_s": 60000 / ips, "engine": extractor.engine}
    if extractor.engine == "onnxruntime":
        eager = Extractor(backbone, r, pretrained=not args.random_weights, device="cpu", mirror=mirror,
                          seed=args.seed, engine="torch")
        eager_repeats, eager_features = time_passes(eager, images, batch, args.timing_repeats, args.flip)
        eager_s = min(eager_repeats)
        prep_s = torch_input_seconds(images, r, backbone, batch)
        row.update({"torch_eager_images_per_s": n / eager_s, "speedup_over_torch_eager": eager_s / seconds,
                    "relative_difference_to_torch": relative_difference(features, eager_features),
                    "torch_input_images_per_s": n / prep_s,
                    "torch_input_share": prep_s / (prep_s + seconds),
                    "onnxruntime_profile": input_share(extractor.onnx, images, batch)})
    row["load_average_1min"] = [load_before, load_1min()]
    print(f"[cpu-timing] {r} px: {ips:.1f} img/s ({extractor.engine}) -> 60k images ≈ "
          f"{60000 / ips / 60:.1f} min", file=sys.stderr)
    return row, extractor


def run_cpu_timing(args) -> dict:
    """Extraction speed on this machine's CPU for each resolution, on a small test sample."""
    start_all = time.perf_counter()
    backbone = get_backbone(args.backbone)
    sweep = sorted({check_resolution(r) for r in (args.sweep or [args.resolution])})
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    n = args.timing_images
    images = load_cifar10("test", dirs).images[:n]
    batch = args.batch_size or default_batch_size(torch.device("cpu"))
    rows, extractor = [], None
    for r in sweep:
        row, extractor = time_resolution(args, backbone, r, images, batch, dirs.mirror)
        rows.append(row)
    payload = {"backbone": backbone.name, "flip_average": args.flip, "batch_size": batch,
               "device": extractor_device_name(extractor), "torch_threads": torch.get_num_threads(),
               "precision": extractor.precision, "engine": extractor.describe(),
               "sample": f"first {n} CIFAR-10 test images",
               "repeats": args.timing_repeats,
               "note": "fastest of the repeated passes over the sample, after one warm-up batch; "
                       "60k-image times are extrapolated linearly, not measured. With ONNX Runtime, "
                       "torch's eager network is timed in the same run (relative_difference_to_torch compares "
                       "their features on the sample), torch_input_share is the share "
                       "torch's resize + normalise would take in front of the engine, and "
                       "onnxruntime_profile the share of the exported graph's own input nodes. The CPU "
                       "may be shared: load_average_1min shows the machine's load around each measurement",
               "rows": rows}
    config = {"backbone": backbone.name, "sweep": sweep, "timing_images": n, "batch_size": batch,
              "timing_repeats": args.timing_repeats,
              "flip_average": args.flip, "pretrained": not args.random_weights,
              "precision": args.precision, "engine": args.engine}
    prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start_all,
                              config=config, weights=extractor.weights)
    results_dir = Path(args.results_dir) if args.results_dir else None
    path = artifacts.save_json(NAME, payload, prov, results_dir)
    print(f"[cpu-timing] wrote {path}", file=sys.stderr)
    return payload
