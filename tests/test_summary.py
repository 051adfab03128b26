"""The preface's headline table shows exactly what the artifacts hold, and links resolve."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lib.core.paths import RESULTS_DIR
from lib.core.artifacts import load_json
from lib.book.summary import FINETUNE, GPU_FINETUNE, PROBE, headline
from tests.test_book import _labels


def test_headline_values_equal_the_artifacts() -> None:
    values = list(headline()["value"])
    features, finetune, movies = load_json("features_cpu_onnx"), load_json("finetune_cpu_partial_short"), load_json("movies")
    assert (PROBE, FINETUNE) == ("features_cpu_onnx", "finetune_cpu_partial_short")  # the answers: CPU-reproducible
    assert values[0] == features["test_accuracy"]
    assert values[1] == finetune["test_accuracy"]
    assert values[2] == pytest.approx(finetune["test_accuracy"] - features["test_accuracy"])
    assert values[3] == movies["best_gap"]
    for value, (query, resolved) in zip(values[4:], movies["queries"].items()):
        assert value == movies["recommendations"][resolved][:3]
    assert len(values) == 5 + len(movies["queries"])
    # the one GPU row comes last, labelled as an extra
    assert values[-1] == load_json(GPU_FINETUNE)["test_accuracy"]
    questions = list(headline()["question"])
    assert questions[-1].startswith("Extra, recorded on a lent GPU")
    assert not any("GPU" in q for q in questions[:-1])


def test_headline_follows_the_artifacts_when_they_change(tmp_path: Path) -> None:
    for name in (PROBE, FINETUNE, GPU_FINETUNE, "movies"):
        shutil.copyfile(RESULTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    changed = json.loads((tmp_path / f"{PROBE}.json").read_text())
    changed["test_accuracy"] = 0.123
    (tmp_path / f"{PROBE}.json").write_text(json.dumps(changed))
    table = headline(tmp_path)
    assert table["value"][0] == 0.123 and "12.3%" in table["answer"][0]


def test_headline_links_resolve_to_sections() -> None:
    labels = _labels()
    for section in headline()["section"]:
        assert labels[section.lstrip("@")] == 1, section
