"""Calibration: does a prediction made with confidence p (its largest softmax probability) come true
a fraction p of the time? Reliability bins and the expected calibration error (ECE; Guo et al. 2017).
Label smoothing pushes a model away from confidence 1, so it tends to be under-confident.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def reliability_bins(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """One row per non-empty bin of top-class confidence: count, mean confidence, accuracy, gap.

    Bins are ``(k/n, (k+1)/n]`` (the first also takes confidence exactly 0), as in Guo et al."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} do not match")
    if n_bins < 1:
        raise ValueError(f"need at least one bin, got {n_bins}")
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    frame = pd.DataFrame({"bin": index, "confidence": confidence, "correct": correct})
    rows = frame.groupby("bin").agg(count=("correct", "size"), confidence=("confidence", "mean"),
                                    accuracy=("correct", "mean")).reset_index()
    rows["lower"], rows["upper"] = edges[rows["bin"]], edges[rows["bin"] + 1]
    rows["gap"] = rows["accuracy"] - rows["confidence"]
    return rows[["bin", "lower", "upper", "count", "confidence", "accuracy", "gap"]]


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: sum over bins of (share of images) x |accuracy - mean confidence|."""
    bins = reliability_bins(probs, labels, n_bins)
    return float((bins["count"] * bins["gap"].abs()).sum() / bins["count"].sum())


def confidence_summary(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict:
    """Accuracy, mean confidence (their difference: over- or under-confidence overall), ECE,
    and the mean confidence on right and on wrong predictions."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    confidence = probs.max(1)
    correct = probs.argmax(1) == labels
    return {"accuracy": float(correct.mean()), "mean_confidence": float(confidence.mean()),
            "ece": expected_calibration_error(probs, labels, n_bins), "n_bins": n_bins,
            "confidence_correct": float(confidence[correct].mean()) if correct.any() else float("nan"),
            "confidence_wrong": float(confidence[~correct].mean()) if (~correct).any() else float("nan")}
