"""Pretrained weights are used only after a full sha256 check."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from lib.core import weights
from lib.core.errors import DataVerificationError


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def test_random_state_dict_under_resnet18_name_is_rejected(torch_home: Path) -> None:
    fake = weights.checkpoint_dir() / "resnet18-f37072fd.pth"
    fake.parent.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), fake)
    with pytest.raises(DataVerificationError) as info:
        weights.resnet18_state_dict()
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and weights.RESNET18_SHA256 in message


def test_random_state_dict_in_mirror_is_rejected_and_not_cached(torch_home: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save(resnet18(weights=None).state_dict(), mirror / "resnet18-f37072fd.pth")
    with pytest.raises(DataVerificationError, match="sha256 mismatch"):
        weights.resnet18_imagenet(mirror)
    assert not (weights.checkpoint_dir() / "resnet18-f37072fd.pth").exists()


def test_stand_in_weights_are_genuine() -> None:
    verified = weights.efficientnet_lite0()
    assert verified.sha256 == weights.EFFICIENTNET_LITE0_SHA256
    assert verified.identity()["file"] == "efficientnet-lite0-57934424.pth"
