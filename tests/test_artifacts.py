"""Artifacts round-trip, carry full provenance, and are written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lib.core import artifacts

from lib.core import provenance
def _provenance() -> dict:
    return provenance.collect(seed=7, wall_time_s=1.25, config={"lr": 0.1},
                              weights={"name": "x", "file": "x.pth", "sha256": "ab"})


def test_json_round_trip_with_provenance(tmp_path: Path) -> None:
    path = artifacts.save_json("demo", {"test_accuracy": np.float32(0.5), "curve": np.arange(3),
                                        "loss": float("nan")}, _provenance(), tmp_path)
    loaded = artifacts.load_json("demo", tmp_path)
    assert path == tmp_path / "demo.json"
    assert loaded["test_accuracy"] == 0.5 and loaded["curve"] == [0, 1, 2] and loaded["loss"] == "nan"
    prov = loaded["provenance"]
    for key in artifacts.REQUIRED_PROVENANCE:
        assert key in prov
    assert prov["seed"] == 7 and prov["config"] == {"lr": 0.1} and prov["wall_time_s"] == 1.25
    assert prov["versions"]["torch"] and prov["hardware"]["cpu"] and prov["hardware"]["torch_threads"] >= 1
    assert prov["data"]["cifar10"]["test"]["data_sha256"].startswith("177777c3")
    assert len(prov["git"]["commit"] or "") in (0, 40)


def test_provenance_is_required(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="provenance lacks"):
        artifacts.save_json("demo", {}, {"seed": 1}, tmp_path)


def test_array_round_trips(tmp_path: Path) -> None:
    probs = np.random.default_rng(0).random((5, 10)).astype(np.float32)
    artifacts.save_array("p.npy", probs, tmp_path)
    np.testing.assert_array_equal(artifacts.load_array("p.npy", tmp_path), probs)
    artifacts.save_arrays("c.npz", tmp_path, a=np.arange(4), b=np.ones((2, 2)))
    loaded = artifacts.load_arrays("c.npz", tmp_path)
    assert loaded["a"].tolist() == [0, 1, 2, 3] and loaded["b"].shape == (2, 2)


def test_failed_write_leaves_previous_artifact_intact(tmp_path: Path) -> None:
    artifacts.save_json("demo", {"v": 1}, _provenance(), tmp_path)
    with pytest.raises(TypeError):
        artifacts.save_json("demo", {"v": object()}, _provenance(), tmp_path)
    assert json.loads((tmp_path / "demo.json").read_text())["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["demo.json"]


def test_missing_artifact_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.json is missing: rerun the command that writes it"):
        artifacts.load_json("absent", tmp_path)


def test_a_committed_artifact_is_restored_from_git_others_by_their_command() -> None:
    committed = artifacts.restore_hint(artifacts.results_path("movies.json"), "python -m lib movies")
    assert committed == ("restore the committed copy with 'git checkout -- results/movies.json' "
                         "or run 'python -m lib movies'")
    assert artifacts.restore_hint(artifacts.results_path("never_written.json")) == artifacts.RECOMPUTE_HINT


def _damaged_files(folder: Path) -> dict[str, tuple]:
    """Each damaged-artifact case: file name -> (how to damage it, loader call)."""
    return {
        "truncated .npz": ("c.npz", lambda p: p.write_bytes(p.read_bytes()[:50]),
                           lambda: artifacts.load_arrays("c.npz", folder)),
        "garbage .npy": ("p.npy", lambda p: p.write_bytes(b"not numpy at all"),
                         lambda: artifacts.load_array("p.npy", folder)),
        "truncated .npy": ("p.npy", lambda p: p.write_bytes(p.read_bytes()[:100]),
                           lambda: artifacts.load_array("p.npy", folder)),
        "broken JSON": ("demo.json", lambda p: p.write_text('{"v": '), lambda: artifacts.load_json("demo", folder)),
        "broken CSV": ("t.csv", lambda p: p.write_text('a,b\n1,"2\n3,4,5,6\n'),
                       lambda: artifacts.load_csv("t.csv", folder)),
        "CSV without its columns": ("t.csv", lambda p: p.write_text("x\n1\n"),
                                    lambda: artifacts.load_csv("t.csv", folder, required=("a", "b"))),
        "folder in its place": ("c.npz", lambda p: (p.unlink(), p.mkdir()),
                                lambda: artifacts.load_arrays("c.npz", folder)),
    }


@pytest.mark.parametrize("case", ["truncated .npz", "garbage .npy", "truncated .npy", "broken JSON", "broken CSV",
                                  "CSV without its columns", "folder in its place"])
def test_a_damaged_artifact_is_one_line_naming_it(case: str, tmp_path: Path) -> None:
    artifacts.save_arrays("c.npz", tmp_path, a=np.arange(1000))
    artifacts.save_json("demo", {"v": 1}, _provenance(), tmp_path)
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    artifacts.save_array("p.npy", np.arange(1000.0), tmp_path)
    filename, damage, load = _damaged_files(tmp_path)[case]
    damage(tmp_path / filename)
    with pytest.raises(artifacts.ArtifactError) as caught:
        load()
    message = str(caught.value)
    assert str(tmp_path / filename) in message and "\n" not in message
    assert "rerun the command that writes it" in message
    assert "allow_pickle" not in message and "pickle" not in message.lower()


def test_an_unreadable_artifact_says_permission_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "p.npy"
    path.write_bytes(b"x")

    def denied(p: Path) -> None:
        raise PermissionError(13, "Permission denied", str(p))
    with pytest.raises(artifacts.ArtifactError, match=r"p.npy cannot be read \(permission denied\).*chmod u\+r"):
        artifacts.read_artifact(path, denied, ".npy")


def test_a_mistyped_results_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(artifacts.MissingArtifactError, match="resuls is not a folder.*mistyped --results-dir"):
        artifacts.load_arrays("c.npz", tmp_path / "resuls")
