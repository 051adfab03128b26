"""Several processes on torch.distributed (gloo, loopback, 2 ranks): the same numbers as one process.

Ranks are started the way a user starts them: ``torchrun`` in a subprocess for the commands, and
``lib.core.distributed.on_ranks`` (torch.multiprocessing, with the environment torchrun sets) for the
library functions. Every
collective has a timeout (LIB_DIST_TIMEOUT_S), and every subprocess a wall-clock limit, so a
broken rank fails the test instead of hanging it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from lib.core import distributed
from lib.core.paths import REPO_ROOT

TORCHRUN = Path(sys.executable).with_name("torchrun")
LIMIT_S = 240  # any one multi-process run; the real ones take seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def on_ranks(fn, *args, world: int = 2) -> list:
    os.environ["LIB_DIST_TIMEOUT_S"] = "60"  # inherited by the spawned ranks
    return distributed.on_ranks(fn, *args, world=world, timeout_s=LIMIT_S)


def rel(a: np.ndarray | float, b: np.ndarray | float) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


# --- the movie objective sharded by users ----------------------------------------------------
def likes(n_users: int = 37, n_movies: int = 15, seed: int = 3) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_movies)) < 0.35).astype(float)
    dense[0] = 1.0
    return sp.csr_matrix(dense)


def movie_numbers(L: sp.csr_matrix) -> dict:
    """Cost, gradient, X0 products, the floor and a short L-BFGS run: what the chapter computes."""
    from lib.movies.config import RunSpec
    from lib.movies.objective import LikesObjective, floor
    from lib.movies.optimise import initial_embeddings, run_optimizer

    torch.set_num_threads(1)
    objective = LikesObjective(L)
    V = initial_embeddings(objective.n, 3, seed=0, std=0.1)
    loss, grad = objective.value_and_grad(V)
    ref = floor(objective, 3)
    run = run_optimizer(objective, RunSpec("lbfgs", 1.0), V, 25, floor_loss=ref.loss)
    return {"users_here": objective.L_np.shape[0], "c0": objective.offdiag_sq_norm, "loss": loss,
            "grad": grad.numpy(), "x0v": objective.x0_matmul_np(V.numpy()), "floor": ref.loss,
            "lbfgs": np.asarray(run.losses), "final_V": run.V}


def test_the_movie_cost_gradient_floor_and_lbfgs_match_one_process() -> None:
    L = likes()
    one = movie_numbers(L)
    ranks = on_ranks(movie_numbers, L)
    assert [r["users_here"] for r in ranks] == [19, 18]  # each rank holds its users' rows only
    for r in ranks:
        assert r["c0"] == one["c0"]  # an integer sum: exact
        assert rel(r["loss"], one["loss"]) <= 1e-10 and rel(r["grad"], one["grad"]) <= 1e-10
        assert rel(r["x0v"], one["x0v"]) <= 1e-10 and rel(r["floor"], one["floor"]) <= 1e-9
        assert len(r["lbfgs"]) == len(one["lbfgs"]) and rel(r["lbfgs"], one["lbfgs"]) <= 1e-9
        assert rel(r["final_V"], one["final_V"]) <= 1e-8
    assert np.array_equal(ranks[0]["lbfgs"], ranks[1]["lbfgs"])  # the ranks take the same steps


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_item_once(world: int, monkeypatch) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    for n in (0, 1, 7, 10):
        pieces = []
        for r in range(world):
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            pieces += list(range(n))[distributed.shard(n)]
        assert pieces == list(range(n))


# --- data-parallel finetuning ---------------------------------------------------------------
def tiny_finetune(n_train: int = 64, n_test: int = 101, batch: int = 16, steps_only: bool = False) -> dict:
    """A few training steps of ``train_one_epoch`` and a sharded ``evaluate`` on random images,
    with a network without batch norm (CPUs have no SyncBatchNorm: see the next test's docstring)."""
    from torch import nn

    from lib.cifar.finetune import (Context, FinetuneNet, Recipe, RunOptions, Splits, build_optimizer,
                                    build_scheduler, evaluate, train_one_epoch)
    from lib.cifar.finetune.train import data_parallel

    torch.set_num_threads(1)
    recipe = Recipe(backbone="resnet18", pretrained=False, resolution=32, batch_size=batch, epochs=1,
                    head_dropout=0.0, val_size=0)
    ctx = Context.create(RunOptions(device="cpu"))
    g = np.random.default_rng(0)
    train = torch.from_numpy(g.integers(0, 256, (n_train, 40, 40, 3), dtype=np.uint8))
    test = torch.from_numpy(g.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8))
    splits = Splits(train, torch.from_numpy(g.integers(0, 10, n_train)), test[:0], torch.zeros(0, dtype=torch.long),
                    test, torch.from_numpy(g.integers(0, 10, n_test)))
    torch.manual_seed(0)
    seen: list[int] = []  # the batch each forward pass gets: a rank's share, not the global batch
    features = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 24), nn.ReLU())
    features.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    net = FinetuneNet(features, 24, 10, 0.0)
    optimizer = build_optimizer(net, recipe)
    row = train_one_epoch(data_parallel(net, ctx), nn.CrossEntropyLoss(label_smoothing=0.1), optimizer,
                          build_scheduler(optimizer, recipe, n_train // batch), splits, recipe, ctx, 0)
    scored = evaluate(net, splits, "test", recipe, ctx, batch_size=7)
    return {"params": [p.detach().clone() for p in net.parameters()], "row": row, "probs": scored["probs"], "seen": seen,
            "accuracy": scored["accuracy"], "loss": scored["loss"]}


def test_data_parallel_steps_equal_one_process_with_the_global_batch() -> None:
    """2 ranks x 8 images per step = one process x 16 (parameters to 1e-5 relative: float32 sums
    of the two halves' averaged gradients round differently from one mean over 16)."""
    one = tiny_finetune()
    ranks = on_ranks(tiny_finetune)
    assert one["seen"][:4] == [16] * 4 and all(r["seen"][:4] == [8] * 4 for r in ranks)
    for r in ranks:
        for a, b in zip(r["params"], one["params"]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert r["row"]["train_loss"] == pytest.approx(one["row"]["train_loss"], rel=1e-5)
        assert r["row"]["train_accuracy"] == one["row"]["train_accuracy"]


def test_sharded_evaluation_counts_every_image_once() -> None:
    """101 test images on 2 ranks (51 + 50): 101 probability rows in the official order, as one process."""
    one = tiny_finetune(batch=16)
    ranks = on_ranks(tiny_finetune)
    assert [sum(r["seen"][4:]) for r in ranks] == [51, 50] and sum(one["seen"][4:]) == 101  # shards scored
    for r in ranks:
        assert r["probs"].shape == (101, 10)
        np.testing.assert_allclose(r["probs"], one["probs"], rtol=1e-4, atol=1e-6)
        assert r["accuracy"] == one["accuracy"] and r["loss"] == pytest.approx(one["loss"], rel=1e-5)


def where_ranks_write(folder: Path) -> str:
    from lib.core.artifacts import result_path

    with result_path(folder / "artifact.json") as tmp:
        tmp.write_text(f"rank {distributed.rank()}\n")
        return str(tmp.parent)


def test_only_rank_0_writes_into_the_results_folder(tmp_path: Path) -> None:
    folder = tmp_path / "results"
    places = on_ranks(where_ranks_write, folder)
    assert places[0] == str(folder) and not places[1].startswith(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["artifact.json"]
    assert (folder / "artifact.json").read_text() == "rank 0\n"


# --- the command under torchrun -------------------------------------------------------------
TINY_RUN = ["finetune", "--backbone", "resnet18", "--random-init", "--resolution", "32", "--batch-size", "16",
            "--val-size", "32", "--limit-test", "41", "--no-progress", "--device", "cpu"]


def torchrun(*args: str, env: dict | None = None, timeout: float = LIMIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([str(TORCHRUN), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "LIB_DIST_TIMEOUT_S": "60", **(env or {})})


def tiny_argv(tmp: Path, mirror: Path, *extra: str) -> list[str]:
    return ["-m", "lib", *TINY_RUN, "--results-dir", str(tmp / "results"), "--checkpoint-dir", str(tmp / "ckpt"),
            "--mirror", str(mirror), "--allow-dirty", *extra]


def test_a_global_batch_the_world_does_not_divide_is_refused_before_any_work(tmp_path: Path) -> None:
    done = torchrun("--nproc-per-node", "2", f"--master-port={free_port()}", "-m", "lib", "finetune",
                    "--batch-size", "33", "--mirror", str(tmp_path / "no-data"), "--allow-dirty", timeout=120)
    assert done.returncode != 0
    assert "error: --batch-size 33 is the global batch and 2 processes do not divide it" in done.stderr
    assert "rank 1: --batch-size 33" in done.stderr  # each rank says why it stopped


def test_finetune_under_torchrun_writes_once_and_records_the_world(tmp_path: Path, mirror: Path) -> None:
    done = torchrun("--nproc-per-node", "2", f"--master-port={free_port()}",
                    *tiny_argv(tmp_path, mirror, "--limit-train", "48", "--epochs", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "finetune.json").read_text())
    assert doc["test_n"] == 41 and np.load(tmp_path / "results" / "finetune_test_probs.npy").shape == (41, 10)
    assert doc["provenance"]["config"]["distributed"]["world_size"] == 2
    assert doc["provenance"]["config"]["distributed"]["backend"] == "gloo"
    assert doc["provenance"]["hardware"]["processes"] == 2
    assert done.stdout.count("test accuracy") == 1  # rank 0 alone logs
    assert not [p for p in (tmp_path / "results").iterdir() if p.name.startswith(".")]  # no temporary files


def test_a_killed_rank_ends_the_job_and_its_checkpoint_resumes_in_one_process(tmp_path: Path, mirror: Path) -> None:
    argv, port = tiny_argv(tmp_path, mirror, "--limit-train", "960", "--epochs", "4"), free_port()
    job = subprocess.Popen([str(TORCHRUN), "--nproc-per-node", "2", f"--master-port={port}", *argv],
                           cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "LIB_DIST_TIMEOUT_S": "30"})
    last = tmp_path / "ckpt" / "last.pt"
    deadline = time.monotonic() + LIMIT_S
    while not last.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint after the first epoch"
    rank1 = process_with_environment({"RANK": "1", "MASTER_PORT": str(port)})
    assert rank1 is not None, "rank 1 not found"
    os.kill(rank1, signal.SIGKILL)
    _, stderr = job.communicate(timeout=LIMIT_S)
    assert job.returncode != 0 and "FAILED" in stderr.upper()
    resumed = subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, capture_output=True, text=True, timeout=LIMIT_S)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stdout
    doc = json.loads((tmp_path / "results" / "finetune.json").read_text())
    assert doc["epochs"] == 4 and doc["resumed_from"]["epoch"] >= 1


def process_with_environment(wanted: dict[str, str]) -> int | None:
    """The pid of this user's process whose environment holds ``wanted`` (a torchrun worker)."""
    for proc in Path("/proc").iterdir():
        try:
            env = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError):
            continue
        if all(env.get(k) == v for k, v in wanted.items()):
            return int(proc.name)
    return None


def test_two_nodes_on_the_loopback_address_complete_a_run(tmp_path: Path, mirror: Path) -> None:
    port = free_port()
    nodes = [subprocess.Popen([str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node),
                               "--rdzv-backend", "c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id", "tiny",
                               *tiny_argv(tmp_path, mirror, "--limit-train", "48", "--epochs", "1")],
                              cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "LIB_DIST_TIMEOUT_S": "60"}) for node in (0, 1)]
    outputs = [node.communicate(timeout=LIMIT_S) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    doc = json.loads((tmp_path / "results" / "finetune.json").read_text())
    assert doc["provenance"]["config"]["distributed"]["world_size"] == 2 and doc["test_n"] == 41


def shared_extraction(images: np.ndarray, cache: Path) -> dict:
    """Each rank computes its share of the chunks into the cache, then reads them all (as partial finetuning does)."""
    from lib.cifar.backbones import get_backbone
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    torch.set_num_threads(1)
    extractor = Extractor(get_backbone("resnet18"), 32, pretrained=False, device="cpu", seed=0, engine="torch")
    share = (distributed.rank(), distributed.world_size())
    assert extract_features(images, extractor, cache_dir=cache, chunk_size=8, progress=False, share=share) is None
    distributed.barrier()
    whole = extract_features(images, extractor, cache_dir=cache, chunk_size=8, progress=False)
    return {"features": whole.features, "computed": whole.computed_chunks, "loaded": whole.loaded_chunks}


def test_the_activation_cache_is_shared_out_between_ranks_and_stays_complete(tmp_path: Path) -> None:
    images = np.random.default_rng(1).integers(0, 256, (36, 32, 32, 3), dtype=np.uint8)  # 5 chunks of 8
    ranks = on_ranks(shared_extraction, images, tmp_path / "cache")
    folder = next((tmp_path / "cache" / "features").iterdir())
    assert sorted(p.name for p in folder.glob("meta*.json")) == ["meta.json", "meta_rank1.json"]
    assert sorted(p.name for p in folder.glob("chunk_*.npy")) == [f"chunk_{c:05d}.npy" for c in range(5)]
    for r in ranks:  # the second pass computed nothing: every chunk was there, from one rank or the other
        assert r["computed"] == [] and r["loaded"] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(ranks[0]["features"], ranks[1]["features"])
    from lib.cifar.backbones import get_backbone
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    torch.set_num_threads(1)
    one = extract_features(images, Extractor(get_backbone("resnet18"), 32, pretrained=False, device="cpu", seed=0,
                                             engine="torch"), cache_dir=None, chunk_size=8, progress=False)
    np.testing.assert_array_equal(ranks[0]["features"], one.features)


def test_partial_finetuning_under_torchrun_shares_the_cache(tmp_path: Path, mirror: Path) -> None:
    done = torchrun("--nproc-per-node", "2", f"--master-port={free_port()}",
                    *tiny_argv(tmp_path, mirror, "--limit-train", "48", "--epochs", "1", "--trainable-stages", "1",
                               "--cache-dir", str(tmp_path / "cache")))
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "finetune.json").read_text())
    assert doc["partial"]["trainable_stages"] == 1 and doc["test_n"] == 41
    assert list((tmp_path / "cache" / "features").glob("*/chunk_00000.npy"))  # (one chunk here: the sharing of
    # several is the previous test's)
