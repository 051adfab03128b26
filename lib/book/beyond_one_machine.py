"""Appendix B's "Beyond one machine", from ``results/bench_distributed.json``: 1 against 2 processes
measured on this machine, the bytes each step all-reduces, and the labelled projection."""
from __future__ import annotations


import pandas as pd
from IPython.display import Markdown

from lib.book.format import md_table, text_values
from lib.core.artifacts import load_json

MB = 1e6
NAMES = {"resnet18": "ResNet18", "efficientnet_lite0": "EfficientNet-Lite0"}  # as the chapters write them


def display(text: str) -> str:
    """A backbone's identifier as the chapters print it."""
    for raw, shown in NAMES.items():
        text = text.replace(raw, shown)
    return text


def duration(seconds: float) -> str:
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.2f} ms"


def data() -> dict:
    """The artifact, as written by ``python -m lib bench-distributed``."""
    return load_json("bench_distributed")


# What the section's prose quotes, formatted as printed.
BeyondValues = text_values("BeyondValues", (
    "cpu cores backbone resolution batch images tune_one tune_two tune_ratio loss_one loss_two epochs "
    "per_rank_batch movie_dim movie_one movie_two movie_ratio movie_mb intra_gb_s inter_gb_s latency_us "
    "gpus_per_node gpu gpu_batch gpu_images_per_s per_gpu_at_64"
))


def values(d: dict) -> BeyondValues:
    one, two = d["measured"]["1"], d["measured"]["2"]
    gpu = load_json("finetune")  # the recorded GPU run the finetuning projection starts from
    s, a, hw = d["settings"], d["assumptions"], d["provenance"]["hardware"]
    tune = one["finetune"]["images_per_s"], two["finetune"]["images_per_s"]
    movie = one["movies"]["seconds_per_evaluation"], two["movies"]["seconds_per_evaluation"]
    return BeyondValues(
        cpu=hw["cpu"], cores=str(hw["cpu_count"]), backbone=display(s["backbone"]),
        resolution=str(s["resolution"]), batch=str(s["batch_size"]), images=f"{s['train_images']:,}",
        tune_one=f"{tune[0]:.0f}", tune_two=f"{tune[1]:.0f}", tune_ratio=f"{tune[1] / tune[0]:.2f}",
        loss_one=f"{one['finetune']['train_loss']:.3f}", loss_two=f"{two['finetune']['train_loss']:.3f}",
        epochs=str(s["epochs"]), per_rank_batch=str(s["batch_size"] // 2),
        movie_dim=str(d["movie_dim"]), movie_one=f"{movie[0] * 1e3:.1f} ms",
        movie_two=f"{movie[1] * 1e3:.1f} ms", movie_ratio=f"{movie[1] / movie[0]:.1f}",
        movie_mb=f"{d['movie_product_bytes'] / MB:.1f} MB", intra_gb_s=f"{a['intra_node_bytes_per_s'] / 1e9:.0f}",
        inter_gb_s=f"{a['inter_node_bytes_per_s'] / 1e9:.1f}", latency_us=f"{a['latency_s'] * 1e6:.0f}",
        gpus_per_node=str(a["gpus_per_node"]),
        gpu=gpu["hardware"]["device_name"], gpu_batch=str(gpu["recipe"]["batch_size"]),
        gpu_images_per_s=f"{gpu['timings']['train_images_per_s']:,.0f}",
        per_gpu_at_64=str(gpu["recipe"]["batch_size"] // max(a["worlds"])))


def measured_table(d: dict) -> Markdown:
    """1 process with every core against 2 processes sharing them, on this machine."""
    rows = [{"processes": world, "threads each": m["finetune"]["threads_per_process"],
             "finetuning, images/s": f"{m['finetune']['images_per_s']:.0f}",
             "movie cost + gradient, ms": f"{m['movies']['seconds_per_evaluation'] * 1e3:.1f}",
             "users per process": f"{m['movies']['users_here']:,}", "load before": f"{m['load_before'][0]:.2f}"}
            for world, m in sorted(d["measured"].items())]
    return md_table(pd.DataFrame(rows), disable_numparse=True)


def bytes_table(d: dict) -> Markdown:
    """What one step sends through the all-reduce, per model and for the movie product."""
    rows = [{"what": f"gradient of {display(name)}", "all-reduced per step or evaluation": f"{n / MB:.1f} MB"}
            for name, n in d["gradient_bytes"].items()]
    rows.append({"what": f"X0 V of ml-latest-small, d = {d['movie_dim']} (float64)",
                 "all-reduced per step or evaluation": f"{d['movie_product_bytes'] / MB:.1f} MB"})
    big = next(r for r in d["projection"] if r["unit"] == "nodes")
    rows.append({"what": "X0 V at MovieLens-32M's size, d = 64 (float64)",
                 "all-reduced per step or evaluation": f"{big['all_reduce_bytes'] / MB:.1f} MB"})
    return md_table(pd.DataFrame(rows), disable_numparse=True)


def projection_table(d: dict) -> Markdown:
    """The projection's rows: one device's recorded time, the compute share, the all-reduce and the speed-up."""
    rows = [{"projection": r["what"], "world": f"{r['world']} {r['unit']}",
             "one device": duration(r["one_s"]), "compute share": duration(r["compute_s"]),
             "all-reduce": duration(r["all_reduce_s"]), "speed-up": f"{r['speedup']:.1f}x",
             "efficiency": f"{100 * r['efficiency']:.0f}%"} for r in d["projection"]]
    return md_table(pd.DataFrame(rows), disable_numparse=True)
