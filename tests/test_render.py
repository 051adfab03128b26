"""The rendered book, read as a reader sees it: HTML pages and the typst PDF from a real Quarto render.

One render per session, in a copy of the project, from the committed ``_freeze/`` with a Python
that has nothing installed: so the book renders with Quarto alone. Every check reads the output
(HTML parsed with BeautifulSoup, PDF text from poppler's ``pdftotext``), not the ``.qmd`` source.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from bs4 import BeautifulSoup

from conftest import Book, require
from lib.core.paths import REPO_ROOT
from lib.book.browser import Browser, find_chromium

ARTICLE_SORT_FORM = re.compile(r"\b[\w'.]+, (The|A|An|Les|La|Le|L'|Il|El|Die|Das|Der) \(\d{4}\)")
TEX_COMMAND = re.compile(r"\\(?:frac|lambda|sum|mathbf|top|star|cdot|le|ge|neq|in|left|right|operatorname)\b|\\[()\[\]]")
MARKDOWN_MARKER = re.compile(r"\*\*\S|\S\*\*|`|\]\(|(?<![\w])_[A-Za-z]+_(?![\w])")
PDF_CODE_LINE = re.compile(r"^\s*(import \w|from [\w.]+ import |def \w+\(|for \w+ in .*:$|fig, ax|plt\.\w)")


def _main_text(soup: BeautifulSoup) -> str:
    """Visible prose of a page's main content: code, math and scripts left out."""
    main = soup.find("main")
    main = BeautifulSoup(str(main), "html.parser")
    for tag in main.find_all(["pre", "code", "script", "style", "math", "svg"]):
        tag.decompose()
    return main.get_text(" ")


def _book_files() -> list[str]:
    config = yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())["book"]
    return config["chapters"] + config["appendices"]


def test_every_chapter_is_rendered(book: Book) -> None:
    expected = {Path(f).with_suffix(".html").as_posix() for f in _book_files()}
    assert expected <= set(book.pages), f"missing pages: {sorted(expected - set(book.pages))}"
    assert len(book.pdf_pages) > 10


def test_cross_references_resolve(book: Book) -> None:
    for name, soup in book.pages.items():
        text = _main_text(soup)
        unresolved = re.findall(r"\?@[\w-]+|@(?:sec|fig|tbl|eq)-[\w-]+", text)
        assert not unresolved, f"{name}: unresolved references {unresolved}"
    unresolved = re.findall(r"\?@[\w-]+|@(?:sec|fig|tbl|eq)-[\w-]+", book.pdf_text)
    assert not unresolved, f"PDF: unresolved references {unresolved}"


def test_no_empty_list_items(book: Book) -> None:
    for name, soup in book.pages.items():
        empty = [str(li.parent)[:200] for li in soup.find("main").find_all("li")
                 if not li.get_text(strip=True) and not li.find(["img", "input"])]
        assert not empty, f"{name}: empty list items (a line starting with a reference?): {empty}"


def test_no_literal_markdown_or_tex_in_prose(book: Book) -> None:
    listings = _listings()  # deliberate code listings may hold ** and the like; prose may not
    pdf = "\n".join(line for line in book.pdf_text.splitlines() if not (line.strip() and line.strip() in listings))
    texts = {name: _main_text(soup) for name, soup in book.pages.items()} | {"PDF": pdf}
    found = [f"{name}: ...{text[max(m.start() - 40, 0):m.end() + 40]}..."
             for name, text in texts.items() for pattern in (MARKDOWN_MARKER, TEX_COMMAND)
             for m in pattern.finditer(text)]
    assert not found, "literal markup in rendered text:\n" + "\n".join(found[:12])


def test_math_is_mathml_not_cdn_tex(book: Book) -> None:
    pages_with_math = [name for name, soup in book.pages.items() if soup.find("math")]
    assert pages_with_math, "no page has MathML: html-math-method: mathml is not in effect"
    for name, soup in book.pages.items():
        scripts = [s.get("src", "") for s in soup.find_all("script")]
        assert not any("mathjax" in s.lower() or "katex" in s.lower() for s in scripts), name


