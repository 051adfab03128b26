"""Export the book's chapters to executed Jupyter notebooks, without Quarto.

Quarto refuses ``--to ipynb`` inside a book project, and is not installable
everywhere, so chapters are converted here: each ```{python} block becomes a
code cell, prose becomes Markdown with Quarto-only markup made readable
(inline ``{python} expr`` values substituted after execution, cross-references
numbered as Quarto numbers them, figure/table captions added under outputs).
Notebooks execute with nbclient in the repository root, as Quarto does with
``execute-dir: project``, against the frozen artifacts in ``results/``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from lib import REPO_ROOT
from lib.artifacts import atomic_path

CODE_OPEN = re.compile(r"^```\{python\}\s*$")
FENCE_CLOSE = re.compile(r"^```\s*$")
INLINE = re.compile(r"`\{python\}\s+([^`]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*(\{[^}]*\})?\s*$")
XREF = re.compile(r"@((?:fig|tbl|sec|eq)-[A-Za-z0-9_-]*[A-Za-z0-9])")
DIV_FENCE = re.compile(r"^:::+.*$")
EQ_LABEL = re.compile(r"\$\$\s*\{#(eq-[A-Za-z0-9_-]+)\}")
OPTION = re.compile(r"^#\|\s*([\w-]+)\s*:\s*(.*)$")
KINDS = {"fig": "Figure", "tbl": "Table", "sec": "Section", "eq": "Equation"}
SETUP_SOURCE = '''# Setup: run from the repository root (as the book does) so `lib` and `results/` are found.
import os, pathlib, sys
_root = next(p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if (p / "lib" / "__init__.py").is_file())
os.chdir(_root)
sys.path.insert(0, str(_root))'''


@dataclass
class Chapter:
    path: Path
    number: int | None  # None for unnumbered (the preface)
    cells: list = field(default_factory=list)


def book_chapters(root: Path = REPO_ROOT) -> list[Path]:
    """Chapter files in the order ``_quarto.yml`` lists them."""
    config = yaml.safe_load((root / "_quarto.yml").read_text())
    return [root / entry for entry in config["book"]["chapters"]]


def _is_unnumbered(text: str) -> bool:
    for line in text.splitlines():
        match = HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return ".unnumbered" in (match.group(3) or "")
    return False


def label_numbers(paths: list[Path]) -> dict[str, str]:
    """Number every label as Quarto does: 'Figure 1.2', 'Section 3.1', 'Equation 3.1'."""
    numbers: dict[str, str] = {}
    chapter = 0
    for path in paths:
        text = path.read_text()
        if _is_unnumbered(text):
            prefix = None
        else:
            chapter += 1
            prefix = chapter
        counts = {"fig": 0, "tbl": 0, "eq": 0}
        sections = [0] * 6
        in_code = False
        for line in text.splitlines():
            if CODE_OPEN.match(line):
                in_code = True
                continue
            if in_code and FENCE_CLOSE.match(line):
                in_code = False
                continue
            if in_code:
                option = OPTION.match(line)
                if option and option.group(1) == "label":
                    label = option.group(2).strip()
                    kind = label.split("-", 1)[0]
                    if kind in counts:
                        counts[kind] += 1
                        numbers[label] = f"{KINDS[kind]} {prefix}.{counts[kind]}" if prefix else f"{KINDS[kind]} {counts[kind]}"
                continue
            heading = HEADING.match(line)
            if heading:
                level = len(heading.group(1))
                sections[level - 1] += 1
                sections[level:] = [0] * (6 - level)
                ident = re.search(r"#(sec-[A-Za-z0-9_-]+)", heading.group(3) or "")
                if ident and prefix:
                    dotted = ".".join(str(n) for n in [prefix, *sections[1:level]])
                    numbers[ident.group(1)] = f"Chapter {prefix}" if level == 1 else f"Section {dotted}"
                elif ident:
                    numbers[ident.group(1)] = heading.group(2)
            for label in EQ_LABEL.findall(line):
                counts["eq"] += 1
                numbers[label] = f"Equation ({prefix}.{counts['eq']})" if prefix else f"Equation ({counts['eq']})"
    return numbers


def _readable_markdown(text: str, numbers: dict[str, str]) -> str:
    """Turn Quarto-only markup into plain Markdown a notebook shows well."""
    out = []
    for line in text.splitlines():
        if DIV_FENCE.match(line):
            continue
        heading = HEADING.match(line)
        if heading and heading.group(3):
            ident = re.search(r"#(sec-[A-Za-z0-9_-]+)", heading.group(3))
            title = heading.group(2)
            number = numbers.get(ident.group(1), "") if ident else ""
            if number.startswith("Chapter "):
                title = f"{number.split()[1]}  {title}"
            elif number.startswith("Section "):
                title = f"{number.split()[1]}  {title}"
            line = f"{heading.group(1)} {title}"
        line = EQ_LABEL.sub(lambda m: f"$$ \\tag{{{numbers.get(m.group(1), m.group(1)).split('(')[-1].rstrip(')')}}}", line)
        line = XREF.sub(lambda m: numbers.get(m.group(1), m.group(1)), line)
        out.append(line)
    return "\n".join(out).strip("\n")


def _caption_cell(options: dict[str, str], numbers: dict[str, str]):
    label = options.get("label", "")
    caption = options.get("fig-cap") or options.get("tbl-cap")
    if not caption:
        return None
    caption = caption.strip().strip('"').strip("'")
    number = numbers.get(label, "")
    return new_markdown_cell(f"*{number}: {_readable_markdown(caption, numbers)}*" if number else f"*{caption}*")


def qmd_to_notebook(path: Path, numbers: dict[str, str]) -> nbformat.NotebookNode:
    """Cells of one chapter; markdown cells with inline code get a helper cell before them."""
    text = path.read_text()
    if text.startswith("---\n"):
        text = text.split("\n---\n", 1)[1]  # front matter: Quarto-only settings
    cells = [new_code_cell(SETUP_SOURCE, metadata={"tags": ["setup"]})]
    prose: list[str] = []

    def flush_prose() -> None:
        block = "\n".join(prose).strip("\n")
        prose.clear()
        if not block.strip():
            return
        expressions = INLINE.findall(block)
        if expressions:
            source = "import json as _json\nprint(_json.dumps([str(_v) for _v in (\n" + "".join(
                f"    {expr.strip()},\n" for expr in expressions) + ")]))"
            cells.append(new_code_cell(source, metadata={"tags": ["inline-values"]}))
        cells.append(new_markdown_cell(_readable_markdown(block, numbers)))

    lines = iter(text.splitlines())
    for line in lines:
        if not CODE_OPEN.match(line):
            prose.append(line)
            continue
        flush_prose()
        code, options = [], {}
        for code_line in lines:
            if FENCE_CLOSE.match(code_line):
                break
            option = OPTION.match(code_line)
            if option:
                options[option.group(1)] = option.group(2).strip()
            code.append(code_line)
        cells.append(new_code_cell("\n".join(code)))
        caption = _caption_cell(options, numbers)
        if caption is not None:
            cells.append(caption)
    flush_prose()
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["source"] = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)
    return notebook


def _substitute_inline_values(notebook: nbformat.NotebookNode) -> None:
    """Replace each `{python} expr` with the value its helper cell printed, then drop the helper."""
    cells = notebook.cells
    kept = []
    pending: list[str] | None = None
    for cell in cells:
        if "inline-values" in cell.metadata.get("tags", []):
            printed = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")
            pending = json.loads(printed)
            continue
        if cell.cell_type == "markdown" and pending is not None:
            values = iter(pending)
            cell.source = INLINE.sub(lambda _m: next(values), cell.source)
            pending = None
        kept.append(cell)
    notebook.cells = kept


def execute(notebook: nbformat.NotebookNode, timeout: int = 900) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel from this Python's environment; raise on any cell error."""
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO_ROOT)}})
    client.execute()
    _substitute_inline_values(notebook)
    return notebook


