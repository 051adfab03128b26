"""Finetuning: recipe validation, batched augmentation, schedule, checkpoint/resume, artifacts.

Runs use a random-weight ResNet18 at 32 px on a few dozen real CIFAR-10 images
(DATA_MIRROR), so they are quick on a CPU and need no pretrained weights.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.cli
import lib.cifar.finetune as ft
from lib.cifar.finetune.cli import flip_examples
from lib.core.errors import ConfigError


def main(argv: list[str]) -> int:
    """``python -m lib`` as the user runs it, with only this command registered, so that
    another command's module (imported by the parser) cannot break these tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lib.cli, "COMMANDS", {"finetune": lib.cli.COMMANDS["finetune"]})
        return lib.cli.main(argv)

TINY = ["--backbone", "resnet18", "--random-init", "--resolution", "32", "--batch-size", "16",
        "--limit-train", "48", "--val-size", "32", "--limit-test", "40", "--no-progress",
        "--threads", "1"]


def argv(tmp: Path, *extra: str, epochs: int = 2) -> list[str]:
    return ["finetune", *TINY, "--epochs", str(epochs), "--results-dir", str(tmp / "results"),
            "--checkpoint-dir", str(tmp / "ckpt"), *extra]


def load(tmp: Path) -> tuple[dict, np.ndarray]:
    doc = json.loads((tmp / "results" / "finetune.json").read_text())
    return doc, np.load(tmp / "results" / "finetune_test_probs.npy")


