"""Benchmark part: the inference engines of CPU feature extraction, side by side, per backbone.

The engine decides the CPU speed of the project's slowest step (issue 12). The engines (see
``_engines``) run on the same images with the same weights, taking turns over slices; the float32
sgemm rate is measured in the same run at the same thread count, so each engine's FLOP-based
utilisation is a ratio of two numbers taken under the same conditions.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from lib.bench.extraction import (bf16_supported, forward_flops, matmul_gflops, plain_network, textbook_features,
                                  time_interleaved)
from lib.core.stats import relative_difference
from lib.core.provenance import load_average

BACKBONES = ("efficientnet_lite0", "resnet18")


def _engines(backbone, resolution: int, pretrained: bool, seed: int, bf16: bool) -> dict:
    """name -> callable(images uint8 (N, H, W, 3), labels) -> float32 features (N, D)."""
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    def project(extractor):
        return lambda images, labels: extract_features(images, extractor, labels=labels, cache_dir=None,
                                                       batch_size=64, progress=False).features.astype(np.float32)

    common = dict(pretrained=pretrained, device="cpu", seed=seed)
    eager = Extractor(backbone, resolution, engine="torch", **common)
    plain = plain_network(backbone, resolution, pretrained, seed)
    engines = {"textbook (PIL + DataLoader, torch eager)":
               lambda images, labels: textbook_features(plain, images, labels, backbone.name, resolution, 64),
               "torch eager": project(eager),
               "torch traced + frozen (previous default)":
               project(Extractor(backbone, resolution, engine="torch", optimize=True, **common))}
    if bf16:
        engines["torch bf16 autocast"] = project(Extractor(backbone, resolution, engine="torch",
                                                           precision="bf16", **common))
    ort = Extractor(backbone, resolution, engine="onnxruntime", **common)
    engines["ONNX Runtime (default)"] = project(ort)
    return {"run": engines, "plain": plain, "onnxruntime": ort.describe()}


def bench_backbone(images: np.ndarray, labels: np.ndarray, backbone_name: str, *, resolution: int = 224,
                   pretrained: bool = True, seed: int = 0, interleave: int = 128,
                   bf16: bool | None = None) -> dict:
    """One backbone's engine table: images/s, speed-ups, utilisation of the same-run sgemm rate."""
    from lib.cifar.backbones import get_backbone

    backbone = get_backbone(backbone_name)
    built = _engines(backbone, resolution, pretrained, seed, bf16_supported() if bf16 is None else bf16)
    n = len(images)
    load_before = list(load_average() or ())
    mm_before = matmul_gflops()
    for run in built["run"].values():  # untimed warm-up
        run(images[:8], labels[:8])
    seconds, features = time_interleaved(built["run"], images, labels, interleave)
    mm_after = matmul_gflops()
    load_after = list(load_average() or ())
    mm = max(mm_before, mm_after, key=lambda m: m["gflops"])  # the less disturbed measurement
    mm["gflops_before_after"] = [mm_before["gflops"], mm_after["gflops"]]
    flops = forward_flops(built["plain"], resolution)
    textbook_name, eager_name = list(built["run"])[:2]
    rows = []
    for name, s in seconds.items():
        ips = n / s
        rows.append({"engine": name, "seconds": s, "images_per_s": ips,
                     "speedup_over_textbook": seconds[textbook_name] / s,
                     "speedup_over_torch_eager": seconds[eager_name] / s,
                     "gflops": flops * ips / 1e9, "sgemm_fraction": flops * ips / 1e9 / mm["gflops"],
                     "relative_difference_to_torch_eager": relative_difference(features[name],
                                                                               features[eager_name])})
    return {"backbone": backbone_name, "resolution": resolution, "images": int(n), "pretrained": pretrained,
            "flops_per_image": flops, "sgemm": mm, "threads": torch.get_num_threads(),
            "onnxruntime": built["onnxruntime"], "interleave": interleave,
            "load_average": {"before": load_before, "after": load_after}, "rows": rows,
            "default_engine": "ONNX Runtime (default)"}


def bench_engines(images: np.ndarray, labels: np.ndarray, *, backbones: tuple[str, ...] = BACKBONES,
                  resolution: int = 224, pretrained: bool = True, seed: int = 0, interleave: int = 128,
                  bf16: bool | None = None) -> dict:
    """The engine table for each backbone. ResNet18 runs with random weights where its pretrained
    file cannot be had (speed does not depend on the weights' values)."""
    from lib.core.weights import checkpoint_dir

    resnet18_cached = (checkpoint_dir() / "resnet18-f37072fd.pth").is_file()
    tables = {}
    for name in backbones:
        weights = pretrained and (name != "resnet18" or resnet18_cached)
        tables[name] = bench_backbone(images, labels, name, resolution=resolution, pretrained=weights,
                                      seed=seed, interleave=interleave, bf16=bf16)
    return {"backbones": tables, "note": "engines alternate over slices of the same images; seconds "
                                         "summed per engine; utilisation = FLOPs x images/s over the "
                                         "same-run float32 sgemm rate (torch.mm 2048 x 2048)"}
