"""What every benchmark part shares: the artifact name, the parts, the targets and the log line."""
from __future__ import annotations

import sys

NAME = "bench"
PARTS = ("extraction", "engines", "linear", "embeddings", "report")
TARGETS = {
    "extraction_speedup": 2.0,           # project images/s over textbook images/s, at least
    "extraction_matmul_fraction": 0.60,  # achieved GFLOP/s over measured matmul GFLOP/s, at least
    "engines_lite0_over_textbook": 4.0,  # EfficientNet-Lite0, default engine over textbook, at least
    "engines_lite0_over_eager": 3.0,     # EfficientNet-Lite0, default engine over torch eager, at least
    "engines_resnet18_over_eager": 2.0,  # ResNet18, default engine over torch eager, at least
    "engines_resnet18_sgemm": 0.80,      # ResNet18, default engine GFLOP/s over same-run sgemm, at least
    "linear_speedup": 5.0,               # scikit-learn seconds over project seconds, at least
    "embeddings_speedup": 10.0,          # recipe seconds over project seconds (or never reached)
    "report_seconds": 60.0,              # python -m lib notebooks, at most
}
ACCURACY_SLACK = 0.002                   # the common target is min(final accuracies) - 0.2 points


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def operator_profile(fn, *args, grad: bool = False, top: int = 8) -> list[dict]:
    """Self CPU time per operator of ``fn(*args)`` (under inference_mode, or enable_grad), largest first."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    mode = torch.enable_grad() if grad else torch.inference_mode()
    with mode, profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(*args)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [{"op": e.key, "share": e.self_cpu_time_total / total, "calls": int(e.count)} for e in events[:top]]


def _at_least(part: str, measure: str, value: float, target: str, percent: bool = False) -> dict:
    goal = f">= {TARGETS[target]:.0%}" if percent else f">= {TARGETS[target]:g}x"
    return {"part": part, "measure": measure, "value": value, "goal": goal, "met": value >= TARGETS[target]}


def targets(parts: dict) -> list[dict]:
    """One row per target: the measured value, the goal and whether it was met."""
    rows = []
    if "extraction" in parts:
        e = parts["extraction"]
        rows += [_at_least("extraction", "speed-up over the textbook pipeline", e["speedup"],
                           "extraction_speedup"),
                 _at_least("extraction", "share of measured matmul GFLOP/s", e["matmul_fraction"],
                           "extraction_matmul_fraction", percent=True)]
    if "engines" in parts:
        rows += engine_targets(parts["engines"])
    if "linear" in parts:
        rows.append(_at_least("linear", "speed-up over scikit-learn at equal accuracy", parts["linear"]["speedup"],
                              "linear_speedup"))
    if "embeddings" in parts:
        m = parts["embeddings"]
        s = m["speedup"]
        rows.append({"part": "embeddings", "measure": "speed-up to the 0.5% gap over the public recipe",
                     "value": s, "goal": f">= {TARGETS['embeddings_speedup']:g}x or recipe never gets there",
                     "met": s is not None and (s >= TARGETS["embeddings_speedup"] or m["speedup_is_lower_bound"])})
    if "report" in parts:
        s = parts["report"]["seconds"]
        rows.append({"part": "report", "measure": "seconds for python -m lib notebooks",
                     "value": s, "goal": f"<= {TARGETS['report_seconds']:g} s",
                     "met": s <= TARGETS["report_seconds"]})
    return rows


def engine_targets(engines: dict) -> list[dict]:
    """The engine table's targets: the default engine's row against the textbook and torch eager
    rows of the same backbone, and ResNet18's share of the same-run sgemm rate."""
    checks = {"efficientnet_lite0": (("speedup_over_textbook", "engines_lite0_over_textbook"),
                                     ("speedup_over_torch_eager", "engines_lite0_over_eager")),
              "resnet18": (("speedup_over_torch_eager", "engines_resnet18_over_eager"),
                           ("sgemm_fraction", "engines_resnet18_sgemm"))}
    words = {"speedup_over_textbook": "default engine over the textbook pipeline",
             "speedup_over_torch_eager": "default engine over torch eager",
             "sgemm_fraction": "default engine's share of same-run sgemm GFLOP/s"}
    rows = []
    for backbone, table in engines["backbones"].items():
        default = next(r for r in table["rows"] if r["engine"] == table["default_engine"])
        rows += [_at_least("engines", f"{backbone}: {words[key]}", default[key], target, key == "sgemm_fraction")
                 for key, target in checks.get(backbone, ())]
    return rows
