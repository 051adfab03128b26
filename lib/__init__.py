"""Companion library of the report: data, models, training, embeddings and artifacts.

Chapters import from here; heavy work runs through ``python -m lib`` and writes
frozen artifacts under ``results/`` that the chapters read.
"""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "results"
DEFAULT_DATA_DIR = REPO_ROOT / "data"
