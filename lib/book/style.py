"""One plotting style for every chapter, so figures look alike in HTML and PDF."""
from __future__ import annotations

import os
import sys

import matplotlib

# Headless default for scripts; inside a Jupyter kernel (Quarto, nbclient) keep the inline
# backend the kernel set up, or figures would never reach the notebook.
if "MPLBACKEND" not in os.environ and "ipykernel" not in sys.modules:
    matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

FIG_WIDTH = 7.0  # inches: a figure's natural width (the PDF scales it to the 6.7-inch text width)
TEXT_WIDTH = 6.69  # inches: A4 less 2 cm margins, the PDF's text width
SCREEN_DPI = 110


def apply() -> None:
    """Set the shared theme; call once at the top of a chapter."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    # Quarto sets figure.dpi to the format's fig-dpi before the chapter runs: 300 for the PDF,
    # which must stay (print needs >= 300 dpi); the HTML's default (96) is raised to SCREEN_DPI.
    dpi = max(SCREEN_DPI, float(plt.rcParams["figure.dpi"]))
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": "figure", "figure.figsize": (FIG_WIDTH, 4.0),
                         "axes.titlesize": "medium"})
