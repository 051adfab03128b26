"""Part 1 of the benchmark: the project's feature extraction (default engine) against the textbook
pipeline; ``lib.bench.engines`` sets every engine side by side."""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from lib.bench.common import operator_profile
from lib.core.errors import ConfigError
from lib.core.provenance import load_average
from lib.core.stats import relative_difference

# Input normalisation in torchvision's Normalize(mean, std) form, per backbone.
TEXTBOOK_NORMALIZE = {
    "efficientnet_lite0": ((127 / 255,) * 3, (128 / 255,) * 3),  # == (x*255 - 127) / 128
    "resnet18": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> dict:
    """float32 ``torch.mm`` of two n x n matrices: best of ``repeats`` after a warm-up."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "repeats": repeats, "best_seconds": best, "gflops": 2.0 * n ** 3 / best / 1e9,
            "threads": torch.get_num_threads()}


def forward_flops(model: torch.nn.Module, resolution: int) -> int:
    """FLOPs of one forward pass on one image (``FlopCounterMode``: convolutions and matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, resolution, resolution)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    return int(counter.get_total_flops())


class CifarStyleDataset(torch.utils.data.Dataset):
    """What ``torchvision.datasets.CIFAR10.__getitem__`` does, over the verified uint8 arrays
    (the mirror's files differ from the official ones byte-wise, so CIFAR10 itself refuses them)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        from PIL import Image

        img, target = self.images[index], int(self.labels[index])
        img = Image.fromarray(img)
        if self.transform is not None:
            img = self.transform(img)
        return img, target


def textbook_transform(backbone_name: str, resolution: int):
    from torchvision import transforms

    mean, std = TEXTBOOK_NORMALIZE[backbone_name]
    return transforms.Compose([transforms.Resize(resolution), transforms.ToTensor(),
                               transforms.Normalize(mean, std)])


def textbook_features(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray,
                      backbone_name: str, resolution: int, batch_size: int = 64,
                      workers: int = 0) -> np.ndarray:
    """The textbook loop: Dataset + transforms + DataLoader + eval() + no_grad()."""
    dataset = CifarStyleDataset(images, labels, textbook_transform(backbone_name, resolution))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                         num_workers=workers)
    model.eval()
    out = []
    with torch.no_grad():
        for x, _ in loader:
            out.append(model(x))
    return torch.cat(out).numpy()


def _profile_project(extractor, images: np.ndarray, batch_size: int) -> dict:
    """Seconds in input preparation (uint8 -> float, resize, normalise, channels_last) and in
    the network, over the first batches; plus the operators that take the most time. With
    ONNX Runtime both come from its per-node profile (the input steps are part of its graph)."""
    from lib.cifar.backbones import to_model_input

    if extractor.onnx is not None:
        from lib.cifar.onnx_engine import input_share

        prof = input_share(extractor.onnx, images, batch_size)
        return {"images": prof["images"], "seconds": prof["kernel_seconds"], "engine": "onnxruntime",
                "shares": {"input preparation (inside the ONNX graph)": prof["input_share"],
                           "network forward": 1 - prof["input_share"]},
                "operators": prof["operators"]}

    prep = forward = 0.0
    with torch.inference_mode():
        for b in range(0, len(images), batch_size):
            batch = torch.from_numpy(images[b:b + batch_size])
            t0 = time.perf_counter()
            x = to_model_input(batch, extractor.resolution, extractor.backbone)
            t1 = time.perf_counter()
            extractor.model(x)
            t2 = time.perf_counter()
            prep, forward = prep + t1 - t0, forward + t2 - t1
    total = prep + forward
    return {"images": int(len(images)), "seconds": total,
            "shares": {"input preparation (tensor resize + normalise)": prep / total,
                       "network forward": forward / total},
            "operators": operator_profile(extractor.model, to_model_input(
                torch.from_numpy(images[:batch_size]), extractor.resolution, extractor.backbone))}


def _profile_textbook(model: torch.nn.Module, images: np.ndarray, backbone_name: str,
                      resolution: int, batch_size: int) -> dict:
    """Per-stage seconds of the textbook loop on the first images (workers=0, so stages add up)."""
    from PIL import Image
    from torchvision import transforms

    mean, std = TEXTBOOK_NORMALIZE[backbone_name]
    steps = {"PIL conversion": Image.fromarray, "PIL resize": transforms.Resize(resolution),
             "ToTensor": transforms.ToTensor(), "Normalize": transforms.Normalize(mean, std)}
    stages = dict.fromkeys((*steps, "collate", "network forward"), 0.0)

    def prepare(img):
        for key, step in steps.items():
            t0 = time.perf_counter()
            img = step(img)
            stages[key] += time.perf_counter() - t0
        return img

    with torch.no_grad():
        for b in range(0, len(images), batch_size):
            tensors = [prepare(img) for img in images[b:b + batch_size]]
            t0 = time.perf_counter()
            x = torch.utils.data.default_collate(tensors)
            t1 = time.perf_counter()
            model(x)
            stages["collate"] += t1 - t0
            stages["network forward"] += time.perf_counter() - t1
    total = sum(stages.values())
    profile = {"images": int(len(images)), "seconds": total, "shares": {k: v / total for k, v in stages.items()}}
    first = torch.utils.data.default_collate([prepare(img) for img in images[:batch_size]])
    return {**profile, "operators": operator_profile(model, first)}


def bf16_supported() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def plain_network(backbone, resolution: int, pretrained: bool, seed: int) -> torch.nn.Module:
    """The backbone as the textbook builds it, in eval mode (the same weights as the extractors')."""
    torch.manual_seed(seed)
    plain, _ = backbone.build(pretrained=pretrained, resolution=resolution)
    return plain.eval()


def time_interleaved(runs: dict, images: np.ndarray, labels: np.ndarray, interleave: int) -> tuple[dict, dict]:
    """Seconds and features per ``runs`` entry (``run(images, labels) -> features``), the entries taking
    turns over slices of ``interleave`` images, so that a change in the shared machine's load hits all alike."""
    seconds = dict.fromkeys(runs, 0.0)
    parts: dict = {name: [] for name in runs}
    for lo in range(0, len(images), interleave):
        part, part_labels = images[lo:lo + interleave], labels[lo:lo + interleave]
        for name, run in runs.items():
            t0 = time.perf_counter()
            parts[name].append(run(part, part_labels))
            seconds[name] += time.perf_counter() - t0
    return seconds, {name: np.concatenate(p) for name, p in parts.items()}


def _input_and_network_differences(images: np.ndarray, extractor, plain, backbone, backbone_name: str,
                                    resolution: int, batch_size: int) -> tuple[float, float]:
    """The two pipelines' network inputs, and the two networks on identical inputs: separates
    input differences from the network's response."""
    from PIL import Image

    from lib.cifar.backbones import to_model_input

    transform = textbook_transform(backbone_name, resolution)
    x_theirs = torch.stack([transform(Image.fromarray(img)) for img in images])
    x_ours = to_model_input(torch.from_numpy(images), resolution, backbone)
    input_diff = float((x_ours - x_theirs).abs().max())
    with torch.inference_mode():
        same_input = x_theirs[:batch_size]
        network_diff = float((extractor.model(same_input.contiguous(memory_format=torch.channels_last))
                              - plain(same_input)).abs().max())
    return input_diff, network_diff


def bench_extraction(images: np.ndarray, labels: np.ndarray, *, backbone_name: str = "efficientnet_lite0",
                     resolution: int = 224, batch_size: int = 64, workers: int = 0,
                     pretrained: bool = True, profile_images: int = 128, seed: int = 0,
                     interleave: int = 256, bf16: bool | None = None) -> dict:
    """Part 1: both pipelines on the same images; speeds, ratio, difference, GFLOP/s, profile. ``bf16``
    (default: when the CPU has bf16 instructions) also times the project's pipeline in bfloat16."""
    from lib.cifar.backbones import get_backbone
    from lib.cifar.extract import Extractor
    from lib.cifar.feature_cache import extract_features

    backbone = get_backbone(backbone_name)
    if backbone_name not in TEXTBOOK_NORMALIZE:
        raise ConfigError(f"no textbook normalisation known for {backbone_name!r}")
    extractor = Extractor(backbone, resolution, pretrained=pretrained, device="cpu", seed=seed)
    fast = Extractor(backbone, resolution, pretrained=pretrained, device="cpu", seed=seed,
                     precision="bf16") if (bf16_supported() if bf16 is None else bf16) else None
    plain = plain_network(backbone, resolution, pretrained, seed)
    n = len(images)
    warm = images[:min(batch_size, n, 8)]
    extractor(torch.from_numpy(warm))  # warm-up both (allocator, first-call overheads), untimed
    if fast is not None:
        fast(torch.from_numpy(warm))
    textbook_features(plain, warm, labels[:len(warm)], backbone_name, resolution, batch_size)

    def project(model):
        return lambda part, part_labels: extract_features(part, model, labels=part_labels, cache_dir=None,
                                                          batch_size=batch_size, progress=False).features

    runs = {"ours": project(extractor),
            "theirs": lambda part, part_labels: textbook_features(plain, part, part_labels, backbone_name,
                                                                  resolution, batch_size, workers)}
    if fast is not None:
        runs["bf16"] = project(fast)
    load_before = list(load_average() or ())
    mm_before = matmul_gflops()
    seconds, features = time_interleaved(runs, images, labels, interleave)
    ours, theirs = features["ours"], features["theirs"]
    project_s, textbook_s, bf16_s = seconds["ours"], seconds["theirs"], seconds.get("bf16", 0.0)
    load_after = list(load_average() or ())
    diff = np.abs(ours.astype(np.float32) - theirs)
    flops = forward_flops(plain, resolution)
    mm_after = matmul_gflops()
    mm = max(mm_before, mm_after, key=lambda m: m["gflops"])  # the less disturbed measurement
    mm["gflops_before_after"] = [mm_before["gflops"], mm_after["gflops"]]
    project_ips, textbook_ips = n / project_s, n / textbook_s
    achieved = flops * project_ips / 1e9
    k = min(profile_images, n)
    input_diff, network_diff = _input_and_network_differences(images[:k], extractor, plain, backbone,
                                                              backbone_name, resolution, batch_size)
    return {
        "images": int(n), "resolution": resolution, "backbone": backbone_name,
        "pretrained": pretrained, "weights": extractor.weights, "batch_size": batch_size,
        "textbook_workers": workers, "threads": torch.get_num_threads(),
        "project": {"seconds": project_s, "images_per_s": project_ips, "engine": extractor.describe(),
                    "what": "lib.cifar.feature_cache.extract_features (cache off) with the default engine: "
                            + ("uint8 batch -> one ONNX Runtime graph (normalise, bilinear resize, network)"
                               if extractor.onnx is not None else
                               "uint8 batch -> tensor resize (bilinear, antialias) -> normalise -> "
                               "channels_last -> inference_mode")
                            + "; features stored as float16"},
        "textbook": {"seconds": textbook_s, "images_per_s": textbook_ips,
                     "what": "CIFAR10-style Dataset (PIL.Image.fromarray) + transforms.Resize / ToTensor / "
                             f"Normalize + DataLoader(batch_size={batch_size}, num_workers={workers}) + "
                             "model.eval() under torch.no_grad()"},
        "speedup": project_ips / textbook_ips,
        "project_bf16": None if fast is None else {
            "seconds": bf16_s, "images_per_s": n / bf16_s, "speedup": (n / bf16_s) / textbook_ips,
            "relative_difference_to_fp32": relative_difference(features["bf16"], ours),
            "what": "the same pipeline with precision='bf16' (python -m lib features --precision bf16): "
                    "bfloat16 autocast on the CPU's bf16 instructions, eager network"},
        "max_abs_difference": float(diff.max()) if diff.size else 0.0,
        "mean_abs_difference": float(diff.mean()) if diff.size else 0.0,
        "max_abs_feature": float(np.abs(theirs).max()) if theirs.size else 0.0,
        "relative_difference": relative_difference(ours, theirs),
        "input_max_abs_difference": input_diff,
        "network_max_abs_difference": network_diff,
        "interleave": interleave,
        "input_grey_level": float(1.0 / 255.0 / TEXTBOOK_NORMALIZE[backbone_name][1][0]),
        "project_optimized": bool(extractor.optimized),  # traced torch network (not the default)
        "flops_per_image": flops,
        "achieved_gflops": achieved,
        "textbook_gflops": flops * textbook_ips / 1e9,
        "matmul": mm,
        "matmul_fraction": achieved / mm["gflops"],
        "load_average": {"before": load_before, "after": load_after},
        "profile": {"project": _profile_project(extractor, images[:k], batch_size),
                    "textbook": _profile_textbook(plain, images[:k], backbone_name, resolution, batch_size)},
    }

