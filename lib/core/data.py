"""Datasets: where they come from, how they are verified, how they are loaded.

Each dataset is found in this order: the data directory (a previous fetch), a
local mirror directory (``--mirror`` / ``DATA_MIRROR``), the official download.
Whatever the source, content is verified against the hashes of the official
release on every load, so nothing unverified is ever used.
"""
from __future__ import annotations

import argparse
import os
import pickle
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lib.core.paths import DEFAULT_DATA_DIR
from lib.core.errors import ConfigError, DataVerificationError
from lib.core.fetch import bytes_sha256, download, verify_file

# --- CIFAR-10 ---------------------------------------------------------------
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_TARBALL = "cifar-10-python.tar.gz"
CIFAR_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR_DIRNAME = "cifar-10-batches-py"
CIFAR_META = "batches.meta"
CIFAR_META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck")
# sha256 of the uint8 pixel rows (batches concatenated in order) and of the labels
# as uint8. They hold for the official files and for content-identical copies.
CIFAR_SPLITS: dict[str, dict] = {
    "train": {
        "files": tuple(f"data_batch_{i}" for i in range(1, 6)),
        "data_sha256": "9d5c2eddadb0deff02c14c350c0385aab7b1d5ff1edfeb4997c8dc8644960111",
        "labels_sha256": "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253",
    },
    "test": {
        "files": ("test_batch",),
        "data_sha256": "177777c33ba79825320efa646ad04a94bdc3c80e4ebe3bd21724f8cdfd4b9d56",
        "labels_sha256": "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5",
    },
}

# --- MovieLens ml-latest-small (2018 edition) ---------------------------------
MOVIELENS_URL = "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
MOVIELENS_ZIP = "ml-latest-small.zip"
MOVIELENS_DIRNAME = "ml-latest-small"
MOVIELENS_SHA256 = {
    "links.csv": "97ad18e4e56a09363c65676b6cb3482ce3e2cea2372a24620c1599c843325f31",
    "movies.csv": "5a5f32dd9bb3797b8e728a1b98958789d2b13f294a69fdfbc5727f8a9611aa07",
    "ratings.csv": "aa289ca83157595d0df6aea1be6a4ded676ddc4385472e8313a8ed9805352646",
    "tags.csv": "92a9f8bb7916dceef6151209845788c3643f794dfa79d1feaec7121b5960399d",
}


@dataclass(frozen=True)
class DataDirs:
    """Where datasets are cached (writable) and an optional read-only mirror."""

    data_dir: Path
    mirror: Path | None = None

    @classmethod
    def resolve(cls, data_dir: str | os.PathLike | None = None,
                mirror: str | os.PathLike | None = None) -> "DataDirs":
        """Flags win over ``DATA_DIR`` / ``DATA_MIRROR``; the default cache is ``data/``."""
        data = Path(data_dir or os.environ.get("DATA_DIR") or DEFAULT_DATA_DIR)
        mirror_value = mirror or os.environ.get("DATA_MIRROR") or None
        mirror_path = Path(mirror_value) if mirror_value else None
        if mirror_path is not None and not mirror_path.is_dir():
            raise ConfigError(f"mirror directory {mirror_path} does not exist")
        return cls(data.resolve(), mirror_path.resolve() if mirror_path else None)


@dataclass(frozen=True)
class CifarSplit:
    """One verified CIFAR-10 split: HWC uint8 images in the official order."""

    split: str
    images: np.ndarray  # (N, 32, 32, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]
    data_sha256: str
    labels_sha256: str
    source: Path


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except FileNotFoundError:
        raise DataVerificationError(f"{path}: missing from the CIFAR-10 folder") from None
    except Exception as exc:  # a flipped byte can break the pickle itself
        raise DataVerificationError(f"{path}: not a readable CIFAR-10 batch ({exc})") from exc


@lru_cache(maxsize=4)
def _load_cifar10_cached(folder: Path, split: str) -> CifarSplit:
    spec = CIFAR_SPLITS[split]
    batches = [_unpickle(folder / name) for name in spec["files"]]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.uint8) for b in batches])
    files = ", ".join(str(folder / name) for name in spec["files"])
    for what, actual, expected in (("data", bytes_sha256(data.tobytes()), spec["data_sha256"]),
                                   ("labels", bytes_sha256(labels.tobytes()), spec["labels_sha256"])):
        if actual != expected:
            raise DataVerificationError(
                f"CIFAR-10 {split} split ({files}): sha256 of {what} mismatch\n"
                f"  expected {expected}\n  actual   {actual}\n"
                "The copy is corrupt or not the official release; it was not used.")
    meta = _unpickle(folder / CIFAR_META)
    classes = tuple(meta["label_names"])
    if classes != CIFAR_CLASSES:
        raise DataVerificationError(f"{folder / CIFAR_META}: unexpected class names {classes}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return CifarSplit(split, np.ascontiguousarray(images), labels.astype(np.int64), classes,
                      spec["data_sha256"], spec["labels_sha256"], folder)


def _extract_cifar_tarball(tarball: Path, data_dir: Path) -> Path:
    """Verify the tarball, extract into a temporary folder, then rename: a killed extraction leaves nothing."""
    verify_file(tarball, CIFAR_TARBALL_MD5, "md5")
    target = data_dir / CIFAR_DIRNAME
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".extract-") as tmp:
        with tarfile.open(tarball, "r:gz") as archive:
            archive.extractall(tmp, filter="data")
        os.replace(Path(tmp) / CIFAR_DIRNAME, target)
    return target


