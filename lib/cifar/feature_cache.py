"""Features of a whole image set, extracted chunk by chunk into an on-disk cache.

``<cache>/features/<backbone>-r<res>-<flip|noflip>-<key hash>/`` holds ``meta.json`` (the full
``cache_key``, hashes of the exact images and labels included) and one ``chunk_NNNNN.npy`` (float16)
per finished chunk, written atomically, so a killed run resumes with the finished ones; a folder
whose key differs from the request is never reused. Under torchrun rank r computes every world-th
chunk and records it in ``meta_rank<r>.json``, which opening the cache merges.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lib.cifar.backbones import Backbone
from lib.cifar.extract import Extractor, default_batch_size, extractor_device_name
from lib.core.artifacts import atomic_path, key_digest, write_npy
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT

CACHE_VERSION = 2  # 2: the key names the engine
DEFAULT_CACHE_DIR = REPO_ROOT / "cache"
DEFAULT_CHUNK = 2048


def array_sha256(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@dataclass
class FeatureSet:
    features: np.ndarray  # (N, D) float16
    key: dict
    path: Path
    seconds: float        # extraction time of the chunks (whenever they were computed)
    device: str           # device(s) that computed them
    computed_chunks: list[int]
    loaded_chunks: list[int]


def cache_key(backbone: Backbone, weights: dict | None, resolution: int, flip: bool,
              images: np.ndarray, labels: np.ndarray | None, precision: str, engine: str = "torch",
              layer: tuple[str, int] | None = None) -> dict:
    """Everything the features depend on; the engine is part of it, so every cached chunk was
    computed by the engine its folder names. ``layer``: (description, width) of another layer's
    flattened output than the backbone's pooled feature (partial finetuning's activations)."""
    feature_layer, feature_dim = layer or (backbone.feature_layer, backbone.feature_dim)
    return {"version": CACHE_VERSION, "backbone": backbone.name, "feature_layer": feature_layer,
            "feature_dim": int(feature_dim), "weights": weights, "resolution": int(resolution),
            "flip_average": bool(flip), "precision": precision, "engine": engine, "n_images": int(len(images)),
            "images_sha256": array_sha256(images),
            "labels_sha256": array_sha256(np.asarray(labels)) if labels is not None else None}


def cache_folder(cache_dir: Path, key: dict) -> Path:
    flip = "flip" if key["flip_average"] else "noflip"
    return Path(cache_dir) / "features" / f"{key['backbone']}-r{key['resolution']}-{flip}-{key_digest(key)}"


def _write_json(path: Path, payload: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def _load_chunk(path: Path, rows: int, dim: int) -> np.ndarray | None:
    """A finished chunk, or None if missing or not what it should be (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.shape != (rows, dim) or arr.dtype != np.float16 or not np.isfinite(arr).all():
        return None
    return arr


def _open_cache(folder: Path, key: dict, chunk_size: int) -> dict:
    """The folder's ``meta.json`` when its key matches the request (new and empty otherwise)."""
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"key": key, "chunk_size": chunk_size, "chunk_seconds": {}, "chunk_device": {}}
        _write_json(meta_path, meta)
        return meta
    try:
        stored = json.loads(meta_path.read_text())
    except ValueError:
        raise ConfigError(f"{meta_path} is unreadable; delete {folder} to recompute") from None
    if stored.get("key") != key:
        raise ConfigError(
            f"{folder} holds features made with different settings or data\n"
            f"  stored:    {json.dumps(stored.get('key'), sort_keys=True)}\n"
            f"  requested: {json.dumps(key, sort_keys=True)}\n"
            "They were not used. Delete that folder to recompute.")
    for part in sorted(folder.glob("meta_rank*.json")):  # chunks other ranks computed (torchrun)
        try:
            record = json.loads(part.read_text())
        except ValueError:
            continue  # its chunks are recomputed
        if record.get("key") == key and record.get("chunk_size") == stored["chunk_size"]:
            stored["chunk_seconds"].update(record["chunk_seconds"])
            stored["chunk_device"].update(record["chunk_device"])
    return stored


def _compute_chunk(source: torch.Tensor, c: int, lo: int, hi: int, extractor: Extractor, flip: bool,
                   batch_size: int, bar, warm_up: bool) -> tuple[np.ndarray, float]:
    """Features of images ``lo:hi`` (chunk ``c``) as float16, and the seconds they took."""
    if warm_up:
        # untimed warm-up: CUDA context, cuDNN autotuning for this input shape
        extractor(source[lo:min(hi, lo + batch_size)], flip=flip)
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = []
    for b in range(lo, hi, batch_size):
        out.append(extractor(source[b:min(hi, b + batch_size)], flip=flip))
        if bar is not None:
            bar.update(min(hi, b + batch_size) - b)
    arr = torch.cat(out).numpy().astype(np.float16)
    if not np.isfinite(arr).all():
        raise FloatingPointError(f"non-finite features in chunk {c} (fp16 overflow?)")
    return arr, time.perf_counter() - start


