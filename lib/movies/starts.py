"""Do the recommendations depend on the random start? ``python -m lib movies-starts`` reruns the
main optimisers (``CONFIG.start_runs``) from other seeded starts (``CONFIG.start_seeds``) and
compares each run's top-10 lists for the three queries with the reference solution's: the same
list in the same order, how many of its ten movies it shares, and which movies enter
(``results/movies_starts.json``). Chapter 3's own runs all start from seed ``CONFIG.seed``."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.core.artifacts import load_csv
from lib.movies import recommend as rec
from lib.movies.config import CONFIG
from lib.movies.objective import Objective, floor, torch_dtype
from lib.movies.followup import add_arguments, run_followup  # noqa: F401 (the command's flags)
from lib.movies.optimise import initial_embeddings, run_optimizer

ARTIFACT = "movies_starts"


def list_change(V: np.ndarray, reference: np.ndarray, query: int, titles: list[str], k: int) -> dict:
    """One query's top-k list from ``V`` against the reference's: same order, shared movies, entrants."""
    ours, theirs = rec.top_k(V, query, k)[0], rec.top_k(reference, query, k)[0]
    entered = [titles[i] for i in ours if i not in set(theirs.tolist())]
    return {"same_order": bool(np.array_equal(ours, theirs)), "shared": k - len(entered), "entered": entered}


def other_starts(objective: Objective, dim: int, titles: list[str], progress: bool = True) -> dict:
    """Every (seed, run) of CONFIG.start_seeds x CONFIG.start_runs: final gap and list changes."""
    if len(titles) != objective.n:
        raise ValueError(f"{len(titles)} catalog titles for {objective.n} movies: rerun 'python -m lib movies'")
    reference = floor(objective, dim, CONFIG.floor_tol, CONFIG.floor_max_iter)
    index = rec.TitleIndex(titles)
    queries = {q: int(index.resolve(q)) for q in CONFIG.query_titles}
    rows = []
    jobs = [(seed, spec) for seed in CONFIG.start_seeds for spec in CONFIG.start_runs]
    for seed, spec in tqdm(jobs, desc="other starts", disable=not progress):
        V0 = initial_embeddings(objective.n, dim, seed, CONFIG.init_std, "normal", torch_dtype(CONFIG.dtype))
        r = run_optimizer(objective, spec, V0, CONFIG.iterations, floor_loss=reference.loss)
        rows.append({"seed": seed, "name": spec.name, "optimizer": spec.optimizer, "lr": spec.lr,
                     "final_gap": r.gap(reference.loss), "target_step": r.target_step, "diverged": r.diverged,
                     "seconds": round(r.seconds, 3),
                     "queries": None if r.diverged else {titles[i]: list_change(r.V, reference.V, i, titles,
                                                                               CONFIG.top_k)
                                                         for i in queries.values()}})
    return {"dim": dim, "floor_loss": reference.loss, "seeds": list(CONFIG.start_seeds),
            "chapter_seed": CONFIG.seed, "runs": [spec.name for spec in CONFIG.start_runs],
            "top_k": CONFIG.top_k, "starts": rows}


def run(args: argparse.Namespace) -> int:
    results_dir = Path(args.results_dir) if args.results_dir else None
    titles = load_csv(rec.CATALOG_FILE, results_dir, rec.WRITTEN_BY, required=("title",))["title"].tolist()
    payload = run_followup(args, ARTIFACT, lambda objective, dim: other_starts(objective, dim, titles))
    for row in payload["starts"]:
        shared = "diverged" if row["queries"] is None else ", ".join(str(q["shared"]) for q in row["queries"].values())
        print(f"seed {row['seed']} {row['name']}: gap {row['final_gap']:.2e}; movies shared with the reference: {shared}")
    return 0
