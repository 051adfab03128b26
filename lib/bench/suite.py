"""Benchmarks: each fast path beside a baseline, in one process on one machine (the appendix).

``python -m lib bench`` measures four things and writes ``results/bench.json``:

1. *extraction* — the project's pipeline (``lib.cifar.extract``: whole-batch tensor resize,
   ``inference_mode``, channels_last) against the textbook one (a CIFAR10-style ``Dataset``
   returning PIL images, ``transforms.Resize`` / ``ToTensor`` / ``Normalize``, a
   ``DataLoader``, the model in eval mode under ``no_grad``) on the same test images with
   the same backbone: images/s, their ratio, the largest feature difference, the achieved
   GFLOP/s against this machine's float32 matrix-multiply GFLOP/s, and where the time goes.
2. *linear* — the project's ``nn.Linear`` probe (full-batch L-BFGS, ``lib.cifar.linear.fit_one``)
   against scikit-learn ``LogisticRegression(lbfgs)`` on the same cached features and the
   same penalty: seconds for each to first reach a common test accuracy.
3. *embeddings* — the project's best optimiser (``best_run`` of ``results/movies.json``)
   stopped within 0.5% of the floor, against the public recipe (Adam, lr 0.01, an
   ``nn.Linear(M, d, bias=False)`` applied to one-hot rows of a dense X, 200 iterations).
4. *report* — wall time of ``python -m lib notebooks`` from the frozen artifacts.

Ratios are recorded, never asserted: timings on a shared CPU vary from run to run.
"""
from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lib.core.paths import REPO_ROOT
from lib.core.errors import ConfigError
from lib.core.provenance import load_average

NAME = "bench"
PARTS = ("extraction", "linear", "embeddings", "report")
TARGETS = {
    "extraction_speedup": 2.0,           # project images/s over textbook images/s, at least
    "extraction_matmul_fraction": 0.60,  # achieved GFLOP/s over measured matmul GFLOP/s, at least
    "linear_speedup": 5.0,               # scikit-learn seconds over project seconds, at least
    "embeddings_speedup": 10.0,          # recipe seconds over project seconds (or never reached)
    "report_seconds": 60.0,              # python -m lib notebooks, at most
}
ACCURACY_SLACK = 0.002                   # the common target is min(final accuracies) - 0.2 points
# Iteration caps tried, each fit from scratch, to trace test accuracy against wall time.
LINEAR_SCHEDULE = (2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 1000)
# Input normalisation in torchvision's Normalize(mean, std) form, per backbone.
TEXTBOOK_NORMALIZE = {
    "efficientnet_lite0": ((127 / 255,) * 3, (128 / 255,) * 3),  # == (x*255 - 127) / 128
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- 1. feature extraction -----------------------------------------------------------------
def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """float32 ``torch.mm`` of two n x n matrices: best of ``repeats`` after a warm-up."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "repeats": repeats, "best_seconds": best, "gflops": 2.0 * n ** 3 / best / 1e9,
            "threads": torch.get_num_threads()}


def forward_flops(model: torch.nn.Module, resolution: int) -> int:
    """FLOPs of one forward pass on one image (``FlopCounterMode``: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, resolution, resolution)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


class CifarStyleDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10.__getitem__`` does, over the verified uint8 arrays
    (the mirror's files differ from the official ones byte-wise, so CIFAR10 itself refuses them)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.images[index], int(self.labels[index])
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def textbook_transform(backbone_name: str, resolution: int):
    from torchvision import transforms

    mean, std = TEXTBOOK_NORMALIZE[backbone_name]
    return transforms.Compose([transforms.Resize(resolution), transforms.ToTensor(),
                               transforms.Normalize(mean, std)])


def textbook_features(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
                      backbone_name: str, resolution: int, batch_size: int = 64,
                      workers: int = 0) -> np.ndarray:
    """The textbook loop: Dataset + transforms + DataLoader + eval() + no_grad()."""
    dataset = CifarStyleDataset(images, labels, textbook_transform(backbone_name, resolution))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers)
    model.eval()
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(model(x))
    return torch.cat(out).numpy()


def _profile_project(extractor, images: np.ndarray, batch_size: int) -> dict:
    """Seconds in input preparation (uint8 -> float, resize, normalise, channels_last) and in
    the network, over the first batches; plus the operators that take the most time."""
    from lib.cifar.backbones import to_model_input

    prep = forward = 0.0
    with torch.inference_mode():
        for b in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[b:b + batch_size])
            t0 = time.perf_counter()
            x = to_model_input(batch, extractor.resolution, extractor.backbone)
            t1 = time.perf_counter()
            extractor.model(x)
            t2 = time.perf_counter()
            prep, forward = prep + t1 - t0, forward + t2 - t1
    total = prep + forward
    return {"images": int(len(images)), "seconds": total,
            "shares": {"input preparation (tensor resize + normalise)": prep / total,
                       "network forward": forward / total},
            "operators": _operator_profile(extractor.model, to_model_input(
                torch.from_numpy(images[:batch_size]), extractor.resolution, extractor.backbone))}


