"""The book holds together: chapters exist, every cross-reference and citation resolves,
every figure has a caption and alt text, and the appendix's commands match what ran."""
from __future__ import annotations

import re
import shlex
from collections import Counter

import pytest

from conftest import require

from lib.core.paths import REPO_ROOT
from lib.core.artifacts import load_json
from lib.cli import build_parser
from lib.book.notebooks import book_chapters, read_bibliography
from lib.book.reproducibility import STAGES, available_stages

LABEL_ATTR = re.compile(r"\{#((?:fig|tbl|sec|eq)-[A-Za-z0-9_-]+)")
LABEL_OPTION = re.compile(r"^#\|\s*label:\s*((?:fig|tbl)-[A-Za-z0-9_-]+)\s*$", re.M)
REFERENCE = re.compile(r"(?<![\w{#])@((?:fig|tbl|sec|eq)-[A-Za-z0-9_-]*[A-Za-z0-9])")
CITATION = re.compile(r"(?<![\w@\[{#-])@([A-Za-z][\w:.-]*\w)")
CODE_CELL = re.compile(r"^```\{python\}\n(.*?)^```", re.M | re.S)


def _texts() -> dict[str, str]:
    return {str(p.relative_to(REPO_ROOT)): p.read_text() for p in book_chapters()}


def _labels() -> Counter:
    labels: Counter = Counter()
    for text in _texts().values():
        labels.update(LABEL_ATTR.findall(text))
        labels.update(LABEL_OPTION.findall(text))
    return labels


def test_every_listed_chapter_exists() -> None:
    missing = [p for p in book_chapters() if not p.is_file()]
    assert not missing
    assert (REPO_ROOT / "index.qmd") in book_chapters()


def test_no_label_is_defined_twice() -> None:
    duplicated = {label: n for label, n in _labels().items() if n > 1}
    assert not duplicated


def test_every_reference_resolves_to_a_label() -> None:
    labels = _labels()
    unresolved = {(name, ref) for name, text in _texts().items()
                  for ref in REFERENCE.findall(text) if labels[ref] != 1}
    assert not unresolved


def test_reference_check_catches_a_dangling_reference() -> None:
    assert REFERENCE.findall("see @fig-missing-one and @tbl-x.") == ["fig-missing-one", "tbl-x"]
    assert "fig-missing-one" not in _labels()


def test_every_figure_has_caption_and_alt_text() -> None:
    problems = []
    for name, text in _texts().items():
        for cell in CODE_CELL.findall(text):
            if re.search(r"^#\|\s*label:\s*fig-", cell, re.M):
                for option in ("fig-cap", "fig-alt"):
                    if not re.search(rf"^#\|\s*{option}:", cell, re.M):
                        problems.append((name, cell.splitlines()[0], option))
    assert not problems


def test_every_table_cell_has_a_caption() -> None:
    problems = [(name, cell.splitlines()[0]) for name, text in _texts().items()
                for cell in CODE_CELL.findall(text)
                if re.search(r"^#\|\s*label:\s*tbl-", cell, re.M) and not re.search(r"^#\|\s*tbl-cap:", cell, re.M)]
    assert not problems


def test_every_citation_is_in_the_bibliography() -> None:
    bibliography = read_bibliography()
    assert len(bibliography) >= 10
    cited = set()
    for text in _texts().values():
        prose = CODE_CELL.sub("", text)
        prose = re.sub(r"`[^`]*`", "", prose)  # inline code may hold e-mail-like text
        cited.update(key for key in CITATION.findall(prose)
                     if not key.startswith(("fig-", "tbl-", "sec-", "eq-")))
    assert cited, "the book cites its sources"
    assert not cited - set(bibliography)


@pytest.mark.parametrize("stage", STAGES, ids=lambda s: s.name)
def test_appendix_commands_match_the_recorded_configuration(stage) -> None:
    require(stage in available_stages(), f"results/{stage.name}.json not produced yet")
    argv = shlex.split(stage.command_line)[3:]
    args = build_parser(argv[0]).parse_args(argv)
    config = load_json(stage.name)["provenance"]["config"]
    if argv[0] == "features":
        assert args.backbone == config["backbone"]
        assert sorted(args.sweep or [args.resolution]) == sorted(config["sweep"])
        assert args.engine == config.get("engine", "auto")
        assert bool(args.cpu_timing) == ("timing_images" in config)
        if not args.cpu_timing:
            assert args.resolution == config["resolution"]
    elif argv[0] == "finetune":
        recipe = config["recipe"]
        assert args.backbone in (None, recipe["backbone"]) or args.backbone == recipe["backbone"]
        if args.pilot:
            assert [int(r) for r in str(args.pilot_resolutions).split(",")] == config["resolutions"]
            assert args.pilot_train == config["train_images"] and args.pilot_val == config["val_images"]
        else:
            assert args.resolution == recipe["resolution"] and args.epochs == recipe["epochs"]
    elif argv[0] == "probe-variants":
        assert args.backbone == config["backbone"] and args.seeds == config["seeds"]
        assert args.variants == config["variants"] and args.weight_decays == config["weight_decays"]
    elif argv[0] == "gallery-sprites":
        assert args.k == config["k"]
    elif argv[0] == "movies":
        assert "liked_threshold" in config
    elif argv[0] == "bench-scale":
        doc = load_json(stage.name)
        assert args.dim == config["dim"] and args.threads == config["threads"] and args.largest == 1
        assert len(doc["rows"]) == args.sizes
    elif argv[0] == "bench":
        assert args.backbone == config["backbone"] and args.resolution == config["resolution"]
        sizes = ("images", "engine_images", "linear_train", "linear_test", "linear_resolution", "weight_decay",
                 "recipe_iterations")
        reduced = [o for o in sizes if getattr(args, o) != config.get(o)]
        require(not reduced, f"results/bench.json is a reduced development run ({', '.join(reduced)} "
                             "differ from the full command): rerun `python -m lib bench`")


def test_powers_of_ten_are_written_as_readers_write_them() -> None:
    from lib.book.format import power_of_ten

    assert power_of_ten(1e-7) == "10⁻⁷"
    assert power_of_ten(1.196e-6) == "1.2 × 10⁻⁶"
    assert power_of_ten(3.04e5) == "3.0 × 10⁵"
