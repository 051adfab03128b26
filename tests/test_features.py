import json

import numpy as np
import pytest
import torch

from lib.core import artifacts
from lib.cifar.backbones import get_backbone
from lib.cli import COMMANDS, main
from lib.core.data import DataDirs, load_cifar10
from lib.core.errors import ConfigError
from lib.cifar.extract import Extractor
from lib.cifar.feature_cache import cache_folder, extract_features
from lib.cifar.linear import ProbeConfig, fit_logistic, predict_proba
from lib.cifar.metrics import stratified_split


@pytest.fixture(scope="module")
def extractor():
    # ResNet18 exactly as the pretrained path builds it, but with random weights.
    return Extractor(get_backbone("resnet18"), 32, pretrained=False, device="cpu", seed=0)


@pytest.fixture(scope="module")
def cifar_test(data_dirs):
    return load_cifar10("test", data_dirs)


def test_features_command_is_registered():
    assert COMMANDS["features"][0] == "lib.cifar.features"


def test_bad_backbone_and_resolution():
    with pytest.raises(ConfigError, match="unknown backbone"):
        get_backbone("resnet999")
    for bad in (0, -32):
        with pytest.raises(ConfigError, match="positive"):
            Extractor(get_backbone("resnet18"), bad, pretrained=False, device="cpu")


@pytest.mark.parametrize("argv, message", [
    (["--backbone", "vgg"], "unknown backbone"),
    (["--resolution", "0"], "positive"),
    (["--resolution", "-64"], "positive"),
    (["--sweep", "64", "0"], "positive"),
    (["--limit-train", "0"], "positive"),
    (["--engine", "openvino"], "--engine must be one of"),
    (["--name", "../x"], "--name must be"),
])
def test_cli_rejects_bad_options(argv, message, capsys, tmp_path):
    assert main(["features", *argv, "--results-dir", str(tmp_path)]) == 1
    assert message in capsys.readouterr().err


def test_resnet18_random_weights_end_to_end(extractor, cifar_test, tmp_path):
    images, labels = cifar_test.images[:60], cifar_test.labels[:60]
    fs = extract_features(images, extractor, labels=labels, cache_dir=tmp_path, batch_size=16,
                          chunk_size=25, progress=False)
    assert fs.features.shape == (60, 512) and fs.features.dtype == np.float16
    assert fs.computed_chunks == [0, 1, 2] and fs.loaded_chunks == []
    # the cached copy is reused only with the same key, and is identical
    again = extract_features(images, extractor, labels=labels, cache_dir=tmp_path, batch_size=16,
                             chunk_size=25, progress=False)
    assert again.computed_chunks == [] and again.loaded_chunks == [0, 1, 2]
    np.testing.assert_array_equal(again.features, fs.features)
    assert again.seconds == pytest.approx(fs.seconds)  # the recorded extraction time
    # flip averaging is a different key, hence a recompute with different features
    flipped = extract_features(images, extractor, labels=labels, flip=True, cache_dir=tmp_path,
                               batch_size=16, chunk_size=25, progress=False)
    assert flipped.path != fs.path and flipped.computed_chunks == [0, 1, 2]
    assert not np.array_equal(flipped.features, fs.features)
    # features feed the nn.Linear logistic regression
    tr, va = stratified_split(labels, 15, seed=0)
    fit = fit_logistic(fs.features[tr], labels[tr], fs.features[va], labels[va],
                       ProbeConfig(weight_decays=(1e-2,), max_iter=20), device="cpu")
    probs = predict_proba(fit.model, fs.features)
    assert probs.shape == (60, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_features_match_uncached_batch(extractor, cifar_test):
    images = cifar_test.images[:8]
    fs = extract_features(images, extractor, cache_dir=None, batch_size=3, progress=False)
    direct = extractor(torch.from_numpy(images)).numpy().astype(np.float16)
    np.testing.assert_allclose(fs.features.astype(np.float32), direct.astype(np.float32),
                               rtol=1e-2, atol=1e-3)


def test_changed_data_or_resolution_is_recomputed_never_reused(extractor, cifar_test, tmp_path):
    images = cifar_test.images[:16].copy()
    base = extract_features(images, extractor, cache_dir=tmp_path, chunk_size=16, progress=False)
    images[3, 5, 5, 0] ^= 1  # one pixel differs
    changed = extract_features(images, extractor, cache_dir=tmp_path, chunk_size=16, progress=False)
    assert changed.path != base.path and changed.computed_chunks == [0]
    assert changed.key["images_sha256"] != base.key["images_sha256"]
    other_res = Extractor(get_backbone("resnet18"), 64, pretrained=False, device="cpu", seed=0)
    bigger = extract_features(cifar_test.images[:16], other_res, cache_dir=tmp_path, chunk_size=16,
                              progress=False)
    assert bigger.path != base.path and bigger.computed_chunks == [0]
    other_weights = Extractor(get_backbone("resnet18"), 32, pretrained=False, device="cpu", seed=1)
    reseeded = extract_features(cifar_test.images[:16], other_weights, cache_dir=tmp_path,
                                chunk_size=16, progress=False)
    assert reseeded.path != base.path and reseeded.computed_chunks == [0]


def test_foreign_cache_folder_is_an_error(extractor, cifar_test, tmp_path):
    images = cifar_test.images[:8]
    fs = extract_features(images, extractor, cache_dir=tmp_path, progress=False)
    meta_path = fs.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["key"]["resolution"] = 224  # as if another configuration had written this folder
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="different settings"):
        extract_features(images, extractor, cache_dir=tmp_path, progress=False)
    assert cache_folder(tmp_path, fs.key) == fs.path