@pytest.fixture(scope="module")
def reference_run(mirror, tmp_path_factory):
    """An uninterrupted 2-epoch run: what every interrupted-and-resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(argv(tmp, "--mirror", str(mirror))) == 0
    return tmp


# --- validation before any work ---------------------------------------------------
@pytest.mark.parametrize("flag, value, words", [
    ("--lr", "-0.1", "--lr"), ("--epochs", "0", "--epochs"), ("--batch-size", "1", "--batch-size"),
    ("--resolution", "40", "multiple of 32"), ("--label-smoothing", "1.5", "--label-smoothing"),
    ("--warmup-epochs", "5", "--warmup-epochs"), ("--limit-train", "8", "--limit-train"),
    ("--max-minutes", "0", "--max-minutes")])
def test_invalid_hyperparameters_fail_before_any_work(monkeypatch, tmp_path, capsys, flag, value, words):
    def no_work(*args, **kwargs):
        raise AssertionError("data or model touched before validation")
    monkeypatch.setattr("lib.core.data.load_cifar10", no_work)
    monkeypatch.setattr(ft.train, "build_model", no_work)
    assert main(argv(tmp_path, flag, value)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and words in err
    assert not (tmp_path / "ckpt").exists() and not (tmp_path / "results").exists()


def test_recipe_validation_direct():
    with pytest.raises(ConfigError, match="--lr"):
        ft.Recipe(lr=float("nan"))
    with pytest.raises(ConfigError, match="unknown backbone|--backbone"):
        ft.Recipe(backbone="vgg")
    assert ft.Recipe(batch_size=64, lr=0.2).scaled_lr == pytest.approx(0.05)


def test_config_diff_names_each_difference():
    old = asdict(ft.Recipe())
    new = asdict(ft.Recipe(lr=0.1, epochs=3))
    diff = ft.config_diff(old, new)
    assert diff == ["epochs: checkpoint 8, now 3", "lr: checkpoint 0.2, now 0.1"]
    assert ft.config_diff(old, dict(old)) == []


# --- augmentation, optimiser, schedule ------------------------------------------------
def test_augment_crops_are_windows_of_the_padded_image_and_flips_happen():
    padded = torch.randint(0, 256, (32, 40, 40, 3), dtype=torch.uint8)
    g = ft.step_generator(torch.device("cpu"), 0, 0, 0)
    out = ft.augment(padded, 4, True, g)
    assert out.shape == (32, 32, 32, 3) and out.dtype == torch.uint8
    flipped = 0
    for i in range(32):
        windows = padded[i].unfold(0, 32, 1).unfold(1, 32, 1).permute(0, 1, 3, 4, 2)  # (9, 9, 32, 32, 3)
        plain = (windows == out[i]).flatten(2).all(-1).any()
        mirrored = (windows == out[i].flip(1)).flatten(2).all(-1).any()
        assert plain or mirrored
        flipped += int(mirrored and not plain)
    assert 4 < flipped < 28  # about half
    again = ft.augment(padded, 4, True, ft.step_generator(torch.device("cpu"), 0, 0, 0))
    assert torch.equal(out, again)  # same (seed, epoch, step) -> same batch
    assert torch.equal(ft.augment(padded[:, 4:36, 4:36], 0, False, g), padded[:, 4:36, 4:36])


def test_optimizer_groups_and_schedule():
    recipe = ft.Recipe(backbone="resnet18", pretrained=False, resolution=32, epochs=4, batch_size=64,
                       lr=0.4, backbone_lr_scale=0.1, warmup_epochs=1)
    model, _ = ft.build_model(recipe)
    assert all(m.momentum == recipe.bn_momentum for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))
    opt = ft.build_optimizer(model, recipe)
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["head"]["lr"] == pytest.approx(0.1)            # 0.4 * 64 / 256
    assert groups["backbone"]["lr"] == pytest.approx(0.01)
    assert groups["backbone_no_decay"]["weight_decay"] == 0.0
    assert all(p.ndim <= 1 for p in groups["backbone_no_decay"]["params"])
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))
    sched = ft.build_scheduler(opt, recipe, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert 8 <= peak <= 10 and np.all(np.diff(lrs[:peak + 1]) > 0)   # warm-up over one epoch
    assert np.all(np.diff(lrs[peak:]) <= 1e-12) and lrs[-1] < 0.01 * max(lrs)  # cosine to ~0


def test_flip_examples_picks_wrong_then_right():
    labels = np.array([0, 0, 1, 1, 2])
    before = np.eye(10)[[1, 0, 0, 1, 3]] * 0.9 + 0.01
    after = np.eye(10)[[0, 0, 1, 1, 2]] * 0.9 + 0.01
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    out = flip_examples(before, after, labels, images)
    assert out["indices"].tolist() == [0, 2, 4]
    assert out["before_pred"].tolist() == [1, 0, 3] and out["after_pred"].tolist() == [0, 1, 2]
    assert np.array_equal(out["images"][1], images[2])


# --- runs -----------------------------------------------------------------------------------
def test_one_run_writes_checkpoint_and_artifacts(reference_run):
    ckpt = torch.load(reference_run / "ckpt" / "last.pt", weights_only=True)
    for key in ("model", "optimizer", "lr_scheduler", "epoch", "rng", "config", "args", "history"):
        assert key in ckpt
    assert ckpt["epoch"] == 2 and ckpt["config"]["limit_train"] == 48
    doc, probs = load(reference_run)
    labels = np.load(reference_run / "results" / "finetune_test_labels.npy")
    assert doc["backbone"] == "resnet18" and doc["resolution"] == 32 and doc["epochs"] == 2
    assert probs.shape == (40, 10) and np.allclose(probs.sum(1), 1, atol=1e-4)
    assert doc["test_accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert doc["test_ci_low"] <= doc["test_accuracy"] <= doc["test_ci_high"]
    assert doc["subsets"] == {"n_train": 48, "n_val": 32, "n_test": 40, "limit_train": 48,
                              "limit_test": 40, "full": False}
    assert doc["provenance"]["config"]["recipe"]["limit_test"] == 40
    assert doc["trainable_params"] == doc["total_params"] > 11_000_000
    assert len(doc["history"]) == 2 and doc["best_epoch"] in (1, 2)
    assert doc["stopped_early"] is False
    gallery = np.load(reference_run / "results" / "finetune_gallery.npz")
    assert gallery["images"].shape[:2] == (10, 10)


def test_killed_run_resumes_to_the_same_result(reference_run, mirror, tmp_path, monkeypatch, capsys):
    real = ft.train_one_epoch

    def dies_in_second_epoch(*args, **kwargs):
        if args[7] == 1:  # epoch index
            raise RuntimeError("simulated kill")
        return real(*args, **kwargs)

    monkeypatch.setattr(ft.train, "train_one_epoch", dies_in_second_epoch)
    with pytest.raises(RuntimeError, match="simulated kill"):
        main(argv(tmp_path, "--mirror", str(mirror)))
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "results" / "finetune.json").exists()
    monkeypatch.setattr(ft.train, "train_one_epoch", real)
    capsys.readouterr()
    assert main(argv(tmp_path, "--mirror", str(mirror))) == 0
    assert "resuming from" in capsys.readouterr().out
    doc, probs = load(tmp_path)
    ref_doc, ref_probs = load(reference_run)
    assert doc["resumed_from"] == {"epoch": 1, "step": 0}
    assert np.array_equal(probs, ref_probs)  # checkpoints at epoch ends: the resumed run is the same run
    assert [r["train_loss"] for r in doc["history"]] == [r["train_loss"] for r in ref_doc["history"]]


def test_ctrl_c_mid_epoch_resumes_from_the_last_epoch(reference_run, mirror, tmp_path, monkeypatch, capsys):
    """Checkpoints are written once per epoch: Ctrl-C in the second epoch loses that epoch only."""
    real, calls = ft.augment, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:   # second batch of the second epoch (3 batches per epoch)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ft.data, "augment", interrupted)
    assert main(argv(tmp_path, "--mirror", str(mirror))) == 130
    assert "holds the run after epoch 1" in capsys.readouterr().err
    assert torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(ft.data, "augment", real)
    assert main(argv(tmp_path, "--mirror", str(mirror))) == 0
    doc, probs = load(tmp_path)
    assert doc["resumed_from"] == {"epoch": 1, "step": 0}
    assert np.array_equal(probs, load(reference_run)[1])


def test_resume_with_a_different_config_names_the_difference(reference_run, mirror, tmp_path, capsys):
    import shutil
    shutil.copytree(reference_run / "ckpt", tmp_path / "ckpt")
    assert main(argv(tmp_path, "--mirror", str(mirror), "--lr", "0.1", "--seed", "3")) == 1
    err = capsys.readouterr().err
    assert "different config" in err and "lr: checkpoint 0.2, now 0.1" in err and "seed: checkpoint 0, now 3" in err
    assert not (tmp_path / "results").exists()


def test_out_of_memory_suggests_a_smaller_batch(mirror, tmp_path, monkeypatch, capsys):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    monkeypatch.setattr(ft.train, "train_one_epoch", oom)
    assert main(argv(tmp_path, "--mirror", str(mirror))) == 1
    err = capsys.readouterr().err
    assert "out of memory" in err and "--batch-size 8" in err


def test_time_guard_stops_after_an_epoch_and_still_writes_artifacts(mirror, tmp_path):
    assert main(argv(tmp_path, "--mirror", str(mirror), "--max-minutes", "0.0001", epochs=3)) == 0
    doc, probs = load(tmp_path)
    assert doc["stopped_early"] is True and "time guard" in doc["stop_reason"]
    assert doc["epochs"] == 1 and doc["epochs_planned"] == 3 and probs.shape == (40, 10)


def test_pilot_measures_each_resolution(mirror, tmp_path):
    assert main(["finetune", "--pilot", "--backbone", "resnet18", "--random-init", "--batch-size", "16",
                 "--val-size", "100", "--pilot-resolutions", "32,64", "--pilot-train", "32",
                 "--pilot-val", "24", "--no-progress", "--threads", "1", "--mirror", str(mirror),
                 "--results-dir", str(tmp_path), "--name", "pilot"]) == 0
    doc = json.loads((tmp_path / "pilot.json").read_text())
    assert [r["resolution"] for r in doc["rows"]] == [32, 64]
    assert "weights" in doc["provenance"]
    for row in doc["rows"]:
        assert row["train_images"] == 32 and row["val_images"] == 24
        assert row["train_images_per_s"] > 0 and 0 <= row["val_accuracy"] <= 1
        assert row["projected_epoch_s"] > 0
    assert doc["hardware"]["device"] == "cpu" and "provenance" in doc


def test_gallery_only_compares_flips_with_the_named_probe(reference_run, mirror, tmp_path):
    """--flips-against PROBE: <name>_flips.npz holds images PROBE got wrong and the finetune right."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(reference_run / "results", results)
    labels = np.load(results / "finetune_test_labels.npy")
    probe = np.full((labels.size, 10), 0.01, dtype=np.float32)
    probe[np.arange(labels.size), (labels + 1) % 10] = 0.91  # always wrong
    np.save(results / "probe_x_test_probs.npy", probe)
    assert main(["finetune", "--gallery-only", "--name", "finetune", "--flips-against", "probe_x",
                 "--results-dir", str(results), "--mirror", str(mirror), "--no-progress"]) == 0
    flips = np.load(results / "finetune_flips.npz")
    right = np.load(results / "finetune_test_probs.npy").argmax(1) == labels
    assert len(flips["indices"]) and right[flips["indices"]].all()
    assert (flips["before_pred"] == (labels[flips["indices"]] + 1) % 10).all()
