"""Similar movies from the frozen embeddings, and ``python -m lib recommend TITLE [-k 10]``.

Reads only ``results/`` (``movies_embeddings.npz`` and ``movies_catalog.csv``,
written by ``python -m lib movies``), so it works without the dataset.

Title lookup ignores case, punctuation, the year and a leading or trailing
article ("The Matrix", "matrix" and "Matrix, The" all name "Matrix, The (1999)").
An exact name wins over longer titles that contain it ("Toy Story" is
"Toy Story (1995)", not "Toy Story 2 (1999)"); a name shared by several movies,
or none, is an error that lists the closest candidates.
"""
from __future__ import annotations

import argparse
import difflib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.artifacts import ArtifactError, load_arrays, load_csv
from lib.core.errors import ConfigError, ReportError
from lib.movies.titles import ARTICLES, YEAR_SUFFIX, display_title, split_title

EMBEDDINGS_FILE = "movies_embeddings.npz"
CATALOG_FILE = "movies_catalog.csv"
WRITTEN_BY = "python -m lib movies"
SIMILARITIES = ("cosine", "dot")
# English articles lead or trail; MovieLens also moves foreign ones to the end ("Haine, La").
LEADING_ARTICLES = ("the", "a", "an")
TRAILING_ARTICLES = tuple(article.lower() for article in ARTICLES)
_TRAILING = re.compile(r",\s*(" + "|".join(re.escape(a) for a in TRAILING_ARTICLES) + r")\s*$", re.I)
_PAREN = re.compile(r"\s*\([^()]*\)")
SUGGEST_CUTOFF = 0.6   # difflib similarity below which a title is never suggested
SUGGEST_SPREAD = 0.1   # ... nor one this much less similar than the closest title


class TitleError(ReportError):
    """A title that names no embedded movie, or several."""

    def __init__(self, message: str, candidates: list[str]):
        super().__init__(message)
        self.candidates = candidates


