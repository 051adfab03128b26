"""The submission notebook: one short section per assignment question, built from the book's sources.

Each section quotes the question, then the chapter's own answer paragraph (its ``::: {#ans-…} .answer``
block, so book and notebook cannot disagree), the figure or table that shows it, and the code that
answers it: the library's source as it runs, or the chapter's executed listing. The chapters' drawing
cells run while building and only their outputs are kept, so what is left to run is the setup and the code.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell

from lib.book import notebooks as nb
from lib.core.paths import REPO_ROOT

ANSWER_DIV = re.compile(r"^::: \{#(ans-[\w-]+) \.answer\}\n(.*?)^:::\s*$", re.M | re.S)
BOOK_HTML = "../_book/{page}#{section}"  # relative to notebooks/, where the notebook is written

SETUP = '''# Setup: work from the repository (its lib/ and results/); the listings below run as the library has them.
from __future__ import annotations
import os, pathlib, sys
root = next((p for p in [pathlib.Path.cwd(), *pathlib.Path.cwd().parents] if (p / "lib" / "__init__.py").is_file()), None)
if root is None:
    raise RuntimeError("open this notebook inside the report's repository (notebooks/submission.ipynb), with requirements.txt installed")
os.chdir(root), sys.path.insert(0, str(root))
from pathlib import Path
import numpy as np, pandas as pd, scipy.sparse as sp, torch
from torch import Tensor, nn
from torch.optim import LBFGS
from lib.core.errors import ConfigError
from lib.movies.config import CONFIG, OPTIMIZERS'''


INTRO = (
    "The answers to the assignment, one section per question in its order: the question, the answer, the "
    "figure or table that shows it, then the code that computes it, in PyTorch [@paszke2019pytorch] and "
    "torchvision [@marcel2010torchvision]. Every number is read from the recorded runs in `results/`; the answers "
    "are the paragraphs of the book ([`_book/index.html`](../_book/index.html), made by `quarto render`), which "
    "gives the longer discussion, every choice and its checks. The CIFAR-10 network is EfficientNet-Lite0, an "
    "ImageNet-pretrained stand-in for the ResNet18 the question names, whose weights could not be downloaded "
    "where the runs were made. *Restart & Run All* runs the setup and the code below in seconds on 2 CPU "
    "cores, from `results/` alone: no dataset, no GPU.")


@dataclass(frozen=True)
class Question:
    number: str                 # the assignment's numbering
    title: str
    asks: str                   # the question, as the assignment puts it
    chapter: str                # the chapter that answers it (file stem)
    answer: str                 # the id of its answer paragraph in that chapter
    section: str                # the book section with the longer discussion
    shows: tuple[str, ...] = () # labels of the chapter's figures and tables drawn after the answer
    library: tuple[str, ...] = ()   # "module:name" whose source is the code that answers it
    listings: tuple[str, ...] = ()  # executed chapter listings, by the name they define


QUESTIONS: tuple[Question, ...] = (
    Question("1.1", "The data", "Describe the CIFAR-10 data and how it is prepared for the pretrained network.",
             "01-feature-extraction", "ans-1-1", "sec-features-setup",
             library=("lib.cifar.backbones:_build_resnet18",)),
    Question("1.2(a)", "Extracted features and a logistic regression",
             "Use an ImageNet-pretrained CNN (torchvision's ResNet18 by default) as a frozen feature extractor "
             "and train a multi-class logistic regression, written as an `nn.Module` with `nn.Linear`, on its "
             "features. Explain every choice and report the test performance.",
             "01-feature-extraction", "ans-1-2a", "sec-features-results",
             shows=("fig-features-confusion",),
             library=("lib.cifar.linear:LinearProbe", "lib.cifar.linear:penalised_loss",
                      "lib.cifar.linear:training_step")),
    Question("1.2(b)", "Top-5 right and wrong predictions per class",
             "Show the top-5 correct and the top-5 incorrect predictions in each class, as images with labels.",
             "01-feature-extraction", "ans-1-2b", "sec-features-gallery",
             shows=("fig-features-gallery",), library=("lib.cifar.gallery:select_gallery",)),
    Question("1.3", "Finetuning, compared with the extracted features",
             "Finetune the pretrained network, repeat (a) and (b) for it, and compare finetuning with the "
             "extracted features.",
             "02-finetuning", "ans-1-3", "sec-finetune",
             shows=("tbl-finetune-compare", "fig-finetune-gallery"),
             library=("lib.cifar.finetune.recipe:FinetuneNet", "lib.cifar.finetune.recipe:build_optimizer",
                      "lib.cifar.finetune.train:train_one_epoch")),
    Question("2.1", "Data preparation",
             "From MovieLens (ml-latest-small), build X where X[i, j] is the number of users who liked both "
             "movies i and j.",
             "03-movie-embeddings", "ans-2-1", "sec-movies-data",
             library=("lib.movies.likes:likes_matrix", "lib.movies.likes:cooccurrence")),
    Question("2.2", "The loss against the iteration",
             "Find vectors v minimising the sum over i ≠ j of (v_i · v_j − X[i, j])² by gradient descent in "
             "PyTorch; plot the loss against the iteration for several learning rates and optimisers.",
             "03-movie-embeddings", "ans-2-2", "sec-movies-optimisers",
             shows=("fig-curves",), listings=("cost_and_gradient",),
             library=("lib.movies.optimise:make_optimizer",)),
    Question("2.3", "Recommendations",
             "Give the top-10 recommendations (by title) for 'Apollo 13', 'Toy Story' and 'Home Alone', explain "
             "the strategy, and say whether and why the recommendations change with the learning rate or "
             "optimiser.",
             "03-movie-embeddings", "ans-2-3", "sec-movies-recommendations",
             shows=("tbl-apollo", "tbl-toy", "tbl-home"), listings=("recommend",)),
)


@dataclass(frozen=True)
class Cell:
    options: dict[str, str]
    source: str                 # without its ``#|`` option lines

    @property
    def defines(self) -> str | None:
        match = re.match(r"(?:def|class)\s+(\w+)", self.source)
        return match.group(1) if match else None


def code_cells(text: str) -> list[Cell]:
    """A chapter's ```{python} blocks, their ``#|`` options parsed off."""
    return [Cell(nb.code_options(block), "\n".join(line for line in block.rstrip("\n").splitlines()
                                                   if not nb.OPTION.match(line)).strip("\n"))
            for block in nb.CODE_BLOCK.findall(text)]


