"""The HTML-only widgets: the movie explorer (chapter 3) and the prediction gallery browser (chapters 1-2).

Payload checks run in Python (the page's ranking has a NumPy twin, ``payload_top_k``); the browser
checks open the rendered book (the shared ``book`` fixture) in headless Chromium from disk, and once
over a loopback HTTP server, drive the widgets like a reader and compare with the library.
"""
from __future__ import annotations

import json
import shutil
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import Book, require
from lib.book import gallery_browser, movie_explorer, widgets
from lib.book.browser import Browser, find_chromium
from lib.book.notebooks import drop_html_only
from lib.cifar.gallery import select_gallery
from lib.cifar.gallery_sprites import build_sprites
from lib.core.artifacts import load_array, load_arrays, load_json
from lib.core.paths import RESULTS_DIR
from lib.movies.recommend import TitleError, _fold, load_frozen, top_k
from lib.movies.titles import display_title

CHAPTER_MOVIES = "chapters/03-movie-embeddings.html"
CHAPTER_FEATURES = "chapters/01-feature-extraction.html"
CHAPTER_FINETUNE = "chapters/02-finetuning.html"
QUERIES = ("Toy Story", "Apollo 13", "The Fugitive", "Fugitive, The")


@pytest.fixture(scope="module")
def frozen():
    return load_frozen()


@pytest.fixture(scope="module")
def explorer_payload():
    return movie_explorer.payload()


# --- payloads, without a browser ---------------------------------------------------
def test_explorer_payload_is_compact(explorer_payload) -> None:
    sizes = movie_explorer.payload_bytes(explorer_payload)
    print(f"\nmovie explorer payload: {sizes}")
    assert sizes["total"] <= movie_explorer.MAX_BYTES


def test_explorer_payload_ranks_as_the_library(explorer_payload, frozen) -> None:
    """Top-50 lists (cosine and dot) from the page's vectors and arithmetic equal the library's.

    Queries: the 200 most liked movies and 200 others with at least 3 likes. (For movies with one
    or two likes, scores tie to the last bit and the BLAS summation order decides; see the docstring.)"""
    V = movie_explorer.set_vectors(explorer_payload, 0)
    np.testing.assert_array_equal(V, frozen.embeddings.astype(np.float64))
    likes = frozen.catalog["likes"].to_numpy()
    rng = np.random.default_rng(0)
    popular = np.argsort(-likes, kind="stable")[:200]
    others = rng.choice(np.setdiff1d(np.flatnonzero(likes >= 3), popular), 200, replace=False)
    for query in np.concatenate([popular, others]):
        for similarity in ("cosine", "dot"):
            expected, _ = top_k(frozen.embeddings, int(query), 50, similarity)
            got = movie_explorer.payload_top_k(V, int(query), 50, similarity)
            assert np.array_equal(got, expected), (frozen.catalog["title"].iloc[query], similarity)


def _results_with_runs(folder: Path, frozen) -> tuple[str, np.ndarray]:
    """A results folder with the frozen movie artifacts plus a synthetic ``movies_run_embeddings.npz``."""
    for name in ("movies_embeddings.npz", "movies_catalog.csv", "movies.json"):
        shutil.copy(RESULTS_DIR / name, folder / name)
    best = load_json("movies")["best_run"]
    rng = np.random.default_rng(1)
    V = frozen.embeddings
    vectors = np.stack([V + rng.normal(0, 0.05, V.shape), V, V + rng.normal(0, 0.5, V.shape),
                        V + rng.normal(0, 1.0, V.shape)]).astype(np.float16)
    np.savez(folder / movie_explorer.RUNS_FILE, movie_ids=frozen.catalog["movieId"].to_numpy(),
             names=np.array(["floor", best, "adam lr=0.01", "sgd lr=0.001"]), vectors=vectors)
    return best, vectors


