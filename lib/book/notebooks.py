"""Export the book's chapters to executed Jupyter notebooks, without Quarto.

Quarto refuses ``--to ipynb`` inside a book project, and is not installable everywhere, so chapters
are converted here: each ```{python} block becomes a code cell, prose becomes Markdown with Quarto-only
markup made readable (inline values substituted after execution, cross-references numbered as Quarto
numbers them, captions under outputs). Notebooks execute with nbclient in the repository root, as Quarto
does with ``execute-dir: project``, against the frozen artifacts in ``results/``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import string
import sys
import time
import unicodedata
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lib.core.paths import REPO_ROOT
from lib.core.artifacts import atomic_path

CODE_BLOCK = re.compile(r"^```\{python\}[ \t]*\n(.*?)^```[ \t]*$\n?", re.M | re.S)
INLINE = re.compile(r"`\{python\}\s+([^`]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(\{[^}]*\})?\s*$")
SECTION_ID = re.compile(r"#(sec-[A-Za-z0-9_-]+)")
XREF = re.compile(r"@((?:fig|tbl|sec|eq)-[A-Za-z0-9_-]*[A-Za-z0-9])")
DIV_FENCE = re.compile(r"^:::+.*$")
HTML_ONLY = re.compile(r'^(:::+)\s*\{\.content-visible when-format="html"\}\s*\n.*?^\1\s*$\n?', re.M | re.S)
EQ_LABEL = re.compile(r"\$\$\s*\{#(eq-[A-Za-z0-9_-]+)\}")
OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*)$")
KINDS = {"fig": "Figure", "tbl": "Table", "sec": "Section", "eq": "Equation"}
SETUP_SOURCE = '''# Setup: run from the repository root (as the book does) so `lib` and `results/` are found.
import os, pathlib, sys
_root = next(p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if (p / "lib" / "__init__.py").is_file())
os.chdir(_root)
sys.path.insert(0, str(_root))'''

BIB_ENTRY = re.compile(r"@\w+\{([^,\s]+),(.*?)\n\}", re.S)
BIB_FIELD = re.compile(r"(\w+)\s*=\s*\{(.*?)\}\s*,?\s*$", re.M)
CITE_GROUP = re.compile(r"\[((?:-?@[\w:.-]+\s*;?\s*)+)\]")
CITE_BARE = re.compile(r"(?<![\w@\[])@([\w:.-]*\w)")
TEX_ACCENTS = {'\\"': "\u0308", "\\'": "\u0301", "\\`": "\u0300", "\\^": "\u0302", "\\~": "\u0303"}


def _plain_tex(value: str) -> str:
    """A BibTeX field as text: {\\"o} -> ö, braces dropped."""
    for command, combining in TEX_ACCENTS.items():
        value = re.sub(re.escape("{" + command) + r"(\w)\}|" + re.escape(command) + r"\{?(\w)\}?",
                       lambda m: (m.group(1) or m.group(2)) + combining, value)
    return unicodedata.normalize("NFC", re.sub(r"[{}]", "", value))


def read_bibliography(path: Path = REPO_ROOT / "references.bib") -> dict[str, dict[str, str]]:
    """Fields of each BibTeX entry, braces stripped (enough for author-year citations)."""
    if not path.is_file():
        return {}
    return {key: {name.lower(): _plain_tex(value) for name, value in BIB_FIELD.findall(body)}
            for key, body in BIB_ENTRY.findall(path.read_text())}


def _authors_short(entry: dict[str, str]) -> str:
    names = [n.strip() for n in entry.get("author", "Anonymous").split(" and ")]
    last = [n.split(",")[0].strip() if "," in n else n.split()[-1] for n in names]
    return " and ".join(last) if len(last) <= 2 else f"{last[0]} et al."


def cite_keys(group: str) -> list[str]:
    """The keys of a citation group's text (``@a; -@b``)."""
    return [k.strip().lstrip("-@") for k in group.split(";") if k.strip()]


def render_citations(text: str, bibliography: dict[str, dict[str, str]]) -> str:
    """Pandoc citations to author-year text: [@a; @b] -> (A 2009; B 2016), @a -> A (2009)."""
    def group(match: re.Match) -> str:
        keys = cite_keys(match.group(1))
        if not all(k in bibliography for k in keys):
            return match.group(0)
        return "(" + "; ".join(f"{_authors_short(bibliography[k])} {bibliography[k].get('year', '')}"
                               for k in keys) + ")"

    def bare(match: re.Match) -> str:
        entry = bibliography.get(match.group(1))
        return f"{_authors_short(entry)} ({entry.get('year', '')})" if entry else match.group(0)

    return CITE_BARE.sub(bare, CITE_GROUP.sub(group, text))


def bibliography_markdown(bibliography: dict[str, dict[str, str]]) -> str:
    """The reference list, sorted by first author."""
    lines = []
    for key, entry in sorted(bibliography.items(), key=lambda kv: kv[1].get("author", "")):
        venue = entry.get("journal") or entry.get("booktitle") or entry.get("institution") \
            or entry.get("howpublished", "")
        doi = f" doi:{entry['doi']}" if entry.get("doi") else ""
        authors = [" ".join(reversed(n.split(", ", 1))) for n in entry.get("author", "").split(" and ")]
        authors = authors[:6] + ["et al."] if len(authors) > 7 else authors
        lines.append(f"- {', '.join(authors)} ({entry.get('year', '')}). {entry.get('title', '')}. "
                     f"*{venue}*.{doi}")
    return "\n".join(lines)


def book_chapters(root: Path = REPO_ROOT) -> list[Path]:
    """Chapter files, then appendices, in the order ``_quarto.yml`` lists them."""
    book = yaml.safe_load((root / "_quarto.yml").read_text())["book"]
    return [root / entry for entry in [*book["chapters"], *book.get("appendices", [])]]


def book_numbers() -> tuple[list[Path], dict[str, str]]:
    """The book's chapters and the numbers of their labels (appendices lettered)."""
    appendices = yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())["book"].get("appendices", [])
    paths = book_chapters()
    return paths, label_numbers(paths, {REPO_ROOT / entry for entry in appendices})


