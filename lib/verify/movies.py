"""Chapter 3 re-derived by rerunning the pipeline's pieces with the recorded configuration: ``quick``, the
floor and the best run (about a minute on 2 cores); full, every run and the recommendation lists. CPU runs
reproduce bit for bit on one machine; across machines BLAS kernels round differently, hence the tolerances.
"""
from __future__ import annotations

import math

from lib.core.artifacts import load_json
from lib.core.data import MovieLens
from lib.core.devices import cpu_threads
from lib.movies import pipeline
from lib.movies.config import CONFIG
from lib.movies.objective import floor, torch_dtype
from lib.movies.optimise import initial_embeddings, run_optimizer
from lib.verify.checks import Check, close, equal

FLOOR_REL = 1e-9   # the floor: a deterministic eigen-iteration
RUN_REL = 1e-9     # a converged or smoothly converging run
CHAOTIC_REL = 5e-2  # runs that hover (large learning rates) amplify last-bit differences between machines


def movies_checks(data: MovieLens, quick: bool) -> list[Check]:
    with cpu_threads(CONFIG.threads):
        return _rerun(load_json("movies"), data, CONFIG, torch_dtype(CONFIG.dtype), quick)


def _rerun(doc: dict, data: MovieLens, config, dtype, quick: bool) -> list[Check]:
    likes, catalog, _, objective = pipeline._data(data.ratings, data.movies, config, dtype)
    checks = [equal("movies", "movies with a like", doc["n_movies"], likes.n_movies),
              equal("movies", "likes", doc["n_likes"], likes.n_likes)]
    reference = floor(objective, doc["dim"], config.floor_tol, config.floor_max_iter)
    checks.append(close("movies", f"floor c* at d = {doc['dim']}", doc["floor_loss"], reference.loss,
                        rel=FLOOR_REL))
    rows = {row["name"]: row for row in doc["runs"]}
    names = [doc["best_run"]] if quick else list(rows)
    V0 = initial_embeddings(objective.n, doc["dim"], config.seed, config.init_std, "normal", dtype)
    best_V = None
    for spec in (s for s in config.runs if s.name in names):
        start = V0 if spec.init == "normal" else initial_embeddings(objective.n, doc["dim"], config.seed,
                                                                    config.init_std, spec.init, dtype)
        result = run_optimizer(objective, spec, start, config.iterations, floor_loss=reference.loss,
                               config=config)
        committed = rows[spec.name]
        if committed["diverged"] or not math.isfinite(result.final_loss):
            checks.append(equal("movies", f"{spec.name}: diverges", committed["diverged"], result.diverged))
            continue
        tolerance = RUN_REL if committed["gap"] < config.target_gap else CHAOTIC_REL
        checks.append(close("movies", f"{spec.name}: final loss", committed["final_loss"], result.final_loss,
                            rel=tolerance))
        if spec.name == doc["best_run"]:
            best_V = result.V
    if best_V is not None and not quick:
        _, _, recommendations = pipeline._recommendations(best_V, catalog, config)
        for title, titles in doc["recommendations"].items():
            checks.append(equal("movies", f"top-{config.top_k} for {title}", titles, recommendations[title]))
    return checks
