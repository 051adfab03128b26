"""``python -m lib verify``: its rows catch a changed number, and the committed artifacts pass."""
from __future__ import annotations

import argparse

import pytest

import lib.verify.cifar as vcifar
from lib.verify import checks, cli
from lib.verify.provenance import provenance_checks


def test_close_and_equal_verdicts() -> None:
    assert checks.close("a", "x", 0.9018, 0.9018).verdict == checks.OK
    assert checks.close("a", "x", 0.9018, 0.9019, rel=1e-9).verdict == checks.MISMATCH
    assert checks.close("a", "x", [1.0, 2.0], [1.0, 2.0 + 1e-12], rel=1e-9).verdict == checks.OK
    assert checks.equal("a", "x", ["A", "B"], ["A", "C"]).verdict == checks.MISMATCH


@pytest.mark.parametrize("name, git, verdict", [
    ("movies", {"commit": "a" * 40, "dirty": False}, checks.OK),
    ("movies", {"commit": "a" * 40, "dirty": True}, checks.STALE),
    ("features", {"commit": "a" * 40, "dirty": False, "note": "corrected after the run"}, checks.NOT_HERE),
])
def test_provenance_verdicts(name: str, git: dict, verdict: str) -> None:
    doc = {"provenance": {"git": git, "command": "python -m lib x", "weights": {"name": "w"}}}
    assert provenance_checks(name, doc)[0].verdict == verdict


def test_missing_command_or_weights_is_stale() -> None:
    doc = {"provenance": {"git": {"commit": "a" * 40, "dirty": False}, "command": None, "weights": None}}
    assert "no command" in provenance_checks("finetune_pilot_cpu", doc)[0].committed


def test_a_changed_accuracy_is_a_mismatch(mirror, data_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    from lib.core.data import load_cifar10

    test = load_cifar10("test", data_dirs)
    assert all(c.verdict == checks.OK for c in vcifar.classifier_checks("features_cpu_onnx", test))
    real = vcifar.load_json

    def tampered(name: str):
        doc = real(name)
        return {**doc, "test_accuracy": doc["test_accuracy"] + 0.001}
    monkeypatch.setattr(vcifar, "load_json", tampered)
    rows = {c.check: c.verdict for c in vcifar.classifier_checks("features_cpu_onnx", test)}
    assert rows["test accuracy"] == checks.MISMATCH


def test_cli_exit_status(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    args = argparse.Namespace(names=["movies"], quick=True, strict=False, data_dir=None, mirror=None)
    stale = [checks.Check("movies", "provenance", "dirty=True", "rerun", checks.STALE)]
    monkeypatch.setattr(cli, "collect_checks", lambda *a: stale)
    assert cli.run(args) == 0
    assert cli.run(argparse.Namespace(**{**vars(args), "strict": True})) == 1
    monkeypatch.setattr(cli, "collect_checks", lambda *a: [checks.close("movies", "c", 1.0, 2.0)])
    assert cli.run(args) == 1
    assert cli.run(argparse.Namespace(**{**vars(args), "names": ["nope"]})) == 2
    assert "MISMATCH" in capsys.readouterr().out


def test_lists_of_titles_compare_and_display() -> None:
    """The full movies check compares top-10 lists of titles: text arrays must not be summed."""
    titles = [f"Movie {i}" for i in range(10)]
    same = checks.equal("movies", "top-10", titles, list(titles))
    assert same.verdict == checks.OK and same.committed.startswith("10 items: Movie 0, Movie 1")
    assert checks.equal("movies", "top-10", titles, titles[::-1]).verdict == checks.MISMATCH


def test_scale_checks_pass_and_catch_a_changed_size(mirror, data_dirs, monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    import lib.verify.scale as vscale
    from lib.core.data import load_movielens

    data = load_movielens(data_dirs)
    assert all(c.verdict in (checks.OK, checks.NOT_HERE) for c in vscale.scale_checks(data, quick=True))
    real = vscale.load_json

    def tampered(name: str):
        doc = copy.deepcopy(real(name))
        smallest = min(doc["rows"], key=lambda r: r["n_likes"])
        smallest["n_movies"] += 1
        smallest["floor_loss"] *= 1.001
        return doc
    monkeypatch.setattr(vscale, "load_json", tampered)
    bad = {c.check for c in vscale.scale_checks(data, quick=True) if c.verdict == checks.MISMATCH}
    assert any(check.startswith("users, movies, likes") for check in bad)
    assert any(check.startswith("floor at") for check in bad)


def test_the_book_answers_and_its_mcnemar_pair_need_no_gpu() -> None:
    """The preface's answers and chapter 2's paired comparison come from artifacts a CPU re-derives;
    the GPU artifacts are extras, labelled as such when they cannot be re-derived."""
    from lib.book import summary
    from lib.verify import book
    from lib.verify.provenance import GPU_ARTIFACTS

    assert not {summary.PROBE, summary.FINETUNE, *vcifar.ANSWER_PAIR} & GPU_ARTIFACTS
    assert (summary.PROBE, summary.FINETUNE) == vcifar.ANSWER_PAIR
    rows = [c for c in book.headline_checks() if c.check.startswith("headline answer from")]
    assert len(rows) == 2 and all(c.verdict == checks.OK for c in rows)
    doc = {"provenance": {"git": {"commit": "a" * 40, "dirty": False, "note": "x"}, "command": None, "weights": None}}
    assert "recorded on a lent GPU" in provenance_checks("finetune", doc)[0].recomputed
