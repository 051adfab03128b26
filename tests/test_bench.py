"""Smoke tests of the benchmarks on tiny inputs: the expected keys and sane values.

No test asserts a speed: timings on a shared CPU vary; only their bookkeeping is checked.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lib.bench import common as bcommon
from lib.bench import embeddings as bemb
from lib.bench import extraction as bext
from lib.bench import linear as blin
from lib.bench import report as breport
from lib.cifar.backbones import get_backbone
from lib.cli import COMMANDS, main
from lib.cifar.extract import Extractor


@pytest.fixture(scope="module")
def tiny_images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, size=8)


def test_bench_command_is_registered():
    assert COMMANDS["bench"][0] == "lib.bench.cli"


def test_bad_parts_are_rejected(capsys):
    assert main(["bench", "--parts", "extraction,nope"]) == 1
    assert "unknown ['nope']" in capsys.readouterr().err


def test_optimized_cpu_network_computes_the_eager_function(tiny_images):
    images, _ = tiny_images
    # pretrained weights: a randomly initialised Lite0 outputs features of about 1e-9
    fast = Extractor(get_backbone("efficientnet_lite0"), 64, device="cpu", engine="torch", optimize=True)
    eager = Extractor(get_backbone("efficientnet_lite0"), 64, device="cpu", engine="torch")
    assert fast.optimized and not eager.optimized
    x = torch.from_numpy(images[:3])  # a batch size the trace never saw
    a, b = fast(x), eager(x)
    assert a.shape == (3, 1280) and b.abs().max() > 0.1
    assert (a - b).abs().max() < 1e-3
    assert (fast(x, flip=True) - b).abs().max() > 1e-2  # a different input is told apart


def test_textbook_dataset_is_cifar10_style(tiny_images):
    images, labels = tiny_images
    dataset = bext.CifarStyleDataset(images, labels, bext.textbook_transform("efficientnet_lite0", 64))
    x, y = dataset[2]
    assert x.shape == (3, 64, 64) and y == int(labels[2])
    # Normalize(127/255, 128/255) is the Lite convention (x*255 - 127) / 128
    img, _ = bext.CifarStyleDataset(images, labels)[0]
    assert img.size == (32, 32)
    plain = bext.textbook_transform("efficientnet_lite0", 32)(img)
    expected = (torch.from_numpy(images[0]).permute(2, 0, 1).float() - 127) / 128
    assert torch.allclose(plain, expected, atol=1e-5)


def test_extraction_part_on_eight_images(tiny_images):
    images, labels = tiny_images
    # 32 px: no resizing, so both pipelines feed the network the same input and the features
    # differ only by float rounding and the project's float16 storage.
    e = bext.bench_extraction(images, labels, resolution=32, batch_size=4, profile_images=8, interleave=4)
    assert e["images"] == 8
    for key in ("project", "textbook"):
        assert e[key]["seconds"] > 0 and e[key]["images_per_s"] > 0
        shares = e["profile"][key]["shares"]
        assert abs(sum(shares.values()) - 1) < 1e-9 and e["profile"][key]["operators"]
    assert e["speedup"] == pytest.approx(e["project"]["images_per_s"] / e["textbook"]["images_per_s"])
    assert e["input_max_abs_difference"] < 1e-5
    assert e["network_max_abs_difference"] < 1e-3
    assert e["max_abs_feature"] > 0.1
    assert e["max_abs_difference"] < 1e-3 * max(1.0, e["max_abs_feature"])
    assert e["flops_per_image"] > 1e7  # Lite0 at 32 px: about 2% of its 0.77 GFLOP at 224 px
    assert e["matmul"]["gflops"] > 0 and 0 < e["matmul_fraction"] < 10


def test_matmul_and_flop_counter_are_consistent():
    mm = bext.matmul_gflops(n=256, repeats=2)
    assert mm["gflops"] == pytest.approx(2 * 256 ** 3 / mm["best_seconds"] / 1e9)
    # 3 x 4 x 4 inputs flattened into a 48 -> 10 matrix multiply: 2 * 48 * 10 FLOPs
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 10, bias=False))
    assert bext.forward_flops(net, 4) == 2 * 48 * 10


def test_linear_part_reaches_a_common_accuracy():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 20)) * 1.5
    y = rng.integers(0, 3, size=600)
    x = centres[y] + rng.normal(size=(600, 20))
    r = blin.bench_linear(x[:400], y[:400], x[400:], y[400:], weight_decay=1e-2, schedule=(10, 20, 40, 80))
    assert r["n_train"] == 400 and r["n_test"] == 200
    assert r["target_accuracy"] == pytest.approx(min(r["final_accuracy"].values()) - bcommon.ACCURACY_SLACK)
    for key in ("project", "sklearn"):
        hit = r[key]["seconds_to_target"]
        assert hit > 0 and any(row["seconds"] == hit and row["test_accuracy"] >= r["target_accuracy"]
                               for row in r[key]["trace"])
        assert [row["max_iter"] for row in r[key]["trace"]] == sorted(row["max_iter"] for row in r[key]["trace"])
    assert r["final_accuracy"]["project"] > 0.8  # separable blobs: both solvers learn them
    assert abs(r["final_accuracy"]["project"] - r["final_accuracy"]["sklearn"]) < 0.05
    assert r["speedup"] == pytest.approx(r["sklearn"]["seconds_to_target"] / r["project"]["seconds_to_target"])


def _ratings(n_users=60, n_movies=25, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [(u, m, float(rng.choice([2.0, 3.0, 4.0, 4.5, 5.0])))
            for u in range(n_users) for m in range(n_movies) if rng.random() < 0.4]
    return pd.DataFrame(rows, columns=["userId", "movieId", "rating"])


def test_recipe_minimises_the_same_cost():
    from lib.movies import objective as obj
    from lib.movies import likes as mv
    likes = mv.likes_matrix(_ratings(), "threshold", 4.0)
    X = mv.cooccurrence(likes)
    r = bemb.recipe_run(X, 3, iterations=30, lr=0.01)
    assert r["seconds"] > 0 and r["iterations"] == 30
    # its own loss at the start equals lib.movies.objective's cost of the same V (float32 vs float64)
    torch.manual_seed(0)
    V = torch.nn.Linear(X.shape[0], 3, bias=False).weight.detach().T.double()
    assert r["losses"][0] == pytest.approx(obj.DenseObjective(X).value(V), rel=1e-4)
    assert r["losses"][-1] < r["losses"][0]


def test_embeddings_part_on_synthetic_ratings():
    r = bemb.bench_embeddings(_ratings(), dim=3, best_run="lbfgs lr=1", extra_runs=("adam lr=0.1",),
                               recipe_iterations=20)
    assert r["floor_loss"] > 0 and r["dim"] == 3
    best = r["project"]["lbfgs lr=1"]
    assert best["reached"] and best["gap"] <= r["target_gap"] + 1e-12
    assert set(r["project"]) == {"lbfgs lr=1", "adam lr=0.1"}
    assert r["recipe"]["final_loss"] >= r["floor_loss"] * (1 - 1e-9)  # nothing beats the floor
    assert r["speedup"] is not None and r["speedup"] > 0
    with pytest.raises(Exception, match="not in"):
        bemb.bench_embeddings(_ratings(), dim=3, best_run="newton lr=1")


def test_targets_are_judged_from_the_values():
    parts = {
        "extraction": {"speedup": 2.5, "matmul_fraction": 0.1},
        "linear": {"speedup": 4.9},
        "embeddings": {"speedup": 3.0, "speedup_is_lower_bound": True},
        "report": {"seconds": 61.0},
    }
    met = {(row["part"], row["measure"].split()[0]): row["met"] for row in bcommon.targets(parts)}
    assert list(met.values()) == [True, False, False, True, False]
    parts["embeddings"]["speedup_is_lower_bound"] = False
    assert [row["met"] for row in bcommon.targets(parts) if row["part"] == "embeddings"] == [False]
    assert bcommon.targets({}) == []


def test_report_timing_parses_chapter_times():
    out = "executed chapters/01-feature-extraction.qmd in 12.5 s\nwrote x\nexecuted index.qmd in 1.0 s\n"
    assert dict(breport.EXECUTED.findall(out)) == {"chapters/01-feature-extraction.qmd": "12.5", "index.qmd": "1.0"}


def test_engine_table_on_eight_images(tiny_images):
    from lib.bench import engines as bengines

    images, labels = tiny_images
    table = bengines.bench_backbone(images, labels, "resnet18", resolution=32, pretrained=False,
                                    interleave=4, bf16=False)
    rows = {row["engine"]: row for row in table["rows"]}
    assert list(rows)[0].startswith("textbook") and table["default_engine"] in rows
    assert table["onnxruntime"]["engine"] == "onnxruntime" and table["sgemm"]["gflops"] > 0
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["sgemm_fraction"] > 0
        assert row["gflops"] == pytest.approx(table["flops_per_image"] * row["images_per_s"] / 1e9)
    assert rows["torch eager"]["speedup_over_torch_eager"] == pytest.approx(1.0)
    assert any(name.startswith("torch traced") for name in rows)
    assert rows[table["default_engine"]]["relative_difference_to_torch_eager"] < 1e-3  # float16 storage
    targets = bcommon.engine_targets({"backbones": {"resnet18": table}})
    assert [t["goal"] for t in targets] == [">= 2x", ">= 80%"]
