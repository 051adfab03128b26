"""Per-class galleries of a classifier's most confident right and wrong test predictions: for each
true class, the correct predictions by the probability of that class and the mistakes by the
probability of the wrong predicted class (the most confident mistakes), ties by the lower test index.
``lib.book.gallery`` draws the saved arrays.
"""
from __future__ import annotations

import numpy as np


def select_gallery(probs: np.ndarray, labels: np.ndarray, k: int = 5) -> dict[str, np.ndarray]:
    """Return ``{"correct": (C, k) int, "incorrect": (C, k) int}`` test indices; -1 pads
    rows with fewer than ``k`` candidates."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != labels.size:
        raise ValueError(f"probs {probs.shape} does not match {labels.size} labels")
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    n_classes = probs.shape[1]
    pred = probs.argmax(axis=1)
    confidence = probs[np.arange(labels.size), pred]
    out = {name: np.full((n_classes, k), -1, dtype=np.int64) for name in ("correct", "incorrect")}
    for c in range(n_classes):
        for name, mask in (("correct", (labels == c) & (pred == c)),
                           ("incorrect", (labels == c) & (pred != c))):
            idx = np.flatnonzero(mask)
            # lexsort: last key is primary -> descending confidence, then ascending index
            order = idx[np.lexsort((idx, -confidence[idx]))][:k]
            out[name][c, :order.size] = order
    return out


def gallery_arrays(selection: dict[str, np.ndarray], images: np.ndarray,
                   probs: np.ndarray) -> dict[str, np.ndarray]:
    """Everything needed to draw the gallery without the dataset, ready for ``save_arrays``.

    ``images``: the (N, 32, 32, 3) uint8 test images the probabilities refer to.
    Returns ``indices`` (C, 2k; correct columns first, -1 = empty), ``images``
    (C, 2k, H, W, 3) uint8 (zeros where empty), ``pred`` (C, 2k) and ``prob`` (C, 2k).
    """
    indices = np.concatenate([selection["correct"], selection["incorrect"]], axis=1)
    probs = np.asarray(probs)
    valid = indices >= 0
    safe = np.where(valid, indices, 0)
    tiles = np.where(valid[..., None, None, None], np.asarray(images)[safe], 0).astype(np.uint8)
    pred = np.where(valid, probs[safe].argmax(axis=-1), -1)
    prob = np.where(valid, probs[safe].max(axis=-1), np.nan)
    return {"indices": indices, "images": tiles, "pred": pred.astype(np.int64),
            "prob": prob.astype(np.float64)}
