"""Partial finetuning (``--trainable-stages``): the trunk/tail split, activation augmentation,
option checks, and a run on cached activations that resumes from the cache.

Runs use random-weight networks at low resolution on a few dozen real CIFAR-10 images
(DATA_MIRROR), so they need no pretrained weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.cifar.finetune as ft
from lib.cifar.backbones import get_backbone
from lib.cifar.finetune.partial import STAGE_STARTS, frozen_blocks, padding_in_cells, pick_views, split_backbone
from lib.core.errors import ConfigError
from tests.test_finetune import main


@pytest.mark.parametrize("backbone, stages", [("efficientnet_lite0", 1), ("efficientnet_lite0", 2),
                                              ("efficientnet_lite0", 6), ("resnet18", 2), ("resnet18", 3)])
def test_tail_of_trunk_is_the_whole_network(backbone: str, stages: int) -> None:
    torch.manual_seed(0)
    features, _ = get_backbone(backbone).build(pretrained=False, resolution=64)
    features.eval()
    trunk, tail = split_backbone(backbone, features, stages)
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(tail.eval()(trunk(x)), features(x), rtol=1e-4, atol=1e-5)
    trainable = {id(p) for p in tail.parameters()}
    assert not trainable & {id(p) for p in trunk.parameters()}  # the two parts share no parameter


def test_stages_map_to_blocks_and_bad_counts_are_refused() -> None:
    assert frozen_blocks("efficientnet_lite0", 2) == 11 and frozen_blocks("resnet18", 2) == 4
    for backbone, starts in STAGE_STARTS.items():
        for bad in (0, len(starts), -1, True):
            with pytest.raises(ConfigError, match="--trainable-stages"):
                frozen_blocks(backbone, bad)
    with pytest.raises(ConfigError, match="--trainable-stages"):
        ft.Recipe(backbone="resnet18", trainable_stages=4)


def test_pick_views_flips_and_shifts_within_the_padded_map() -> None:
    batch = torch.arange(4 * 2 * 3 * 5 * 5, dtype=torch.float32).view(4, 2, 3, 5, 5).half()
    g = torch.Generator().manual_seed(0)
    plain = pick_views(batch, hflip=False, padding_cells=0, g=g)
    assert torch.equal(plain, batch[:, 0].float())
    flipped = pick_views(batch, hflip=True, padding_cells=0, g=torch.Generator().manual_seed(1))
    views = [0 if torch.equal(flipped[i], batch[i, 0].float()) else 1 for i in range(4)]
    assert all(torch.equal(flipped[i], batch[i, v].float()) for i, v in enumerate(views))
    shifted = pick_views(batch, hflip=False, padding_cells=1, g=torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(batch[:, 0].float(), (1, 1, 1, 1), mode="reflect")
    for i in range(4):  # each output is one 5 x 5 window of the reflect-padded map
        windows = [padded[i, :, dy:dy + 5, dx:dx + 5] for dy in range(3) for dx in range(3)]
        assert any(torch.equal(shifted[i], w) for w in windows)
    assert padding_in_cells(4, 10) == 1 and padding_in_cells(4, 7) == 1 and padding_in_cells(0, 10) == 0


PARTIAL = ["--backbone", "efficientnet_lite0", "--random-init", "--trainable-stages", "2", "--resolution", "64",
           "--batch-size", "16", "--limit-train", "48", "--val-size", "32", "--limit-test", "40", "--epochs", "2",
           "--flip-average", "--no-progress", "--threads", "1"]


def test_a_bad_stage_count_fails_before_any_work(tmp_path: Path, monkeypatch, capsys) -> None:
    def no_work(*args, **kwargs):
        raise AssertionError("data touched before validation")
    monkeypatch.setattr("lib.core.data.load_cifar10", no_work)
    argv = ["finetune", *PARTIAL, "--results-dir", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "c")]
    argv[argv.index("--trainable-stages") + 1] = "7"
    assert main(argv) == 1
    assert "--trainable-stages" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_partial_run_writes_artifacts_and_reuses_cached_activations(mirror: Path, tmp_path: Path) -> None:
    def run(name: str) -> dict:
        argv = ["finetune", *PARTIAL, "--name", name, "--mirror", str(mirror), "--cache-dir", str(tmp_path / "cache"),
                "--results-dir", str(tmp_path / "r"), "--checkpoint-dir", str(tmp_path / "ck" / name)]
        assert main(argv) == 0
        return json.loads((tmp_path / "r" / f"{name}.json").read_text())

    first, second = run("first"), run("second")
    act = first["partial"]["activations"]
    assert first["partial"]["trainable_stages"] == 2 and act["shape"] == [112, 4, 4]
    assert act["chunks_computed_now"] > 0 and act["reused_extraction_s"] == 0
    assert second["partial"]["activations"]["chunks_computed_now"] == 0  # all from the cache
    assert second["partial"]["activations"]["reused_extraction_s"] == pytest.approx(act["extraction_s"])
    assert second["total_wall_time_s"] > second["timings"]["train_s"] + act["extraction_s"] * 0.99
    assert first["test_accuracy"] == second["test_accuracy"]  # same recipe, same seed, same numbers
    probs = np.load(tmp_path / "r" / "second_test_probs.npy")
    assert probs.shape == (40, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert first["recipe"]["flip_average"] and first["hardware"]["cpu_bf16_instructions"] in (True, False)


def test_the_cpu_command_is_valid_with_resnet18() -> None:
    """Issue 14: the CPU recipe's command, with --backbone resnet18, is a valid recipe (its last two stages are
    layer3 and layer4), so only the weights would differ."""
    import shlex

    from lib.book.reproducibility import STAGES
    from lib.cifar.finetune.cli import recipe_from_args
    from lib.cli import build_parser

    command = next(s.command_line for s in STAGES if s.name == "finetune_cpu_partial_short")
    argv = shlex.split(command.replace("efficientnet_lite0", "resnet18"))[3:]
    recipe = recipe_from_args(build_parser(argv[0]).parse_args(argv))
    assert recipe.backbone == "resnet18" and frozen_blocks("resnet18", recipe.trainable_stages) == 4