def _progress_bar(progress: bool | str, n: int, extractor: Extractor):
    """A tqdm bar over images (None when ``progress`` is off)."""
    if not progress:
        return None
    from tqdm import tqdm

    desc = progress if isinstance(progress, str) else f"{extractor.backbone.name} @{extractor.resolution}px"
    return tqdm(total=n, unit="img", desc=desc, file=sys.stderr, dynamic_ncols=True)


def extract_features(images: np.ndarray, extractor: Extractor, *, labels: np.ndarray | None = None,
                     flip: bool = False, cache_dir: Path | None = DEFAULT_CACHE_DIR,
                     batch_size: int | None = None, chunk_size: int = DEFAULT_CHUNK,
                     progress: bool | str = True,
                     on_chunk: Callable[[int], None] | None = None, layer: tuple[str, int] | None = None,
                     share: tuple[int, int] = (0, 1)) -> FeatureSet | None:
    """Features of ``images`` (N, H, W, 3) uint8, cached in chunks under ``cache_dir``.

    ``cache_dir=None`` disables the cache. ``on_chunk(i)`` is called after chunk ``i``
    is computed and saved (tests use it to simulate a kill). ``layer``: see ``cache_key``.
    ``share=(r, n)`` computes only the missing chunks ``c`` with ``c % n == r`` into the cache and
    returns None: under torchrun each rank fills its share, then every rank reads them all."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"expected uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    if chunk_size <= 0:
        raise ConfigError(f"chunk size must be positive, got {chunk_size}")
    key = cache_key(extractor.backbone, extractor.weights, extractor.resolution, flip, images, labels,
                    extractor.precision, extractor.engine, layer)
    dim = key["feature_dim"]
    batch_size = batch_size or default_batch_size(extractor.device)
    n = len(images)
    folder = cache_folder(cache_dir, key) if cache_dir is not None else None
    meta = {"key": key, "chunk_size": chunk_size, "chunk_seconds": {}, "chunk_device": {}}
    index, count = share
    if count > 1 and folder is None:
        raise ConfigError("sharing the extraction between processes needs the cache (--cache-dir)")
    if folder is not None:
        meta = _open_cache(folder, key, chunk_size)
        chunk_size = int(meta["chunk_size"])
    n_chunks = (n + chunk_size - 1) // chunk_size
    # On CUDA upload the whole uint8 array once; batches are then slices on the device.
    source = torch.from_numpy(images)
    if extractor.device.type == "cuda":
        source = source.to(extractor.device)
    parts, computed, loaded = [], [], []
    bar = _progress_bar(progress, n, extractor)
    try:
        for c in range(n_chunks):
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            chunk_path = folder / f"chunk_{c:05d}.npy" if folder is not None else None
            arr = _load_chunk(chunk_path, hi - lo, dim) if chunk_path is not None else None
            if arr is not None and str(c) in meta["chunk_seconds"]:
                loaded.append(c)
                if bar is not None:
                    bar.update(hi - lo)
            elif c % count != index:  # another rank's chunk
                continue
            else:
                warm_up = extractor.device.type == "cuda" and not computed
                arr, seconds = _compute_chunk(source, c, lo, hi, extractor, flip, batch_size, bar, warm_up)
                meta["chunk_seconds"][str(c)] = seconds
                meta["chunk_device"][str(c)] = extractor_device_name(extractor)
                if chunk_path is not None:
                    write_npy(chunk_path, arr)
                    _write_json(folder / ("meta.json" if index == 0 else f"meta_rank{index}.json"), meta)
                computed.append(c)
                if on_chunk is not None:
                    on_chunk(c)
            parts.append(arr)
    finally:
        if bar is not None:
            bar.close()
    if count > 1:
        return None
    features = np.concatenate(parts) if parts else np.zeros((0, dim), np.float16)
    seconds = float(sum(meta["chunk_seconds"].get(str(c), 0.0) for c in range(n_chunks)))
    devices = sorted(set(meta["chunk_device"].get(str(c), "?") for c in range(n_chunks)))
    return FeatureSet(features, key, folder, seconds, " + ".join(devices), computed, loaded)
