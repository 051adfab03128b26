"""Choosing the torch device: one rule for every command (``auto`` means CUDA when present)."""
from __future__ import annotations

import torch

from lib.core.errors import ConfigError


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto``/None -> CUDA if available else CPU; otherwise the named device, checked."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"invalid --device {name!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} requested but CUDA is not available on this machine")
    return device
