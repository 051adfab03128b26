import argparse

import numpy as np
import pytest

from lib.cifar.probe_variants import VARIANTS, fit_variant, mirrored, summarise, variant_data


def _views(n_train: int = 400, n_test: int = 100, d: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(10, d))
    y_train, y_test = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    def noisy(y):
        return (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    return {"train_y": y_train, "test_y": y_test, "train_plain": noisy(y_train), "train_mirror": noisy(y_train),
            "test_plain": noisy(y_test), "test_mirror": noisy(y_test)}


def test_mirrored_flips_left_and_right_only():
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    flipped = mirrored(images)
    assert flipped.flags["C_CONTIGUOUS"]
    assert np.array_equal(flipped[:, :, 0], images[:, :, -1])
    assert np.array_equal(mirrored(flipped), images)


def test_variant_data_builds_each_variant_from_the_two_views():
    views = _views()
    tr, val = np.arange(0, 300), np.arange(300, 400)
    x, y, vx, vy, tx = variant_data("flip_augmented", views, tr, val)
    assert len(x) == 600 and np.array_equal(y[:300], y[300:])
    assert np.array_equal(x[300:], views["train_mirror"][tr]) and np.array_equal(tx, views["test_plain"])
    x, _, vx, _, tx = variant_data("flip_averaged", views, tr, val)
    assert np.allclose(x, 0.5 * (views["train_plain"][tr] + views["train_mirror"][tr]))
    assert np.allclose(tx, 0.5 * (views["test_plain"] + views["test_mirror"]))
    x, *_ = variant_data("label_smoothing", views, tr, val)
    assert np.array_equal(x, views["train_plain"][tr])


def test_variants_fit_and_summarise_against_the_plain_probe():
    views = _views()
    args = argparse.Namespace(val_size=100, weight_decays=[1e-3, 1e-2], max_iter=50)
    rows = [fit_variant(v, views, seed, args) for seed in (0, 1) for v in VARIANTS]
    summary = summarise(rows, views["test_y"])
    assert set(summary) == set(VARIANTS)
    assert summary["plain"]["gain_over_plain_mean"] == pytest.approx(0.0)
    assert all(t["discordant"] == 0 for t in summary["plain"]["mcnemar_vs_plain"])
    for name, s in summary.items():
        assert s["seeds"] == [0, 1] and 0.0 <= s["test_accuracy_mean"] <= 1.0 and s["test_accuracy_sd"] >= 0
        gain = s["test_accuracy_mean"] - summary["plain"]["test_accuracy_mean"]
        assert s["gain_over_plain_mean"] == pytest.approx(gain)


def test_plain_probe_runs_first_on_every_split():
    from lib.cifar.probe_variants import fit_order

    order = fit_order([0, 1, 2], ["plain", "flip_averaged"])
    assert order[:3] == [(0, "plain"), (1, "plain"), (2, "plain")]
    assert order[3:] == [(0, "flip_averaged"), (1, "flip_averaged"), (2, "flip_averaged")]