def _fold(text: str) -> str:
    """Lower case, accents and punctuation dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = re.sub(r"[^\w\s']", " ", text).replace("'", "")
    return re.sub(r"\s+", " ", text).strip()


def normalise_title(text: str) -> str:
    """The key a title and a query are compared by: no year, no article, folded."""
    text = YEAR_SUFFIX.sub("", text.strip())
    text = _TRAILING.sub("", text)
    folded = _fold(text)
    first, _, rest = folded.partition(" ")
    if first in LEADING_ARTICLES and rest:
        folded = rest
    return folded


def title_keys(title: str) -> set[str]:
    """Every key a catalog title answers to: the full name, and without alternative titles."""
    name = YEAR_SUFFIX.sub("", title.strip())
    keys = {normalise_title(name)}
    # "Seven (a.k.a. Se7en)" -> "Seven"; "City of Lost Children, The (Cité des ..., La)" -> ...
    plain = _PAREN.sub("", name).strip()
    for variant in (name, plain):
        if not variant:
            continue
        keys.add(normalise_title(variant))
        article = _TRAILING.search(variant)
        if article:  # "Haine, La" also answers to "La Haine"
            keys.add(_fold(f"{article.group(1)} {variant[:article.start()]}"))
    for alias in re.findall(r"\(a\.k\.a\. ([^()]*)\)", name):
        keys.add(normalise_title(alias))
    keys.discard("")
    return keys


class TitleIndex:
    """Resolve free-text titles to row indices of a catalog."""

    def __init__(self, titles: list[str] | pd.Series):
        self.titles = [str(t) for t in titles]
        self.by_key: dict[str, list[int]] = {}
        for index, title in enumerate(self.titles):
            for key in title_keys(title):
                self.by_key.setdefault(key, []).append(index)
        self.full = {_fold(t): i for i, t in enumerate(self.titles)}
        # Titles as the book shows them ("The Postman (Il Postino) (1994)") resolve too, also where an
        # alternative title in parentheses keeps the key rules above from matching them.
        for i, t in enumerate(self.titles):
            self.full.setdefault(_fold(display_title(t)), i)

    def closest(self, query: str, n: int = 8) -> list[str]:
        """Catalog titles near ``query``: only those about as close as the closest (a few near
        misses, not every title that shares a few letters), then titles containing it as words."""
        key = normalise_title(query)
        scored = sorted(((difflib.SequenceMatcher(None, key, k).ratio(), k) for k in self.by_key), reverse=True)
        cutoff = max(SUGGEST_CUTOFF, scored[0][0] - SUGGEST_SPREAD) if scored else 1.0
        close = [k for score, k in scored[:n] if score >= cutoff]
        found = list(dict.fromkeys(i for k in close for i in self.by_key[k]))
        found += [i for i in self.containing(key) if i not in found]
        return [self.titles[i] for i in found[:n]]

    def containing(self, key: str) -> list[int]:
        """Rows whose title contains the normalised ``key`` as whole words."""
        pattern = re.compile(rf"\b{re.escape(key)}\b")
        return [i for i, t in enumerate(self.titles) if key and pattern.search(normalise_title(t))]

    def resolve(self, query: str) -> int:
        """Row index of the one movie ``query`` names; TitleError otherwise."""
        if not query or not query.strip():
            raise TitleError("empty title", [])
        folded = _fold(query)
        if folded in self.full:                      # the exact catalog title, year included
            return self.full[folded]
        key, year = normalise_title(query), re.search(r"\((\d{4})\)\s*$", query.strip())
        year = int(year.group(1)) if year else None
        matches = list(self.by_key.get(key, []) or self.by_key.get(_fold(YEAR_SUFFIX.sub("", query)), []))
        if year is not None:
            matches = [i for i in matches if split_title(self.titles[i])[1] == year]
        if not matches:  # a unique whole-word match ("Shawshank") is accepted
            words = self.containing(key)
            if year is not None:
                words = [i for i in words if split_title(self.titles[i])[1] == year]
            if len(words) == 1:
                return words[0]
            if len(words) > 1:
                matches = words
        if len(matches) == 1:
            return matches[0]
        if not matches:
            candidates = self.closest(query)
            hint = ("closest matches: " + "; ".join(map(display_title, candidates))) if candidates else "no close match"
            raise TitleError(f"no embedded movie is called {query!r} ({hint})", candidates)
        candidates = [self.titles[i] for i in matches]
        shown = "; ".join(map(display_title, candidates[:12])) + ("; ..." if len(candidates) > 12 else "")
        raise TitleError(f"{query!r} is ambiguous: it matches {len(matches)} movies: {shown}. "
                         f"Give the full title with its year, e.g. {display_title(candidates[0])!r}", candidates)


# --- similarity ------------------------------------------------------------------
def normalise_rows(V: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (similarity 0 with everything)."""
    V = np.asarray(V, dtype=np.float64)
    norms = np.linalg.norm(V, axis=1, keepdims=True)
    return np.divide(V, norms, out=np.zeros_like(V), where=norms > 0)


def similarity_weights(V: np.ndarray, similarity: str = "cosine") -> np.ndarray:
    """Rows whose dot products are the similarity: unit rows (cosine) or V itself (dot)."""
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
    return normalise_rows(V) if similarity == "cosine" else np.asarray(V, dtype=np.float64)