def code_options(code: str) -> dict[str, str]:
    """A code block's ``#| name: value`` options."""
    return {m.group(1): m.group(2).strip() for m in map(OPTION.match, code.splitlines()) if m}


def label_numbers(paths: list[Path], appendices: set[Path] = frozenset()) -> dict[str, str]:
    """Number every label as Quarto does: 'Figure 1.2', 'Section 3.1', 'Equation (3.1)';
    appendices are lettered ('Table A.1')."""
    numbers: dict[str, str] = {}
    chapters, letters = itertools.count(1), iter(string.ascii_uppercase)
    for path in paths:
        text = path.read_text()
        parts = CODE_BLOCK.split(text)  # prose, code, prose, ..., prose
        first = next((h for h in map(HEADING.match, text.splitlines()) if h and len(h.group(1)) == 1), None)
        unnumbered = first and ".unnumbered" in (first.group(3) or "")
        prefix = None if unnumbered else next(letters) if path in appendices else next(chapters)
        counts = {"fig": 0, "tbl": 0, "eq": 0}
        sections = [0] * 6

        def count(kind: str) -> str:
            counts[kind] += 1
            return f"{prefix}.{counts[kind]}" if prefix else str(counts[kind])

        for i, part in enumerate(parts):
            if i % 2:
                label = code_options(part).get("label", "")
                kind = label.split("-", 1)[0]
                if kind in counts:
                    numbers[label] = f"{KINDS[kind]} {count(kind)}"
                continue
            for line in part.splitlines():
                heading = HEADING.match(line)
                ident = SECTION_ID.search(heading.group(3) or "") if heading else None
                if heading:
                    level = len(heading.group(1))
                    sections[level - 1] += 1
                    sections[level:] = [0] * (6 - level)
                if ident and prefix:
                    dotted = ".".join(str(n) for n in [prefix, *sections[1:level]])
                    top = "Appendix" if path in appendices else "Chapter"
                    numbers[ident.group(1)] = f"{top} {prefix}" if level == 1 else f"Section {dotted}"
                elif ident:
                    numbers[ident.group(1)] = heading.group(2)
                for label in EQ_LABEL.findall(line):
                    numbers[label] = f"Equation ({count('eq')})"
    return numbers


