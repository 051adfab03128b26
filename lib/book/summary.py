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


def _interval(doc: dict) -> str:
    lo, hi = doc["test_ci95"] if "test_ci95" in doc else (doc["test_ci_low"], doc["test_ci_high"])
    return f"{pct(doc['test_accuracy'])} (95% CI {pct(lo)}–{pct(hi)})"


def headline(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per headline number: the question, the answer as text, the raw value, where to read more."""
    features, finetune, gpu, movies = (load_json(name, results_dir)
                                       for name in (PROBE, FINETUNE, GPU_FINETUNE, "movies"))
    gain = finetune["test_accuracy"] - features["test_accuracy"]
    gap = movies["best_gap"]
    gap_text = f"{100 * gap:.3f}%" if gap >= 1e-5 else "< 0.001%"  # numerical noise reads as such
    rows = [
        (f"CIFAR-10, frozen features + logistic regression ({features['backbone']}, {features['resolution']} px, "
         "2-core CPU): test accuracy", _interval(features), features["test_accuracy"], "@sec-features-results"),
        (f"CIFAR-10, finetuned network (last {finetune['recipe']['trainable_stages']} stages and head trained, "
         f"{finetune['backbone']}, {finetune['resolution']} px, {finetune['epochs']} epochs, 2-core CPU): "
         "test accuracy", _interval(finetune), finetune["test_accuracy"], "@sec-finetune-results"),
        ("Finetuning minus extracted features (test accuracy, percentage points)", f"{100 * gain:+.1f} points",
         gain, "@sec-finetune-compare"),
        (f"Movie embeddings (d = {movies['dim']}, {movies['n_movies']:,} movies): best gradient-descent run's "
         "gap to the reference cost (the best stationary point found)",
         f"{movies['best_run']}: {gap_text} above the reference cost",
         gap, "@sec-movies-optimisers"),
    ]
    for query, resolved in movies["queries"].items():
        top3 = movies["recommendations"][resolved][:3]
        rows.append((f"Most similar movies to '{query}' (top 3 of 10)", ", ".join(map(display_title, top3)), top3,
                     "@sec-movies-recommendations"))
    rows.append((f"Extra, recorded on a lent GPU (not re-derivable on a CPU): every layer finetuned "
                 f"({gpu['resolution']} px, {gpu['epochs']} epochs, {gpu['hardware']['device_name']})",
                 _interval(gpu), gpu["test_accuracy"], "@sec-finetune-runs"))
    return pd.DataFrame(rows, columns=["question", "answer", "value", "section"])
