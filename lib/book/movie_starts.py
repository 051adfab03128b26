"""Chapter 3 and appendix C: do the top-10 lists depend on the random start?
(``results/movies_starts.json``, written by ``python -m lib movies-starts``)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from IPython.display import Markdown

from lib.book.format import and_join, md_table
from lib.book.movie_optimisers import gap_text
from lib.core.artifacts import load_json
from lib.movies.titles import display_title


@dataclass(frozen=True)
class StartValues:
    seeds: str                # "1, 2 and 3"
    n_seeds: int
    n_runs: int               # optimiser runs from those starts
    n_finite: int             # ... that did not diverge
    n_same_all: int           # ... giving the reference's three lists exactly, in order
    n_share9_all: int         # ... sharing at least 9 of 10 movies in all three lists
    n_share10_all: int        # ... sharing all 10 in all three lists
    worst_run: str            # the run and start with the fewest shared movies
    worst_query: str
    worst_shared: int
    worst_entered: str        # the movies that entered that list
    top_k: int


def values() -> StartValues:
    doc = load_json("movies_starts")
    finite = [row for row in doc["starts"] if row["queries"]]
    shared = [[c["shared"] for c in row["queries"].values()] for row in finite]
    row, title, change = min(((row, title, change) for row in finite for title, change in row["queries"].items()),
                             key=lambda item: item[2]["shared"])
    k = doc["top_k"]
    return StartValues(
        seeds=and_join([str(s) for s in doc["seeds"]]), n_seeds=len(doc["seeds"]), n_runs=len(doc["starts"]),
        n_finite=len(finite), n_same_all=sum(all(c["same_order"] for c in r["queries"].values()) for r in finite),
        n_share9_all=sum(min(s) >= k - 1 for s in shared), n_share10_all=sum(min(s) == k for s in shared),
        worst_run=f"{row['name']} from seed {row['seed']}", worst_query=display_title(title),
        worst_shared=change["shared"], worst_entered=and_join([display_title(t) for t in change["entered"]]),
        top_k=k)


def starts_table() -> Markdown:
    """Per optimiser and start: the final gap and how many movies each query's list shares with the
    reference's (* where the order differs)."""
    doc = load_json("movies_starts")
    queries = [display_title(t) for t in next(r["queries"] for r in doc["starts"] if r["queries"])]
    rows = [{"run": row["name"], "seed": row["seed"], "final gap": gap_text({"gap": row["final_gap"],
                                                                           "diverged": row["diverged"]}),
             **({q: "diverged" for q in queries} if not row["queries"] else
                {q: f"{c['shared']}{'' if c['same_order'] else '*'}"
                 for q, c in zip(queries, row["queries"].values())})} for row in doc["starts"]]
    return md_table(pd.DataFrame(rows), disable_numparse=True)