def _xrefs(text: str, numbers: dict[str, str]) -> str:
    return XREF.sub(lambda m: numbers.get(m.group(1), m.group(1)), text)


def _readable_markdown(text: str, numbers: dict[str, str]) -> str:
    """Turn Quarto-only markup into plain Markdown a notebook shows well."""
    out = []
    bibliography = read_bibliography()
    for line in text.splitlines():
        if DIV_FENCE.match(line):
            if "{#refs}" in line:
                out.append(bibliography_markdown(bibliography))
            continue
        heading = HEADING.match(line)
        if heading and heading.group(3):
            ident = SECTION_ID.search(heading.group(3))
            title = heading.group(2)
            number = numbers.get(ident.group(1), "") if ident else ""
            if number.startswith(("Chapter ", "Appendix ", "Section ")):
                title = f"{number.split()[1]}  {title}"
            line = f"{heading.group(1)} {title}"
        # The label closes the display: its number goes inside it, where Jupyter's MathJax reads \tag.
        line = EQ_LABEL.sub(
            lambda m: f"\\tag{{{numbers.get(m.group(1), m.group(1)).split('(')[-1].rstrip(')')}}} $$", line)
        out.append(render_citations(_xrefs(line, numbers), bibliography))
    return "\n".join(out).strip("\n")


def _caption_cell(options: dict[str, str], numbers: dict[str, str]):
    caption = options.get("fig-cap") or options.get("tbl-cap")
    if not caption:
        return None
    caption = str(yaml.safe_load(caption.strip()))  # a quoted option is YAML: "\\star" is \star
    number = numbers.get(options.get("label", ""), "")
    return new_markdown_cell(f"*{number}: {_readable_markdown(caption, numbers)}*" if number else f"*{caption}*")


def drop_html_only(text: str) -> str:
    """Leave out ``::: {.content-visible when-format="html"}`` blocks (the interactive widgets):
    notebooks keep the static tables and figures, as the PDF does."""
    return HTML_ONLY.sub("", text)


def prose_cells(source: str, markdown: str) -> list:
    """``markdown`` as a cell, preceded (if ``source`` has inline ``{python}`` code) by the helper cell
    whose printed values ``_substitute_inline_values`` puts in their place after execution."""
    expressions = INLINE.findall(source)
    if not expressions:
        return [new_markdown_cell(markdown)]
    code = "import json as _json\nprint(_json.dumps([str(_v) for _v in (\n" + "".join(
        f"    {expr.strip()},\n" for expr in expressions) + ")]))"
    return [new_code_cell(code, metadata={"tags": ["inline-values"]}), new_markdown_cell(markdown)]


def new_book_notebook(cells: list, source: str) -> nbformat.NotebookNode:
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["source"] = source
    return notebook


def qmd_to_notebook(path: Path, numbers: dict[str, str]) -> nbformat.NotebookNode:
    """Cells of one chapter; markdown cells with inline code get a helper cell before them."""
    text = drop_html_only(path.read_text())
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[1]  # front matter: Quarto-only settings
    cells = [new_code_cell(SETUP_SOURCE, metadata={"tags": ["setup"]})]
    for i, part in enumerate(CODE_BLOCK.split(text)):  # prose, code, prose, ..., prose
        if i % 2 == 0:
            prose = part.strip("\n")
            if prose.strip():
                cells.extend(prose_cells(prose, _readable_markdown(prose, numbers)))
            continue
        options = code_options(part)
        # A listing (``eval: false``) is shown, not run: nbclient skips cells tagged skip-execution.
        skip = {"tags": ["skip-execution"]} if options.get("eval", "").lower() == "false" else {}
        cells.append(new_code_cell(part.removesuffix("\n"), metadata=skip))
        caption = _caption_cell(options, numbers)
        if caption is not None:
            cells.append(caption)
    return new_book_notebook(cells, str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path))