def answer_text(text: str, ident: str) -> str:
    found = dict(ANSWER_DIV.findall(text))
    if ident not in found:
        raise KeyError(f"no answer paragraph {{#{ident} .answer}} in the chapter")
    return found[ident].strip()


def library_source(target: str) -> str:
    module, name = target.split(":")
    return inspect.getsource(getattr(import_module(module), name)).rstrip()


def question_cells(q: Question, text: str, chapter_of: dict[str, str], numbers: dict[str, str]) -> list:
    def ref(match: re.Match) -> str:
        """Figures and tables shown here by number; everything else as a link to the book."""
        label = match.group(1)
        number = numbers.get(label, label)
        if label in q.shows or label not in chapter_of:
            return number
        return f"[{number} of the book]({BOOK_HTML.format(page=chapter_of[label], section=label)})"

    answer = nb.XREF.sub(ref, answer_text(text, q.answer))
    cells = [new_markdown_cell(f"## {q.number} {q.title}\n\n> **Question {q.number}.** {q.asks}"),
             *nb.prose_cells(answer, nb._readable_markdown(answer, numbers))]
    chapter_cells = code_cells(text)
    by_label = {cell.options.get("label"): cell for cell in chapter_cells}
    for label in q.shows:  # drawn while building, then kept as their output (see ``freeze_outputs``)
        options = by_label[label].options
        cells.append(new_code_cell(by_label[label].source, metadata={
            "shows": label, "alt": str(nb.yaml.safe_load(options.get("fig-alt", "''")))}))
        caption = nb._caption_cell(options, numbers)
        if caption is not None:
            cells.append(caption)
    by_name = {cell.defines: cell for cell in chapter_cells}
    code = [*(by_name[name].source for name in q.listings), *(library_source(t) for t in q.library)]
    if code:
        places = ", ".join(f"`{t.split(':')[1]}` in `{t.split(':')[0].replace('.', '/')}.py`" for t in q.library)
        origin = f"the library's source as it runs: {places}" if places else "as the chapter runs it"
        if q.listings and places:
            origin = f"the chapter's listing, checked against the library, then {origin}"
        cells.append(new_markdown_cell(f"**Code** ({origin}):"))
        cells.extend(new_code_cell(source) for source in code)
    more = BOOK_HTML.format(page=chapter_of[q.section], section=q.section)
    cells.append(new_markdown_cell(f"The longer discussion: [{numbers.get(q.section, q.section)} of the book]"
                                   f"({more})."))
    return cells


