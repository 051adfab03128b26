"""The reproducibility appendix: every frozen artifact's provenance, as tables.

``STAGES`` lists, in pipeline order, the command that produced each frozen
artifact; a test checks each command against the configuration the artifact
recorded, so this table cannot drift from what actually ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from lib.core.paths import RESULTS_DIR
from lib.core.artifacts import load_json


@dataclass(frozen=True)
class Stage:
    artifact: str   # results/<artifact>.json
    purpose: str
    command: str    # as run; DIR is the data mirror


STAGES: tuple[Stage, ...] = (
    Stage("features", "chapter 1: features at 64/128/224 px, logistic regression, gallery",
          "python -m lib features --backbone efficientnet_lite0 --resolution 224 --sweep 64 128 224 --mirror DIR"),
    Stage("features_cpu_timing", "chapter 1: extraction speed on the 2-core CPU (ONNX Runtime and torch)",
          "python -m lib features --cpu-timing --backbone efficientnet_lite0 --sweep 64 128 224"),
    Stage("features_cpu_onnx", "chapter 1: all 60,000 images extracted on the 2-core CPU (ONNX Runtime), probe",
          "python -m lib features --backbone efficientnet_lite0 --resolution 224 --name features_cpu_onnx "
          "--mirror DIR"),
    Stage("finetune_pilot_cpu", "chapter 2: pilot on the 2-core CPU",
          "python -m lib finetune --backbone efficientnet_lite0 --pilot --pilot-resolutions 64,96,128 --pilot-train 1024 --pilot-val 1000 "
          "--batch-size 64 --threads 1 --mirror DIR"),
    Stage("finetune_pilot_cuda", "chapter 2: pilot on the GPU",
          "python -m lib finetune --backbone efficientnet_lite0 --pilot --pilot-resolutions 160,224 --pilot-train 2560 --pilot-val 2000 --mirror DIR"),
    Stage("finetune", "chapter 2: full finetuning",
          "python -m lib finetune --backbone efficientnet_lite0 --resolution 224 --epochs 9 --max-minutes 4.5 --mirror DIR"),
    Stage("finetune_cpu", "chapter 2: the same recipe on the 2-core CPU at 64 px",
          "python -m lib finetune --backbone efficientnet_lite0 --name finetune_cpu --resolution 64 --epochs 3 --threads 2 "
          "--max-minutes 45 --mirror DIR"),
    Stage("finetune_cpu_partial", "chapter 2: partial finetuning on the 2-core CPU (last two stages, cached activations)",
          "python -m lib finetune --backbone efficientnet_lite0 --name finetune_cpu_partial --trainable-stages 2 "
          "--resolution 160 --epochs 10 --batch-size 128 --lr 0.1 --backbone-lr-scale 0.5 --schedule onecycle "
          "--warmup-epochs 1.5 --channels-last on --amp off --flip-average --threads 2 --max-minutes 55 --mirror DIR"),
    Stage("finetune_cpu_partial_short", "chapter 2: the same partial finetune, 4 epochs (reuses the cached activations)",
          "python -m lib finetune --backbone efficientnet_lite0 --name finetune_cpu_partial_short --trainable-stages 2 "
          "--resolution 160 --epochs 4 --batch-size 128 --lr 0.1 --backbone-lr-scale 0.5 --schedule onecycle "
          "--warmup-epochs 0.6 --channels-last on --amp off --flip-average --threads 2 --max-minutes 55 --mirror DIR"),
    Stage("probe_variants", "chapter 2: the probe with flips and label smoothing, 3 validation splits (CPU)",
          "python -m lib probe-variants --backbone efficientnet_lite0 --mirror DIR"),
    Stage("gallery_sprites", "chapters 1-2: test images for the HTML gallery browser",
          "python -m lib gallery-sprites -k 10 --mirror DIR"),
    Stage("movies", "chapter 3: co-occurrence, embeddings, optimisers, recommendations, evaluation",
          "python -m lib movies --mirror DIR"),
    Stage("movies_hessian", "chapter 3: Hessian eigenvalues, predicted and observed learning-rate limits",
          "python -m lib movies-hessian --mirror DIR"),
    Stage("movies_decay", "chapter 3: Adam and RMSprop with a cosine-decayed learning rate",
          "python -m lib movies-decay --mirror DIR"),
    Stage("movies_baselines", "chapter 3: EASE, ALS and item-item cosine on the same held-out likes",
          "python -m lib movie-baselines --mirror DIR"),
    Stage("movies_scale", "appendix: chapter 3's pipeline on synthetic likes up to MovieLens-32M's size",
          "python -m lib bench-scale --sizes 5 --mirror DIR"),
    Stage("bench", "appendix: fast paths against baselines (extraction, probe, embeddings, report)",
          "python -m lib bench --mirror DIR"),
)


def _hardware(prov: dict) -> str:
    hw = prov.get("hardware", {})
    if hw.get("gpu"):
        return f"{hw['gpu']} (+{hw.get('cpu_count')} CPU cores)"
    threads = hw.get("torch_threads", "?")
    return f"{hw.get('cpu', '?')}, {threads} thread{'' if threads == 1 else 's'}"


def available_stages(results_dir: Path | None = None) -> list[Stage]:
    folder = results_dir or RESULTS_DIR
    return [stage for stage in STAGES if (folder / f"{stage.artifact}.json").is_file()]


def runs_table(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per frozen artifact: hardware, wall time, seed, commit, date."""
    rows = []
    for stage in available_stages(results_dir):
        prov = load_json(stage.artifact, results_dir)["provenance"]
        rows.append({
            "artifact": f"`{stage.artifact}`",
            "purpose": stage.purpose,
            "hardware": _hardware(prov),
            "wall time (s)": round(float(prov["wall_time_s"]), 1),
            "seed": "none" if prov.get("seed") is None else prov["seed"],
            "commit": (prov.get("git", {}).get("commit") or "unknown")[:8],
            "created (UTC)": prov.get("created_utc", "")[:16].replace("T", " "),
        })
    return pd.DataFrame(rows)