def _locate(dirs: DataDirs, dirname: str, archive_name: str, url: str, expected: str | None,
            algorithm: str, extract: Callable[[Path, Path], Path]) -> tuple[Path, str]:
    """Find a dataset folder: data dir, then mirror (folder or archive), then the official download.

    A downloaded archive whose contents fail verification is deleted, so no later run picks it up.
    """
    cached = dirs.data_dir / dirname
    if cached.is_dir():
        return cached, "data dir"
    if dirs.mirror is not None:
        if (dirs.mirror / dirname).is_dir():
            return dirs.mirror / dirname, f"mirror {dirs.mirror}"
        if (dirs.mirror / archive_name).is_file():
            dirs.data_dir.mkdir(parents=True, exist_ok=True)
            return extract(dirs.mirror / archive_name, dirs.data_dir), f"mirror {dirs.mirror}"
    dirs.data_dir.mkdir(parents=True, exist_ok=True)
    archive_path = dirs.data_dir / archive_name
    if not archive_path.is_file():
        download(url, archive_path, expected, algorithm)
    try:
        return extract(archive_path, dirs.data_dir), f"download {url}"
    except DataVerificationError:
        archive_path.unlink(missing_ok=True)
        raise


def locate_cifar10(dirs: DataDirs) -> tuple[Path, str]:
    """Return the CIFAR-10 batch folder and a description of where it came from."""
    return _locate(dirs, CIFAR_DIRNAME, CIFAR_TARBALL, CIFAR_URL, CIFAR_TARBALL_MD5, "md5",
                   _extract_cifar_tarball)


def load_cifar10(split: str, dirs: DataDirs | None = None) -> CifarSplit:
    """Load and verify one split (``"train"`` or ``"test"``)."""
    if split not in CIFAR_SPLITS:
        raise ConfigError(f"unknown CIFAR-10 split {split!r}; use 'train' or 'test'")
    folder, _ = locate_cifar10(dirs or DataDirs.resolve())
    return _load_cifar10_cached(folder, split)


# --- MovieLens ----------------------------------------------------------------
@dataclass(frozen=True)
class MovieLens:
    ratings: pd.DataFrame  # userId, movieId, rating, timestamp
    movies: pd.DataFrame   # movieId, title, genres
    source: Path


def _verify_movielens_folder(folder: Path) -> None:
    for name, expected in MOVIELENS_SHA256.items():
        if not (folder / name).is_file():
            raise DataVerificationError(f"{folder / name}: missing from the MovieLens folder")
        verify_file(folder / name, expected)


def _extract_movielens_zip(archive_path: Path, data_dir: Path) -> Path:
    target = data_dir / MOVIELENS_DIRNAME
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".extract-") as tmp:
        with zipfile.ZipFile(archive_path) as archive:
            archive.extractall(tmp)
        _verify_movielens_folder(Path(tmp) / MOVIELENS_DIRNAME)
        os.replace(Path(tmp) / MOVIELENS_DIRNAME, target)
    return target


def locate_movielens(dirs: DataDirs) -> tuple[Path, str]:
    # Re-packed zips differ in stored dates, so the zip has no fixed hash: its CSVs are verified.
    return _locate(dirs, MOVIELENS_DIRNAME, MOVIELENS_ZIP, MOVIELENS_URL, None, "sha256",
                   _extract_movielens_zip)


@lru_cache(maxsize=2)
def _load_movielens_cached(folder: Path) -> MovieLens:
    _verify_movielens_folder(folder)
    return MovieLens(pd.read_csv(folder / "ratings.csv"), pd.read_csv(folder / "movies.csv"), folder)


def load_movielens(dirs: DataDirs | None = None) -> MovieLens:
    """Load ratings and movies after verifying every CSV's sha256."""
    folder, _ = locate_movielens(dirs or DataDirs.resolve())
    return _load_movielens_cached(folder)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch_all(dirs: DataDirs) -> list[dict]:
    """Fetch and verify every dataset; one summary row per dataset for the CLI table."""
    rows = []
    folder, source = locate_cifar10(dirs)
    for split in CIFAR_SPLITS:
        _load_cifar10_cached(folder, split)
    rows.append({"dataset": "CIFAR-10", "source": source, "path": str(folder),
                 "size_mb": folder_size(folder) / 1e6, "verified": "yes (content sha256)"})
    folder, source = locate_movielens(dirs)
    _load_movielens_cached(folder)
    rows.append({"dataset": "MovieLens ml-latest-small", "source": source, "path": str(folder),
                 "size_mb": folder_size(folder) / 1e6, "verified": "yes (CSV sha256)"})
    return rows


def dataset_hashes() -> dict:
    """Content hashes recorded in every artifact's provenance."""
    return {
        "cifar10": {s: {"data_sha256": v["data_sha256"], "labels_sha256": v["labels_sha256"]}
                    for s, v in CIFAR_SPLITS.items()},
        "movielens": dict(MOVIELENS_SHA256),
    }


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The two options every command that reads data accepts."""
    parser.add_argument("--data-dir", default=None,
                        help="download/cache directory (env DATA_DIR, default data/)")
    parser.add_argument("--mirror", default=None,
                        help="read-only local copy of the datasets (env DATA_MIRROR)")