def freeze_outputs(notebook: nbformat.NotebookNode) -> None:
    """Replace each figure or table cell by what it drew (a Markdown image with an embedded PNG attachment
    and its alt text, or a Markdown table) and drop the chapters' loading cells: the notebook shows no
    plumbing, and *Run All* has only the setup and the code to run."""
    kept = []
    for cell in notebook.cells:
        label = cell.metadata.get("shows")
        if cell.metadata.get("drawing"):
            continue
        if not label:
            kept.append(cell)
            continue
        outputs = [o for o in cell.outputs if "data" in o]
        png = next((o.data["image/png"] for o in outputs if "image/png" in o.data), None)
        if png is not None:
            kept.append(new_markdown_cell(f"![{cell.metadata['alt']}](attachment:{label}.png)",
                                          attachments={f"{label}.png": {"image/png": png}}))
        else:
            kept.append(new_markdown_cell(next(o.data["text/markdown"] for o in outputs
                                               if "text/markdown" in o.data)))
    notebook.cells = kept


def run_all(notebook: nbformat.NotebookNode, timeout: int = 120) -> nbformat.NotebookNode:
    """Execute every code cell in one fresh kernel, as Jupyter's *Run All* does: no cell is skipped
    (nbclient skips cells tagged ``skip-execution``; Jupyter does not, so neither does this)."""
    NotebookClient(notebook, timeout=timeout, kernel_name="python3", skip_cells_with_tag="run-all-skips-nothing",
                   extra_arguments=["--IPKernelApp.log_level=ERROR"],
                   resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    return notebook


def build(timeout: int = 600) -> nbformat.NotebookNode:
    """The submission notebook, executed against ``results/``, inline values substituted."""
    paths, numbers = nb.book_numbers()
    labels = re.compile(r"(?:#\||\{#)\s*(?:label:\s*)?((?:fig|tbl|sec)-[\w-]+)")
    chapter_of = {label: path.relative_to(REPO_ROOT).with_suffix(".html").as_posix() for path in paths
                  for label in labels.findall(path.read_text())}
    title = nb.yaml.safe_load((REPO_ROOT / "_quarto.yml").read_text())["book"].get("title", "")
    bibliography = nb.read_bibliography()
    cells = [new_markdown_cell(f"# {title}\n\n" + nb.render_citations(INTRO, bibliography)),
             new_code_cell(SETUP, metadata={"tags": ["setup"]})]
    texts = {path.stem: nb.drop_html_only(path.read_text()) for path in paths}
    loaded = set()
    for q in QUESTIONS:
        text = texts[q.chapter]
        if q.chapter not in loaded:
            loaded.add(q.chapter)
            # The chapter's opening blocks that load what its prose and figures use (not what they print).
            cells.extend(new_code_cell(cell.source, metadata={"drawing": True})
                         for cell in code_cells(text.split("\n:::", 1)[0])
                         if "output" not in cell.options and "label" not in cell.options)
        cells.extend(question_cells(q, text, chapter_of, numbers))
    notebook = nb.new_book_notebook(cells, "lib/book/submission.py: the answers of chapters 1-3")
    nb.execute(notebook, timeout, numbers)
    freeze_outputs(notebook)
    run_all(notebook, timeout)  # as a grader's Restart & Run All: one kernel, counts 1..n
    raw = "\n".join([INTRO, *(answer_text(texts[q.chapter], q.answer) for q in QUESTIONS)])
    cited = [k for group in nb.CITE_GROUP.findall(raw) for k in nb.cite_keys(group)] + nb.CITE_BARE.findall(raw)
    references = {key: bibliography[key] for key in dict.fromkeys(cited) if key in bibliography}
    notebook.cells.append(new_markdown_cell("## References\n\n" + nb.bibliography_markdown(references)))
    return notebook


def write(path: Path, timeout: int = 600) -> Path:
    return nb.write_notebook(build(timeout), path)
