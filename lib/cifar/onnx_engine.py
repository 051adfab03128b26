"""ONNX Runtime as the CPU inference engine of feature extraction.

Why: on a 2-core CPU ONNX Runtime runs the same fp32 network several times faster than torch
(eager or traced), with features equal to float32 rounding (issue 12; performance appendix).
The whole per-batch work is exported (uint8 NHWC images -> resize -> normalisation -> network ->
pooled feature), so the resize runs on ONNX Runtime's threads instead of becoming the bottleneck.
Exports are cached per ``export_key`` under ``<cache>/onnx/`` and checked against torch on a few
images every time they are opened; a damaged file is exported again.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lib.cifar.backbones import Backbone, to_model_input
from lib.core.artifacts import atomic_path, key_digest
from lib.core.errors import ConfigError
from lib.core.stats import relative_difference

ENGINES = ("auto", "torch", "onnxruntime")
EXPORT_VERSION = 2  # 2: normalisation before the resize
OPSET = 17
TOLERANCE = 1e-4       # relative difference to torch above which an export is refused
CHECK_IMAGES = 4       # images the export is checked on each time it is opened
INPUT_SIZE = 32        # CIFAR-10: the exported graph takes 32 x 32 uint8 images


def onnxruntime_version() -> str | None:
    """The installed onnxruntime's version, or None when it cannot be imported."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def missing_packages() -> list[str]:
    """What the engine needs and cannot import: onnxruntime runs, onnx is torch.onnx's writer."""
    missing = [] if onnxruntime_version() is not None else ["onnxruntime"]
    try:
        import onnx  # noqa: F401
    except ImportError:
        missing.append("onnx")
    return missing


def resolve_engine(engine: str, device: torch.device, *, precision: str = "auto",
                   custom_model: bool = False) -> str:
    """``auto`` -> onnxruntime on the CPU (fp32, a registered backbone), torch otherwise.

    Without onnxruntime, ``auto`` falls back to torch and says so in one line; an explicit
    ``onnxruntime`` that cannot run is an error."""
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        return "torch"
    if engine == "onnxruntime":
        if device.type != "cpu":
            raise ConfigError(f"the onnxruntime engine is the CPU path; on {device.type} use --engine torch")
        if precision == "bf16":
            raise ConfigError("precision bf16 is torch's bfloat16 autocast; use --engine torch with it")
        if missing_packages():
            raise ConfigError(f"{' and '.join(missing_packages())} not installed (pip install -r "
                              "requirements.txt), or use --engine torch")
        return "onnxruntime"
    if device.type != "cpu" or precision == "bf16" or custom_model:
        return "torch"
    missing = missing_packages()
    if missing:
        print(f"[features] {' and '.join(missing)} not installed: extracting with torch (slower); "
              "pip install -r requirements.txt", file=sys.stderr)
        return "torch"
    return "onnxruntime"


class _Preprocessed(nn.Module):
    """uint8 NHWC images -> features: ``to_model_input`` and the network as one graph.

    Bilinear resizing is exported without antialiasing: upsampling (CIFAR's 32 px to any
    larger resolution) gives the same values either way, to float32 rounding. The normalisation
    (affine per channel) runs before the resize, on 32 x 32 pixels instead of the resized ones:
    bilinear weights sum to one, so the order changes only float rounding."""

    def __init__(self, model: nn.Module, backbone: Backbone, resolution: int):
        super().__init__()
        self.model, self.backbone, self.resolution = model, backbone, resolution

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.backbone.normalize(images.permute(0, 3, 1, 2).float() / 255.0)
        if self.resolution != INPUT_SIZE:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear",
                              align_corners=False)
        return self.model(x)


def export_key(backbone: Backbone, weights: dict | None, resolution: int) -> dict:
    """What an export depends on; a different key is a different file."""
    return {"version": EXPORT_VERSION, "backbone": backbone.name, "weights": weights,
            "resolution": int(resolution), "input": [INPUT_SIZE, INPUT_SIZE, 3], "opset": OPSET,
            "torch": torch.__version__.split("+")[0]}


def export_path(cache_dir: Path, key: dict) -> Path:
    return Path(cache_dir) / "onnx" / f"{key['backbone']}-r{key['resolution']}-{key_digest(key)}.onnx"