def commands_table(results_dir: Path | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"artifact": f"`{s.artifact}`", "command": f"`{s.command}`"}
                         for s in available_stages(results_dir)])


def versions_table(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per package and version, naming the artifacts made with it, so machine differences show.

    (One column per artifact would be clearer on screen but does not fit a printed page.)
    """
    runs: dict[tuple[str, str], list[str]] = {}
    for stage in available_stages(results_dir):
        for package, version in load_json(stage.artifact, results_dir)["provenance"]["versions"].items():
            runs.setdefault((package, str(version)), []).append(stage.artifact)
    return pd.DataFrame([{"package": package, "version": version, "artifacts": ", ".join(names)}
                         for (package, version), names in sorted(runs.items())])


HASH_DIGITS = 16  # a printed table cannot break a 64-digit hash; the HTML lists them in full


def short_hash(digest: str | None) -> str:
    """The first HASH_DIGITS hex digits and an ellipsis (enough to tell files apart by eye)."""
    return f"{digest[:HASH_DIGITS]}…" if digest and len(digest) > HASH_DIGITS else str(digest)


def full_hashes_block(results_dir: Path | None = None) -> str:
    """Every data and weights hash in full, as a code block (shown in the HTML book only)."""
    rows = [f"{r['dataset']}, {r['what']}: {r['sha256'].strip('`')}" for _, r in data_table(results_dir, full=True).iterrows()]
    rows += [f"{r['weights']}: {r['sha256'].strip('`')}" for _, r in weights_table(results_dir, full=True).iterrows()]
    return "```text\n" + "\n".join(rows) + "\n```"


def data_table(results_dir: Path | None = None, full: bool = False) -> pd.DataFrame:
    """Content hashes of the data every run verified (identical across artifacts by design)."""
    show = (lambda d: d) if full else short_hash
    stage = available_stages(results_dir)[0]
    data = load_json(stage.artifact, results_dir)["provenance"]["data"]
    rows = []
    for split, hashes in data["cifar10"].items():
        rows.append({"dataset": f"CIFAR-10 {split}", "what": "pixel rows (uint8)", "sha256": f"`{show(hashes['data_sha256'])}`"})
        rows.append({"dataset": f"CIFAR-10 {split}", "what": "labels (uint8)", "sha256": f"`{show(hashes['labels_sha256'])}`"})
    for name, digest in data["movielens"].items():
        rows.append({"dataset": "MovieLens ml-latest-small", "what": name, "sha256": f"`{show(digest)}`"})
    return pd.DataFrame(rows)


def weights_table(results_dir: Path | None = None, full: bool = False) -> pd.DataFrame:
    """The pretrained weights the runs used, once each, with their (shortened) sha256."""
    show = (lambda d: d) if full else short_hash
    rows, seen = [], set()
    for stage in available_stages(results_dir):
        weights = load_json(stage.artifact, results_dir)["provenance"].get("weights")
        if weights and weights.get("sha256") not in seen:
            seen.add(weights.get("sha256"))
            rows.append({"weights": weights.get("name"), "file": f"`{weights.get('file')}`",
                         "sha256": f"`{show(weights.get('sha256'))}`"})
    return pd.DataFrame(rows)


def total_wall_time_s(results_dir: Path | None = None) -> float:
    return float(sum(load_json(s.artifact, results_dir)["provenance"]["wall_time_s"]
                     for s in available_stages(results_dir)))


def values(results_dir: Path | None = None) -> SimpleNamespace:
    """What the appendix's prose quotes: the runs table, how many runs, their total wall time, and
    the measured full feature extraction on the 2-core CPU."""
    runs = runs_table(results_dir)
    cpu = load_json("features_cpu_onnx", results_dir)["timings"]
    return SimpleNamespace(runs=runs, n_runs=len(runs),
                           total_minutes=f"{total_wall_time_s(results_dir) / 60:.1f}",
                           cpu_extract_minutes=f"{cpu['extract_wall_s'] / 60:.0f} minutes")
