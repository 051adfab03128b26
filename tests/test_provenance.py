"""Provenance is written only by code: runs refuse uncommitted code unless told, and say so."""
from __future__ import annotations

import pytest

import lib.cli
from lib.core import provenance

STATUS = " M lib/movies/pipeline.py\n?? lib/new_module.py\n M results/movies.json\n?? cache/x.npy\n M _freeze/a.json\n"


@pytest.fixture
def dirty(monkeypatch: pytest.MonkeyPatch):
    real_git = provenance._git

    def fake_git(*args: str) -> str:
        if args[0] == "status":
            return STATUS
        if args[0] in ("diff", "ls-files"):
            return "diff" if args[0] == "diff" else ""
        return real_git(*args)
    monkeypatch.setattr(provenance, "_git", fake_git)
    yield
    provenance.set_allow_dirty(False)


def test_only_code_changes_make_a_tree_dirty(dirty) -> None:
    assert provenance.uncommitted_changes() == ["lib/movies/pipeline.py", "lib/new_module.py"]


def test_a_dirty_tree_is_refused_and_named(dirty) -> None:
    with pytest.raises(lib.cli.ReportError, match="lib/movies/pipeline.py.*--allow-dirty"):
        provenance.require_clean_tree()


def test_allow_dirty_is_recorded_with_a_hash_of_the_changes(dirty) -> None:
    provenance.set_allow_dirty(True)
    provenance.require_clean_tree()
    block = provenance.git_commit()
    assert block["dirty"] is True and block["allow_dirty"] is True
    assert block["changed_files"] == ["lib/movies/pipeline.py", "lib/new_module.py"]
    assert len(block["changes_sha256"]) == 64


def test_cli_refuses_before_any_work(dirty, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import lib.movies.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run", lambda args: pytest.fail("the command ran"))
    assert lib.cli.main(["movies"]) == 1
    assert "uncommitted changes to code" in capsys.readouterr().err


def test_cli_writing_elsewhere_or_allowed_runs(dirty, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import lib.movies.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run", lambda args: 0)
    assert lib.cli.main(["movies", "--results-dir", str(tmp_path)]) == 0
    assert lib.cli.main(["movies", "--allow-dirty"]) == 0
    assert provenance.git_commit()["allow_dirty"] is True


def test_docs_and_a_previews_leftovers_do_not_block_but_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    status = " M README.md\n?? chapters/01-features_files/figure-html/cell-3-output-1.png\n M chapters/03-movies.qmd\n"
    monkeypatch.setattr(provenance, "_git", lambda *args: {"status": status, "rev-parse": "a" * 40}.get(args[0], ""))
    block = provenance.git_commit()
    assert block["dirty"] is False
    assert block["changed_files"] == ["README.md", "chapters/01-features_files/figure-html/cell-3-output-1.png",
                                      "chapters/03-movies.qmd"]
    provenance.require_clean_tree(block)  # does not raise


def test_the_guard_names_only_code(dirty) -> None:
    block = provenance.git_commit()
    block["changed_files"] = ["README.md", *block["changed_files"]]
    with pytest.raises(lib.cli.ReportError) as refused:
        provenance.require_clean_tree(block)
    assert "README.md" not in str(refused.value) and "lib/new_module.py" in str(refused.value)


def test_a_previews_leftovers_are_ignored_by_git() -> None:
    import subprocess

    from lib.core.paths import REPO_ROOT

    leftovers = ["chapters/01-feature-extraction_files/figure-html/fig-1.png", "index_files/figure-html/a.png"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *leftovers], cwd=REPO_ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == leftovers
