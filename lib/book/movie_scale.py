"""Appendix B's scaling of chapter 3's pipeline, from ``results/movies_scale.json``."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, minutes, pct, power_of_ten, text_values
from lib.core.artifacts import load_json

GIB = 2**30
PARTS = ("load", "objective", "floor", "optimiser")


def data() -> SimpleNamespace:
    """The scaling runs, and the largest of them."""
    s = load_json("movies_scale")
    return SimpleNamespace(s=s, rows=s["rows"], largest=max(s["rows"], key=lambda r: r["n_likes"]))


# What the section's prose quotes, formatted as printed (prose does no arithmetic).
ScaleValues = text_values("ScaleValues", (
    "ml32m_movies ml32m_likes dense_gib dim threads cpu floor_tol outcome slope slope_goal breakdown"
))


def values(d: SimpleNamespace) -> ScaleValues:
    s, hw = d.s, d.s["provenance"]["hardware"]
    return ScaleValues(
        ml32m_movies=f"{s['ml32m']['n_movies']:,}", ml32m_likes=f"{s['ml32m']['n_likes']:,}",
        dense_gib=f"{dense_x_gib(s['ml32m']['n_movies']):.0f} GiB", dim=str(s["settings"]["dim"]),
        threads=str(s["settings"]["threads"]), cpu=f"{hw['cpu']} ({hw['cpu_count']} cores)",
        floor_tol=power_of_ten(s["settings"]["floor_tol"]), outcome=outcome(s, d.largest),
        slope=f"{s['summary']['loglog_slope']:.2f}", slope_goal=str(s["targets"]["loglog_slope"]),
        breakdown=breakdown(d.largest))


def dense_x_gib(n_movies: int) -> float:
    """What the public recipe's dense float32 movies x movies X alone needs."""
    return 4 * n_movies**2 / GIB


def breakdown(row: dict) -> str:
    """Where the largest size's time went, in words (the table has every size's seconds)."""
    share = {part: pct(row["parts"][part] / row["seconds"], 0) for part in PARTS}
    left = row["floor_remaining_estimate"]
    left = (f"about {power_of_ten(left)} of $c$" if math.isfinite(left)
            else "not estimable: its last changes did not shrink")
    return (f"At the largest size, L-BFGS took {share['optimiser']} of the time ({row['optimiser_evaluations']} "
            f"evaluations of the cost in {row['optimiser_steps']} steps, each evaluation two passes over the "
            f"likes), the floor {share['floor']} ({row['floor_iterations']} updates; the decrease it had left, "
            f"extrapolated from its last updates, is {left}), "
            f"building the sparse cost {share['objective']} and reading the ratings {share['load']}.")


def outcome(s: dict, largest: dict) -> str:
    """The largest row against the goals (15 min, 8 GiB at MovieLens-32M's size), in plain words."""
    t, full = s["targets"], s["ml32m"]["n_likes"]
    text = (f"The largest size, {largest['n_likes']:,} likes, took {minutes(largest['seconds'])} with a peak of "
            f"{largest['peak_rss_bytes'] / GIB:.1f} GiB, where the dense float32 $X$ alone would need "
            f"{dense_x_gib(largest['n_movies']):.1f} GiB")
    if largest["n_likes"] >= 0.97 * full:
        within = (largest["seconds"] <= t["largest_seconds"]
                  and largest["peak_rss_bytes"] <= t["largest_peak_gib"] * GIB)
        return text + ("; that is within" if within else "; that is beyond") + " the goals of 15 minutes and 8 GiB"
    projected = largest["seconds"] * (full / largest["n_likes"]) ** s["summary"]["loglog_slope"]
    return (text + f". MovieLens-32M's size was not run: extrapolated at the measured slope it would take about "
            f"{projected / 60:.0f} minutes, {'within' if projected <= t['largest_seconds'] else 'beyond'} "
            "the 15-minute goal")


def scale_table(v: SimpleNamespace) -> Markdown:
    table = pd.DataFrame({
        "users": [f"{r['n_users']:,}" for r in v.rows], "movies": [f"{r['n_movies']:,}" for r in v.rows],
        "likes": [f"{r['n_likes']:,}" for r in v.rows],
        **{part: [f"{r['parts'][part]:.1f}" for r in v.rows] for part in PARTS},
        "total s": [f"{r['seconds']:.1f}" for r in v.rows],
        "peak GiB": [f"{r['peak_rss_bytes'] / GIB:.2f}" for r in v.rows],
        "dense X GiB": [f"{dense_x_gib(r['n_movies']):.2f}" for r in v.rows],
    })
    return md_table(table, disable_numparse=True)


def scale_figure(v: SimpleNamespace) -> plt.Figure:
    """Seconds (total and parts) and memory against likes, log-log; the dense X's memory for contrast."""
    likes = np.array([r["n_likes"] for r in v.rows], dtype=float)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(likes, [r["seconds"] for r in v.rows], marker="o", color="black", label="end to end")
    for part in PARTS:
        left.plot(likes, [max(r["parts"][part], 1e-3) for r in v.rows], marker=".", lw=1, label=part)
    ref = likes / likes[-1] * v.largest["seconds"]
    left.plot(likes, ref, ls=":", color="grey", label="slope 1")
    left.axhline(v.s["targets"]["largest_seconds"], ls="--", color="tab:red", lw=1, label="15 min")
    left.set(xscale="log", yscale="log", xlabel="likes", ylabel="seconds")
    left.legend(fontsize=7, ncol=2)
    right.plot(likes, [r["peak_rss_bytes"] / GIB for r in v.rows], marker="o", color="black",
               label="peak memory, this pipeline")
    right.plot(likes, [dense_x_gib(r["n_movies"]) for r in v.rows], marker="s", color="tab:orange",
               label="dense X alone (float32)")
    right.axhline(v.s["targets"]["largest_peak_gib"], ls="--", color="tab:red", lw=1, label="8 GiB")
    right.set(xscale="log", yscale="log", xlabel="likes", ylabel="GiB")
    right.legend(fontsize=7)
    fig.tight_layout()
    return fig
