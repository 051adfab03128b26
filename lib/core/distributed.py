"""Several processes under ``torchrun``: the process group, who writes, and the sums ranks share.

``torchrun --nproc-per-node N -m lib <command>`` starts N copies of the command with RANK,
WORLD_SIZE and LOCAL_RANK in their environment, as torchvision's reference scripts expect
(``references/classification/utils.py``: ``init_distributed_mode``). :func:`session` joins the
group on torch.distributed's own engine: NCCL for CUDA tensors when every rank has a GPU, gloo for
CPU tensors (also on a GPU node, so ``--device cpu`` works there), with a
timeout so that a dead rank ends the job with an error instead of a hang. Without torchrun
nothing here does anything: the world is one process and every helper is the identity.

Rank 0 alone writes (artifacts, checkpoints, logs, progress bars): the other ranks' output is
discarded while the command runs and their tqdm bars are disabled (``lib/__main__.py``); an error
that ends a rank's command still reaches stderr, labelled with the rank.
"""
from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from lib.core.errors import ConfigError

# A rank waits this long for the others at a collective before the job fails (torch's default is
# 10-30 min); LIB_DIST_TIMEOUT_S overrides it (the tests use seconds).
DEFAULT_TIMEOUT_S = 300


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def backend() -> str | None:
    return dist.get_backend() if active() else None


def is_main() -> bool:
    return rank() == 0


@contextmanager
def session(supports: bool, command: str) -> Iterator[None]:
    """Join the process group for the command's run when launched by torchrun, then leave it."""
    if not launched():
        yield
        return
    if not supports:
        raise ConfigError(f"'{command}' runs as one process; start it without torchrun "
                          "(finetune, movies and bench-scale run under torchrun)")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    gpus = torch.cuda.is_available() and torch.cuda.device_count() >= local_world
    if gpus:
        torch.cuda.set_device(local_rank)
    torch.set_num_threads(cores_per_process())  # the node's cores shared between its ranks
    backend = "cpu:gloo,cuda:nccl" if gpus else "gloo"
    timeout = dt.timedelta(seconds=float(os.environ.get("LIB_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S)))
    dist.init_process_group(backend, timeout=timeout)
    streams = sys.stdout, sys.stderr
    quiet = None if is_main() else open(os.devnull, "w")  # noqa: SIM115 - closed below
    if quiet is not None:  # rank 0 alone logs
        sys.stdout = sys.stderr = quiet
    try:
        yield
    finally:
        sys.stdout, sys.stderr = streams  # an error leaving the command is reported by every rank
        if quiet is not None:
            quiet.close()
        dist.destroy_process_group()


def rank_label() -> str:
    """``"rank 1: "`` in another rank's messages under torchrun (each rank reports its own errors)."""
    label = os.environ.get("RANK", "0") if launched() else "0"
    return "" if label == "0" else f"rank {label}: "


def cores_per_process() -> int:
    """This process's share of the node's cores: more threads than cores make OpenMP's spinning
    threads and gloo's waits fight (measured: 25 times slower), so commands cap their threads here."""
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))) if launched() else 1
    return max(1, len(os.sched_getaffinity(0)) // local_world)


def device_for_rank(requested: str) -> str:
    """``auto`` on a GPU node under NCCL is this rank's GPU; otherwise the request as given."""
    if active() and requested == "auto" and "nccl" in dist.get_backend():
        return f"cuda:{torch.cuda.current_device()}"
    return requested


def require_divisible(global_batch: int, what: str = "--batch-size") -> int:
    """Each rank's share of a global batch; refused before any work when the world does not divide it."""
    n = world_size()
    if global_batch % n:
        raise ConfigError(f"{what} {global_batch} is the global batch and {n} processes do not divide it: "
                          f"choose a multiple of {n} (e.g. {global_batch - global_batch % n or n})")
    return global_batch // n


def shard(n: int) -> slice:
    """This rank's contiguous share of ``n`` items (sizes differ by at most one; none is counted twice)."""
    size, extra = divmod(n, world_size())
    r = rank()
    start = r * size + min(r, extra)
    return slice(start, start + size + (r < extra))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` summed over the ranks, in place (the identity in one process)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_shards(part: torch.Tensor) -> torch.Tensor:
    """Every rank's ``part`` (rows of different counts) concatenated in rank order, on every rank."""
    if world_size() == 1:
        return part
    counts = [torch.zeros((), dtype=torch.long, device=part.device) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor(part.shape[0], device=part.device))
    longest = int(max(counts))
    padded = torch.zeros((longest, *part.shape[1:]), dtype=part.dtype, device=part.device)
    padded[:part.shape[0]] = part
    pieces = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(pieces, padded)  # gloo and NCCL gather equal shapes: pad, then cut
    return torch.cat([piece[:int(c)] for piece, c in zip(pieces, counts)])


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank, before evaluating or saving."""
    if world_size() > 1:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` holds on some rank: decisions that end a loop must be the same on every rank."""
    if world_size() == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor(int(flag))) > 0)  # a CPU tensor: gloo, also beside NCCL


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def describe(device: torch.device | str) -> dict:
    """World size, backend and every rank's device, for the artifact's provenance."""
    if not active():
        return {"world_size": 1, "backend": None, "rank_devices": [str(device)]}
    devices: list = [None] * world_size()
    dist.all_gather_object(devices, f"{os.uname().nodename}:{device}")
    return {"world_size": world_size(), "backend": dist.get_backend(), "rank_devices": devices}


def _spawned_rank(rank: int, world: int, port: int, fn, args: tuple, folder: str) -> None:
    import pickle
    from pathlib import Path

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with session(True, getattr(fn, "__name__", "function")):
        result = fn(*args)
    (Path(folder) / f"rank{rank}.pkl").write_bytes(pickle.dumps(result))


def on_ranks(fn, *args, world: int = 2, timeout_s: float = 600) -> list:
    """``fn(*args)`` on ``world`` new processes forming one group on the loopback address, with the
    environment torchrun gives its workers; each rank's return value. For measurements and tests of
    library functions; commands run under torchrun itself."""
    import pickle
    import socket
    import tempfile
    import time
    from pathlib import Path

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="ranks-") as folder:
        ctx = mp.start_processes(_spawned_rank, args=(world, port, fn, args, folder), nprocs=world, join=False,
                                 start_method="spawn")
        deadline = time.monotonic() + timeout_s
        while not ctx.join(timeout=max(1.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                for process in ctx.processes:
                    process.kill()
                raise TimeoutError(f"{world} ranks of {fn.__name__} still running after {timeout_s:.0f} s")
        return [pickle.loads((Path(folder) / f"rank{r}.pkl").read_bytes()) for r in range(world)]
