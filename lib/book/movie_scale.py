"""Appendix B's scaling of chapter 3's pipeline, from ``results/movies_scale.json``."""
from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, minutes
from lib.core.artifacts import load_json

GIB = 2**30
PARTS = ("load", "objective", "floor", "optimiser")


def values() -> SimpleNamespace:
    s = load_json("movies_scale")
    rows = s["rows"]
    largest = max(rows, key=lambda r: r["n_likes"])
    hw = s["provenance"]["hardware"]
    return SimpleNamespace(
        s=s, rows=rows, largest=largest, summary=s["summary"], settings=s["settings"],
        cpu=f"{hw['cpu']} ({hw['cpu_count']} cores)",
        largest_minutes=minutes(largest["seconds"]), largest_gib=f"{largest['peak_rss_bytes'] / GIB:.1f} GiB",
        dense_gib=f"{4 * largest['n_movies'] ** 2 / GIB:.0f} GiB",
        slope=f"{s['summary']['loglog_slope']:.2f}", sizes=len(rows),
        ml32m=s["ml32m"], outcome=outcome(s, largest))


def outcome(s: dict, largest: dict) -> str:
    """The largest row against the goals (15 min, 8 GiB at MovieLens-32M's size), in plain words."""
    t, full = s["targets"], s["ml32m"]["n_likes"]
    dense_full = f"{4 * s['ml32m']['n_movies'] ** 2 / GIB:.0f} GiB"
    text = (f"The largest size, {largest['n_likes']:,} likes, took {minutes(largest['seconds'])} with a peak of "
            f"{largest['peak_rss_bytes'] / GIB:.1f} GiB, where the dense X alone would need "
            f"{4 * largest['n_movies'] ** 2 / GIB:.1f} GiB ({dense_full} at MovieLens-32M's size)")
    if largest["n_likes"] >= 0.97 * full:
        within = largest["seconds"] <= t["largest_seconds"] and largest["peak_rss_bytes"] <= t["largest_peak_gib"] * GIB
        return text + ("; that is within" if within else "; that is beyond") + " the goals of 15 minutes and 8 GiB"
    projected = largest["seconds"] * (full / largest["n_likes"]) ** s["summary"]["loglog_slope"]
    return (text + f". MovieLens-32M's size was not run: extrapolated at the measured slope it would take about "
            f"{projected / 60:.0f} minutes, {'within' if projected <= t['largest_seconds'] else 'beyond'} "
            "the 15-minute goal")
