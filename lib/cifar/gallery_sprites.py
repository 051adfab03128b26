"""``python -m lib gallery-sprites``: the pixels the HTML prediction-gallery browser needs.

For each model with frozen test probabilities (``<model>_test_probs.npy``) and each true class,
the top-k most confident correct and wrong test images, selected exactly as the static galleries
are (``lib.cifar.gallery.select_gallery``), plus the pixels of every image any model selects,
once. The book must not read CIFAR-10 at render time, so this command reads the verified test
set once and writes ``results/gallery_sprites.npz`` and ``results/gallery_sprites.json``.

Arrays in the npz: ``models`` (n,) names; ``test_index`` (U,) the unique test indices, ascending;
``pixels`` (U, 32, 32, 3) uint8 of those images; ``labels`` (U,) their true class;
``correct``/``incorrect`` (n, C, k) test indices (-1: fewer than k candidates);
``pred``/``prob`` (n, U) each model's predicted class and its probability for each unique image.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lib.cifar.gallery import select_gallery
from lib.core import artifacts, provenance
from lib.core.data import DataDirs, add_data_arguments, load_cifar10
from lib.core.errors import ReportError

NAME = "gallery_sprites"
# model artifact prefix -> label shown to readers; a model whose probabilities are missing is skipped.
# Only classifiers a 2-core CPU re-derives: the book's answers, and the CPU's full finetune at 64 px.
MODELS = {
    "features_cpu_onnx": "linear probe (chapter 1)",
    "finetune_cpu_partial_short": "finetuned network (chapter 2)",
    "finetune_cpu": "every layer finetuned on the CPU, 64 px (chapter 2)",
}
DEFAULT_K = 10


def available_models(results_dir: Path | None = None) -> list[str]:
    return [m for m in MODELS if artifacts.results_path(f"{m}_test_probs.npy", results_dir).is_file()]


def build_sprites(probs: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray,
                  k: int = DEFAULT_K) -> dict[str, np.ndarray]:
    """The npz arrays (see the module docstring) from each model's (N, C) probabilities."""
    names = list(probs)
    selections = [select_gallery(probs[m], labels, k=k) for m in names]
    needed = np.unique(np.concatenate([s[side].ravel() for s in selections for side in ("correct", "incorrect")]))
    needed = needed[needed >= 0]
    pred = np.stack([np.asarray(probs[m])[needed].argmax(axis=1) for m in names])
    prob = np.stack([np.asarray(probs[m], dtype=np.float64)[needed].max(axis=1) for m in names])
    return {
        "models": np.array(names), "test_index": needed.astype(np.int64),
        "pixels": np.ascontiguousarray(images[needed], dtype=np.uint8),
        "labels": np.asarray(labels)[needed].astype(np.int64),
        "correct": np.stack([s["correct"] for s in selections]),
        "incorrect": np.stack([s["incorrect"] for s in selections]),
        "pred": pred.astype(np.int64), "prob": prob,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("-k", type=int, default=DEFAULT_K, help=f"images per class and side (default {DEFAULT_K})")
    parser.add_argument("--results-dir", default=None, help="folder of the frozen results (default results/)")


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    results_dir = Path(args.results_dir) if args.results_dir else None
    models = available_models(results_dir)
    if not models:
        raise ReportError("no <model>_test_probs.npy in results/: run 'python -m lib features' first")
    test = load_cifar10("test", DataDirs.resolve(args.data_dir, args.mirror))
    probs = {m: artifacts.load_array(f"{m}_test_probs.npy", results_dir) for m in models}
    for m, p in probs.items():
        if p.shape[0] != test.labels.size:
            raise ReportError(f"{m}_test_probs.npy has {p.shape[0]} rows, the test set {test.labels.size}")
    arrays = build_sprites(probs, test.images, test.labels, k=args.k)
    npz = f"{NAME}.npz"
    artifacts.save_arrays(npz, results_dir, **arrays)
    payload = {"k": args.k, "models": {m: MODELS[m] for m in models},
               "unique_images": int(arrays["test_index"].size), "files": [npz]}
    prov = provenance.collect(seed=None, wall_time_s=time.perf_counter() - start,
                              config={"k": args.k, "models": models,
                                      "probabilities": [f"{m}_test_probs.npy" for m in models]})
    path = artifacts.save_json(NAME, payload, prov, results_dir)
    print(f"[gallery-sprites] wrote {path}: {arrays['test_index'].size} images for {len(models)} models",
          file=sys.stderr)
    return 0
