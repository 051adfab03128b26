"""What a new user sees when the command line goes wrong: one line that says what to do."""
from __future__ import annotations

import subprocess
import sys

import pytest

import lib.cli
from lib.core.paths import REPO_ROOT


def test_a_python_without_the_dependencies_fails_in_one_line_naming_the_venv() -> None:
    # -S: no site-packages, as with a system Python that lacks numpy and pandas
    result = subprocess.run([sys.executable, "-S", "-m", "lib", "recommend", "Toy Story"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr and ".venv/bin/python -m lib" in result.stderr
    assert any(f"has no '{name}'" in result.stderr for name in ("numpy", "pandas", "torch"))


def test_a_missing_module_of_lib_itself_is_not_blamed_on_the_environment() -> None:
    assert lib.cli.missing_dependency(ModuleNotFoundError("x", name="lib.nowhere")) is None
    assert "pandas" in lib.cli.missing_dependency(ModuleNotFoundError("x", name="pandas"))


def test_an_unknown_option_shows_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        lib.cli.main(["recommend", "--frobnicate", "Toy Story"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m lib recommend") and "unrecognized arguments: --frobnicate" in err


def test_executing_a_notebook_prints_no_kernel_warnings(capfd: pytest.CaptureFixture[str]) -> None:
    import nbformat

    from lib.book.notebooks import execute

    notebook = execute(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("6 * 7")]), timeout=120)
    assert notebook.cells[0].outputs[0]["data"]["text/plain"] == "42"
    assert "IPKernelApp" not in capfd.readouterr().err


@pytest.mark.parametrize("mirror", [None, "/some/mirror"])
def test_data_from_a_mirror_says_later_commands_need_it_again(mirror: str | None, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from lib.core import data_cli

    row = {"dataset": "MovieLens", "source": "mirror", "path": "/x", "size_mb": 3.3, "verified": "yes"}
    monkeypatch.setattr(data_cli, "fetch_all", lambda dirs: [row])
    monkeypatch.setattr(data_cli.DataDirs, "resolve", classmethod(lambda cls, data_dir, mirror: None))
    assert data_cli.run(argparse.Namespace(data_dir=None, mirror=mirror)) == 0
    out = capsys.readouterr().out
    assert ("export DATA_MIRROR=/some/mirror" in out) == (mirror is not None)


def test_a_reader_that_stops_early_gets_no_traceback() -> None:
    """``python -m lib recommend Toy Story -k 5000 | head -2``."""
    process = subprocess.Popen([sys.executable, "-m", "lib", "recommend", "Toy", "Story", "-k", "5000"], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stdout.readline().startswith("5000 movies most similar to Toy Story")
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=120)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def _truncate(path) -> None:
    path.write_bytes(path.read_bytes()[:20000])


def _folder(path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("filename, damage", [
    ("movies_embeddings.npz", _truncate), ("movies_embeddings.npz", _folder),
    ("movies_catalog.csv", lambda p: p.write_text('movieId,title\n1,"Toy Story\n2,a,b,c\n')),
    ("movies_catalog.csv", lambda p: p.write_text("nothing,useful\n1,2\n")),
])
def test_recommend_from_damaged_results_is_one_line_naming_the_file(filename: str, damage, tmp_path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    from lib.core.paths import RESULTS_DIR

    for name in ("movies_embeddings.npz", "movies_catalog.csv"):
        shutil.copy(RESULTS_DIR / name, tmp_path / name)
    damage(tmp_path / filename)
    assert lib.cli.main(["recommend", "Toy Story", "--results-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) <= 3 and str(tmp_path / filename) in err and "python -m lib movies" in err, err


def test_recommend_from_a_mistyped_results_dir_says_so(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lib.cli.main(["recommend", "Toy Story", "--results-dir", str(tmp_path / "reslts")]) == 1
    assert "mistyped --results-dir" in capsys.readouterr().err
