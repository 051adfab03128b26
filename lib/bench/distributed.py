"""``python -m lib bench-distributed`` (appendix B): torchrun on this machine, measured with 1 and 2
processes, the bytes each step all-reduces, and a projection to 8 and 64 GPUs or nodes.

The measurements run the library's own code on ranks started as torchrun starts them
(``lib.core.distributed.on_ranks``): data-parallel finetuning steps (``train_one_epoch`` under
``DistributedDataParallel``) and evaluations of the movie cost and gradient with the users sharded.
On one 2-core machine two processes share the same two cores, so no speed-up is expected: the
numbers show what the communication costs, not what more machines gain. The projection is
arithmetic on stated assumptions (a ring all-reduce's bytes over an assumed bandwidth, plus an
assumed latency per message, and compute divided evenly), labelled as such wherever it is shown.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

NAME = "bench_distributed"
WORLDS = (1, 2)


@dataclass(frozen=True)
class Assumptions:
    """What the projection assumes; none of it is measured here."""
    gpus_per_node: int = 8
    intra_node_bytes_per_s: float = 200e9   # all-reduce bus bandwidth inside a node (NVLink class)
    inter_node_bytes_per_s: float = 12.5e9  # between nodes: a 100 Gb/s network
    latency_s: float = 10e-6                # per message of the ring (2 (N - 1) messages per all-reduce)
    worlds: tuple[int, ...] = (8, 64)


@dataclass(frozen=True)
class Settings:
    """The measured runs: a short data-parallel finetune and repeated movie cost evaluations."""
    backbone: str = "efficientnet_lite0"
    resolution: int = 64
    batch_size: int = 64
    train_images: int = 1280      # 20 global batches per epoch
    epochs: int = 3               # timed epochs; the fastest counts (the least disturbed by other work)
    movie_repeats: int = 20       # evaluations per timed block
    movie_blocks: int = 3         # timed blocks; the fastest counts


def ring_seconds(n_bytes: float, world: int, a: Assumptions, one_node: bool) -> float:
    """A ring all-reduce of ``n_bytes`` over ``world`` ranks: 2 (N - 1) / N of the bytes through each
    link and 2 (N - 1) message latencies (Patarasuk & Yuan 2009); the slowest link sets the pace, the
    network's as soon as the ring leaves one node."""
    if world == 1:
        return 0.0
    bandwidth = a.intra_node_bytes_per_s if one_node and world <= a.gpus_per_node else a.inter_node_bytes_per_s
    return 2 * (world - 1) / world * n_bytes / bandwidth + 2 * (world - 1) * a.latency_s


def finetune_steps(settings: Settings, data_dir: str | None, mirror: str | None) -> dict:
    """One epoch of ``train_one_epoch`` on this rank's share of each global batch (runs on every rank)."""
    import torch
    from torch import nn

    from lib.cifar.finetune import Context, Recipe, RunOptions, build_model, build_optimizer, build_scheduler
    from lib.cifar.finetune import prepare_splits, train_one_epoch
    from lib.cifar.finetune.train import data_parallel
    from lib.core import distributed
    from lib.core.data import DataDirs

    recipe = Recipe(backbone=settings.backbone, resolution=settings.resolution, batch_size=settings.batch_size,
                    epochs=settings.epochs, limit_train=settings.train_images, val_size=0)
    ctx = Context.create(RunOptions(device="cpu"))
    mirror_path = Path(mirror) if mirror else None
    splits = prepare_splits(recipe, DataDirs.resolve(data_dir, mirror_path), ctx.device)
    net, _ = build_model(recipe, mirror_path)
    optimizer = build_optimizer(net, recipe)
    steps = settings.train_images // settings.batch_size
    model, scheduler = data_parallel(net, ctx), build_scheduler(optimizer, recipe, steps)
    criterion = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    rows = []
    for epoch in range(settings.epochs):
        distributed.barrier()
        rows.append(train_one_epoch(model, criterion, optimizer, scheduler, splits, recipe, ctx, epoch))
    best = max(rows, key=lambda row: row["images_per_s"])
    return {"images_per_s": best["images_per_s"], "seconds": best["seconds"], "steps": steps,
            "images_per_s_each_epoch": [row["images_per_s"] for row in rows],
            "threads_per_process": torch.get_num_threads(), "train_loss": rows[-1]["train_loss"]}


