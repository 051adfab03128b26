"""Classification metrics shared by the chapters: accuracy with a confidence interval,
per-class accuracy, confusion matrix, and a stratified train/validation split."""
from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

from lib.core.errors import ConfigError


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (stays inside [0, 1], sane at 0 and n):
    SciPy's ``binomtest(...).proportion_ci(method="wilson")``."""
    if n <= 0:
        raise ValueError("a confidence interval needs at least one trial")
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside [0, {n}]")
    interval = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def accuracy_ci(correct, confidence: float = 0.95) -> tuple[float, float, float]:
    """``correct``: boolean (or 0/1) per test example. Returns ``(accuracy, lo, hi)``,
    the 95% Wilson score interval by default (test examples treated as independent draws)."""
    correct = np.asarray(correct).reshape(-1)
    n = int(correct.size)
    k = int(np.count_nonzero(correct))
    lo, hi = wilson_interval(k, n, confidence)
    return k / n, lo, hi


def _label_pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
    y_pred = np.asarray(y_pred).astype(np.int64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in length")
    return y_true, y_pred


def per_class_accuracy(y_true, y_pred, n_classes: int = 10) -> np.ndarray:
    """Accuracy (recall) of each true class; NaN for a class with no example (hand-written:
    scikit-learn's ``recall_score(average=None)`` reports 0, with a warning, for such a class)."""
    y_true, y_pred = _label_pair(y_true, y_pred)
    totals = np.bincount(y_true, minlength=n_classes).astype(float)
    hits = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def confusion_matrix(y_true, y_pred, n_classes: int = 10) -> np.ndarray:
    """Counts ``C[i, j]`` = number of examples of true class ``i`` predicted as ``j`` (scikit-learn's,
    with every class present as a row and column, and labels outside the classes refused)."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    y_true, y_pred = _label_pair(y_true, y_pred)
    for name, values in (("y_true", y_true), ("y_pred", y_pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} has labels outside [0, {n_classes})")
    return sk_confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))


def stratified_split(labels, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train_idx, val_idx)``, sorted, with ``n_val`` validation examples whose
    class proportions match ``labels`` as closely as integers allow. Deterministic in ``seed``.

    Kept hand-written rather than scikit-learn's ``train_test_split(stratify=...)``: the frozen
    artifacts (chapters 1 and 2) were made with this split, and scikit-learn's shuffles with a
    different generator, so for the same seed it selects other images (475 of the 5,000 CIFAR-10
    validation images in common at seed 0); switching would change every committed number."""
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    n = labels.size
    if not 0 < n_val < n:
        raise ConfigError(f"validation size must be between 1 and {n - 1}, got {n_val}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation of n_val across classes, proportional to class counts.
    exact = counts * n_val / n
    take = np.floor(exact).astype(int)
    remainder = n_val - int(take.sum())
    if remainder:
        order = np.argsort(-(exact - take), kind="stable")
        take[order[:remainder]] += 1
    val_idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == cls))[:k]
                                      for cls, k in zip(classes, take)]))
    return np.setdiff1d(np.arange(n), val_idx), val_idx