def test_explorer_offers_the_runs_of_movies_run_embeddings(tmp_path: Path, frozen) -> None:
    """The documented format (movie_ids, names, vectors float16 (n, M, d)): floor first, the best run
    (already offered as float32) left out, the others as stored, within the size budget; each set's
    lists equal top_k on that set's stored vectors."""
    best, vectors = _results_with_runs(tmp_path, frozen)
    data = movie_explorer.payload(tmp_path)
    assert [s["name"] for s in data["sets"]][:3] == [best, "floor", "adam lr=0.01"]
    assert [s["dtype"] for s in data["sets"]][:3] == ["float32", "float16", "float16"]
    assert movie_explorer.payload_bytes(data)["total"] <= movie_explorer.MAX_BYTES
    popular = np.argsort(-frozen.catalog["likes"].to_numpy(), kind="stable")[:30]
    for index, source in ((1, vectors[0]), (2, vectors[2])):
        decoded = movie_explorer.set_vectors(data, index)
        np.testing.assert_array_equal(decoded, source.astype(np.float64))
        for query in popular:
            expected, _ = top_k(source, int(query), 50)
            assert np.array_equal(movie_explorer.payload_top_k(decoded, int(query), 50), expected)
    small = movie_explorer.payload(tmp_path, max_bytes=1_500_000)  # sets beyond the budget are dropped
    assert [s["name"] for s in small["sets"]] == [best]


def test_float_encoding_is_lossless() -> None:
    V = np.random.default_rng(2).normal(size=(50, 8)).astype(np.float32)
    V[3] = 0
    np.testing.assert_array_equal(widgets.decode(widgets.encode_floats(V, "float32"), V.shape), V)
    H = V.astype(np.float16)
    np.testing.assert_array_equal(widgets.decode(widgets.encode_floats(H, "float16"), H.shape), H)
    with pytest.raises(ValueError):
        widgets.encode_floats(V, "float16")


def test_gallery_sprites_follow_the_library_selection(mirror: Path) -> None:
    """results/gallery_sprites.npz holds select_gallery's choice for every model and the right pixels."""
    from lib.core.data import DataDirs, load_cifar10

    arrays = load_arrays("gallery_sprites.npz")
    test = load_cifar10("test", DataDirs.resolve(None, mirror))
    k = arrays["correct"].shape[2]
    for m, model in enumerate(arrays["models"]):
        selection = select_gallery(load_array(f"{model}_test_probs.npy"), test.labels, k=k)
        np.testing.assert_array_equal(arrays["correct"][m], selection["correct"])
        np.testing.assert_array_equal(arrays["incorrect"][m], selection["incorrect"])
    np.testing.assert_array_equal(arrays["pixels"], test.images[arrays["test_index"]])
    np.testing.assert_array_equal(arrays["labels"], test.labels[arrays["test_index"]])


def test_build_sprites_keeps_each_needed_image_once() -> None:
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(4), 60)
    labels = rng.integers(0, 4, 60)
    images = rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8)
    arrays = build_sprites({"a": probs, "b": probs[::-1].copy()}, images, labels, k=3)
    chosen = np.concatenate([arrays[s].ravel() for s in ("correct", "incorrect")])
    assert set(arrays["test_index"]) == set(chosen[chosen >= 0])
    assert len(set(arrays["test_index"])) == len(arrays["test_index"])
    np.testing.assert_array_equal(arrays["pixels"], images[arrays["test_index"]])
    np.testing.assert_allclose(arrays["prob"][0], probs[arrays["test_index"]].max(axis=1))


def test_gallery_payload_is_compact() -> None:
    sizes = gallery_browser.payload_bytes(gallery_browser.payload())
    print(f"\ngallery payload: {sizes}")
    assert sizes["embedded"] <= 3_000_000


def test_notebooks_leave_out_html_only_blocks() -> None:
    text = 'a\n\n::: {.content-visible when-format="html"}\nwidget\n\n```{python}\nch.explorer()\n```\n:::\n\nb\n'
    assert drop_html_only(text) == "a\n\nb\n"


# --- in a browser --------------------------------------------------------------------
def _remote(browser: Browser, allowed: tuple[str, ...]) -> list[str]:
    return [u for u in browser.requested_urls if not u.startswith(("data:", "blob:") + allowed)]


def _open_ready(browser: Browser, url: str, widget: str) -> float:
    """Open a page and wait for the widget; returns its time to interactive (ms from navigation start)."""
    browser.open(url)
    return float(browser.wait_for(f"window.bookWidgets && window.bookWidgets.{widget} && "
                                  f"window.bookWidgets.{widget}.readyAt"))


def _type(browser: Browser, title: str, k: int = 10, similarity: str = "cosine") -> list[dict]:
    return browser.evaluate(f"""(() => {{
        const e = window.bookWidgets.movieExplorer;
        e.kInput.value = "{k}"; e.similarity.value = "{similarity}";
        e.input.value = {json.dumps(title)};
        e.input.dispatchEvent(new Event("input", {{bubbles: true}}));
        return e.shown(); }})()""")


