"""The book as a grader reads it (issue 24): an answer first in every chapter, a short body, no blank
pages, one page number per page and correct running headers, print-quality figures with legible
captions, Q2.2's figure on a log axis of the relative gap.

The source checks run without rendering; the PDF checks read the book rendered once per session
(``book`` in conftest.py) with poppler, as a reader sees it.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import matplotlib
import pytest
import yaml
from bs4 import BeautifulSoup

from conftest import Book
from lib.core.paths import REPO_ROOT

matplotlib.use("Agg")

# The answer to each assignment question, by id (a contract with notebooks/submission.ipynb): the
# chapter that holds it, and whether the chapter must open with it.
ANSWERS = {"ans-1-1": "01-feature-extraction.qmd", "ans-1-2a": "01-feature-extraction.qmd",
           "ans-1-2b": "01-feature-extraction.qmd", "ans-1-3": "02-finetuning.qmd",
           "ans-2-1": "03-movie-embeddings.qmd", "ans-2-2": "03-movie-embeddings.qmd",
           "ans-2-3": "03-movie-embeddings.qmd"}
OPENING = {"01-feature-extraction.qmd": "ans-1-2a", "02-finetuning.qmd": "ans-1-3",
           "03-movie-embeddings.qmd": "ans-2-3"}
MAX_ANSWER_WORDS = 150
BODY_PAGES = 16           # preface and chapters 1-3
REFERENCES_BY_PAGE = 20   # front matter included
PRINT_DPI = 300
CAPTION_PT = 7.0
DIV = re.compile(r"^::: \{#(ans-[\w-]+) \.answer\}\n(.*?)^:::\s*$", re.M | re.S)
CELL = re.compile(r"^```\{python\}.*?^```\s*$", re.M | re.S)
INLINE = re.compile(r"`\{python\} [^`]+`")


def _chapter(name: str) -> str:
    return (REPO_ROOT / "chapters" / name).read_text()


def answer_divs(text: str) -> dict[str, str]:
    """The answer divs of a .qmd text: id -> body."""
    return {m.group(1): m.group(2) for m in DIV.finditer(text)}


def words(markdown: str) -> int:
    """Words as a reader counts them: an inline value or a math span is one word."""
    text = INLINE.sub("X", markdown)
    text = re.sub(r"\$[^$]+\$", "X", text)
    return len(re.findall(r"[\w'’.,;:()%*-]+", text))


def first_prose(text: str) -> str:
    """What a chapter shows first after its title: code cells (setup, callouts) skipped."""
    body = text.split("\n", 1)[1]
    body = CELL.sub("", body)
    return body.lstrip()


# --- the answers, in the source --------------------------------------------------------------------

def test_every_answer_div_is_in_its_chapter_once() -> None:
    for answer, name in ANSWERS.items():
        text = _chapter(name)
        assert len(re.findall(rf"^::: \{{#{answer} \.answer\}}$", text, re.M)) == 1, f"{answer} in {name}"
    everywhere = "".join(p.read_text() for p in (REPO_ROOT / "chapters").glob("*.qmd"))
    assert sorted(re.findall(r"\{#(ans-[\w-]+) \.answer\}", everywhere)) == sorted(ANSWERS)


@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_answers_are_short_sentences_with_named_values(answer: str) -> None:
    body = answer_divs(_chapter(ANSWERS[answer]))[answer]
    assert words(body) <= MAX_ANSWER_WORDS, f"{answer}: {words(body)} words"
    assert body.rstrip().endswith((".", ".)")), f"{answer} does not end a sentence"
    prose = INLINE.sub("", re.sub(r"\$[^$]+\$", "", body))
    digits = re.findall(r"(?<![\w.^_{])\d[\d,.]*\d%?|(?<![\w.^_{])\d%", prose)
    allowed = {"32", "10", "0.5", "5", "9", "2", "95%"}  # the question's sizes, a 95% interval
    typed = [d for d in digits if d not in allowed]
    assert not typed, f"{answer}: numbers typed into the answer instead of read from lib.book: {typed}"


@pytest.mark.parametrize("name", sorted(OPENING))
def test_each_chapter_opens_with_its_answer(name: str) -> None:
    assert first_prose(_chapter(name)).startswith(f"::: {{#{OPENING[name]} .answer}}\n**Answer"), name


def test_word_count_counts_values_and_math_as_words() -> None:
    assert words("A `{python} v.x` test of $X_{ij} = 1$ here.") == 6


def test_answer_check_finds_a_div() -> None:
    assert answer_divs("x\n::: {#ans-9 .answer}\n**Answer.** Yes.\n:::\n") == {"ans-9": "**Answer.** Yes.\n"}


def test_the_resnet18_listing_is_the_library_code() -> None:
    """The ResNet18 builder shown in chapter 1 is lib/cifar/backbones.py's, whitespace aside."""
    text = _chapter("01-feature-extraction.qmd")
    listing = re.search(r"^(def _build_resnet18\(.*?^    return model, identity)$", text, re.M | re.S).group(1)
    source = (REPO_ROOT / "lib/cifar/backbones.py").read_text()
    assert " ".join(listing.split()) in " ".join(source.split())


