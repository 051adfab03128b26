"""What a finetuning run writes to ``results/``: metrics, probabilities, history, gallery, flips."""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from lib.cifar.finetune.data import Splits
from lib.cifar.finetune.loop import TrainOutcome
from lib.cifar.finetune.model import count_parameters
from lib.cifar.finetune.recipe import N_CLASSES, REFERENCE_BATCH, Context, Recipe, RunOptions


def write_run_artifacts(recipe: Recipe, options: RunOptions, ctx: Context, splits: Splits,
                        outcome: TrainOutcome, test: dict, wall_start: float) -> Path:
    import pandas as pd

    from lib.core import artifacts

    from lib.core import provenance
    from lib.cifar.backbones import get_backbone
    from lib.core.data import CIFAR_CLASSES
    from lib.cifar.metrics import accuracy_ci, per_class_accuracy

    name, out = options.name, options.results_dir
    labels = splits.test_labels.numpy()
    pred = test["probs"].argmax(1)
    acc, lo, hi = accuracy_ci(pred == labels)
    per_class = per_class_accuracy(labels, pred, N_CLASSES)
    trainable, total = count_parameters(outcome.model)
    history = outcome.history
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
                    "train_images_per_s": float(np.mean([r["images_per_s"] for r in history])) if history else None,
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
              **ctx.describe()}
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


BOOK_PROBE = "features_cpu_onnx"  # chapter 1's answer: the probe the flipped examples compare with


def write_gallery(name: str, results_dir: Path, images: np.ndarray, probs: np.ndarray,
                  labels: np.ndarray, features_name: str = BOOK_PROBE) -> list[Path]:
    """Gallery tiles (chapter 1's selection rule) and, when chapter 1's test probabilities
    exist, the test images that flipped between the feature classifier and the finetuned net."""
    from lib.core import artifacts
    from lib.cifar.gallery import gallery_arrays, select_gallery

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