def _library_rows(frozen, title: str, k: int = 10, similarity: str = "cosine") -> list[dict]:
    table = frozen.recommend(title, k, similarity)
    indices, _ = top_k(frozen.embeddings, frozen.resolve(title), k, similarity)
    return [{"index": int(i), "title": display_title(t), "score": round(float(s), 3)}
            for i, t, s in zip(indices, table["title"], table["score"])]


def _check_explorer(browser: Browser, frozen) -> None:
    shown = browser.evaluate("window.bookWidgets.movieExplorer.shown()")
    assert shown == _library_rows(frozen, "Toy Story"), "the list shown on load is not Toy Story's"
    for title in QUERIES:
        assert _type(browser, title) == _library_rows(frozen, title), title
    assert _type(browser, "apollo 13", 50, "dot") == _library_rows(frozen, "Apollo 13", 50, "dot")
    names = browser.evaluate("window.bookWidgets.movieExplorer.data.sets.map(s => s.name)")
    if len(names) > 1:  # the floor and other runs, from results/movies_run_embeddings.npz
        runs = load_arrays(movie_explorer.RUNS_FILE)
        stored = dict(zip([str(n) for n in runs["names"]], runs["vectors"]))
        for set_index, name in enumerate(names[1:], start=1):
            browser.evaluate(f"""(() => {{ const e = window.bookWidgets.movieExplorer;
                e.set.value = "{set_index}"; e.set.dispatchEvent(new Event("change")); }})()""")
            for title in ("Toy Story", "Fugitive, The"):
                shown = [row["index"] for row in _type(browser, title, 50)]
                assert shown == top_k(stored[name], frozen.resolve(title), 50)[0].tolist(), (name, title)


@pytest.fixture(scope="module")
def chromium() -> None:
    require(find_chromium() is not None, "chromium not found: apt-get install chromium")


def test_movie_explorer_from_disk(book: Book, chromium, frozen) -> None:
    with Browser() as browser:
        ready_ms = _open_ready(browser, (book.root / CHAPTER_MOVIES).resolve().as_uri(), "movieExplorer")
        print(f"\nchapter 3 from disk: movie explorer interactive {ready_ms:.0f} ms after navigation start")
        _check_explorer(browser, frozen)
        assert not _remote(browser, ("file:",)), _remote(browser, ("file:",))
    assert ready_ms < 5000


def test_movie_explorer_finds_titles_as_the_library_does(book: Book, chromium, frozen) -> None:
    """Display form, MovieLens form and lower case of 340 titles, plus ambiguous and unknown names:
    the page finds what ``TitleIndex.resolve`` finds, and also every title as the page shows it."""
    titles = list(frozen.catalog["title"].sample(300, random_state=4))
    titles += [t for t in frozen.catalog["title"] if "(" in t[:-7]][:40]  # with alternative titles
    queries = [q for t in titles for q in (t, display_title(t), display_title(t).lower())]
    queries += ["hamlet", "Hamlet (1996)", "shawshank", "matrix", "The Matrix", "no such movie xyz", "Toy Story 2"]
    shown = {}
    for i, t in enumerate(frozen.catalog["title"]):  # the page also finds every title as it shows it
        shown[_fold(display_title(t))] = None if _fold(display_title(t)) in shown else i
    expected = []
    for q in queries:
        try:
            found = frozen.resolve(q)
        except TitleError:
            found = None
        if _fold(q) not in frozen.index.full and shown.get(_fold(q)) is not None:
            found = shown[_fold(q)]
        expected.append(found)
    with Browser() as browser:
        _open_ready(browser, (book.root / CHAPTER_MOVIES).resolve().as_uri(), "movieExplorer")
        got = browser.evaluate(f"""{json.dumps(queries)}.map(q => {{
            const r = window.bookWidgets.movieExplorer.resolve(q); return r.index === undefined ? null : r.index; }})""")
    wrong = [(q, g, e) for q, g, e in zip(queries, got, expected) if g != e]
    assert not wrong, wrong[:10]