def test_no_line_of_prose_starts_with_a_cross_reference() -> None:
    """Pandoc reads "@sec-x." at a line's start as an example-list marker (QUARTO-NOTES.md)."""
    from lib.book.notebooks import book_chapters

    found = [f"{path.name}: {line[:60]}" for path in book_chapters()
             for line in CELL.sub("", path.read_text()).splitlines() if re.match(r"^\(?@(sec|fig|tbl|eq)-", line)]
    assert not found, "lines starting with a cross-reference:\n" + "\n".join(found)
    split = [f"{path.name}: {line[-60:]}" for path in book_chapters()
             for line in path.read_text().splitlines() if re.search(r"[^`]`\{python\}$", line)]
    assert not split, "inline values split across lines (printed literally):\n" + "\n".join(split)


# --- figures, as drawn ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def styled():
    from lib.book import style

    style.apply()


def _texts(fig) -> list:
    return [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("run", ["features_cpu_onnx", "finetune_cpu_partial_short"])
def test_gallery_tiles_carry_prediction_and_print_at_7pt(styled, run: str) -> None:
    from lib.book import gallery
    from lib.book.style import TEXT_WIDTH
    from lib.core.data import CIFAR_CLASSES

    fig = gallery.figure(run)
    try:
        assert fig.get_figwidth() <= TEXT_WIDTH, "wider than the PDF's text: scaled down, captions shrink"
        small = [(t.get_text(), t.get_fontsize()) for t in _texts(fig) if t.get_fontsize() < CAPTION_PT]
        assert not small, f"text under {CAPTION_PT} pt in print: {small[:3]}"
        names = "|".join(gallery.short(c) for c in CIFAR_CLASSES)
        g = gallery.load(run)
        captions = [c for row in gallery.captions(g) for c in row if c]
        assert len(captions) == int((g.indices >= 0).sum())
        bad = [c for c in captions if not re.match(rf"^({names}) [01]\.\d\d\n", c)]
        assert not bad, f"tiles without predicted class and probability: {bad[:3]}"
    finally:
        matplotlib.pyplot.close(fig)


def test_figures_for_print_are_drawn_at_300_dpi() -> None:
    config = yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())
    assert config["format"]["typst"]["fig-dpi"] >= PRINT_DPI
    import matplotlib.pyplot as plt

    from lib.book import style

    with matplotlib.rc_context({"figure.dpi": PRINT_DPI}):  # as Quarto's kernel setup sets it for the PDF
        style.apply()
        assert plt.rcParams["figure.dpi"] >= PRINT_DPI, "style.apply() lowered the PDF's resolution"


def test_q22_figure_plots_the_relative_gap_on_log_axes_with_legends_outside(styled) -> None:
    from lib.book import movie_embeddings, movie_optimisers

    data = movie_embeddings.data()
    fig = movie_optimisers.curves_figure(data.o, data.m["floor_loss"], data.m["target_gap"])
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            assert ax.get_yscale() == "log"
            legend = ax.get_legend()
            assert legend is not None
            inside = legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
            assert not inside, f"{legend.get_title().get_text()}: legend over the data"
        assert "c^\\star" in fig.axes[0].get_ylabel()
    finally:
        matplotlib.pyplot.close(fig)


# --- the rendered PDF ----------------------------------------------------------------------------

HEADER = re.compile(r"^(Chapter \d+\. |Appendix [A-Z]\. |Preface$|References$|Contents$)")
UNNUMBERED = ("Preface", "References")  # their title and their running header read the same


