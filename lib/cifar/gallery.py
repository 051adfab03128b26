"""Per-class galleries of a classifier's most confident right and wrong test predictions.

"Top" is defined as follows, for each true class ``c`` (one gallery row):

* correct: test images of class ``c`` predicted as ``c``, ordered by the predicted
  probability of ``c`` (highest first);
* incorrect: test images of class ``c`` predicted as some other class, ordered by the
  probability given to that wrong predicted class (highest first) — the most
  confident mistakes.

Ties are broken by the lower test index, so the selection is deterministic.
Any classifier's ``(N, n_classes)`` probabilities work (the finetuning chapter reuses it).
"""
from __future__ import annotations

import numpy as np

from lib.core.data import CIFAR_CLASSES


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


SHORT_NAMES = {"automobile": "car", "airplane": "plane"}  # tile captions are 0.6 inch wide


def tile_captions(pred: np.ndarray, prob: np.ndarray, indices: np.ndarray, test_probs: np.ndarray | None,
                  classes: tuple[str, ...] = CIFAR_CLASSES) -> list[list[str]]:
    """Two caption lines per tile that carry information.

    Without ``test_probs``: the predicted class and its probability. With the (N, C) test
    probabilities: on the correct side, where the predicted probability is near 1 for every tile,
    the runner-up class and its probability (how close the model came to another answer); on the
    wrong side, the predicted class with its probability and the probability left for the true
    class (the row)."""
    n_rows, n_cols = pred.shape
    k = n_cols // 2
    out = []
    for r in range(n_rows):
        line = []
        for j in range(n_cols):
            if indices[r, j] < 0:
                line.append("")
                continue
            name = classes[int(pred[r, j])]
            if test_probs is None:
                line.append(f"{name}\n{prob[r, j]:.3f}")
                continue
            p = np.asarray(test_probs[int(indices[r, j])], dtype=np.float64)
            if j < k:
                second = classes[int(np.argsort(-p, kind="stable")[1])]
                line.append(f"2nd: {SHORT_NAMES.get(second, second)}\n{p[np.argsort(-p, kind='stable')[1]]:.2g}")
            else:
                line.append(f"{SHORT_NAMES.get(name, name)} {p[int(pred[r, j])]:.2f}\ntrue: {p[r]:.2g}")
        out.append(line)
    return out


def plot_gallery(images: np.ndarray, pred: np.ndarray, prob: np.ndarray,
                 classes: tuple[str, ...] = CIFAR_CLASSES, indices: np.ndarray | None = None,
                 title: str | None = None, test_probs: np.ndarray | None = None):
    """Draw a (C rows) x (k correct | k incorrect) grid; returns the matplotlib Figure.

    ``images`` (C, 2k, H, W, 3) uint8, ``pred``/``prob`` (C, 2k), as from ``gallery_arrays``.
    Each tile is captioned as ``tile_captions`` says (``test_probs``: the model's (N, C) test
    probabilities); the row is the true class. Empty slots (index -1) are left blank.
    """
    import matplotlib.pyplot as plt
    from matplotlib.gridspec import GridSpec

    n_rows, n_cols = pred.shape
    k = n_cols // 2
    if indices is None:
        indices = np.where(np.isnan(prob), -1, 0)
    captions = tile_captions(pred, prob, indices, test_probs, classes)
    fig = plt.figure(figsize=(7.0, 0.86 * n_rows + 0.6))
    grid = GridSpec(n_rows, n_cols + 1, figure=fig,
                    width_ratios=[1] * k + [0.35] + [1] * k,
                    left=0.11, right=0.995, top=1 - 0.42 / fig.get_figheight(), bottom=0.005,
                    wspace=0.06, hspace=0.62)
    for r in range(n_rows):
        for j in range(n_cols):
            col = j if j < k else j + 1
            ax = fig.add_subplot(grid[r, col])
            ax.set_xticks([])
            ax.set_yticks([])
            correct_side = j < k
            if indices[r, j] >= 0:
                ax.imshow(images[r, j], interpolation="nearest")
                ax.set_title(captions[r][j], fontsize=5.6, pad=1.5, linespacing=1.0,
                             color="#1b7837" if correct_side else "#b2182b")
            for spine in ax.spines.values():
                spine.set_visible(indices[r, j] >= 0)
                spine.set_edgecolor("#1b7837" if correct_side else "#b2182b")
                spine.set_linewidth(1.0)
            if j == 0:
                ax.set_ylabel(classes[r], rotation=0, ha="right", va="center", fontsize=7.5, labelpad=4)
    # divider between the two halves
    divider = fig.add_subplot(grid[:, k])
    divider.axis("off")
    divider.axvline(0.5, color="0.3", linewidth=1.2)
    divider.set_xlim(0, 1)
    top = 1 - 0.12 / fig.get_figheight()
    left_centre = 0.11 + (0.995 - 0.11) * (k / 2) / (2 * k + 0.35)
    right_centre = 0.11 + (0.995 - 0.11) * (k + 0.35 + k / 2) / (2 * k + 0.35)
    fig.text(left_centre, top, "correct: most confident" + (" (runner-up class)" if test_probs is not None else ""),
             ha="center", va="top",
             fontsize=8, color="#1b7837", weight="bold")
    fig.text(right_centre, top, "misclassified: most confident wrong class", ha="center", va="top",
             fontsize=8, color="#b2182b", weight="bold")
    fig.text(0.01, top, "true class", ha="left", va="top", fontsize=7, style="italic")
    if title:
        fig.suptitle(title, fontsize=9, y=1.0)
    return fig


def plot_saved_gallery(filename: str, results_dir=None):
    """The gallery saved by ``features`` or ``finetune`` (``<name>_gallery.npz``), drawn with the
    run's test probabilities (``<name>_test_probs.npy``) for the informative captions."""
    from lib.core import artifacts

    gallery = artifacts.load_arrays(filename, results_dir)
    try:
        test_probs = artifacts.load_array(filename.replace("_gallery.npz", "_test_probs.npy"), results_dir)
    except FileNotFoundError:
        test_probs = None
    return plot_gallery(gallery["images"], gallery["pred"], gallery["prob"], indices=gallery["indices"],
                        test_probs=test_probs)