def export_onnx(model: nn.Module, backbone: Backbone, resolution: int, path: Path) -> float:
    """Export the preprocessing + network graph to ``path`` (atomically); the seconds it took.

    ``model`` must be the eval-mode fp32 network on the CPU (not converted under inference_mode)."""
    graph = _Preprocessed(model, backbone, resolution).eval()
    example = torch.zeros(2, INPUT_SIZE, INPUT_SIZE, 3, dtype=torch.uint8)
    start = time.perf_counter()
    with atomic_path(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # exporter notes about the TorchScript-based exporter
        torch.onnx.export(graph, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    return time.perf_counter() - start


def open_session(path: Path | bytes, threads: int, profile_prefix: str | None = None):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def check_images(n: int = CHECK_IMAGES, seed: int = 0) -> np.ndarray:
    """A fixed batch of uint8 images (smooth colour ramps plus noise) for the export check."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, INPUT_SIZE)[None, :, None, None] * rng.random((n, 1, 1, 3))
    noise = rng.normal(0, 40, (n, INPUT_SIZE, INPUT_SIZE, 3))
    return np.clip(ramp.transpose(0, 2, 1, 3) + noise + 60, 0, 255).astype(np.uint8)


@dataclass
class OnnxNetwork:
    """A checked ONNX Runtime session: uint8 NHWC images -> float32 features."""

    session: object
    path: Path | None        # the cached export (None when exported to a temporary folder)
    model: bytes | None      # the exported graph itself when it has no cached file
    exported: bool           # exported now (False: reused from the cache)
    export_seconds: float
    check_difference: float  # relative difference to torch on the check images
    threads: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ConfigError(f"the onnxruntime engine takes {INPUT_SIZE}x{INPUT_SIZE} RGB images, "
                              f"got {tuple(images.shape[1:])}; use --engine torch")
        array = np.ascontiguousarray(images.cpu().numpy(), dtype=np.uint8)
        return torch.from_numpy(self.session.run(None, {"images": array})[0])

    def describe(self) -> dict:
        return {"engine": "onnxruntime", "onnxruntime": onnxruntime_version(), "opset": OPSET,
                "intra_op_threads": self.threads, "export": str(self.path) if self.path else None,
                "exported_now": self.exported, "check_relative_difference": self.check_difference}


def _check(session, model: nn.Module, backbone: Backbone, resolution: int, where: str) -> float:
    """Relative difference of the export to torch on ``check_images``; an error above TOLERANCE."""
    images = check_images()
    with torch.no_grad():
        reference = model(to_model_input(torch.from_numpy(images), resolution, backbone)).float().numpy()
    difference = relative_difference(session.run(None, {"images": images})[0], reference)
    if not difference < TOLERANCE:
        raise ConfigError(
            f"{where}: ONNX Runtime's features differ from torch's by {difference:.3g} (relative), "
            f"above the tolerance {TOLERANCE:g}, so the export was not used. Delete it to export again.")
    return difference


def onnx_network(model: nn.Module, backbone: Backbone, weights: dict | None, resolution: int,
                 cache_dir: Path | None, threads: int | None = None) -> OnnxNetwork:
    """The cached export of ``model`` (made now when missing or unreadable), checked against torch.

    ``cache_dir=None`` exports into a temporary folder every time (custom networks, tests)."""
    threads = threads or os.cpu_count() or 1
    if cache_dir is None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "network.onnx"
            seconds = export_onnx(model, backbone, resolution, path)
            session, graph = open_session(path, threads), path.read_bytes()
        difference = _check(session, model, backbone, resolution, "the fresh export")
        return OnnxNetwork(session, None, graph, True, seconds, difference, threads)
    key = export_key(backbone, weights, resolution)
    path = export_path(cache_dir, key)
    session, seconds = None, 0.0
    if path.is_file():
        try:
            session = open_session(path, threads)
        except Exception:  # a damaged or partial file (onnxruntime raises its own types): export again
            session = None
    exported = session is None
    if exported:
        seconds = export_onnx(model, backbone, resolution, path)
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps({"key": key, "export_seconds": seconds}, indent=2, sort_keys=True) + "\n")
        session = open_session(path, threads)
    difference = _check(session, model, backbone, resolution, str(path))
    return OnnxNetwork(session, path, None, exported, seconds, difference, threads)


def input_share(network: OnnxNetwork, images: np.ndarray, batch_size: int) -> dict:
    """Where ONNX Runtime's time goes on ``images``: the share of the graph's input preparation
    (uint8 -> float, normalise, resize: the nodes outside ``/model/``) against the network,
    from ONNX Runtime's own per-node profile. Answers whether the input pipeline keeps up;
    ``operators``: the largest shares by operator type (fused ones as ONNX Runtime names them)."""
    with tempfile.TemporaryDirectory() as folder:
        session = open_session(network.model if network.path is None else network.path, network.threads,
                               profile_prefix=str(Path(folder) / "profile"))
        for b in range(0, len(images), batch_size):
            session.run(None, {"images": np.ascontiguousarray(images[b:b + batch_size])})
        events = json.loads(Path(session.end_profiling()).read_text())
    by_node: dict[str, float] = {}
    by_op: dict[str, float] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name, op = event["name"][:-len("_kernel_time")], event.get("args", {}).get("op_name", "?")
            by_node[name] = by_node.get(name, 0.0) + event["dur"] / 1e6
            by_op[op] = by_op.get(op, 0.0) + event["dur"] / 1e6
    total = sum(by_node.values())
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:8]
    inputs = {k: v for k, v in by_node.items() if not k.startswith("/model/") and not k.startswith("Reorder")}
    return {"images": int(len(images)), "kernel_seconds": total,
            "input_share": sum(inputs.values()) / total if total else float("nan"),
            "input_nodes": {k: v / total for k, v in sorted(inputs.items(), key=lambda kv: -kv[1]) if v > 0},
            "operators": [{"op": op, "share": v / total} for op, v in top] if total else []}
