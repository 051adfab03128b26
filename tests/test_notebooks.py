"""Chapters convert to notebooks without Quarto, and every chapter executes."""
from __future__ import annotations

from pathlib import Path

import inspect

import nbformat
import pytest
from nbclient.exceptions import CellExecutionError

from lib.core.paths import REPO_ROOT
from lib.book.notebooks import book_chapters, execute, export, label_numbers, qmd_to_notebook
from lib.cifar.linear import LinearProbe, penalised_loss, training_step

# The assignment asks for the logistic regression as an nn.Module with nn.Linear: chapter 1 shows
# the library's own class and one training step as listings (echo: true, eval: false).
LISTINGS = (LinearProbe, penalised_loss, training_step)

SAMPLE = '''# Sample chapter {#sec-sample}

```{python}
#| echo: false
answer = 6 * 7
```

## Details {#sec-details}

The answer is `{python} answer` and twice that is `{python} f"{2 * answer}"`; see @fig-line and @sec-details.

$$ c = 1 $$ {#eq-cost}

```{python}
#| label: fig-line
#| fig-cap: "A line, as in @eq-cost."
import matplotlib.pyplot as plt
plt.plot([0, 1])
plt.show()
```

::: {.callout-note}
A note.
:::
'''


def _sample(tmp_path: Path) -> Path:
    path = tmp_path / "01-sample.qmd"
    path.write_text(SAMPLE)
    return path


def test_labels_are_numbered_like_quarto(tmp_path: Path) -> None:
    numbers = label_numbers([_sample(tmp_path)])
    assert numbers == {"sec-sample": "Chapter 1", "sec-details": "Section 1.1",
                       "fig-line": "Figure 1.1", "eq-cost": "Equation (1.1)"}


def test_quarto_markup_becomes_readable_and_inline_values_are_filled(tmp_path: Path) -> None:
    path = _sample(tmp_path)
    notebook = execute(qmd_to_notebook(path, label_numbers([path])), timeout=120)
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    assert "The answer is 42 and twice that is 84; see Figure 1.1 and Section 1.1." in markdown
    assert "{python}" not in markdown and ":::" not in markdown and "{#" not in markdown
    assert "*Figure 1.1: A line, as in Equation (1.1).*" in markdown
    assert "$$ c = 1 \\tag{1.1} $$" in markdown  # inside the display, where MathJax reads it
    figure_cell = next(c for c in notebook.cells if c.cell_type == "code" and "fig-line" in c.source)
    assert any("image/png" in out.get("data", {}) for out in figure_cell.outputs)


def test_a_failing_cell_fails_the_export(tmp_path: Path) -> None:
    path = tmp_path / "bad.qmd"
    path.write_text("# Bad\n\n```{python}\nraise RuntimeError('boom')\n```\n")
    with pytest.raises(CellExecutionError, match="boom"):
        execute(qmd_to_notebook(path, {}), timeout=60)


def test_every_chapter_listed_in_the_book_exists() -> None:
    chapters = book_chapters()
    assert chapters[0].name == "index.qmd"
    assert all(path.is_file() for path in chapters)


def test_every_chapter_executes_and_the_submission_is_written(tmp_path: Path) -> None:
    written = export(tmp_path, timeout=900)
    names = [path.name for path, _ in written]
    assert names == [p.stem + ".ipynb" for p in book_chapters()] + ["submission.ipynb"]
    for name in names:
        for cell in nbformat.read(tmp_path / name, as_version=4).cells:
            if cell.cell_type == "code":
                assert not [o for o in cell.outputs if o.output_type == "error"], name
    code = "\n".join(c.source for c in nbformat.read(tmp_path / "submission.ipynb", as_version=4).cells
                     if c.cell_type == "code")
    for listing in LISTINGS:
        assert inspect.getsource(listing) in code, f"submission.ipynb lacks the listing of {listing.__name__}"


def test_printed_markdown_of_asis_cells_becomes_markdown(tmp_path: Path) -> None:
    path = tmp_path / "asis.qmd"
    path.write_text("# Asis {#sec-asis}\n\n```{python}\n#| output: asis\n"
                    "print('::: {.callout-note}\\nSee @sec-asis.\\n:::')\n```\n")
    notebook = execute(qmd_to_notebook(path, label_numbers([path])), timeout=60,
                       numbers=label_numbers([path]))
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    markdown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert markdown == ["See Chapter 1."]


def test_chapter_listings_are_the_library_code_and_are_shown_not_run() -> None:
    """The listings in chapter 1 are character for character the code that ran; in the notebook they
    are code cells nbclient skips (tagged skip-execution), in the PDF code shown by echo: true."""
    path = REPO_ROOT / "chapters" / "01-feature-extraction.qmd"
    notebook = qmd_to_notebook(path, label_numbers([path]))
    for listing in LISTINGS:
        source = inspect.getsource(listing).rstrip("\n")
        cells = [c for c in notebook.cells if c.cell_type == "code" and source in c.source]
        assert len(cells) == 1, f"chapter 1 does not show {listing.__name__} exactly as lib/cifar/linear.py has it"
        assert "#| echo: true" in cells[0].source and "skip-execution" in cells[0].metadata.get("tags", [])
