"""Pretrained-feature extraction: a built backbone on a device turning uint8 batches into features.

Extraction runs batched. On the CPU the default engine is ONNX Runtime, running one exported
graph from uint8 images to features (``lib.cifar.onnx_engine``); the torch engine runs under
``torch.inference_mode`` with channels_last inputs, resizing whole batches on the device
(``lib.cifar.backbones.to_model_input``), under fp16 autocast on CUDA.
"""
from __future__ import annotations

from pathlib import Path

import torch

from lib.cifar.backbones import Backbone, check_resolution, to_model_input
from lib.cifar.onnx_engine import onnx_network, onnxruntime_version, resolve_engine
from lib.core.devices import resolve_device
from lib.core.errors import ConfigError


def default_batch_size(device: torch.device) -> int:
    return 1024 if device.type == "cuda" else 64


def optimize_for_cpu(model: torch.nn.Module, resolution: int) -> torch.nn.Module:
    """Trace and freeze ``model`` for CPU inference (``torch.jit.optimize_for_inference``):
    batch norm folded into the convolutions, convolution + ReLU6 fused, MKL-DNN layouts and no
    per-layer padding copies. Outputs agree with the eager network to float32 rounding; eager
    EfficientNet-Lite spends about a third of its CPU time in exactly those separate steps
    (see the performance appendix)."""
    import warnings

    example = torch.zeros(2, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the fastest here
        return torch.jit.optimize_for_inference(torch.jit.trace(model, example))


class Extractor:
    """A built network on a device, turning uint8 NHWC batches into float features.

    ``engine``: "auto" (ONNX Runtime on the CPU, torch on CUDA), "torch" or "onnxruntime"
    (``lib.cifar.onnx_engine``). The torch CPU path runs the eager network: tracing and freezing
    it (``optimize=True``) is not reliably faster than eager on the 2-core CPU (issue 12: 0.97x
    for EfficientNet-Lite0, 0.71x for ResNet18; the bench's engine table times both) and ONNX
    Runtime outruns both, so it is an option, not the default."""

    def __init__(self, backbone: Backbone, resolution: int, *, pretrained: bool = True,
                 device: str | None = None, mirror: Path | None = None, seed: int = 0,
                 model: torch.nn.Module | None = None, model_weights: dict | None = None,
                 optimize: bool = False, precision: str = "auto", engine: str = "auto",
                 export_cache: Path | None = None, threads: int | None = None):
        """``precision``: "auto" (fp16 autocast on CUDA, fp32 on CPU), "fp32", or "bf16"
        (bfloat16 autocast on the CPU, for processors with bf16 instructions; torch engine).
        ``export_cache``: folder whose ``onnx/`` keeps ONNX exports (None: export every time).
        ``model_weights``: what a custom ``model``'s weights are, for the feature cache's key
        (default: its class name and ``seed``)."""
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.backbone = backbone
        self.resolution = check_resolution(resolution)
        self.device = resolve_device(device)
        self.bf16 = precision == "bf16"
        if self.bf16 and self.device.type != "cpu":
            raise ConfigError("precision bf16 is the CPU fast path; CUDA uses fp16 autocast (precision auto)")
        self.engine = resolve_engine(engine, self.device, precision=precision, custom_model=model is not None)
        if model is not None:
            self.model = model
            self.weights = model_weights or {"custom_model": type(model).__name__, "seed": seed}
        else:
            if not pretrained:
                torch.manual_seed(seed)
            self.model, weights = backbone.build(pretrained=pretrained, resolution=resolution, mirror=mirror)
            self.weights = weights if pretrained else {"random_init_seed": seed}
        self.model = self.model.to(self.device).eval()
        self.onnx = None
        if self.engine == "onnxruntime":
            self.onnx = onnx_network(self.model, backbone, self.weights, self.resolution,
                                     None if model is not None else export_cache, threads)
        self.model = self.model.to(memory_format=torch.channels_last)
        self.optimized = optimize and self.engine == "torch" and not self.bf16
        if self.optimized:
            self.model = optimize_for_cpu(self.model, self.resolution)
        self.autocast = self.device.type == "cuda" and precision == "auto"
        self.precision = "bf16-autocast" if self.bf16 else ("fp16-autocast" if self.autocast else "fp32")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def describe(self) -> dict:
        """The engine that computes features, for provenance and the cache's records."""
        if self.onnx is not None:
            return self.onnx.describe()
        return {"engine": "torch", "torch": torch.__version__,
                "network": "traced and frozen" if self.optimized else "eager"}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """``images``: uint8 (B, H, W, 3) tensor (any device) -> float32 (B, D) on CPU."""
        if self.onnx is not None:
            out = self.onnx(images)
            return 0.5 * (out + self.onnx(torch.flip(images, dims=[2]))) if flip else out
        images = images.to(self.device, non_blocking=True)
        dtype = torch.bfloat16 if self.bf16 else torch.float16  # bf16 on the CPU, fp16 on CUDA
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.bf16 or self.autocast):
            x = to_model_input(images, self.resolution, self.backbone)
            out = self.model(x).float()
            if flip:
                out = 0.5 * (out + self.model(torch.flip(x, dims=[3])).float())
        return out.cpu()


def device_name(device: torch.device, engine: str = "torch", threads: int | None = None) -> str:
    """The device and engine that computed features, in words (recorded in the cache)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    from lib.core.provenance import cpu_model
    if engine == "onnxruntime":
        return f"cpu ({cpu_model()}, onnxruntime {onnxruntime_version()}, {threads} threads)"
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"


def extractor_device_name(extractor: "Extractor") -> str:
    threads = extractor.onnx.threads if extractor.onnx is not None else None
    return device_name(extractor.device, extractor.engine, threads)