def test_every_figure_has_an_image_and_alt_text(book: Book) -> None:
    count = 0
    for name, soup in book.pages.items():
        for figure in soup.find("main").select("figure.quarto-float-fig"):
            img = figure.find("img")
            assert img is not None, f"{name}: figure without image: {figure.get_text()[:100]}"
            assert img.get("alt", "").strip(), f"{name}: image without alt text: {img.get('src')}"
            assert figure.find("figcaption"), f"{name}: figure without caption: {img.get('src')}"
            source = (book.root / name).parent / unquote(img["src"])
            assert source.is_file() and source.stat().st_size > 1000, f"{name}: missing image {img['src']}"
            count += 1
    assert count >= 10, f"only {count} figures in the book"


def test_every_table_is_captioned_with_distinct_headers(book: Book) -> None:
    for name, soup in book.pages.items():
        for table in soup.find("main").find_all("table"):
            figure = table.find_parent("figure", class_="quarto-float-tbl")
            assert figure is not None and figure.find("figcaption"), (
                f"{name}: table without caption: {table.get_text(' ', strip=True)[:120]}")
            headers = [th.get_text(" ", strip=True) for th in table.find_all("th")]
            named = [h for h in headers if h]
            assert len(named) == len(set(named)), f"{name}: repeated column headers {headers}"


def test_internal_links_resolve(book: Book) -> None:
    ids = {name: {tag["id"] for tag in soup.find_all(id=True)} for name, soup in book.pages.items()}
    for name, soup in book.pages.items():
        for anchor in soup.find_all("a", href=True):
            link = urlparse(anchor["href"])
            if link.scheme or anchor["href"].startswith(("mailto:", "javascript:")):
                continue
            target = (Path(name).parent / unquote(link.path)).as_posix() if link.path else name
            target = Path(target).as_posix()
            resolved = (book.root / target).resolve()
            assert resolved.exists(), f"{name}: link to missing {anchor['href']}"
            key = resolved.relative_to(book.root.resolve()).as_posix()
            if link.fragment and key in ids:
                assert link.fragment in ids[key], f"{name}: link to missing anchor {anchor['href']}"


def test_pdf_bibliography_is_in_the_references_chapter(book: Book) -> None:
    starts = [i for i, page in enumerate(book.pdf_pages) if re.match(r"\s*References\s*$", page.strip().split("\n")[0])]
    assert starts, "no PDF page opens with the References chapter"
    appendix = next((i for i, page in enumerate(book.pdf_pages) if i > starts[-1]
                     and re.match(r"\s*(Appendices|A\. )", page.strip().split("\n")[0])), len(book.pdf_pages))
    references = "\n".join(book.pdf_pages[starts[-1]:appendix])
    entries = re.findall(r"^\s*\[\d+\]\s+\S", references, flags=re.M)
    assert len(entries) >= 5, f"References chapter holds {len(entries)} entries:\n{references[:500]}"
    assert not re.search(r"^\s*Bibliography\s*$", book.pdf_text, flags=re.M), "a second 'Bibliography' section"


def _listings() -> str:
    """The code of every cell a chapter marks as a deliberate listing (``#| echo: true``)."""
    cells = re.findall(r"^```\{python\}\s*\n(.*?)^```\s*$", "\n".join(
        (REPO_ROOT / name).read_text() for name in _book_files()), flags=re.M | re.S)
    return "\n".join(cell for cell in cells if re.search(r"^#\|\s*echo:\s*true\s*$", cell, re.M))


def test_pdf_shows_no_code_and_no_stray_numbering(book: Book) -> None:
    listings = _listings()
    code = [line for line in book.pdf_text.splitlines()
            if PDF_CODE_LINE.match(line) and line.strip() not in listings]
    assert not code, f"PDF prints code cells: {code[:5]}"
    stray = re.findall(r"(?:Table|Figure) 0\.\d+|(?:Chapter|Appendix) [0-9A-Z]\.[,;:)]", book.pdf_text)
    assert not stray, f"PDF numbering artefacts: {stray}"


