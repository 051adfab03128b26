"""The reproducibility appendix: every frozen artifact's provenance, as tables.

The stages and their commands come from ``lib.core.stages`` (what ``python -m lib reproduce``
runs); a test checks each command against the command line the artifact recorded, so this table
cannot drift from what actually ran.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from lib.core.paths import RESULTS_DIR
from lib.core.artifacts import load_json
from lib.core.stages import STAGES, TIMINGS, TRAINING, Stage


def _hardware(prov: dict) -> str:
    hw = prov.get("hardware", {})
    if hw.get("gpu"):
        return f"{hw['gpu']} (+{hw.get('cpu_count')} CPU cores)"
    threads = hw.get("torch_threads", "?")
    return f"{hw.get('cpu', '?')}, {threads} thread{'' if threads == 1 else 's'}"


def available_stages(results_dir: Path | None = None) -> list[Stage]:
    folder = results_dir or RESULTS_DIR
    return [stage for stage in STAGES if (folder / f"{stage.name}.json").is_file()]


def runs_table(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per frozen artifact: hardware, wall time, seed, commit, date."""
    rows = []
    for stage in available_stages(results_dir):
        prov = load_json(stage.name, results_dir)["provenance"]
        rows.append({
            "artifact": f"`{stage.name}`",
            "purpose": stage.purpose,
            "hardware": _hardware(prov),
            "wall time (s)": round(float(prov["wall_time_s"]), 1),
            "seed": "none" if prov.get("seed") is None else prov["seed"],
            "commit": (prov.get("git", {}).get("commit") or "unknown")[:8],
            "created (UTC)": prov.get("created_utc", "")[:16].replace("T", " "),
        })
    return pd.DataFrame(rows)


def commands_table(results_dir: Path | None = None) -> pd.DataFrame:
    return pd.DataFrame([{"artifact": f"`{s.name}`", "command": f"`{s.command_line}`"}
                         for s in available_stages(results_dir)])


def versions_table(results_dir: Path | None = None) -> pd.DataFrame:
    """One row per package and version, naming the artifacts made with it, so machine differences show.

    (One column per artifact would be clearer on screen but does not fit a printed page.)
    """
    runs: dict[tuple[str, str], list[str]] = {}
    for stage in available_stages(results_dir):
        for package, version in load_json(stage.name, results_dir)["provenance"]["versions"].items():
            runs.setdefault((package, str(version)), []).append(stage.name)
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
    data = load_json(stage.name, results_dir)["provenance"]["data"]
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
        weights = load_json(stage.name, results_dir)["provenance"].get("weights")
        if weights and weights.get("sha256") not in seen:
            seen.add(weights.get("sha256"))
            rows.append({"weights": weights.get("name"), "file": f"`{weights.get('file')}`",
                         "sha256": f"`{show(weights.get('sha256'))}`"})
    return pd.DataFrame(rows)


def total_wall_time_s(results_dir: Path | None = None) -> float:
    return float(sum(load_json(s.name, results_dir)["provenance"]["wall_time_s"]
                     for s in available_stages(results_dir)))


def values(results_dir: Path | None = None) -> SimpleNamespace:
    """What the appendix's prose quotes: the runs table, how many runs, their total wall time, and
    the measured full feature extraction on the 2-core CPU."""
    runs = runs_table(results_dir)
    cpu = load_json("features_cpu_onnx", results_dir)["timings"]
    return SimpleNamespace(runs=runs, n_runs=len(runs),
                           total_minutes=f"{total_wall_time_s(results_dir) / 60:.1f}",
                           cpu_extract_minutes=f"{cpu['extract_wall_s'] / 60:.0f} minutes")


def _short_difference(described: str, name: str) -> str:
    """A difference as a printed table can hold it: numbers to 4 digits, the stage's own JSON implied."""
    if not described:
        return "none"
    described = described.removeprefix(f"{name}.json:")
    described = re.sub(r"-?\d+\.\d{5,}(e-?\d+)?", lambda m: f"{float(m.group()):.4g}", described)
    return re.sub(r"(?<=[a-z\]])([.:])(?=[a-z])", "\\1\u200b", described)  # a long field path may wrap there


def reproduce_table(results_dir: Path | None = None) -> pd.DataFrame:
    """Each stage's latest re-derivation by ``python -m lib reproduce`` (results/reproduce.json), and
    the book's stages not re-derived yet."""
    doc = load_json("reproduce", results_dir)
    rows = {row["stage"]: row for row in doc["stages"]}
    table = []
    for stage in STAGES:
        row = rows.get(stage.name)
        if row is None and stage.group != "book":
            continue
        table.append({"stage": f"`{stage.name}`", "cores": stage.threads,
                      "minutes": f"{row['seconds'] / 60:.1f}" if row else "",
                      "CPU min": f"{row['cpu_seconds'] / 60:.1f}" if row and row.get("cpu_seconds") else "",
                      "load": f"{row['load']:.1f}" if row and row.get("load") is not None else "",
                      "verdict": row["verdict"] if row else "not re-derived yet",
                      "worst difference": ("" if not row else "timings: not compared" if stage.tolerance is TIMINGS
                                           else _short_difference(row["worst"], stage.name)),
                      "date": row["date"] if row else ""})
    return pd.DataFrame(table)


def reproduce_values(results_dir: Path | None = None) -> SimpleNamespace:
    """What the appendix says of the re-derivations: how many of the book's stages, how many matched."""
    doc = load_json("reproduce", results_dir)
    rows = [row for row in doc["stages"] if row["stage"] in doc["book_stages"]]
    verdicts = [row["verdict"] for row in rows]
    run = doc["last_run"]
    loads = [row["load"] for row in doc["stages"] if row["stage"] in run["stages"] and row.get("load") is not None]
    return SimpleNamespace(run_cores=str(run["cores"]), run_load_low=f"{min(loads, default=float('nan')):.1f}",
                           run_load_high=f"{max(loads, default=float('nan')):.1f}",
                           training_tolerance=f"{100 * TRAINING.atol:.1f} points", n_book=len(doc["book_stages"]),
                           machines=" and ".join(sorted({row["cpu"] for row in rows})) or "none", n_done=len(rows), n_exact=verdicts.count("exact"),
                           n_match=verdicts.count("match"), n_mismatch=verdicts.count("MISMATCH"),
                           n_regenerated=verdicts.count("regenerated"),
                           minutes=f"{sum(row['seconds'] for row in rows) / 60:.0f}",
                           run_stages=len(run["stages"]), run_wall=f"{run['wall_minutes']:.0f}",
                           run_cpu=f"{run['cpu_minutes']:.0f}" if run.get("cpu_minutes") else "not recorded",
                           run_projected=(f"{run['projected_quiet_wall_minutes']:.0f}"
                                          if run.get("projected_quiet_wall_minutes") else "not recorded"),
                           missing=", ".join(n for n in doc["book_stages"] if n not in doc["book_stages_rederived"])
                           or "none")
