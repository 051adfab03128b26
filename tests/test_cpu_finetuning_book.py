"""Chapter 2's CPU section: the table and figure cover every finished run, and the paired counts
the prose quotes add up to the two accuracies."""
from __future__ import annotations

import json

import numpy as np

from lib.book import cpu_finetuning as cpu
from lib.core.paths import RESULTS_DIR


def test_every_finished_run_and_both_probes_are_in_the_frontier() -> None:
    frame = cpu.variants()
    finished = {p.stem for p in RESULTS_DIR.glob("finetune*.json") if "test_accuracy" in json.loads(p.read_text())}
    assert finished | {"features", "features_cpu_onnx"} == set(frame["name"])
    assert (frame["minutes"] > 0).all()
    assert ((frame["low"] <= frame["accuracy"]) & (frame["accuracy"] <= frame["high"])).all()
    figure = cpu.frontier_figure()
    assert len(figure.axes[0].containers) == len(frame)  # one error bar per run


def test_paired_counts_match_the_two_accuracies() -> None:
    v = cpu.values()
    labels = np.load(RESULTS_DIR / f"{cpu.BEST_CPU_RUN}_test_labels.npy")
    gained, lost = int(v.gained.replace(",", "")), int(v.lost.replace(",", ""))
    probe = np.load(RESULTS_DIR / f"{cpu.PROBE_CPU}_test_probs.npy").argmax(1) == labels
    assert probe.sum() + gained - lost == round(v.run["test_accuracy"] * labels.size)
    assert v.run["hardware"]["device"] == "cpu" and v.run["hardware"]["torch_threads"] <= 2