def test_movie_titles_are_shown_in_display_form(book: Book) -> None:
    texts = {name: _main_text(soup) for name, soup in book.pages.items()} | {"PDF": book.pdf_text}
    found = [f"{name}: {m.group(0)}" for name, text in texts.items() for m in ARTICLE_SORT_FORM.finditer(text)]
    assert not found, "titles in MovieLens sort form:\n" + "\n".join(found[:12])


def test_html_opened_from_disk_requests_no_other_host_and_typesets_math(book: Book) -> None:
    require(find_chromium() is not None, "chromium not found: apt-get install chromium")
    with Browser() as browser:
        for name in book.pages:
            browser.requested_urls.clear()
            browser.open((book.root / name).resolve().as_uri())
            remote = [u for u in browser.requested_urls if not u.startswith(("file:", "data:", "blob:"))]
            assert not remote, f"{name} requests other hosts when opened from disk: {remote}"
        browser.open((book.root / "chapters/03-movie-embeddings.html").resolve().as_uri())
        widths = browser.evaluate("[...document.querySelectorAll('math')].map(m => m.getBoundingClientRect().width)")
        assert widths and min(widths) > 0, "MathML elements are not laid out by the browser"


def _overprinted_words(pdf: Path) -> list[str]:
    """Words whose boxes overlap another word's on the same page: text printed over text."""
    import numpy as np

    xhtml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = []
    for number, page in enumerate(BeautifulSoup(xhtml, "html.parser").find_all("page"), start=1):
        words = [w for w in page.find_all("word") if len(w.get_text()) > 1]  # not lone math glyphs
        if len(words) < 2:
            continue
        box = np.array([[float(w[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for w in words])
        width = np.minimum(box[:, None, 2], box[None, :, 2]) - np.maximum(box[:, None, 0], box[None, :, 0])
        height = np.minimum(box[:, None, 3], box[None, :, 3]) - np.maximum(box[:, None, 1], box[None, :, 1])
        tall = box[:, 3] - box[:, 1]
        same_line = height > 0.5 * np.minimum(tall[:, None], tall[None, :])  # not a sub/superscript
        overlap = same_line & (width > 1.0)  # points
        np.fill_diagonal(overlap, False)
        for i, j in zip(*np.nonzero(np.triu(overlap))):
            found.append(f"page {number}: '{words[i].get_text()}' over '{words[j].get_text()}'")
    return found


def test_pdf_has_no_text_printed_over_text(book: Book) -> None:
    found = _overprinted_words(next(book.root.glob("*.pdf")))
    assert not found, f"{len(found)} overprinted words in the PDF (tables too narrow?):\n" + "\n".join(found[:15])


def _words_past_right_margin(pdf: Path, margin_pt: float, tolerance_pt: float = 2.0) -> list[str]:
    """Words that end to the right of the text block (into the right margin or off the page):
    a table column too narrow for an unbreakable word, such as a hash, pushes it there."""
    xhtml = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found = []
    for number, page in enumerate(BeautifulSoup(xhtml, "html.parser").find_all("page"), start=1):
        limit = float(page["width"]) - margin_pt + tolerance_pt
        found += [f"page {number}: '{w.get_text()[:40]}' ends at {float(w['xmax']):.0f} pt (limit {limit:.0f})"
                  for w in page.find_all("word") if float(w["xmax"]) > limit]
    return found


def test_pdf_has_no_text_past_the_right_margin(book: Book) -> None:
    margin = yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())["format"]["typst"]["margin"]["x"]
    assert margin.endswith("cm")
    found = _words_past_right_margin(next(book.root.glob("*.pdf")), float(margin[:-2]) * 72 / 2.54)
    assert not found, f"{len(found)} words past the right margin (unbreakable table cells?):\n" + "\n".join(found[:15])
