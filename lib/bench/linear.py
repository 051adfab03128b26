"""Part 2 of the benchmark: the ``nn.Linear`` probe (L-BFGS) against scikit-learn at equal accuracy."""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lib.bench.common import ACCURACY_SLACK, operator_profile

# Iteration caps tried, each fit from scratch, to trace test accuracy against wall time.
LINEAR_SCHEDULE = (2, 4, 6, 8, 10, 12, 15, 20, 30, 40, 60, 80, 120, 160, 240, 320, 480, 640, 1000)


def _first_reaching(trace: list[dict], target: float) -> dict | None:
    return next((row for row in trace if row["test_accuracy"] >= target), None)


def bench_linear(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 weight_decay: float, schedule=LINEAR_SCHEDULE, repeats: int = 3) -> dict:
    """Part 2: test accuracy against wall time for both solvers, each fit from scratch at each
    iteration cap of ``schedule`` (until it converges before the cap); then the seconds each
    first reaches ``min(final accuracies) - 0.2 points``. Standardisation is excluded from both."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from lib.cifar.linear import LinearProbe, ProbeConfig, fit_one, set_standardisation, standardise

    xt = torch.as_tensor(np.asarray(train_x), dtype=torch.float32)
    xs = torch.as_tensor(np.asarray(test_x), dtype=torch.float32)
    yt = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    ys = np.asarray(test_y)
    scaler = LinearProbe(xt.shape[1], int(yt.max()) + 1)
    set_standardisation(scaler, xt)
    zt, zs = standardise(scaler, xt), standardise(scaler, xs)
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
                model, curve, _ = fit_one(zt, yt, None, None, weight_decay,
                                          ProbeConfig(max_iter=cap, eval_every=cap), n_classes=n_classes)
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
    operators = operator_profile(lambda: fit_one(zt, yt, None, None, weight_decay, ProbeConfig(max_iter=20),
                                                 n_classes=n_classes), grad=True)
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

