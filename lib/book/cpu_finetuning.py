"""Chapter 2's runs: every finetune and probe measured, end to end, from ``results/finetune*`` and
``results/features*``; the runs recorded on a lent GPU are labelled extras. ``values()`` gives the
answer run (the partial finetune on the CPU) against the CPU probe."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, pct
from lib.core.stats import mcnemar
from lib.core import artifacts

BEST_CPU_RUN = "finetune_cpu_partial_short"
PROBE_CPU = "features_cpu_onnx"
LENT_GPU = "lent GPU (extra)"


def _hardware(name: str, on_cpu: bool) -> str:
    """Where a run ran, and whether it is a chapter's answer or a labelled extra."""
    if not on_cpu:
        return LENT_GPU
    return "2-core CPU (answer)" if name in (BEST_CPU_RUN, PROBE_CPU) else "2-core CPU (extra)"


def variants() -> pd.DataFrame:
    """One row per measured run: what, hardware, end-to-end minutes, test accuracy and interval."""
    rows = []
    for path in sorted(artifacts.RESULTS_DIR.glob("finetune*.json")):
        doc = artifacts.load_json(path.stem)
        if "test_accuracy" not in doc:
            continue  # pilots measure throughput and early accuracy, not a finished model
        stages, epochs = doc.get("recipe", {}).get("trainable_stages", 0), doc["epochs"]
        what = f"last {stages} stage{'s' if stages > 1 else ''} finetuned" if stages else "full finetune"
        seconds = doc.get("total_wall_time_s") or doc["timings"]["this_session_wall_s"]
        rows.append(dict(name=path.stem,
                         what=f"{what}, {doc['resolution']} px, {epochs} epoch{'s' if epochs > 1 else ''}",
                         short=f"partial finetune, {epochs} epochs" if stages else
                         f"full finetune, {doc['resolution']} px",
                         hardware=_hardware(path.stem, doc["hardware"]["device"] == "cpu"),
                         minutes=float(seconds) / 60, accuracy=doc["test_accuracy"],
                         low=doc["test_ci_low"], high=doc["test_ci_high"], kind="finetune"))
    for name in (PROBE_CPU, "features"):
        doc = artifacts.load_json(name)
        rows.append(dict(name=name, what=f"linear probe on extracted features, {doc['resolution']} px",
                         short="linear probe", hardware=_hardware(name, "cpu" in doc["timings"]["extract_device"]),
                         minutes=doc["provenance"]["wall_time_s"] / 60, accuracy=doc["test_accuracy"],
                         low=doc["test_ci95"][0], high=doc["test_ci95"][1], kind="probe"))
    return pd.DataFrame(rows).sort_values(["hardware", "minutes"]).reset_index(drop=True)


def values() -> SimpleNamespace:
    """The best CPU run, and McNemar's paired counts against the CPU probe."""
    run = artifacts.load_json(BEST_CPU_RUN)
    labels = artifacts.load_array(f"{BEST_CPU_RUN}_test_labels.npy").astype(np.int64)
    probe = artifacts.load_array(f"{PROBE_CPU}_test_probs.npy").argmax(1) == labels
    test = mcnemar(probe, artifacts.load_array(f"{BEST_CPU_RUN}_test_probs.npy").argmax(1) == labels)
    return SimpleNamespace(run=run, gained=f"{test.b_only:,}", lost=f"{test.a_only:,}")


def variants_table() -> Markdown:
    frame = variants()
    table = pd.DataFrame({
        "run": frame["what"], "hardware": frame["hardware"],
        "minutes, end to end": frame["minutes"].map(lambda m: f"{m:.1f}"),
        "test accuracy (95% CI)": [f"{pct(a)} ({pct(lo)}–{pct(hi)})"
                                   for a, lo, hi in zip(frame["accuracy"], frame["low"], frame["high"])]})
    return md_table(table, disable_numparse=True)


def frontier_figure() -> plt.Figure:
    """Test accuracy against end-to-end minutes, CPU runs filled, GPU references hollow; the best
    CPU run's validation accuracy after each epoch traces how it got there."""
    frame = variants()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    run = artifacts.load_json(BEST_CPU_RUN)
    history = pd.DataFrame(run["history"])
    start = run["partial"]["activations"]["extraction_s"]
    elapsed = (start + (history["seconds"] + history.get("val_seconds", 0)).cumsum()) / 60
    ax.plot(elapsed, 100 * history["val_accuracy"], color="0.6", lw=1, marker=".",
            label="partial finetune: validation accuracy after each epoch")
    for _, row in frame.iterrows():
        gpu, probe = row["hardware"] == LENT_GPU, row["kind"] == "probe"
        ax.errorbar(row["minutes"], 100 * row["accuracy"],
                    yerr=[[100 * (row["accuracy"] - row["low"])], [100 * (row["high"] - row["accuracy"])]],
                    fmt="s" if probe else "o", mfc="white" if gpu else f"C{0 if probe else 1}",
                    color=f"C{0 if probe else 1}", capsize=2)
        ax.annotate(f"{row['short']} ({'GPU' if gpu else 'CPU'})", (row["minutes"], 100 * row["accuracy"]),
                    textcoords="offset points", fontsize=7,
                    xytext=(6, 3 if row["short"].startswith("full") else -11))
    ax.axhline(93, color="0.3", ls=":", lw=0.8)
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 30, 60, 120) if t <= 2 * frame["minutes"].max()]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_xlim(0.8 * frame["minutes"].min(), 2.5 * frame["minutes"].max())
    ax.set(xlabel="wall-clock minutes, verified data to test predictions (log scale)",
           ylabel="test accuracy (%)")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig
