"""Prose quotes named values only: every inline `{python} …` is a name or an attribute of one.

Formatting and arithmetic belong in the chapter's ``lib.book`` module, where they are tested and
read as code; prose that digs into JSON or formats numbers inline hides mistakes from review.
"""
from __future__ import annotations

import ast
import dataclasses
import re

import pytest

from lib.book.notebooks import INLINE, book_chapters
from lib.core.paths import REPO_ROOT

CODE_BLOCK = re.compile(r"^```.*?^```", re.M | re.S)  # fenced cells and listings: not prose


def is_named_value(expression: str) -> bool:
    """True for ``v`` or ``v.name`` (or ``v.a.b``): a Name, or Attribute access on one."""
    try:
        node = ast.parse(expression.strip(), mode="eval").body
    except SyntaxError:
        return False
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name)


def inline_expressions(text: str) -> list[str]:
    """The prose's inline expressions, as the notebook export finds them."""
    return [e.strip() for e in INLINE.findall(CODE_BLOCK.sub("", text))]


def offending_expressions(text: str) -> list[str]:
    """The inline expressions of a .qmd text that are more than a named value."""
    return [e for e in inline_expressions(text) if not is_named_value(e)]


def test_chapters_quote_named_values_only() -> None:
    offending = {str(path.relative_to(REPO_ROOT)): bad for path in book_chapters()
                 if (bad := offending_expressions(path.read_text()))}
    assert not offending, "inline {python} expressions that are not named values: " + "; ".join(
        f"{name}: {', '.join(repr(e) for e in bad)}" for name, bad in offending.items())


@pytest.mark.parametrize("expression", ["v.a['b']", "v.a - 1", "pct(v.a)", 'f"{v.a:.2f}"', "v.a % 2",
                                        "'{:g}'.format(v.a)", "len(v.a)", "v.a.b()", "-v.a", "v.a if v else 1"])
def test_the_check_rejects_computation_in_prose(expression: str) -> None:
    assert offending_expressions(f"text `{{python}} {expression}` more") == [expression]


@pytest.mark.parametrize("expression", ["v", "v.test_acc", "o.best.name"])
def test_the_check_accepts_named_values(expression: str) -> None:
    assert offending_expressions(f"text `{{python}} {expression}` more") == []


def test_code_cells_are_not_inline_expressions() -> None:
    assert inline_expressions("```{python}\nx = f(1)\n```\nsee `{python} v.a` and `{python} v.b`\n") == ["v.a", "v.b"]


def test_every_chapter_is_checked() -> None:
    counts = {path.name: len(inline_expressions(path.read_text())) for path in book_chapters()}
    assert counts["03-movie-embeddings.qmd"] > 50 and counts["92-further-results.qmd"] > 50 and counts["index.qmd"] > 0


def _chapter_values() -> dict[str, object]:
    """Each chapter module's values, built as the chapters build them."""
    from lib.book import (feature_extraction, finetune_gain, finetuning, movie_baselines, movie_embeddings,
                          movie_optimisers, movie_scale, performance, preface)

    movies = movie_embeddings.data()
    return {"preface": preface.values(), "feature_extraction": feature_extraction.values(feature_extraction.data()),
            "finetuning": finetuning.values(finetuning.data()),
            "finetune_gain": finetune_gain.calibration_values(finetune_gain.calibration_data()),
            "movie_embeddings": movie_embeddings.values(movies), "movie_optimisers": movie_optimisers.values(movies.o),
            "movie_baselines": movie_baselines.values(movie_baselines.data()),
            "performance": performance.values(performance.data()), "movie_scale": movie_scale.values(movie_scale.data())}


def test_chapter_values_are_frozen_text() -> None:
    """What prose quotes is fixed once built and already formatted: a frozen dataclass of strings."""
    for name, values in _chapter_values().items():
        assert dataclasses.is_dataclass(values) and type(values).__dataclass_params__.frozen, name
        not_text = [f.name for f in dataclasses.fields(values) if not isinstance(getattr(values, f.name), str)]
        assert not not_text, f"{name}: {not_text}"
