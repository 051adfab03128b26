"""Drawing the galleries of chapters 1 and 2: each true class's five most confident right and five
most confident wrong test predictions, from a run's saved selection (``<name>_gallery.npz``, made by
``lib.cifar.gallery``) and its test probabilities (``<name>_test_probs.npy``).

Which images are shown is decided in ``lib.cifar.gallery``. Captions are at least ``CAPTION_PT``
points in print: the figure is drawn no wider than the PDF's text width, so it is never scaled down.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.gridspec import GridSpec

from lib.book.style import TEXT_WIDTH
from lib.core import artifacts
from lib.core.data import CIFAR_CLASSES

CAPTION_PT = 7.5    # tile captions (print size: the figure is not scaled down in the PDF)
LABEL_PT = 8.0      # row labels and the two headings
WIDTH = 6.6         # inches, within TEXT_WIDTH
FONT = dict(family="DejaVu Sans", stretch="condensed")  # condensed where installed: ten tiles a row
SHORT_NAMES = {"automobile": "car", "airplane": "plane"}
RIGHT, WRONG = "#1b7837", "#b2182b"


def short(name: str) -> str:
    """A class name as a tile caption prints it (car = automobile, plane = airplane)."""
    return SHORT_NAMES.get(name, name)


def small(p: float) -> str:
    """A small probability, short: two decimals from 0.01 (0.03), else one digit and its power (4e-6)."""
    if p >= 0.01:
        return f"{p:.2f}"
    mantissa, exponent = f"{p:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@dataclass(frozen=True)
class Gallery:
    """A run's gallery: tile images, test indices (-1 = empty) and the tiles' test probabilities."""
    images: np.ndarray   # (C, 2k, H, W, 3) uint8, correct columns first
    indices: np.ndarray  # (C, 2k)
    probs: np.ndarray    # (C, 2k, C) the model's probabilities for each tile (NaN where empty)

    @property
    def k(self) -> int:
        return self.indices.shape[1] // 2


def load(name: str) -> Gallery:
    """The gallery saved by ``features`` or ``finetune`` for run ``name``, with its test probabilities."""
    saved = artifacts.load_arrays(f"{name}_gallery.npz")
    test_probs = np.asarray(artifacts.load_array(f"{name}_test_probs.npy"), dtype=np.float64)
    indices = np.asarray(saved["indices"])
    probs = np.where((indices >= 0)[..., None], test_probs[np.where(indices >= 0, indices, 0)], np.nan)
    return Gallery(images=np.asarray(saved["images"]), indices=indices, probs=probs)


def captions(g: Gallery) -> list[list[str]]:
    """Two lines per tile: the predicted class and its probability; then the runner-up class and its
    probability (correct side) or "true" and the probability of the true class, the row (wrong side)."""
    def caption(row: int, col: int) -> str:
        if g.indices[row, col] < 0:
            return ""
        p = g.probs[row, col]
        first, second = np.argsort(-p, kind="stable")[:2]
        # two decimals (a tile is 0.6 inch wide): how close a 1.00 is to 1 shows in the line below
        return (f"{short(CIFAR_CLASSES[first])} {p[first]:.2f}\n" + (
            f"{short(CIFAR_CLASSES[second])} {small(p[second])}" if col < g.k else f"true {small(p[row])}"))

    return [[caption(r, c) for c in range(g.indices.shape[1])] for r in range(g.indices.shape[0])]


def figure(name: str) -> plt.Figure:
    """The (classes) x (k correct | k wrong) grid of run ``name``, captioned as ``captions`` says."""
    g = load(name)
    n_rows, n_cols = g.indices.shape
    k = g.k
    text = captions(g)
    height = 0.8 * n_rows + 0.45
    fig = plt.figure(figsize=(min(WIDTH, TEXT_WIDTH), height))
    left, right = 0.062, 0.998
    grid = GridSpec(n_rows, n_cols + 1, figure=fig, width_ratios=[1] * k + [0.25] + [1] * k,
                    left=left, right=right, top=1 - 0.42 / height, bottom=0.003, wspace=0.08, hspace=0.62)
    for r in range(n_rows):
        for j in range(n_cols):
            ax = fig.add_subplot(grid[r, j if j < k else j + 1])
            ax.set_xticks([])
            ax.set_yticks([])
            colour = RIGHT if j < k else WRONG
            if g.indices[r, j] >= 0:
                ax.imshow(g.images[r, j], interpolation="nearest")
                ax.set_title(text[r][j], fontsize=CAPTION_PT, **FONT, pad=1.5, linespacing=1.0,
                             color=colour)
            for spine in ax.spines.values():
                spine.set(visible=g.indices[r, j] >= 0, edgecolor=colour, linewidth=1.0)
            if j == 0:
                ax.set_ylabel(short(CIFAR_CLASSES[r]), rotation=0, ha="right", va="center", fontsize=LABEL_PT,
                              **FONT, labelpad=3)
    divider = fig.add_subplot(grid[:, k])
    divider.axis("off")
    divider.axvline(0.5, color="0.3", linewidth=1.2)
    divider.set_xlim(0, 1)
    headings = ((0, "correct: most confident", RIGHT), (k + 0.25, "wrong: most confident", WRONG))
    for start, heading, colour in headings:
        fig.text(left + (right - left) * (start + k / 2) / (2 * k + 0.25), 1 - 0.04 / height, heading,
                 ha="center", va="top", fontsize=LABEL_PT, color=colour, weight="bold", **FONT)
    return fig


@dataclass(frozen=True)
class GalleryValues:
    """What the prose says about a gallery, formatted as printed."""
    correct_min: str      # a bound the least confident correct tile reaches (rounded down: "0.999")
    wrong_max: str        # the most confident mistake
    wrong_min: str        # the least confident of the wrong tiles
    wrong_true_max: str   # the most probability any wrong tile leaves for its true class
    top_mistake: str      # the most frequent (true → predicted) pair among the wrong tiles
    top_mistake_count: str
    n_wrong: str


def values(name: str) -> GalleryValues:
    """The confidence range of each side and the commonest confusion among the wrong tiles."""
    g = load(name)
    k, n = g.k, g.indices.shape[0]
    shown = g.indices >= 0
    top = np.nanmax(g.probs, axis=-1)
    wrong = shown[:, k:]
    true_p = g.probs[np.arange(n), k:, np.arange(n)]  # each wrong tile's probability of its row's class
    pairs = Counter((CIFAR_CLASSES[r], CIFAR_CLASSES[int(np.nanargmax(g.probs[r, j]))])
                    for r in range(n) for j in range(k, 2 * k) if shown[r, j])
    (true_name, pred_name), count = pairs.most_common(1)[0]
    return GalleryValues(
        correct_min=f"{np.floor(1000 * np.nanmin(np.where(shown[:, :k], top[:, :k], np.nan))) / 1000:.3f}",
        wrong_max=f"{np.nanmax(np.where(wrong, top[:, k:], np.nan)):.3f}",
        wrong_min=f"{np.nanmin(np.where(wrong, top[:, k:], np.nan)):.3f}",
        wrong_true_max=small(float(np.nanmax(np.where(wrong, true_p, np.nan)))),
        top_mistake=f"{true_name} taken for {pred_name}", top_mistake_count=str(count),
        n_wrong=str(int(wrong.sum())))