def movie_evaluations(L, dim: int, settings: Settings) -> dict:
    """Seconds per cost-and-gradient evaluation with this rank's users (runs on every rank)."""
    import torch

    from lib.core import distributed
    from lib.movies.objective import LikesObjective
    from lib.movies.optimise import initial_embeddings

    objective = LikesObjective(L)
    V = initial_embeddings(objective.n, dim, seed=0, std=0.1)
    loss, _ = objective.value_and_grad(V)  # warm-up
    blocks = []
    for _ in range(settings.movie_blocks):
        distributed.barrier()
        start = time.perf_counter()
        for _ in range(settings.movie_repeats):
            objective.value_and_grad(V)
        distributed.barrier()
        blocks.append((time.perf_counter() - start) / settings.movie_repeats)
    return {"seconds_per_evaluation": min(blocks), "seconds_each_block": blocks, "loss": loss,
            "users_here": int(objective.L_np.shape[0]), "threads_per_process": torch.get_num_threads()}


def gradient_bytes() -> dict:
    """Bytes DistributedDataParallel all-reduces per step: every trainable parameter's float32 gradient."""
    from lib.cifar.backbones import get_backbone
    from lib.cifar.finetune import N_CLASSES
    from lib.core import artifacts

    out = {}
    for name in ("resnet18", "efficientnet_lite0"):
        backbone = get_backbone(name)
        features, _ = backbone.build(pretrained=False, resolution=224)
        params = sum(p.numel() for p in features.parameters()) + (backbone.feature_dim + 1) * N_CLASSES
        out[f"{name} (every layer)"] = 4 * params
    partial = artifacts.load_json("finetune_cpu_partial_short")
    out["efficientnet_lite0 (chapter 2: last two stages)"] = 4 * partial["trainable_params"]
    return out


def projection(measured: dict, a: Assumptions) -> list[dict]:
    """Step times at 8 and 64 GPUs (finetuning, from the lent GPU's recorded images/s) and nodes
    (the movie objective at MovieLens-32M's size, from this machine's recorded seconds per evaluation):
    compute divided evenly, plus one ring all-reduce per step. A projection, not a run."""
    from lib.bench.scale import ML32M
    from lib.core import artifacts

    gpu = artifacts.load_json("finetune")
    per_step = gpu["recipe"]["batch_size"] / gpu["timings"]["train_images_per_s"]
    grad = 4 * gpu["trainable_params"]
    scale = artifacts.load_json("movies_scale")
    big = scale["rows"][-1]
    per_eval = big["parts"]["optimiser"] / big["optimiser_evaluations"]
    product = 8 * ML32M[1] * big["dim"]  # X0 V: M x d float64, once per evaluation
    rows = []
    for what, one, n_bytes, unit in (("finetune step (GPU recorded)", per_step, grad, "GPUs"),
                                     ("movie evaluation at MovieLens-32M (this CPU recorded)", per_eval, product,
                                      "nodes")):
        for world in a.worlds:
            comm = ring_seconds(n_bytes, world, a, one_node=unit == "GPUs")
            rows.append({"what": what, "world": world, "unit": unit, "one_s": one, "compute_s": one / world,
                         "all_reduce_bytes": n_bytes, "all_reduce_s": comm,
                         "speedup": one / (one / world + comm), "efficiency": one / (one / world + comm) / world})
    return rows


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")


def run(args: argparse.Namespace) -> int:
    from lib.core import artifacts, distributed
    from lib.core.data import DataDirs, load_movielens
    from lib.core.provenance import collect, load_average
    from lib.movies import likes as mv
    from lib.movies.config import CONFIG

    settings, assumptions, start = Settings(), Assumptions(), time.perf_counter()
    mirror = str(args.mirror) if args.mirror else None
    likes = mv.likes_matrix(load_movielens(DataDirs.resolve(args.data_dir, args.mirror)).ratings,
                            "threshold", CONFIG.liked_threshold).matrix
    dim = artifacts.load_json("movies")["dim"]
    measured = {}
    for world in WORLDS:
        load_before = load_average()
        tune = distributed.on_ranks(finetune_steps, settings, args.data_dir, mirror, world=world)[0]
        movies = distributed.on_ranks(movie_evaluations, likes, dim, settings, world=world)[0]
        measured[str(world)] = {"finetune": tune, "movies": movies, "load_before": load_before,
                                "load_after": load_average()}
        print(f"[bench-distributed] {world} process(es): finetune {tune['images_per_s']:.0f} img/s, "
              f"movie evaluation {movies['seconds_per_evaluation'] * 1e3:.1f} ms", file=sys.stderr, flush=True)
    payload = {"settings": asdict(settings), "assumptions": asdict(assumptions), "measured": measured,
               "movie_dim": dim, "movie_product_bytes": 8 * likes.shape[1] * dim,
               "gradient_bytes": gradient_bytes(), "projection": projection(measured, assumptions)}
    provenance = collect(seed=0, wall_time_s=time.perf_counter() - start,
                         config={"settings": asdict(settings), "assumptions": asdict(assumptions)}, weights=None)
    path = artifacts.save_json(NAME, payload, provenance, Path(args.results_dir) if args.results_dir else None)
    print(f"wrote {path}")
    return 0