def chapter_starts(pages: list[str]) -> dict[str, int]:
    """First line of each page that starts a chapter (no running header there) -> page number (1-based)."""
    starts: dict[str, int] = {}
    for number, page in enumerate(pages, start=1):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        if lines and (not HEADER.match(lines[0]) or lines[0] in UNNUMBERED):
            starts.setdefault(lines[0], number)  # an unnumbered chapter's later pages carry its title
    return starts


def blank_pages(pages: list[str]) -> list[int]:
    """Pages whose only text is a running header and a page number."""
    blank = []
    for number, page in enumerate(pages, start=1):
        lines = [line.strip() for line in page.splitlines() if line.strip() and not line.strip().isdigit()]
        if lines and HEADER.match(lines[0]):
            lines = lines[1:]
        if not lines and number < len(pages):  # pdftotext ends with an empty chunk after the last \f
            blank.append(number)
    return blank


def test_blank_page_check_counts_a_header_only_page() -> None:
    assert blank_pages(["Title\n", "Chapter 1. Data\n\n   7\n", "text\n", ""]) == [2]


def test_body_is_within_the_page_budget(book: Book) -> None:
    starts = chapter_starts(book.pdf_pages)
    preface, references = starts["Preface"], starts["References"]
    assert references - preface <= BODY_PAGES, f"preface to chapter 3: {references - preface} pages"
    assert references <= REFERENCES_BY_PAGE, f"References start on page {references}"


def test_no_blank_pages(book: Book) -> None:
    assert not blank_pages(book.pdf_pages), f"blank pages: {blank_pages(book.pdf_pages)}"


def test_one_page_number_per_page_and_headers_name_the_current_chapter(book: Book) -> None:
    current = None
    for number, page in enumerate(book.pdf_pages[1:-1], start=2):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        assert sum(line == str(number) for line in lines) == 1, f"page {number}: page number not printed once"
        assert not re.match(rf"^{number}\s|.*\s{number}$", lines[0]), f"page {number}: number in the header"
        if not HEADER.match(lines[0]) or lines[0] in UNNUMBERED:
            current = lines[0]  # a chapter starts here (or an unnumbered one goes on)
        elif lines[0] != "Contents" and current:
            title = re.sub(r"^(\d+|[A-Z])\.\s+", "", current)
            assert title.split()[0] in lines[0], f"page {number}: header {lines[0]!r} in chapter {current!r}"
            if current == "References":
                assert lines[0] == "References", f"page {number}: References headed {lines[0]!r}"


def test_chapters_open_with_an_answer(book: Book) -> None:
    for title in ("1. ", "2. ", "3. "):
        page = next(p for p in book.pdf_pages if p.strip().startswith(title))
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        assert any(line.startswith("Answer.") for line in lines[:4]), f"chapter {title}opens with {lines[:4]}"


def test_rendered_answers_are_at_most_150_words(book: Book) -> None:
    """As printed, with every value filled in (a value may be several words)."""
    found = {}
    for soup in book.pages.values():
        for answer in ANSWERS:
            div = soup.find(id=answer)
            if div is not None:
                div = BeautifulSoup(str(div), "html.parser")
                for math in div.find_all("math"):
                    math.replace_with("X")  # a formula is one word, not one per MathML token
                found[answer] = len(div.get_text(" ").split())
    assert set(found) == set(ANSWERS), f"answers missing from the HTML: {set(ANSWERS) - set(found)}"
    long = {answer: n for answer, n in found.items() if n > MAX_ANSWER_WORDS}
    assert not long, f"answers over {MAX_ANSWER_WORDS} words as printed: {long}"


def pdf_image_dpi(pdf: Path) -> list[tuple[int, int]]:
    """(page, horizontal ppi) of every raster image in the PDF (soft masks left out)."""
    out = subprocess.run(["pdfimages", "-list", str(pdf)], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()[2:] if line.strip()]
    return [(int(r[0]), int(r[12])) for r in rows if r[2] == "image"]


def test_pdf_figures_are_sharp_in_print(book: Book) -> None:
    coarse = [(page, ppi) for page, ppi in pdf_image_dpi(next(book.root.glob("*.pdf"))) if ppi < PRINT_DPI - 5]
    assert not coarse, f"images under {PRINT_DPI} dpi in print (page, ppi): {coarse}"
