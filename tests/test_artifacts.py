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
    with pytest.raises(FileNotFoundError, match="run the pipeline"):
        artifacts.load_json("absent", tmp_path)
