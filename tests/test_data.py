"""The data layer accepts the genuine mirror and rejects anything else, loudly."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lib.core import data as data_module
from lib.core.data import (CIFAR_CLASSES, CIFAR_DIRNAME, MOVIELENS_DIRNAME, DataDirs, fetch_all,
                      load_cifar10, load_movielens)
from lib.core.errors import ConfigError, DataVerificationError, DownloadError


def test_mirror_is_accepted_and_verified(data_dirs: DataDirs) -> None:
    test = load_cifar10("test", data_dirs)
    assert test.images.shape == (10000, 32, 32, 3) and test.images.dtype == np.uint8
    assert np.bincount(test.labels).tolist() == [1000] * 10
    assert test.classes == CIFAR_CLASSES
    train = load_cifar10("train", data_dirs)
    assert train.images.shape == (50000, 32, 32, 3)
    movielens = load_movielens(data_dirs)
    assert len(movielens.ratings) == 100836 and len(movielens.movies) == 9742
    titles = movielens.movies.set_index("movieId")["title"]
    assert titles[1] == "Toy Story (1995)" and titles[150] == "Apollo 13 (1995)"


def test_fetch_all_reports_every_dataset(data_dirs: DataDirs) -> None:
    rows = fetch_all(data_dirs)
    assert [row["dataset"] for row in rows] == ["CIFAR-10", "MovieLens ml-latest-small"]
    assert all(row["source"].startswith("mirror") and row["verified"].startswith("yes") for row in rows)


def _mirror_copy(mirror: Path, tmp_path: Path, folder: str) -> Path:
    copy = tmp_path / "mirror"
    shutil.copytree(mirror / folder, copy / folder)
    for path in (copy / folder).iterdir():
        path.chmod(0o644)
    return copy


def test_flipped_byte_in_test_batch_is_rejected(mirror: Path, tmp_path: Path) -> None:
    copy = _mirror_copy(mirror, tmp_path, CIFAR_DIRNAME)
    batch = copy / CIFAR_DIRNAME / "test_batch"
    raw = bytearray(batch.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # inside the pixel data
    batch.write_bytes(bytes(raw))
    with pytest.raises(DataVerificationError) as info:
        load_cifar10("test", DataDirs(tmp_path / "cache", copy))
    message = str(info.value)
    assert "test_batch" in message and "expected 177777c33ba7" in message and "actual" in message


def test_changed_movielens_csv_is_rejected(mirror: Path, tmp_path: Path) -> None:
    copy = _mirror_copy(mirror, tmp_path, MOVIELENS_DIRNAME)
    ratings = copy / MOVIELENS_DIRNAME / "ratings.csv"
    raw = bytearray(ratings.read_bytes())
    raw[1000] = ord("5") if raw[1000] != ord("5") else ord("4")
    ratings.write_bytes(bytes(raw))
    with pytest.raises(DataVerificationError) as info:
        load_movielens(DataDirs(tmp_path / "cache", copy))
    assert "ratings.csv" in str(info.value) and "aa289ca83157" in str(info.value)


def test_offline_without_mirror_fails_fast_with_guidance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 on loopback refuses connections: the same path as a machine without network.
    monkeypatch.setattr(data_module, "CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    with pytest.raises(DownloadError) as info:
        load_cifar10("test", DataDirs(tmp_path / "empty", None))
    message = str(info.value)
    assert "cifar-10-python.tar.gz" in message and "127.0.0.1:9" in message and "--mirror" in message
    assert not any((tmp_path / "empty").glob("*")), "nothing may be left behind"


def test_cli_offline_exits_non_zero_with_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    from lib.cli import main

    monkeypatch.delenv("DATA_MIRROR", raising=False)
    monkeypatch.setattr(data_module, "CIFAR_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert main(["data", "--data-dir", str(tmp_path / "empty")]) == 1
    assert "--mirror" in capsys.readouterr().err


def test_missing_mirror_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        DataDirs.resolve(tmp_path, tmp_path / "nowhere")


def test_environment_variables_choose_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path))
    dirs = DataDirs.resolve()
    assert dirs.data_dir == (tmp_path / "d").resolve() and dirs.mirror == tmp_path.resolve()
    assert DataDirs.resolve(tmp_path / "flag").data_dir == (tmp_path / "flag").resolve()


def test_movielens_zip_in_mirror_is_extracted_and_verified(mirror: Path, tmp_path: Path) -> None:
    zip_only = tmp_path / "zip-mirror"
    zip_only.mkdir()
    shutil.copyfile(mirror / "ml-latest-small.zip", zip_only / "ml-latest-small.zip")
    dirs = DataDirs(tmp_path / "cache", zip_only)
    folder, source = data_module.locate_movielens(dirs)
    assert folder == tmp_path / "cache" / MOVIELENS_DIRNAME and source.startswith("mirror")
    assert len(load_movielens(dirs).ratings) == 100836
    assert not list((tmp_path / "cache").glob(".extract-*"))


def test_cifar_tarball_with_wrong_md5_in_mirror_is_refused(tmp_path: Path) -> None:
    bad_mirror = tmp_path / "bad-mirror"
    bad_mirror.mkdir()
    (bad_mirror / "cifar-10-python.tar.gz").write_bytes(b"not the official tarball")
    with pytest.raises(DataVerificationError, match="c58f30108f718f92721af3b95e74349a"):
        load_cifar10("test", DataDirs(tmp_path / "cache", bad_mirror))
    assert not (tmp_path / "cache" / CIFAR_DIRNAME).exists()
    assert (bad_mirror / "cifar-10-python.tar.gz").exists(), "a mirror is read-only: never deleted"