def test_resume_after_kill_keeps_finished_chunks(extractor, cifar_test, tmp_path):
    images = cifar_test.images[:40]

    class Killed(Exception):
        pass

    def kill_after_chunk_1(c):
        if c == 1:
            raise Killed

    with pytest.raises(Killed):
        extract_features(images, extractor, cache_dir=tmp_path, chunk_size=12, progress=False,
                         on_chunk=kill_after_chunk_1)
    folder = next((tmp_path / "features").iterdir())
    assert sorted(p.name for p in folder.glob("chunk_*.npy")) == ["chunk_00000.npy", "chunk_00001.npy"]
    resumed = extract_features(images, extractor, cache_dir=tmp_path, chunk_size=12, progress=False)
    assert resumed.loaded_chunks == [0, 1] and resumed.computed_chunks == [2, 3]
    fresh = extract_features(images, extractor, cache_dir=None, chunk_size=12, progress=False)
    np.testing.assert_array_equal(resumed.features, fresh.features)
    # a damaged chunk is recomputed, not trusted
    (folder / "chunk_00002.npy").write_bytes(b"garbage")
    repaired = extract_features(images, extractor, cache_dir=tmp_path, chunk_size=12, progress=False)
    assert repaired.computed_chunks == [2]
    np.testing.assert_array_equal(repaired.features, fresh.features)


def test_cli_pipeline_writes_chapter_artifacts(mirror, tmp_path):
    results = tmp_path / "results"
    argv = ["features", "--backbone", "resnet18", "--random-weights", "--resolution", "32",
            "--sweep", "32", "64", "--limit-train", "100", "--limit-test", "40", "--val-size", "20",
            "--weight-decays", "1e-2", "--max-iter", "30", "--mirror", str(mirror),
            "--data-dir", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(results), "--device", "cpu"]
    assert main(argv) == 0
    doc = artifacts.load_json("features", results)
    assert doc["backbone"] == "resnet18" and doc["resolution"] == 32
    assert (doc["n_train"], doc["n_val"], doc["n_test"]) == (80, 20, 40)
    assert doc["full_dataset"] is False and doc["provenance"]["config"]["limit_train"] == 100
    assert 0 <= doc["test_ci95"][0] <= doc["test_accuracy"] <= doc["test_ci95"][1] <= 1
    assert [row["resolution"] for row in doc["sweep"]] == [32, 64]
    assert "test_accuracy" in doc["sklearn"] and doc["sklearn"]["train_seconds"] >= 0
    probs = artifacts.load_array("features_test_probs.npy", results)
    assert probs.shape == (40, 10)
    labels = load_cifar10("test", DataDirs(tmp_path / "data", mirror)).labels[:40]
    assert doc["test_accuracy"] == pytest.approx(np.mean(probs.argmax(1) == labels))
    assert np.allclose(probs.sum(1), 1, atol=1e-5)
    gallery = artifacts.load_arrays("features_gallery.npz", results)
    assert gallery["images"].shape == (10, 10, 32, 32, 3) and gallery["indices"].shape == (10, 10)
    for name in doc["files"]:
        assert (results / name).is_file()
    cm = np.array(doc["confusion_matrix"])
    assert cm.sum() == 40
    assert np.trace(cm) / 40 == pytest.approx(doc["test_accuracy"])


def test_cpu_timing_mode_writes_its_artifact(mirror, tmp_path):
    results = tmp_path / "results"
    argv = ["features", "--cpu-timing", "--backbone", "resnet18", "--random-weights",
            "--sweep", "32", "64", "--timing-images", "6", "--timing-repeats", "2",
            "--batch-size", "4", "--mirror", str(mirror), "--data-dir", str(tmp_path / "data"),
            "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 0
    doc = artifacts.load_json("features_cpu_timing", results)
    assert [row["resolution"] for row in doc["rows"]] == [32, 64]
    for row in doc["rows"]:
        assert len(row["repeat_seconds"]) == 2 and row["seconds"] == min(row["repeat_seconds"])
        assert row["images_per_s"] == pytest.approx(6 / row["seconds"])
        assert row["extrapolated_60k_s"] == pytest.approx(60000 / row["images_per_s"])
        assert row["engine"] == "onnxruntime" and row["torch_eager_images_per_s"] > 0
        assert row["relative_difference_to_torch"] < 1e-4
        assert 0 < row["torch_input_share"] < 1 and 0 <= row["onnxruntime_profile"]["input_share"] < 1
    assert doc["engine"]["engine"] == "onnxruntime" and doc["provenance"]["config"]["engine"] == "auto"
    assert not (results / "features.json").exists()  # timing only: no model fitting


def test_bf16_precision_is_close_to_fp32_and_cached_apart(cifar_test, tmp_path):
    images = cifar_test.images[:8]
    backbone = get_backbone("resnet18")
    fp32 = Extractor(backbone, 32, pretrained=False, device="cpu", seed=3)
    bf16 = Extractor(backbone, 32, pretrained=False, device="cpu", seed=3, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16-autocast") and not bf16.optimized
    a = extract_features(images, fp32, cache_dir=tmp_path, progress=False)
    b = extract_features(images, bf16, cache_dir=tmp_path, progress=False)
    a32, b32 = a.features.astype(np.float32), b.features.astype(np.float32)
    assert np.linalg.norm(a32 - b32) / np.linalg.norm(a32) < 0.1
    assert len(list((tmp_path / "features").iterdir())) == 2, "each precision has its own cache folder"
    with pytest.raises(ConfigError, match="precision"):
        Extractor(backbone, 32, pretrained=False, device="cpu", precision="int8")
