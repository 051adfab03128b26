"""Choosing the torch device: one rule for every command (``auto`` means CUDA when present)."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from threadpoolctl import threadpool_limits

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


@contextmanager
def cpu_threads(threads: int) -> Iterator[None]:
    """torch's and the BLAS/OpenMP pools' threads set to ``threads`` for a block, then torch's restored:
    runs and their re-derivations must use the thread count they record (sums round by thread).
    Under torchrun a process gets at most its share of the node's cores."""
    from lib.core import distributed

    if distributed.launched():
        threads = min(threads, distributed.cores_per_process())
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)