def write_notebook(notebook: nbformat.NotebookNode, path: Path) -> Path:
    with atomic_path(path) as tmp:
        nbformat.write(notebook, str(tmp))
    return path


def combine(notebooks: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    """One notebook with every chapter in order; a single setup cell at the top."""
    cells = [notebooks[0].cells[0]]
    for notebook in notebooks:
        cells.extend(cell for cell in notebook.cells if "setup" not in cell.metadata.get("tags", []))
    combined = new_notebook(cells=cells, metadata=notebooks[0].metadata)
    combined.metadata["source"] = "all chapters of the book, in order"
    return combined


def export(out_dir: Path, only: str | None = None, timeout: int = 900) -> list[tuple[Path, float]]:
    """Convert and execute chapters; write ``<chapter>.ipynb`` and ``submission.ipynb``."""
    paths = book_chapters()
    numbers = label_numbers(paths)
    selected = [p for p in paths if only is None or only in p.stem]
    if not selected:
        raise SystemExit(f"no chapter matches {only!r}; chapters: {[p.stem for p in paths]}")
    executed, written = [], []
    for path in selected:
        start = time.perf_counter()
        notebook = execute(qmd_to_notebook(path, numbers), timeout)
        executed.append(notebook)
        written.append((write_notebook(notebook, out_dir / f"{path.stem}.ipynb"), time.perf_counter() - start))
        print(f"executed {path.relative_to(REPO_ROOT)} in {written[-1][1]:.1f} s", flush=True)
    if only is None:
        written.append((write_notebook(combine(executed), out_dir / "submission.ipynb"), 0.0))
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "notebooks", help="output folder (default notebooks/)")
    parser.add_argument("--only", default=None, help="export only chapters whose file name contains this text "
                                                     "(no submission.ipynb then)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")


def run(args: argparse.Namespace) -> int:
    for path, _seconds in export(args.out, args.only, args.timeout):
        print(f"wrote {path}")
    return 0
