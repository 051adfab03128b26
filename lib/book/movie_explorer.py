"""Chapter 3's movie explorer (HTML only): type a title, see its nearest movies, switch embeddings.

The page ranks movies itself, from the embedded vectors, the way ``lib.movies.recommend.top_k``
does: scores in float64 (cosine: rows scaled to unit length first), the query excluded, highest
score first, ties to the lower catalog row. ``payload_top_k`` is the same computation in NumPy,
summing in the page's order, so a test can check the page's lists against the library's without
a browser.

Embedding sets: first the one ``python -m lib recommend`` uses (``movies_embeddings.npz``, stored
as float32, so the lists equal the library's), then the sets of ``movies_run_embeddings.npz``
(``movie_ids`` (M,), ``names`` (n,), ``vectors`` float16 (n, M, d); the floor first, then
optimiser runs), as stored, while the payload stays within ``MAX_BYTES``. Vectors are embedded
losslessly (byte planes shuffled, then deflated; the page inflates them with the browser's own
``DecompressionStream``), so every set's lists equal ``top_k`` on that set's stored vectors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lib.book import widgets
from lib.core.artifacts import load_arrays, load_json, results_path
from lib.movies.recommend import TRAILING_ARTICLES, load_frozen, normalise_title, title_keys
from lib.movies.titles import display_title

RUNS_FILE = "movies_run_embeddings.npz"
MAX_BYTES = 3_000_000      # compressed vectors plus the JSON around them
DEFAULT_TITLE = "Toy Story"
DEFAULT_K = 10


def embedding_sets(results_dir: Path | None = None) -> list[dict]:
    """Every set the explorer offers: name, label, encoded vectors (the runs' only while RUNS_FILE exists)."""
    frozen = load_frozen(results_dir)
    best = load_json("movies", results_dir).get("best_run", "best run")
    sets = [{"name": best, "label": f"{best} (the book's recommendations)",
             "encoded": widgets.encode_floats(frozen.embeddings, "float32")}]
    if results_path(RUNS_FILE, results_dir).is_file():
        runs = load_arrays(RUNS_FILE, results_dir)
        if not np.array_equal(runs["movie_ids"], frozen.catalog["movieId"].to_numpy()):
            raise ValueError(f"{RUNS_FILE} and the catalog list different movies")
        stored = "float16" if runs["vectors"].dtype == np.float16 else "float32"
        sets += [{"name": str(name), "label": str(name), "encoded": widgets.encode_floats(vectors, stored)}
                 for name, vectors in zip(runs["names"], runs["vectors"]) if str(name) != best]
    return sets


def _catalog_payload(frozen) -> dict:
    """Titles, years, genres and likes, compactly: the page derives what it can (see the script)."""
    catalog = frozen.catalog
    titles = [str(t) for t in catalog["title"]]
    genres = [str(g).split(", ") if isinstance(g, str) and g else [] for g in catalog["genres"]]
    vocabulary = sorted({g for movie in genres for g in movie})
    return {
        "titles": titles,                                        # MovieLens form; the page folds them
        "shown": {i: display_title(t) for i, t in enumerate(titles) if display_title(t) != t},
        "extraKeys": {i: sorted(keys - {normalise_title(t)}) for i, t in enumerate(titles)
                      if (keys := title_keys(t)) - {normalise_title(t)}},
        "years": [None if pd.isna(y) else int(y) for y in catalog["year"]],
        "genreNames": vocabulary,                                # genres: bit i = genreNames[i]
        "genres": [sum(1 << vocabulary.index(g) for g in movie) for movie in genres],
        "likes": [int(n) for n in catalog["likes"]],
    }


def payload(results_dir: Path | None = None, max_bytes: int = MAX_BYTES) -> dict:
    """What the page embeds; sets after the first are dropped once the payload would exceed ``max_bytes``."""
    frozen = load_frozen(results_dir)
    data = {"dim": int(frozen.embeddings.shape[1]), "count": int(frozen.embeddings.shape[0]),
            "defaultTitle": DEFAULT_TITLE, "defaultK": DEFAULT_K,
            "articles": list(TRAILING_ARTICLES), **_catalog_payload(frozen), "sets": []}
    used = len(widgets.json_text(data).encode())
    for entry in embedding_sets(results_dir):
        size = widgets.binary_bytes(entry["encoded"]) + 200
        if data["sets"] and used + size > max_bytes:
            break
        data["sets"].append({"name": entry["name"], "label": entry["label"], **entry["encoded"]})
        used += size
    return data


def payload_bytes(data: dict) -> dict:
    """Sizes: binary vectors, the JSON without them, and the text embedded in the page."""
    vectors = sum(widgets.binary_bytes(s) for s in data["sets"])
    meta = len(widgets.json_text({k: v for k, v in data.items() if k != "sets"}).encode())
    return {"vectors": vectors, "catalog_json": meta, "total": vectors + meta,
            "embedded": len(widgets.json_text(data).encode())}


def set_vectors(data: dict, index: int) -> np.ndarray:
    """The float64 vectors the page computes with for set ``index``."""
    return widgets.decode(data["sets"][index], (data["count"], data["dim"]))


def payload_scores(V: np.ndarray, query: int, similarity: str = "cosine") -> np.ndarray:
    """Scores as the page computes them: sums over the dimensions in order, in float64."""
    W = np.asarray(V, dtype=np.float64)
    if similarity == "cosine":
        squares = np.zeros(len(W))
        for j in range(W.shape[1]):
            squares = squares + W[:, j] * W[:, j]
        norms = np.sqrt(squares)
        W = np.where(norms[:, None] > 0, W / np.where(norms > 0, norms, 1)[:, None], 0.0)
    scores = np.zeros(len(W))
    for j in range(W.shape[1]):
        scores = scores + W[:, j] * W[query, j]
    return scores


def payload_top_k(V: np.ndarray, query: int, k: int, similarity: str = "cosine") -> np.ndarray:
    """The page's ranking: highest score first, ties to the lower row, the query left out."""
    scores = payload_scores(V, query, similarity)
    scores[query] = -np.inf
    scores = np.where(np.isnan(scores), -np.inf, scores)
    return np.lexsort((np.arange(len(scores)), -scores))[:min(k, len(scores) - 1)]


BODY = """
<figure class="quarto-float quarto-float-tbl book-widget-figure">
<figcaption>Interactive: the movies most similar to the one you type (HTML version only; the tables
above are the same lists for three titles). Type a title; choose how many, the similarity and whose
embeddings: the first set is the one the tables use; any others are the floor solution and other
optimiser runs.</figcaption>
<div class="bw-controls">
  <label>Movie <input type="search" class="bw-title" list="{id}-titles" autocomplete="off"
    spellcheck="false" aria-describedby="{id}-status"></label>
  <label>Top <input type="number" class="bw-k" min="5" max="50" step="1" value="10"></label>
  <label>Similarity <select class="bw-similarity"><option value="cosine">cosine</option>
    <option value="dot">dot product</option></select></label>
  <label>Embeddings <select class="bw-set"></select></label>
</div>
<datalist id="{id}-titles"></datalist>
<p class="bw-status" id="{id}-status" aria-live="polite">Loading the explorer…</p>
<table class="bw-table"><thead><tr><th>rank</th><th>title</th><th>year</th><th>genres</th>
<th>likes</th><th>score</th></tr></thead><tbody class="bw-rows"></tbody></table>
</figure>"""


def explorer(results_dir: Path | None = None, widget_id: str = "movie-explorer") -> widgets.Html:
    """The widget for the chapter (display it inside an HTML-only div)."""
    return widgets.Html(widgets.fragment(widget_id, BODY.replace("{id}", widget_id),
                                         payload(results_dir), "movie_explorer.js"))
