"""Pretrained-feature extraction: a built backbone on a device turning uint8 batches into features.

Extraction runs batched under ``torch.inference_mode`` with channels_last inputs,
resizing whole batches on the device (``lib.cifar.backbones.to_model_input``). On CUDA
the network runs under fp16 autocast; on the CPU it is traced and frozen for inference.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch

from lib.cifar.backbones import Backbone, check_resolution, to_model_input
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
    """A built network on a device, turning uint8 NHWC batches into float features."""

    def __init__(self, backbone: Backbone, resolution: int, *, pretrained: bool = True,
                 device: str | None = None, mirror: Path | None = None, seed: int = 0,
                 model: torch.nn.Module | None = None, autocast: bool | None = None,
                 optimize: bool | None = None, precision: str = "auto"):
        """``precision``: "auto" (fp16 autocast on CUDA, fp32 on CPU), "fp32", or "bf16"
        (bfloat16 autocast on the CPU, for processors with bf16 instructions; eager network)."""
        if precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, got {precision!r}")
        self.backbone = backbone
        self.resolution = check_resolution(resolution)
        self.device = resolve_device(device)
        if model is not None:
            self.model, self.weights = model, {"custom_model": type(model).__name__, "seed": seed}
        else:
            if not pretrained:
                torch.manual_seed(seed)
            self.model, weights = backbone.build(pretrained=pretrained, resolution=resolution, mirror=mirror)
            self.weights = weights if pretrained else {"random_init_seed": seed}
        self.model = self.model.to(self.device).eval().to(memory_format=torch.channels_last)
        # On CPU the built network is traced and frozen for inference (default; not for a custom model).
        self.bf16 = precision == "bf16"
        if self.bf16 and self.device.type != "cpu":
            raise ConfigError("precision bf16 is the CPU fast path; CUDA uses fp16 autocast (precision auto)")
        self.optimized = (self.device.type == "cpu" and model is None and not self.bf16) \
            if optimize is None else optimize
        if self.optimized:
            self.model = optimize_for_cpu(self.model, self.resolution)
        self.autocast = (self.device.type == "cuda" and precision == "auto") if autocast is None else autocast
        self.precision = "bf16-autocast" if self.bf16 else ("fp16-autocast" if self.autocast else "fp32")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """``images``: uint8 (B, H, W, 3) tensor (any device) -> float32 (B, D) on CPU."""
        images = images.to(self.device, non_blocking=True)
        if self.bf16:
            ctx = torch.autocast(device_type="cpu", dtype=torch.bfloat16)
        elif self.autocast:
            ctx = torch.autocast(device_type="cuda", dtype=torch.float16)
        else:
            ctx = nullcontext()
        with ctx:
            x = to_model_input(images, self.resolution, self.backbone)
            out = self.model(x).float()
            if flip:
                out = 0.5 * (out + self.model(torch.flip(x, dims=[3])).float())
        return out.cpu()



def device_name(device: torch.device) -> str:
    """The device that computed features, in words (recorded in the cache)."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    from lib.core.provenance import cpu_model
    return f"cpu ({cpu_model()}, {torch.get_num_threads()} threads)"

