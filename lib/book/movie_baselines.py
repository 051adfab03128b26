"""Chapter 3's comparison with standard recommenders, from ``results/movies_baselines.json``.

One table (hit-rate@10 with paired McNemar tests against the chapter's method), one table of how
popular each method's nearest neighbours are, and the values the prose quotes.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, pct
from lib.core.artifacts import load_json
from lib.core.stats import format_p


def _short(name: str) -> str:
    """Method names as the table shows them (hyperparameters stay; the library's name goes)."""
    return name.replace("ALS, implicit", "ALS").replace("embeddings of the normalised co-occurrence",
                                                       "embeddings of D^-1/2 X D^-1/2")


def data() -> SimpleNamespace:
    """The baselines' results, and the rows the prose names."""
    b = load_json("movies_baselines")
    rows = {r["method"]: r for r in b["methods"]}
    chapter = rows[b["chapter_method"]]
    find = lambda prefix: next(r for name, r in rows.items() if name.startswith(prefix))  # noqa: E731
    ease, als = find("EASE"), find("ALS")
    raw, shrunk, support = find("item-item cosine (raw"), find("item-item cosine, shrunk"), find("item-item cosine, >=")
    normalised = find("embeddings of the normalised")
    return SimpleNamespace(b=b, rows=rows, chapter=chapter, ease=ease, als=als, raw=raw, shrunk=shrunk,
                           support=support, normalised=normalised, n=b["n_users"],
                           choices=b["choices"], best=max(b["methods"], key=lambda r: r["hit_rate"]))


def paired(row: dict) -> str:
    """'+b / −c, p = …' against the chapter's method (b: users only this method hits)."""
    test = row.get("vs_chapter")
    if test is None:
        return "—"
    p = format_p(test["p_midp"])
    return f"+{test['a_only']} / −{test['b_only']}, p {p if p.startswith('<') else '= ' + p}"


def hit_rate_table(v: SimpleNamespace) -> Markdown:
    table = pd.DataFrame({
        "method": [_short(r["method"]) + (" (this chapter)" if r["method"] == v.b["chapter_method"] else "")
                   for r in v.b["methods"]],
        "hit-rate@10": [f"{pct(r['hit_rate'])} ± {pct(r['standard_error'])}" for r in v.b["methods"]],
        "vs. the chapter's method": [paired(r) for r in v.b["methods"]],
    })
    return md_table(table, disable_numparse=True)


def neighbours_table(v: SimpleNamespace) -> Markdown:
    rows = [r for r in v.b["methods"] if "neighbours" in r]
    rare = rows[0]["neighbours"]["rare"]
    table = pd.DataFrame({
        "similarity": [_short(r["method"]) for r in rows],
        "median likes of a top-10 neighbour": [f"{r['neighbours']['median_likes']:g}" for r in rows],
        f"neighbours liked by ≤ {rare} users": [pct(r["neighbours"]["share_rare"]) for r in rows],
        "hit-rate@10": [pct(r["hit_rate"]) for r in rows],
    })
    return md_table(table, disable_numparse=True)


def versus(v: SimpleNamespace, row: dict) -> str:
    """'4.1 points above (McNemar mid-p < 0.001)' for a method against the chapter's."""
    diff = 100 * (row["hit_rate"] - v.chapter["hit_rate"])
    p = f"McNemar mid-p {format_p(row['vs_chapter']['p_midp'])}"
    if round(diff, 1) == 0:
        return f"level with it ({p})"
    return f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'} it ({p})"


@dataclass(frozen=True)
class BaselineValues:
    """What the prose says about the standard recommenders, formatted as printed."""
    ease_rate: str
    ease_versus: str
    als_rate: str
    als_versus: str
    raw_rate: str
    raw_versus: str
    shrink: str
    shrunk_rate: str
    min_support: str
    support_rate: str
    normalised_rate: str
    normalised_versus: str


def values(v: SimpleNamespace) -> BaselineValues:
    """The prose's values, from ``data()``."""
    return BaselineValues(
        ease_rate=pct(v.ease["hit_rate"]), ease_versus=versus(v, v.ease),
        als_rate=pct(v.als["hit_rate"]), als_versus=versus(v, v.als),
        raw_rate=pct(v.raw["hit_rate"]), raw_versus=versus(v, v.raw),
        shrink=f"{v.choices['shrink']['chosen']:g}", shrunk_rate=pct(v.shrunk["hit_rate"]),
        min_support=str(v.choices["min_support"]["chosen"]), support_rate=pct(v.support["hit_rate"]),
        normalised_rate=pct(v.normalised["hit_rate"]), normalised_versus=versus(v, v.normalised))
