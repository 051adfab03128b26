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

FIG_WIDTH = 7.0  # inches: fits an A4 page with 2 cm margins


def apply() -> None:
    """Set the shared theme; call once at the top of a chapter."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (FIG_WIDTH, 4.0),
                         "axes.titlesize": "medium"})
