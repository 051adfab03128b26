"""Headline results for the preface, read from the frozen artifacts (never typed by hand)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lib.core.artifacts import load_json
from lib.book.format import pct
from lib.movies.titles import display_title


def _gap_text(gap: float) -> str:
    """Relative gap as a percentage; gaps within numerical noise of the optimum read as such."""
    return f"{100 * gap:.3f}%" if gap >= 1e-5 else "< 0.001%"


def headline(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per headline number: the question, the answer as text, the raw value, where to read more."""
    features = load_json("features", results_dir)
    finetune = load_json("finetune", results_dir)
    movies = load_json("movies", results_dir)
    rows = [
        {"question": f"CIFAR-10, frozen features + logistic regression ({features['backbone']}, "
                     f"{features['resolution']} px): test accuracy",
         "answer": f"{pct(features['test_accuracy'])} (95% CI {pct(features['test_ci95'][0])}–"
                   f"{pct(features['test_ci95'][1])})",
         "value": features["test_accuracy"], "section": "@sec-features-results"},
        {"question": f"CIFAR-10, finetuned network ({finetune['backbone']}, {finetune['resolution']} px, "
                     f"{finetune['epochs']} epochs): test accuracy",
         "answer": f"{pct(finetune['test_accuracy'])} (95% CI {pct(finetune['test_ci_low'])}–"
                   f"{pct(finetune['test_ci_high'])})",
         "value": finetune["test_accuracy"], "section": "@sec-finetune-results"},
        {"question": "Finetuning minus extracted features (test accuracy, percentage points)",
         "answer": f"{100 * (finetune['test_accuracy'] - features['test_accuracy']):+.1f} points",
         "value": finetune["test_accuracy"] - features["test_accuracy"], "section": "@sec-finetune-compare"},
        {"question": f"Movie embeddings (d = {movies['dim']}, {movies['n_movies']:,} movies): "
                     f"best gradient-descent run's gap to the optimum",
         "answer": f"{movies['best_run']}: {_gap_text(movies['best_gap'])} above the optimum",
         "value": movies["best_gap"], "section": "@sec-movies-optimisers"},
    ]
    for query, resolved in movies["queries"].items():
        top3 = ", ".join(display_title(title) for title in movies["recommendations"][resolved][:3])
        rows.append({"question": f"Most similar movies to '{query}' (top 3 of 10)", "answer": top3,
                     "value": movies["recommendations"][resolved][:3],
                     "section": "@sec-movies-recommendations"})
    return pd.DataFrame(rows)


def headline_markdown(results_dir: Path | None = None) -> pd.DataFrame:
    """The table as shown: question, answer, section reference."""
    table = headline(results_dir)
    return table[["question", "answer", "section"]].rename(columns={"section": "details"})
