"""Chapter 3's comparison with standard recommenders, from ``results/movies_baselines.json``.

One table (hit-rate@10 with paired McNemar tests against the chapter's method), one table of how
popular each method's nearest neighbours are, and the values the prose quotes.
"""
from __future__ import annotations

from dataclasses import make_dataclass

import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, pct
from lib.core.artifacts import load_json
from lib.core.stats import format_p


def _short(name: str) -> str:
    """Method names as the table shows them (hyperparameters stay; the library's name goes)."""
    return name.replace("ALS, implicit", "ALS").replace("embeddings of the normalised co-occurrence",
                                                       "embeddings of D^-1/2 X D^-1/2")


# The methods the prose names (key: the start of the artifact's name); it also compares the first
# four with the chapter's method.
NAMED = {"ease": "EASE", "als": "ALS", "raw": "item-item cosine (raw",
         "normalised": "embeddings of the normalised", "shrunk": "item-item cosine, shrunk",
         "support": "item-item cosine, >="}
COMPARED = ("ease", "als", "raw", "normalised")
BaselineValues = make_dataclass(  # what the prose says about the standard recommenders, formatted as printed
    "BaselineValues", [(f"{key}_rate", str) for key in NAMED] + [(f"{key}_versus", str) for key in COMPARED]
    + [("shrink", str), ("min_support", str)], frozen=True)


def data() -> dict:
    """The baselines' results, as ``python -m lib movies-baselines`` wrote them."""
    return load_json("movies_baselines")


def paired(row: dict) -> str:
    """'+b / −c, p = …' against the chapter's method (b: users only this method hits)."""
    test = row.get("vs_chapter")
    if test is None:
        return "—"
    p = format_p(test["p_midp"])
    return f"+{test['a_only']} / −{test['b_only']}, p {p if p.startswith('<') else '= ' + p}"


def hit_rate_table(b: dict) -> Markdown:
    table = pd.DataFrame({
        "method": [_short(r["method"]) + (" (this chapter)" if r["method"] == b["chapter_method"] else "")
                   for r in b["methods"]],
        "hit-rate@10": [f"{pct(r['hit_rate'])} ± {pct(r['standard_error'])}" for r in b["methods"]],
        "vs. the chapter's method": [paired(r) for r in b["methods"]],
    })
    return md_table(table, disable_numparse=True)


def neighbours_table(b: dict) -> Markdown:
    rows = [r for r in b["methods"] if "neighbours" in r]
    rare = rows[0]["neighbours"]["rare"]
    table = pd.DataFrame({
        "similarity": [_short(r["method"]) for r in rows],
        "median likes of a top-10 neighbour": [f"{r['neighbours']['median_likes']:g}" for r in rows],
        f"neighbours liked by ≤ {rare} users": [pct(r["neighbours"]["share_rare"]) for r in rows],
        "hit-rate@10": [pct(r["hit_rate"]) for r in rows],
    })
    return md_table(table, disable_numparse=True)


def versus(chapter: dict, row: dict) -> str:
    """'4.1 points above (McNemar mid-p < 0.001)' for a method against the chapter's."""
    diff = 100 * (row["hit_rate"] - chapter["hit_rate"])
    p = f"McNemar mid-p {format_p(row['vs_chapter']['p_midp'])}"
    if round(diff, 1) == 0:
        return f"level with it ({p})"
    return f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'} it ({p})"


def values(b: dict) -> BaselineValues:
    """The prose's values, from ``data()``."""
    chapter = next(r for r in b["methods"] if r["method"] == b["chapter_method"])
    rows = {key: next(r for r in b["methods"] if r["method"].startswith(start)) for key, start in NAMED.items()}
    return BaselineValues(**{f"{key}_rate": pct(row["hit_rate"]) for key, row in rows.items()},
                          **{f"{key}_versus": versus(chapter, rows[key]) for key in COMPARED},
                          shrink=f"{b['choices']['shrink']['chosen']:g}",
                          min_support=str(b["choices"]["min_support"]["chosen"]))