def test_movie_explorer_switches_embedding_sets(tmp_path: Path, chromium, frozen) -> None:
    """A page built with floor and run embeddings (float16): the lists of each set equal top_k on it."""
    _, vectors = _results_with_runs(tmp_path, frozen)
    page = tmp_path / "explorer.html"
    page.write_text('<!doctype html><html><head><meta charset="utf-8"></head><body>'
                    f"{movie_explorer.explorer(tmp_path).html}</body></html>")
    with Browser() as browser:
        _open_ready(browser, page.as_uri(), "movieExplorer")
        for set_index, source in ((1, vectors[0]), (2, vectors[2])):
            browser.evaluate(f"""(() => {{ const e = window.bookWidgets.movieExplorer;
                e.set.value = "{set_index}"; e.set.dispatchEvent(new Event("change")); }})()""")
            for title in ("Toy Story", "The Fugitive"):
                for similarity in ("cosine", "dot"):
                    shown = [row["index"] for row in _type(browser, title, 50, similarity)]
                    expected, _ = top_k(source, frozen.resolve(title), 50, similarity)
                    assert shown == expected.tolist(), (set_index, title, similarity)
        assert not _remote(browser, ("file:",))


def _library_gallery(model: str, cls: str, k: int = 10) -> dict:
    from lib.core.data import CIFAR_CLASSES

    selection = select_gallery(load_array(f"{model}_test_probs.npy"), load_array("finetune_cpu_partial_short_test_labels.npy"), k=k)
    c = CIFAR_CLASSES.index(cls)
    return {side: [int(i) for i in selection[side][c] if i >= 0] for side in ("correct", "incorrect")}


def test_gallery_browser_from_disk(book: Book, chromium) -> None:
    with Browser() as browser:
        for page, default in ((CHAPTER_FEATURES, "features_cpu_onnx"), (CHAPTER_FINETUNE, "finetune_cpu_partial_short")):
            ready_ms = _open_ready(browser, (book.root / page).resolve().as_uri(), "galleryBrowser")
            print(f"\n{page} from disk: gallery interactive {ready_ms:.0f} ms after navigation start")
            shown = browser.evaluate("window.bookWidgets.galleryBrowser.shown()")
            assert shown == _library_gallery(default, "cat"), page
            for model, cls in (("finetune_cpu", "ship"), ("features_cpu_onnx", "truck"), ("finetune_cpu_partial_short", "dog")):
                got = browser.evaluate(f"window.bookWidgets.galleryBrowser.choose('{model}', '{cls}')")
                assert got == _library_gallery(model, cls), (page, model, cls)
            loaded = browser.evaluate("""Promise.all([...document.querySelectorAll('.bw-img')].slice(0, 1).map(el =>
                new Promise(r => { const i = new Image(); i.onload = () => r(i.naturalWidth); i.onerror = () => r(0);
                i.src = getComputedStyle(el).backgroundImage.slice(5, -2); })))""")
            assert loaded and loaded[0] > 0, "the sprite sheet does not load"
        assert not _remote(browser, ("file:",)), _remote(browser, ("file:",))


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_widgets_served_over_http(book: Book, chromium, frozen) -> None:
    handler = partial(_QuietHandler, directory=str(book.root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with Browser() as browser:
            ready_ms = _open_ready(browser, base + CHAPTER_MOVIES, "movieExplorer")
            print(f"\nchapter 3 over HTTP: movie explorer interactive {ready_ms:.0f} ms after navigation start")
            _check_explorer(browser, frozen)
            _open_ready(browser, base + CHAPTER_FINETUNE, "galleryBrowser")
            got = browser.evaluate("window.bookWidgets.galleryBrowser.choose('features_cpu_onnx', 'frog')")
            assert got == _library_gallery("features_cpu_onnx", "frog")
            assert not _remote(browser, (base,)), _remote(browser, (base,))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_widgets_are_in_the_html_only(book: Book) -> None:
    """One widget on each of chapters 1-3 in HTML; none in the PDF, which keeps the static tables and figures."""
    for page, widget in ((CHAPTER_FEATURES, "gallery-browser"), (CHAPTER_FINETUNE, "gallery-browser"),
                         (CHAPTER_MOVIES, "movie-explorer")):
        assert len(book.pages[page].find_all(id=widget)) == 1, page
    others = [name for name, soup in book.pages.items()
              if name not in (CHAPTER_FEATURES, CHAPTER_FINETUNE, CHAPTER_MOVIES) and soup.select(".book-widget")]
    assert not others, others
    assert "Interactive gallery" not in book.pdf_text and "explorer below" not in book.pdf_text
