"""The preface's headline table shows exactly what the artifacts hold, and links resolve."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.core.paths import RESULTS_DIR
from lib.core.artifacts import load_json
from lib.book.summary import headline
from tests.test_book import _labels


def test_headline_values_equal_the_artifacts() -> None:
    values = list(headline()["value"])
    features, finetune, movies = load_json("features"), load_json("finetune"), load_json("movies")
    assert values[0] == features["test_accuracy"]
    assert values[1] == finetune["test_accuracy"]
    assert values[2] == pytest.approx(finetune["test_accuracy"] - features["test_accuracy"])
    assert values[3] == movies["best_gap"]
    for value, (query, resolved) in zip(values[4:], movies["queries"].items()):
        assert value == movies["recommendations"][resolved][:3]
    assert len(values) == 4 + len(movies["queries"])


def test_headline_follows_the_artifacts_when_they_change(tmp_path: Path) -> None:
    for name in ("features", "finetune", "movies"):
        shutil.copyfile(RESULTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    changed = json.loads((tmp_path / "features.json").read_text())
    changed["test_accuracy"] = 0.123
    (tmp_path / "features.json").write_text(json.dumps(changed))
    table = headline(tmp_path)
    assert table["value"][0] == 0.123 and "12.3%" in table["answer"][0]


def test_headline_links_resolve_to_sections() -> None:
    labels = _labels()
    for section in headline()["section"]:
        assert labels[section.lstrip("@")] == 1, section