def _substitute_inline_values(notebook: nbformat.NotebookNode) -> None:
    """Replace each `{python} expr` with the value its helper cell printed, then drop the helper."""
    kept = []
    pending: list[str] | None = None
    for cell in notebook.cells:
        if "inline-values" in cell.metadata.get("tags", []):
            pending = json.loads(_stdout(cell))
            continue
        if cell.cell_type == "markdown" and pending is not None:
            values = iter(pending)
            cell.source = INLINE.sub(lambda _m: next(values), cell.source)
            pending = None
        kept.append(cell)
    notebook.cells = kept


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def _readable_outputs(notebook: nbformat.NotebookNode, numbers: dict[str, str]) -> None:
    """Markdown that cells print (tables with links to sections) gets the same treatment as prose."""
    bibliography = read_bibliography()
    for cell in notebook.cells:
        if cell.cell_type == "code" and re.search(r"^#\|\s*output:\s*asis\s*$", cell.source, re.M):
            # Quarto reads what such a cell prints as Markdown; show it as Markdown here too.
            printed = _stdout(cell)
            cell.outputs = [o for o in cell.outputs if o.get("name") != "stdout"] + ([nbformat.v4.new_output(
                "display_data", data={"text/markdown": _readable_markdown(printed, numbers)})]
                if printed.strip() else [])
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = render_citations(_xrefs(data["text/markdown"], numbers), bibliography)


def execute(notebook: nbformat.NotebookNode, timeout: int = 900,
            numbers: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel from this Python's environment; raise on any cell error."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernel's log level: its only message here is the same "running over TCP without
    # encryption" warning per chapter, about a loopback connection to our own process.
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   extra_arguments=["--IPKernelApp.log_level=ERROR"],
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    _substitute_inline_values(notebook)
    _readable_outputs(notebook, numbers or {})
    return notebook


def write_notebook(notebook: nbformat.NotebookNode, path: Path) -> Path:
    with atomic_path(path) as tmp:
        nbformat.write(notebook, str(tmp))
    return path


def export(out_dir: Path, only: str | None = None, timeout: int = 900) -> list[tuple[Path, float]]:
    """Convert and execute chapters; write ``<chapter>.ipynb`` and ``submission.ipynb`` (the short one a
    grader reads: ``lib.book.submission``)."""
    paths, numbers = book_numbers()
    selected = [p for p in paths if only is None or only in p.stem]
    if not selected:
        raise SystemExit(f"no chapter matches {only!r}; chapters: {[p.stem for p in paths]}")
    written = []
    for path in selected:
        start = time.perf_counter()
        notebook = execute(qmd_to_notebook(path, numbers), timeout, numbers)
        written.append((write_notebook(notebook, out_dir / f"{path.stem}.ipynb"), time.perf_counter() - start))
        print(f"executed {path.relative_to(REPO_ROOT)} in {written[-1][1]:.1f} s", flush=True)
    if only is None:
        from lib.book import submission  # it builds on this module

        start = time.perf_counter()
        written.append((submission.write(out_dir / "submission.ipynb", timeout), time.perf_counter() - start))
        print(f"built the submission notebook in {written[-1][1]:.1f} s", flush=True)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "notebooks",
                        help="output folder (default notebooks/)")
    parser.add_argument("--only", default=None, help="export only chapters whose file name contains this text "
                                                     "(no submission.ipynb then)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")


def run(args: argparse.Namespace) -> int:
    for path, _seconds in export(args.out, args.only, args.timeout):
        print(f"wrote {path}")
    return 0