def top_k(V: np.ndarray, query: int, k: int = 10, similarity: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the k movies most similar to ``query``, never ``query`` itself."""
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    W = similarity_weights(V, similarity)
    scores = W @ W[query]
    scores[query] = -np.inf
    scores = np.where(np.isnan(scores), -np.inf, scores)
    k = min(k, len(scores) - 1)
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def top_k_all(V: np.ndarray, k: int = 10, similarity: str = "cosine", chunk: int = 1024) -> np.ndarray:
    """(M x k) indices of every movie's top-k neighbours (itself excluded), by row chunks."""
    W = similarity_weights(V, similarity)
    W = np.where(np.isfinite(W), W, 0.0)
    n = W.shape[0]
    out = np.empty((n, k), dtype=np.int64)
    for begin in range(0, n, chunk):
        rows = np.arange(begin, min(begin + chunk, n))
        scores = W[rows] @ W.T
        scores[np.arange(len(rows)), rows] = -np.inf
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[rows] = np.take_along_axis(part, order, axis=1)
    return out


def topk_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean share of common entries between two (M x k) neighbour lists (NaN for no rows)."""
    if len(a) == 0:
        return float("nan")
    a, b = np.sort(a, axis=1), np.sort(b, axis=1)
    common = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(common.mean() / a.shape[1])


# --- frozen embeddings -----------------------------------------------------------
@dataclass(frozen=True)
class Frozen:
    embeddings: np.ndarray
    catalog: pd.DataFrame  # movieId, title, name, year, genres, likes; one row per embedding
    index: TitleIndex

    def resolve(self, title: str) -> int:
        return self.index.resolve(title)

    def recommend(self, title: str, k: int = 10, similarity: str = "cosine") -> pd.DataFrame:
        """Table (title, year, genres, likes, score) of the k nearest movies to ``title``."""
        query = self.resolve(title)
        indices, scores = top_k(self.embeddings, query, k, similarity)
        table = self.catalog.iloc[indices][["title", "year", "genres", "likes"]].reset_index(drop=True)
        table.insert(0, "rank", np.arange(1, len(indices) + 1))
        table["score"] = scores
        return table


def load_frozen(results_dir: Path | None = None) -> Frozen:
    """The best run's embeddings and their catalog, checked against each other."""
    arrays = load_arrays(EMBEDDINGS_FILE, results_dir, WRITTEN_BY)
    missing = {"embeddings", "movie_ids"} - set(arrays)
    if missing:
        raise ArtifactError(f"{EMBEDDINGS_FILE} is damaged (no {', '.join(sorted(missing))} array): "
                            f"restore it from git or run '{WRITTEN_BY}'")
    catalog = load_csv(CATALOG_FILE, results_dir, WRITTEN_BY, required=("movieId", "title", "year", "genres", "likes"),
                       dtype={"year": "Int64"})
    if not np.array_equal(catalog["movieId"].to_numpy(), arrays["movie_ids"]):
        raise ReportError(f"{CATALOG_FILE} and {EMBEDDINGS_FILE} list different movies: rerun 'python -m lib movies'")
    return Frozen(arrays["embeddings"], catalog, TitleIndex(catalog["title"]))


# --- command line ------------------------------------------------------------------
def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = "%(prog)s [-h] [-k K] [--similarity {cosine,dot}] [--results-dir DIR] TITLE  (one title)"
    parser.add_argument("title", nargs="+", metavar="TITLE",
                        help="one movie title; quotes are optional, the words are joined "
                             "(e.g. Toy Story, 'The Matrix', 'Matrix, The (1999)')")
    parser.add_argument("-k", type=_positive_int, default=10, help="how many movies to list (default 10)")
    parser.add_argument("--similarity", choices=SIMILARITIES, default="cosine",
                        help="cosine (default) or raw dot product")
    parser.add_argument("--results-dir", default=None, help="folder holding the frozen results (default results/)")


MAX_COLUMN = 60  # characters: a few very long titles and genre lists would widen every row


def format_table(table: pd.DataFrame) -> str:
    """The recommendation table as printed: titles in display form (year included, so no year
    column), scores to 3 decimals, long cells cut to MAX_COLUMN characters."""
    shown = table.assign(title=table["title"].map(display_title), score=table["score"].map(lambda s: f"{s:.3f}"))
    return shown[["rank", "title", "genres", "score"]].to_string(index=False, max_colwidth=MAX_COLUMN)


def run(args: argparse.Namespace) -> int:
    frozen = load_frozen(Path(args.results_dir) if args.results_dir else None)
    title = " ".join(args.title)
    query = frozen.resolve(title)
    table = frozen.recommend(title, args.k, args.similarity)
    capped = f"; -k {args.k} asked, but only {len(table)} other movies are embedded" if len(table) < args.k else ""
    print(f"{len(table)} movies most similar to {display_title(frozen.catalog['title'].iloc[query])} "
          f"({args.similarity}{capped}):")
    print(format_table(table))
    return 0
