"""Headline results for the preface, read from the frozen artifacts (never typed by hand).

The answers come from artifacts a 2-core CPU re-derives from the datasets alone (the ONNX Runtime
probe and the partial finetune); the full finetune recorded on a lent GPU is one labelled extra row."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from lib.core.artifacts import load_json
from lib.book.format import pct
from lib.movies.titles import display_title

PROBE = "features_cpu_onnx"          # chapter 1's answer: features extracted on the CPU (ONNX Runtime)
FINETUNE = "finetune_cpu_partial_short"    # chapter 2's answer: the partial finetune on the CPU
GPU_FINETUNE = "finetune"            # extra, recorded on a lent GPU


def _gap_text(gap: float) -> str:
    """Relative gap as a percentage; gaps within numerical noise of the reference cost read as such."""
    return f"{100 * gap:.3f}%" if gap >= 1e-5 else "< 0.001%"


def _interval(doc: dict) -> str:
    lo, hi = doc["test_ci95"] if "test_ci95" in doc else (doc["test_ci_low"], doc["test_ci_high"])
    return f"{pct(doc['test_accuracy'])} (95% CI {pct(lo)}–{pct(hi)})"


def headline(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per headline number: the question, the answer as text, the raw value, where to read more."""
    features = load_json(PROBE, results_dir)
    finetune = load_json(FINETUNE, results_dir)
    gpu = load_json(GPU_FINETUNE, results_dir)
    movies = load_json("movies", results_dir)
    stages = finetune["recipe"]["trainable_stages"]
    rows = [
        {"question": f"CIFAR-10, frozen features + logistic regression ({features['backbone']}, "
                     f"{features['resolution']} px, 2-core CPU): test accuracy",
         "answer": _interval(features), "value": features["test_accuracy"], "section": "@sec-features-results"},
        {"question": f"CIFAR-10, finetuned network (last {stages} stages and head trained, {finetune['backbone']}, "
                     f"{finetune['resolution']} px, {finetune['epochs']} epochs, 2-core CPU): test accuracy",
         "answer": _interval(finetune), "value": finetune["test_accuracy"], "section": "@sec-finetune-results"},
        {"question": "Finetuning minus extracted features (test accuracy, percentage points)",
         "answer": f"{100 * (finetune['test_accuracy'] - features['test_accuracy']):+.1f} points",
         "value": finetune["test_accuracy"] - features["test_accuracy"], "section": "@sec-finetune-compare"},
        {"question": f"Movie embeddings (d = {movies['dim']}, {movies['n_movies']:,} movies): "
                     f"best gradient-descent run's gap to the reference cost (the best stationary point found)",
         "answer": f"{movies['best_run']}: {_gap_text(movies['best_gap'])} above the reference cost",
         "value": movies["best_gap"], "section": "@sec-movies-optimisers"},
    ]
    for query, resolved in movies["queries"].items():
        top3 = ", ".join(display_title(title) for title in movies["recommendations"][resolved][:3])
        rows.append({"question": f"Most similar movies to '{query}' (top 3 of 10)", "answer": top3,
                     "value": movies["recommendations"][resolved][:3],
                     "section": "@sec-movies-recommendations"})
    rows.append({"question": f"Extra, recorded on a lent GPU (not re-derivable on a CPU): every layer finetuned "
                             f"({gpu['resolution']} px, {gpu['epochs']} epochs, {gpu['hardware']['device_name']})",
                 "answer": _interval(gpu), "value": gpu["test_accuracy"], "section": "@sec-finetune-runs"})
    return pd.DataFrame(rows)