def _operator_profile(model: torch.nn.Module, x: torch.Tensor, top: int = 8) -> list[dict]:
    """Self CPU time per operator for one forward pass, largest first (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": int(e.count)}
            for e in events[:top]]


def _profile_textbook(model: torch.nn.Module, images: np.ndarray, backbone_name: str,
                      resolution: int, batch_size: int) -> dict:
    """Per-stage seconds of the textbook loop on the first images (workers=0, so stages add up)."""
    from PIL import Image
    from torchvision import transforms

    mean, std = TEXTBOOK_NORMALIZE[backbone_name]
    resize, to_tensor = transforms.Resize(resolution), transforms.ToTensor()
    normalize = transforms.Normalize(mean, std)
    stages = dict.fromkeys(("PIL conversion", "PIL resize", "ToTensor", "Normalize", "collate",
                            "network forward"), 0.0)
    with torch.no_grad():
        for b in range(0, len(images), batch_size):
            tensors = []
            for img in images[b:b + batch_size]:
                t0 = time.perf_counter()
                pil = Image.fromarray(img)
                t1 = time.perf_counter()
                pil = resize(pil)
                t2 = time.perf_counter()
                x = to_tensor(pil)
                t3 = time.perf_counter()
                x = normalize(x)
                t4 = time.perf_counter()
                tensors.append(x)
                for key, dt in zip(("PIL conversion", "PIL resize", "ToTensor", "Normalize"),
                                   (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    stages[key] += dt
            t0 = time.perf_counter()
            x = torch.utils.data.default_collate(tensors)
            t1 = time.perf_counter()
            model(x)
            t2 = time.perf_counter()
            stages["collate"] += t1 - t0
            stages["network forward"] += t2 - t1
    total = sum(stages.values())
    return {"images": int(len(images)), "seconds": total,
            "shares": {k: v / total for k, v in stages.items()},
            "operators": _operator_profile(model, torch.utils.data.default_collate(
                [normalize(to_tensor(resize(Image.fromarray(img)))) for img in images[:batch_size]]))}


def bench_extraction(images: np.ndarray, labels: np.ndarray, *, backbone_name: str = "efficientnet_lite0",
                     resolution: int = 224, batch_size: int = 64, workers: int = 0,
                     pretrained: bool = True, profile_images: int = 128, seed: int = 0,
                     interleave: int = 256, bf16: bool | None = None) -> dict:
    """Part 1: both pipelines on the same images; speeds, ratio, difference, GFLOP/s, profile.

    ``bf16`` (default: when the CPU has bf16 instructions) also times the project's pipeline
    with ``precision="bf16"``, reported beside the default fp32 path."""
    from lib.cifar.backbones import get_backbone
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    backbone = get_backbone(backbone_name)
    if backbone_name not in TEXTBOOK_NORMALIZE:
        raise ConfigError(f"no textbook normalisation known for {backbone_name!r}")
    extractor = Extractor(backbone, resolution, pretrained=pretrained, device="cpu", seed=seed)
    if bf16 is None:
        bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    fast = Extractor(backbone, resolution, pretrained=pretrained, device="cpu", seed=seed,
                     precision="bf16") if bf16 else None
    # The textbook model: the same network and weights (the same seed when random), built and
    # run the plain way: eager, contiguous tensors.
    torch.manual_seed(seed)
    plain, _ = backbone.build(pretrained=pretrained, resolution=resolution)
    plain.eval()
    n = len(images)
    warm = images[:min(batch_size, n, 8)]
    extractor(torch.from_numpy(warm))  # warm-up both (allocator, first-call overheads), untimed
    if fast is not None:
        fast(torch.from_numpy(warm))
    textbook_features(plain, warm, labels[:len(warm)], backbone_name, resolution, batch_size)

    # The two pipelines alternate over slices of the images, so that a change in the shared
    # machine's load affects both alike; each one's seconds are summed over its slices.
    load_before = list(load_average() or ())
    mm_before = matmul_gflops()
    project_s = textbook_s = bf16_s = 0.0
    ours_parts, theirs_parts, bf16_parts = [], [], []
    for lo in range(0, n, interleave):
        part, part_labels = images[lo:lo + interleave], labels[lo:lo + interleave]
        t0 = time.perf_counter()
        ours_parts.append(extract_features(part, extractor, labels=part_labels, cache_dir=None,
                                           batch_size=batch_size, progress=False).features)
        t1 = time.perf_counter()
        theirs_parts.append(textbook_features(plain, part, part_labels, backbone_name, resolution,
                                              batch_size, workers))
        t2 = time.perf_counter()
        project_s, textbook_s = project_s + t1 - t0, textbook_s + t2 - t1
        if fast is not None:
            t3 = time.perf_counter()
            bf16_parts.append(extract_features(part, fast, labels=part_labels, cache_dir=None,
                                               batch_size=batch_size, progress=False).features)
            bf16_s += time.perf_counter() - t3
    ours, theirs = np.concatenate(ours_parts), np.concatenate(theirs_parts)
    load_after = list(load_average() or ())

    diff = np.abs(ours.astype(np.float32) - theirs)
    flops = forward_flops(plain, resolution)
    mm_after = matmul_gflops()
    mm = max(mm_before, mm_after, key=lambda m: m["gflops"])  # the less disturbed measurement
    mm["gflops_before_after"] = [mm_before["gflops"], mm_after["gflops"]]
    project_ips, textbook_ips = n / project_s, n / textbook_s
    achieved = flops * project_ips / 1e9
    k = min(profile_images, n)
    # the two pipelines' network inputs, to separate input differences from the network's response
    from PIL import Image

    from lib.cifar.backbones import to_model_input
    transform = textbook_transform(backbone_name, resolution)
    x_theirs = torch.stack([transform(Image.fromarray(img)) for img in images[:k]])
    x_ours = to_model_input(torch.from_numpy(images[:k]), resolution, backbone)
    input_diff = float((x_ours - x_theirs).abs().max())
    with torch.inference_mode():  # the two networks on identical inputs: the same function?
        same_input = x_theirs[:batch_size]
        network_diff = float((extractor.model(same_input.contiguous(memory_format=torch.channels_last))
                              - plain(same_input)).abs().max())
    return {
        "images": int(n), "resolution": resolution, "backbone": backbone_name,
        "pretrained": pretrained, "weights": extractor.weights, "batch_size": batch_size, "textbook_workers": workers,
        "threads": torch.get_num_threads(),
        "project": {"seconds": project_s, "images_per_s": project_ips,
                    "what": "lib.cifar.feature_cache.extract_features (cache off): uint8 batch -> tensor resize "
                            "(bilinear, antialias) -> normalise -> channels_last -> inference_mode; "
                            "features stored as float16"},
        "textbook": {"seconds": textbook_s, "images_per_s": textbook_ips,
                     "what": "CIFAR10-style Dataset (PIL.Image.fromarray) + transforms.Resize / ToTensor / "
                             f"Normalize + DataLoader(batch_size={batch_size}, num_workers={workers}) + "
                             "model.eval() under torch.no_grad()"},
        "speedup": project_ips / textbook_ips,
        "project_bf16": None if fast is None else {
            "seconds": bf16_s, "images_per_s": n / bf16_s, "speedup": (n / bf16_s) / textbook_ips,
            "relative_difference_to_fp32": float(
                np.linalg.norm(np.concatenate(bf16_parts).astype(np.float32) - ours.astype(np.float32))
                / max(np.linalg.norm(ours.astype(np.float32)), 1e-30)),
            "what": "the same pipeline with precision='bf16' (python -m lib features --precision bf16): "
                    "bfloat16 autocast on the CPU's bf16 instructions, eager network"},
        "max_abs_difference": float(diff.max()) if diff.size else 0.0,
        "mean_abs_difference": float(diff.mean()) if diff.size else 0.0,
        "max_abs_feature": float(np.abs(theirs).max()) if theirs.size else 0.0,
        "relative_difference": float(np.linalg.norm(ours.astype(np.float32) - theirs) /
                                     max(np.linalg.norm(theirs), 1e-30)),
        "input_max_abs_difference": input_diff,
        "network_max_abs_difference": network_diff,
        "interleave": interleave,
        "input_grey_level": float(1.0 / 255.0 / TEXTBOOK_NORMALIZE[backbone_name][1][0]),
        "project_optimized": bool(extractor.optimized),
        "flops_per_image": flops,
        "achieved_gflops": achieved,
        "textbook_gflops": flops * textbook_ips / 1e9,
        "matmul": mm,
        "matmul_fraction": achieved / mm["gflops"],
        "load_average": {"before": load_before, "after": load_after},
        "profile": {"project": _profile_project(extractor, images[:k], batch_size),
                    "textbook": _profile_textbook(plain, images[:k], backbone_name, resolution, batch_size)},
    }


# --- 2. logistic regression -----------------------------------------------------------------
def _first_reaching(trace: list[dict], target: float) -> dict | None:
    return next((row for row in trace if row["test_accuracy"] >= target), None)


def bench_linear(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 weight_decay: float, schedule=LINEAR_SCHEDULE, repeats: int = 3) -> dict:
    """Part 2: test accuracy against wall time for both solvers, each fit from scratch at each
    iteration cap of ``schedule`` (until it converges before the cap); then the seconds each
    first reaches ``min(final accuracies) - 0.2 points``. Standardisation is excluded from both."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from lib.cifar.linear import LinearProbe, fit_one

    xt = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
    xs = torch.as_tensor(np.asarray(test_x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    ys = np.asarray(test_y)
    scaler = LinearProbe(xt.shape[1], int(yt.max()) + 1)
    scaler.set_standardisation(xt)
    zt, zs = scaler.standardise(xt), scaler.standardise(xs)
    zt_np, zs_np = zt.numpy(), zs.numpy()
    n_classes = max(int(yt.max()), int(ys.max())) + 1
    C = 1.0 / (len(yt) * weight_decay)

    project, sklearn = [], []
    with torch.enable_grad():
        for cap in schedule:
            seconds = math.inf
            for _ in range(repeats):  # deterministic fits: the fastest repeat is the least disturbed
                t0 = time.perf_counter()
                # eval_every=cap: one uninterrupted L-BFGS run of at most `cap` iterations, like sklearn's
                model, curve, _ = fit_one(zt, yt, None, None, weight_decay, max_iter=cap,
                                          eval_every=cap, n_classes=n_classes)
                seconds = min(seconds, time.perf_counter() - t0)
            with torch.no_grad():
                acc = float((model.linear(zs).argmax(1).numpy() == ys).mean())
            ran = int(curve[-1]["iteration"])
            project.append({"max_iter": cap, "iterations": ran, "seconds": seconds, "test_accuracy": acc,
                            "objective": curve[-1]["objective"]})
            if ran < cap:
                break  # converged before the cap: larger caps give the same fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for cap in schedule:
            seconds = math.inf
            for _ in range(repeats):
                clf = LogisticRegression(C=C, solver="lbfgs", max_iter=cap, tol=1e-4)
                t0 = time.perf_counter()
                clf.fit(zt_np, np.asarray(train_y))
                seconds = min(seconds, time.perf_counter() - t0)
            ran = int(np.max(clf.n_iter_))
            sklearn.append({"max_iter": cap, "iterations": ran, "seconds": seconds,
                            "test_accuracy": float((clf.predict(zs_np) == ys).mean())})
            if ran < cap:
                break
    # where the project's time goes: operators of one fit of 20 iterations
    from torch.profiler import ProfilerActivity, profile
    with torch.enable_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fit_one(zt, yt, None, None, weight_decay, max_iter=20, n_classes=n_classes)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    operators = [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": int(e.count)}
                 for e in events[:8]]
    target = min(project[-1]["test_accuracy"], sklearn[-1]["test_accuracy"]) - ACCURACY_SLACK
    hit_p, hit_s = _first_reaching(project, target), _first_reaching(sklearn, target)
    return {
        "n_train": int(len(yt)), "n_test": int(len(ys)), "feature_dim": int(xt.shape[1]),
        "weight_decay": weight_decay, "C": C, "threads": torch.get_num_threads(), "repeats": repeats,
        "target_accuracy": target,
        "final_accuracy": {"project": project[-1]["test_accuracy"], "sklearn": sklearn[-1]["test_accuracy"]},
        "project": {"seconds_to_target": hit_p["seconds"], "iterations_to_target": hit_p["iterations"],
                    "trace": project,
                    "what": "lib.cifar.linear.fit_one: nn.Linear, full-batch L-BFGS (strong Wolfe), float32, "
                            "mean cross-entropy + weight_decay/2 ||W||^2"},
        "sklearn": {"seconds_to_target": hit_s["seconds"], "iterations_to_target": hit_s["iterations"],
                    "trace": sklearn,
                    "what": f"sklearn LogisticRegression(solver='lbfgs', C=1/(n*weight_decay), tol=1e-4)"},
        "speedup": hit_s["seconds"] / hit_p["seconds"],
        "seconds_per_iteration": {k: trace[-1]["seconds"] / max(trace[-1]["iterations"], 1)
                                  for k, trace in (("project", project), ("sklearn", sklearn))},
        "project_operators": operators,
    }


def linear_features(backbone_name: str, resolution: int, n_train: int, n_test: int, dirs,
                    cache_dir: Path, batch_size: int, pretrained: bool = True, seed: int = 0) -> dict:
    """Cached features of the first ``n_train`` training and ``n_test`` test images."""
    from lib.cifar.backbones import get_backbone
    from lib.core.data import load_cifar10
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    extractor = Extractor(get_backbone(backbone_name), resolution, pretrained=pretrained, device="cpu",
                          mirror=dirs.mirror, seed=seed)
    out = {"weights": extractor.weights}
    for split, n in (("train", n_train), ("test", n_test)):
        data = load_cifar10(split, dirs)
        images, labels = data.images[:n], data.labels[:n]
        fs = extract_features(images, extractor, labels=labels, cache_dir=cache_dir, batch_size=batch_size,
                              progress=f"bench {split} @{resolution}px")
        out[split] = (fs.features, labels)
        out[f"{split}_extraction"] = {"seconds": fs.seconds, "computed_chunks": len(fs.computed_chunks),
                                      "loaded_chunks": len(fs.loaded_chunks), "cache": str(fs.path)}
    return out


# --- 3. embeddings --------------------------------------------------------------------------
def recipe_run(X: np.ndarray, dim: int, iterations: int = 200, lr: float = 0.01, seed: int = 0,
               floor_loss: float | None = None, target_gap: float = 0.005) -> dict:
    """The public recipe: ``nn.Linear(M, d, bias=False)`` applied to the one-hot rows (the
    identity), loss sum over i != j of ((V Vᵀ)_ij - X_ij)^2 on a dense float32 X, Adam."""
    from torch import nn

    M = X.shape[0]
    t0 = time.perf_counter()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    mask = 1.0 - torch.eye(M)
    onehot = torch.eye(M)
    torch.manual_seed(seed)
    layer = nn.Linear(M, dim, bias=False)
    optimiser = torch.optim.Adam(layer.parameters(), lr=lr)
    setup = time.perf_counter() - t0
    losses, times = [], []
    target_step = target_seconds = None
    start = time.perf_counter()
    for step in range(iterations):
        optimiser.zero_grad()
        V = layer(onehot)
        loss = (((V @ V.T - Xt) * mask) ** 2).sum()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        times.append(time.perf_counter() - start)
        if floor_loss is not None and target_step is None and (losses[-1] - floor_loss) / floor_loss <= target_gap:
            target_step, target_seconds = step, times[-1]
    seconds = time.perf_counter() - start
    with torch.no_grad():
        V = layer(onehot).double().numpy()
    return {"setup_seconds": setup, "seconds": seconds, "iterations": iterations, "lr": lr,
            "seconds_per_iteration": seconds / iterations, "losses": losses, "times": times,
            "V": V, "target_step": target_step, "target_seconds": target_seconds}


def bench_embeddings(ratings, dim: int, best_run: str, extra_runs: tuple[str, ...] = (),
                     recipe_iterations: int = 200, seed: int = 0) -> dict:
    """Part 3: the project's optimiser(s) stopped within ``CONFIG.target_gap`` of the floor
    (float64, sparse X, ``CONFIG.threads`` threads) against the public recipe."""
    from threadpoolctl import threadpool_limits

    from lib.movies import config as mcfg
    from lib.movies import objective as obj
    from lib.movies import optimise as opt
    from lib.movies import likes as mv
    config = mcfg.CONFIG
    specs = {spec.name: spec for spec in config.runs}
    unknown = [name for name in (best_run, *extra_runs) if name not in specs]
    if unknown:
        raise ConfigError(f"runs {unknown} are not in lib.movies.config.CONFIG.runs")
    likes = mv.likes_matrix(ratings, "threshold", config.liked_threshold)
    dtype = obj.torch_dtype(config.dtype)
    previous = torch.get_num_threads()
    project = {}
    torch.set_num_threads(config.threads)
    try:
        with threadpool_limits(config.threads):
            t0 = time.perf_counter()
            objective = obj.LikesObjective(likes.matrix, dtype)
            setup = time.perf_counter() - t0
            ref = obj.floor(objective, dim, config.floor_tol, config.floor_max_iter)
            for name in (best_run, *extra_runs):
                spec = specs[name]
                V0 = opt.initial_embeddings(objective.n, dim, config.seed, config.init_std, spec.init, dtype)
                r = opt.run_optimizer(objective, spec, V0, config.iterations, floor_loss=ref.loss,
                                     target_gap=config.target_gap, stop_at_target=True, config=config)
                project[name] = {"reached": r.target_seconds is not None, "seconds_to_target": r.target_seconds,
                                 "steps_to_target": r.target_step, "evaluations": r.evaluations,
                                 "seconds": r.seconds, "final_loss": r.final_loss,
                                 "gap": r.gap(ref.loss), "setup_seconds": setup}
    finally:
        torch.set_num_threads(previous)
    X = mv.cooccurrence(likes)
    recipe = recipe_run(X, dim, recipe_iterations, 0.01, seed, ref.loss, config.target_gap)
    recipe_final = objective.value(recipe.pop("V"))  # float64, the same cost as the project's
    losses, times = recipe.pop("losses"), recipe.pop("times")
    best = project[best_run]
    recipe_time = recipe["target_seconds"] if recipe["target_seconds"] is not None else recipe["seconds"]
    return {
        "n_movies": likes.n_movies, "dim": dim, "floor_loss": ref.loss, "floor_seconds": ref.seconds,
        "target_gap": config.target_gap, "best_run": best_run,
        "project_threads": config.threads, "recipe_threads": torch.get_num_threads(),
        "project": project,
        "recipe": {**recipe, "final_loss": recipe_final, "gap": (recipe_final - ref.loss) / ref.loss,
                   "reached": recipe["target_seconds"] is not None,
                   "loss_curve": losses[::max(1, len(losses) // 50)],
                   "what": "nn.Linear(M, d, bias=False) on one-hot rows, dense float32 X, "
                           f"Adam lr=0.01, {recipe_iterations} iterations, PyTorch default init"},
        # A lower bound when the recipe never gets within the gap: it was stopped before.
        "speedup": recipe_time / best["seconds_to_target"] if best["reached"] else None,
        "speedup_is_lower_bound": recipe["target_seconds"] is None,
    }


# --- 4. the report ----------------------------------------------------------------------------
EXECUTED = re.compile(r"executed (\S+) in ([0-9.]+) s")


def bench_report(timeout: int = 900) -> dict:
    """Part 4: ``python -m lib notebooks`` in a subprocess, into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="bench-notebooks-") as out:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lib", "notebooks", "--out", out], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise ConfigError(f"python -m lib notebooks failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    chapters = {name: float(s) for name, s in EXECUTED.findall(proc.stdout)}
    return {"command": "python -m lib notebooks --out <temporary folder>", "seconds": seconds,
            "chapters": chapters}


# --- targets and the command ----------------------------------------------------------------
def targets(parts: dict) -> list[dict]:
    """One row per target: the measured value, the goal and whether it was met."""
    rows = []
    if "extraction" in parts:
        e = parts["extraction"]
        rows.append({"part": "extraction", "measure": "speed-up over the textbook pipeline",
                     "value": e["speedup"], "goal": f">= {TARGETS['extraction_speedup']:g}x",
                     "met": e["speedup"] >= TARGETS["extraction_speedup"]})
        rows.append({"part": "extraction", "measure": "share of measured matmul GFLOP/s",
                     "value": e["matmul_fraction"], "goal": f">= {TARGETS['extraction_matmul_fraction']:.0%}",
                     "met": e["matmul_fraction"] >= TARGETS["extraction_matmul_fraction"]})
    if "linear" in parts:
        s = parts["linear"]["speedup"]
        rows.append({"part": "linear", "measure": "speed-up over scikit-learn at equal accuracy",
                     "value": s, "goal": f">= {TARGETS['linear_speedup']:g}x",
                     "met": s >= TARGETS["linear_speedup"]})
    if "embeddings" in parts:
        m = parts["embeddings"]
        s = m["speedup"]
        rows.append({"part": "embeddings", "measure": "speed-up to the 0.5% gap over the public recipe",
                     "value": s, "goal": f">= {TARGETS['embeddings_speedup']:g}x or recipe never gets there",
                     "met": s is not None and (s >= TARGETS["embeddings_speedup"] or m["speedup_is_lower_bound"])})
    if "report" in parts:
        s = parts["report"]["seconds"]
        rows.append({"part": "report", "measure": "seconds for python -m lib notebooks",
                     "value": s, "goal": f"<= {TARGETS['report_seconds']:g} s",
                     "met": s <= TARGETS["report_seconds"]})
    return rows


def _parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown {unknown}; choose from {','.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone for parts 1 and 2")
    parser.add_argument("--images", type=int, default=2048, help="test images for part 1 (default 2048)")
    parser.add_argument("--resolution", type=int, default=224, help="part 1 input side (default 224)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers of the textbook pipeline (default 0: the 2 cores "
                             "already run the network)")
    parser.add_argument("--profile-images", type=int, default=128,
                        help="images profiled stage by stage in part 1 (default 128)")
    parser.add_argument("--linear-train", type=int, default=10000,
                        help="first N training images for part 2 (default 10000)")
    parser.add_argument("--linear-test", type=int, default=2000,
                        help="first N test images for part 2 (default 2000)")
    parser.add_argument("--linear-resolution", type=int, default=64,
                        help="feature resolution for part 2 (default 64)")
    parser.add_argument("--weight-decay", type=float, default=1e-2,
                        help="L2 penalty for both solvers in part 2 (default 0.01, chapter 1's choice)")
    parser.add_argument("--recipe-iterations", type=int, default=200,
                        help="iterations of the public embedding recipe (default 200)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "cache"), help="feature cache (default cache/)")
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")
    parser.add_argument("--random-weights", action="store_true", help="random backbone weights (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from lib.core import artifacts
    from lib.core import provenance
    from lib.cifar.backbones import check_resolution
    from lib.core.data import DataDirs, load_cifar10, load_movielens

    parts_wanted = _parse_parts(args.parts)
    for option in ("images", "batch_size", "profile_images", "linear_train", "linear_test",
                   "recipe_iterations"):
        if getattr(args, option) <= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be positive")
    if args.workers < 0 or args.weight_decay <= 0:
        raise ConfigError("--workers must be >= 0 and --weight-decay > 0")
    check_resolution(args.resolution)
    check_resolution(args.linear_resolution)
    results_dir = Path(args.results_dir) if args.results_dir else None
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    start = time.perf_counter()
    config = {k: getattr(args, k) for k in ("images", "resolution", "backbone", "batch_size", "workers",
                                             "profile_images", "linear_train", "linear_test",
                                             "linear_resolution", "weight_decay", "recipe_iterations",
                                             "random_weights")}
    config["parts"] = parts_wanted
    parts: dict = {}
    weights = None
    part_seconds: dict = {}

    def save() -> Path:
        payload = {"parts": parts, "targets": targets(parts), "target_values": TARGETS,
                   "part_seconds": part_seconds}
        prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start, config=config,
                                  weights=weights)
        return artifacts.save_json(NAME, payload, prov, results_dir)

    for part in parts_wanted:
        t0 = time.perf_counter()
        _log(f"{part} ... (load {list(load_average() or ())})")
        if part == "extraction":
            test = load_cifar10("test", dirs)
            n = min(args.images, len(test.labels))
            parts[part] = bench_extraction(test.images[:n], test.labels[:n], backbone_name=args.backbone,
                                           resolution=args.resolution, batch_size=args.batch_size,
                                           workers=args.workers, pretrained=not args.random_weights,
                                           profile_images=args.profile_images, seed=args.seed)
            e = parts[part]
            weights = e["weights"]
            _log(f"  project {e['project']['images_per_s']:.1f} img/s, textbook "
                 f"{e['textbook']['images_per_s']:.1f} img/s: {e['speedup']:.2f}x; "
                 f"{e['achieved_gflops']:.1f} GFLOP/s of {e['matmul']['gflops']:.1f} (matmul)")
        elif part == "linear":
            feats = linear_features(args.backbone, args.linear_resolution, args.linear_train, args.linear_test,
                                    dirs, Path(args.cache_dir), args.batch_size,
                                    pretrained=not args.random_weights, seed=args.seed)
            weights = weights or feats["weights"]
            result = bench_linear(*feats["train"], *feats["test"], args.weight_decay)
            result["resolution"] = args.linear_resolution
            result["extraction"] = {"train": feats["train_extraction"], "test": feats["test_extraction"],
                                    "note": "not part of the timing"}
            parts[part] = result
            _log(f"  target accuracy {result['target_accuracy']:.4f}: project "
                 f"{result['project']['seconds_to_target']:.2f} s, sklearn "
                 f"{result['sklearn']['seconds_to_target']:.2f} s: {result['speedup']:.1f}x")
        elif part == "embeddings":
            movies = artifacts.load_json("movies")
            # also the project's run that reached the gap soonest in the frozen run, if different
            timed = [r for r in movies["runs"] if r.get("target_seconds") is not None]
            fastest = min(timed, key=lambda r: r["target_seconds"])["name"] if timed else None
            extra = (fastest,) if fastest and fastest != movies["best_run"] else ()
            result = bench_embeddings(load_movielens(dirs).ratings, int(movies["dim"]), movies["best_run"],
                                      extra, args.recipe_iterations, args.seed)
            result["fastest_run"] = fastest
            parts[part] = result
            _log(f"  {movies['best_run']}: {result['project'][movies['best_run']]['seconds_to_target']} s to "
                 f"the gap; recipe gap after {args.recipe_iterations} it. {result['recipe']['gap']:.3g}")
        elif part == "report":
            save()  # the appendix reads results/bench.json: give it this run's other parts
            parts[part] = bench_report()
            _log(f"  notebooks {parts[part]['seconds']:.1f} s")
        part_seconds[part] = round(time.perf_counter() - t0, 3)
    path = save()
    for row in targets(parts):
        value = "n/a" if row["value"] is None else f"{row['value']:.3g}"
        _log(f"{row['part']:<10} {row['measure']:<52} {value:>8} ({row['goal']}): "
             f"{'met' if row['met'] else 'MISSED'}")
    _log(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0
