"""Which MovieLens set ``python -m lib movies --dataset`` reads: ``ml-latest-small`` (the chapter's,
verified by ``lib.core.data``); ``ml-25m``, ``ml-32m`` (GroupLens zips from the data directory, the
mirror or files.grouplens.org, checked against the MD5 GroupLens publishes beside them); or a
``ratings.csv`` (or its folder, optionally with ``movies.csv``). :func:`parse_dataset` checks the
choice before any work starts.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.core.errors import ConfigError, DataVerificationError

DEFAULT = "ml-latest-small"
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
RELEASES = ("ml-25m", "ml-32m")
RATINGS_COLUMNS = ("userId", "movieId", "rating")


@dataclass(frozen=True)
class Dataset:
    name: str          # a release name or "path"
    path: Path | None  # for "path": the folder holding ratings.csv


def parse_dataset(text: str) -> Dataset:
    """A release name or an existing ratings.csv (or its folder); anything else is a ConfigError."""
    if text in (DEFAULT, *RELEASES):
        return Dataset(text, None)
    path = Path(text).expanduser()
    if path.is_file() and path.name == "ratings.csv":
        return Dataset("path", path.parent.resolve())
    if path.is_dir() and (path / "ratings.csv").is_file():
        return Dataset("path", path.resolve())
    raise ConfigError(f"--dataset {text!r}: not one of {', '.join((DEFAULT, *RELEASES))}, "
                      "nor a ratings.csv or a folder holding one")


def read_ratings(path: Path) -> pd.DataFrame:
    """A MovieLens ``ratings.csv``: integer ids, float ratings; refuses other columns."""
    header = pd.read_csv(path, nrows=0).columns
    missing = [c for c in RATINGS_COLUMNS if c not in header]
    if missing:
        raise DataVerificationError(f"{path}: no column(s) {missing}; expected MovieLens's "
                                    "userId,movieId,rating[,timestamp]")
    ratings = pd.read_csv(path, usecols=list(RATINGS_COLUMNS),
                          dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float64})
    if ratings["rating"].isna().any():
        raise DataVerificationError(f"{path}: empty ratings")
    return ratings


def read_movies(folder: Path, movie_ids: np.ndarray) -> pd.DataFrame:
    """``movies.csv`` if present; otherwise placeholder titles ("Movie 12"), so titles never fail."""
    if (folder / "movies.csv").is_file():
        return pd.read_csv(folder / "movies.csv")
    ids = np.unique(movie_ids)
    return pd.DataFrame({"movieId": ids, "title": [f"Movie {i}" for i in ids], "genres": ""})


def _release_folder(name: str, data_dir: Path, mirror: Path | None) -> Path:
    """The extracted release: data dir, mirror folder, mirror zip or download (MD5-checked zips)."""
    from lib.core.fetch import download, file_digest

    for folder in (data_dir / name, *((mirror / name,) if mirror else ())):
        if (folder / "ratings.csv").is_file():
            return folder
    archive = mirror / f"{name}.zip" if mirror and (mirror / f"{name}.zip").is_file() else data_dir / f"{name}.zip"
    checksum = archive.with_name(f"{name}.zip.md5")
    if not archive.is_file():
        data_dir.mkdir(parents=True, exist_ok=True)
        download(GROUPLENS + f"{name}.zip.md5", checksum, None)
        download(GROUPLENS + f"{name}.zip", archive, None)
    if not checksum.is_file():
        raise DataVerificationError(f"{archive}: no {checksum.name} beside it (GroupLens publishes one)")
    expected = checksum.read_text().split()[0].lower()
    actual = file_digest(archive, "md5")
    if actual != expected:
        raise DataVerificationError(f"{archive}: md5 {actual}, GroupLens publishes {expected}; not used")
    data_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as handle:
        handle.extractall(data_dir)
    return data_dir / name


def load(dataset: Dataset, data_dir: str | os.PathLike | None = None,
         mirror: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Ratings, movies and a one-line description of where they came from."""
    from lib.core.data import DataDirs, load_movielens

    dirs = DataDirs.resolve(data_dir, mirror)
    if dataset.name == DEFAULT:
        data = load_movielens(dirs)
        return data.ratings, data.movies, f"{DEFAULT} (CSV sha256 verified)"
    folder = dataset.path if dataset.name == "path" else _release_folder(dataset.name, dirs.data_dir, dirs.mirror)
    ratings = read_ratings(folder / "ratings.csv")
    return ratings, read_movies(folder, ratings["movieId"].to_numpy()), f"{dataset.name} ({folder})"
