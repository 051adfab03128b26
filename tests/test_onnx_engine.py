"""The ONNX Runtime engine: same features as torch, export cached and checked, fallback."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from lib.cifar import onnx_engine
from lib.cifar.backbones import get_backbone
from lib.cifar.extract import Extractor
from lib.cifar.feature_cache import extract_features
from lib.core import artifacts
from lib.core.errors import ConfigError
from lib.cli import main

RESNET = get_backbone("resnet18")


def _images(n: int = 10) -> np.ndarray:
    return onnx_engine.check_images(n, seed=1)


def test_export_computes_torchs_features(tmp_path):
    ort = Extractor(RESNET, 64, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                    export_cache=tmp_path)
    eager = Extractor(RESNET, 64, pretrained=False, device="cpu", seed=0, engine="torch")
    assert (ort.engine, eager.engine) == ("onnxruntime", "torch")
    assert ort.onnx.check_difference < onnx_engine.TOLERANCE and ort.onnx.exported
    x = torch.from_numpy(_images(5))  # a batch size the export never saw
    for flip in (False, True):
        a, b = ort(x, flip=flip).numpy(), eager(x, flip=flip).numpy()
        assert a.shape == (5, 512) and onnx_engine.relative_difference(a, b) < 1e-4
    assert onnx_engine.relative_difference(ort(x, flip=True).numpy(), ort(x).numpy()) > 1e-3
    described = ort.describe()
    assert described["engine"] == "onnxruntime" and described["onnxruntime"]
    assert described["intra_op_threads"] >= 1


def test_export_is_cached_and_reused(tmp_path, monkeypatch):
    first = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                      export_cache=tmp_path)
    assert first.onnx.exported and first.onnx.path.is_file()
    assert first.onnx.path.with_suffix(".json").is_file()

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_engine, "export_onnx", no_export)
    again = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                      export_cache=tmp_path)
    assert not again.onnx.exported and again.onnx.path == first.onnx.path
    other = onnx_engine.export_path(tmp_path, onnx_engine.export_key(RESNET, {"random_init_seed": 1}, 32))
    assert other != first.onnx.path  # other weights, another file


def test_mismatched_export_is_refused_with_both_numbers(tmp_path):
    good = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                     export_cache=tmp_path)
    torch.manual_seed(5)
    other, _ = RESNET.build(pretrained=False, resolution=32)
    onnx_engine.export_onnx(other.eval(), RESNET, 32, good.onnx.path)  # other weights under this key
    with pytest.raises(ConfigError, match=r"differ from torch's by .* above the tolerance 0\.0001"):
        Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                  export_cache=tmp_path)


def test_damaged_export_is_made_again(tmp_path):
    first = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                      export_cache=tmp_path)
    first.onnx.path.write_bytes(b"not an onnx file")
    again = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="onnxruntime",
                      export_cache=tmp_path)
    assert again.onnx.exported and again.onnx.check_difference < onnx_engine.TOLERANCE


def test_auto_falls_back_to_torch_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    extractor = Extractor(RESNET, 32, pretrained=False, device="cpu", engine="auto")
    assert extractor.engine == "torch" and extractor.onnx is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "onnxruntime not installed: extracting with torch" in lines[0]
    with pytest.raises(ConfigError, match="onnxruntime not installed"):
        Extractor(RESNET, 32, pretrained=False, device="cpu", engine="onnxruntime")
    monkeypatch.setitem(sys.modules, "onnx", None)  # torch.onnx cannot write without it
    with pytest.raises(ConfigError, match="onnxruntime and onnx not installed"):
        Extractor(RESNET, 32, pretrained=False, device="cpu", engine="onnxruntime")


def test_engine_choices():
    cpu = torch.device("cpu")
    assert onnx_engine.resolve_engine("auto", cpu) == "onnxruntime"
    assert onnx_engine.resolve_engine("auto", cpu, precision="bf16") == "torch"
    assert onnx_engine.resolve_engine("auto", cpu, custom_model=True) == "torch"
    assert onnx_engine.resolve_engine("auto", torch.device("cuda")) == "torch"
    with pytest.raises(ConfigError, match="CPU path"):
        onnx_engine.resolve_engine("onnxruntime", torch.device("cuda"))
    with pytest.raises(ConfigError, match="bf16"):
        onnx_engine.resolve_engine("onnxruntime", cpu, precision="bf16")
    with pytest.raises(ConfigError, match="engine must be one of"):
        onnx_engine.resolve_engine("tensorrt", cpu)


def test_feature_cache_keeps_engines_apart(tmp_path):
    images = _images(12)
    ort = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, export_cache=tmp_path)
    eager = Extractor(RESNET, 32, pretrained=False, device="cpu", seed=0, engine="torch")
    a = extract_features(images, ort, cache_dir=tmp_path, progress=False)
    b = extract_features(images, eager, cache_dir=tmp_path, progress=False)
    assert a.path != b.path and (a.key["engine"], b.key["engine"]) == ("onnxruntime", "torch")
    assert "onnxruntime" in a.device and "onnxruntime" not in b.device
    assert onnx_engine.relative_difference(a.features, b.features) < 1e-3  # float16 storage


def test_bad_engine_is_rejected_before_any_work(capsys, tmp_path):
    assert main(["features", "--engine", "tensorrt", "--mirror", "/nonexistent", "--results-dir", str(tmp_path)]) == 1
    assert "--engine must be one of" in capsys.readouterr().err


def test_cli_records_the_engine_and_writes_under_its_name(mirror, tmp_path):
    results = tmp_path / "results"
    argv = ["features", "--backbone", "resnet18", "--random-weights", "--resolution", "32",
            "--limit-train", "60", "--limit-test", "20", "--val-size", "10", "--weight-decays", "1e-2",
            "--max-iter", "10", "--mirror", str(mirror), "--data-dir", str(tmp_path / "data"),
            "--cache-dir", str(tmp_path / "cache"), "--results-dir", str(results), "--device", "cpu",
            "--name", "features_cpu_onnx"]
    assert main(argv) == 0
    doc = artifacts.load_json("features_cpu_onnx", results)
    assert not (results / "features.json").exists()
    assert doc["timings"]["extract_engine"]["engine"] == "onnxruntime"
    assert doc["provenance"]["config"]["engine"] == "auto" and doc["timings"]["extract_wall_s"] > 0
    assert doc["provenance"]["versions"]["onnxruntime"]
    assert all(name.startswith("features_cpu_onnx_") and (results / name).is_file() for name in doc["files"])
    assert list((tmp_path / "cache" / "onnx").glob("resnet18-r32-*.onnx"))
