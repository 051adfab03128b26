"""The committed ``_freeze/`` is what executing the chapters against ``results/`` gives today.

A fresh clone renders from ``_freeze/`` without running any Python (tests/test_render.py), so a
frozen output that no longer matches the code or the artifacts would be shown to readers
silently. Here every chapter is executed again, in a copy, and its frozen Markdown (all numbers,
tables and text) and figures are compared with the committed ones.
"""
from __future__ import annotations

import difflib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import copy_project
from lib.core.paths import REPO_ROOT
from lib.book.quarto import render

COMMITTED = REPO_ROOT / "_freeze"


def _frozen_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
            and "site_libs" not in p.parts}


RANDOM_CELL_ID = re.compile(r"\{#[0-9a-f]{8} \.cell")


def _markdown(path: Path) -> str:
    """The frozen Markdown, less the random ids Jupyter gives unlabelled cells on each run."""
    return RANDOM_CELL_ID.sub("{.cell", json.loads(path.read_text())["result"]["markdown"])


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def executed_freeze(quarto: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("execute") / "book")
    shutil.rmtree(project / "_freeze", ignore_errors=True)
    result = render(project, sys.executable)
    assert result.returncode == 0, f"executing the book failed:\n{result.log[-3000:]}"
    print(f"\nrender with every chapter executed (HTML + PDF): {result.seconds:.1f} s")
    return project / "_freeze"


def test_frozen_markdown_matches_execution(executed_freeze: Path) -> None:
    committed, fresh = _frozen_files(COMMITTED), _frozen_files(executed_freeze)
    assert committed == fresh, (f"_freeze/ files differ: only committed {sorted(committed - fresh)}, "
                                f"only executed {sorted(fresh - committed)}; run `make freeze`")
    for name in sorted(n for n in committed if n.endswith(".json")):
        old, new = _markdown(COMMITTED / name), _markdown(executed_freeze / name)
        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), "committed", "executed", n=0,
                                         lineterm=""))
        assert not diff, f"{name} is stale (run `make freeze`):\n" + "\n".join(diff[:30])


def test_frozen_figures_match_execution(executed_freeze: Path) -> None:
    figures = sorted(n for n in _frozen_files(COMMITTED) if n.endswith(".png"))
    assert figures, "no frozen figures"
    for name in figures:
        old, new = _pixels(COMMITTED / name), _pixels(executed_freeze / name)
        assert old.shape == new.shape, f"{name}: size {old.shape} vs {new.shape}; run `make freeze`"
        changed = np.abs(old - new).max(axis=2) > 8
        assert changed.mean() < 0.001, f"{name}: {changed.mean():.2%} of pixels differ; run `make freeze`"
