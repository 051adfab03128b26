"""The reproducibility appendix: every frozen artifact's provenance, as tables.

The stages and their commands come from ``lib.core.stages`` (what ``python -m lib reproduce``
runs); a test checks each command against the command line the artifact recorded, so this table
cannot drift from what actually ran.
"""
from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd

from lib.core.paths import RESULTS_DIR
from lib.core.artifacts import load_json
from lib.core.stages import STAGES, TIMINGS, TRAINING, Stage

HASH_DIGITS = 16  # a printed table cannot break a 64-digit hash; the HTML lists them in full


def _hardware(prov: dict) -> str:
    """A GPU and its host's cores, or the CPU and the threads the run computed with: the configured
    threads first (the movie stages ran on 1 while the process's torch_threads says 2)."""
    hw, config = prov.get("hardware", {}), prov.get("config") or {}
    if hw.get("gpu"):
        return f"{hw['gpu']} (+{hw.get('cpu_count')} CPU cores)"
    threads = (config.get("threads") or (config.get("movies_config") or {}).get("threads")
               or hw.get("torch_threads", "?"))
    return f"{hw.get('cpu', '?')}, {threads} thread{'' if threads == 1 else 's'}"


def available_stages() -> list[Stage]:
    return [stage for stage in STAGES if (RESULTS_DIR / f"{stage.name}.json").is_file()]


def _provenances() -> list[tuple[Stage, dict]]:
    return [(stage, load_json(stage.name)["provenance"]) for stage in available_stages()]


def runs_table() -> pd.DataFrame:
    """One row per frozen artifact: hardware, wall time, seed, commit, date."""
    return pd.DataFrame([{
        "artifact": f"`{stage.name}`", "purpose": stage.purpose, "hardware": _hardware(prov),
        "wall time (s)": round(float(prov["wall_time_s"]), 1),
        "seed": "none" if prov.get("seed") is None else prov["seed"],
        "commit": (prov.get("git", {}).get("commit") or "unknown")[:8],
        "created (UTC)": prov.get("created_utc", "")[:16].replace("T", " "),
    } for stage, prov in _provenances()])


def commands_table() -> pd.DataFrame:
    return pd.DataFrame([{"artifact": f"`{s.name}`", "command": f"`{s.command_line}`"}
                         for s in available_stages()])


def versions_table() -> pd.DataFrame:
    """One row per package and version, naming the artifacts made with it, so machine differences show
    (one column per artifact would not fit a printed page)."""
    runs: dict[tuple[str, str], list[str]] = {}
    for stage, prov in _provenances():
        for package, version in prov["versions"].items():
            runs.setdefault((package, str(version)), []).append(stage.name)
    return pd.DataFrame([{"package": package, "version": version, "artifacts": ", ".join(names)}
                         for (package, version), names in sorted(runs.items())])


def short_hash(digest: str | None) -> str:
    """The first HASH_DIGITS hex digits and an ellipsis (enough to tell files apart by eye)."""
    return f"{digest[:HASH_DIGITS]}…" if digest and len(digest) > HASH_DIGITS else str(digest)


def full_hashes_block() -> str:
    """Every data and weights hash in full, as a code block (shown in the HTML book only)."""
    rows = [f"{r['dataset']}, {r['what']}: {r['sha256'].strip('`')}" for _, r in data_table(full=True).iterrows()]
    rows += [f"{r['weights']}: {r['sha256'].strip('`')}" for _, r in weights_table(full=True).iterrows()]
    return "```text\n" + "\n".join(rows) + "\n```"


def data_table(full: bool = False) -> pd.DataFrame:
    """Content hashes of the data every run verified (identical across artifacts by design)."""
    show = str if full else short_hash
    data = load_json(available_stages()[0].name)["provenance"]["data"]
    rows = [(f"CIFAR-10 {split}", what, hashes[key]) for split, hashes in data["cifar10"].items()
            for key, what in (("data_sha256", "pixel rows (uint8)"), ("labels_sha256", "labels (uint8)"))]
    rows += [("MovieLens ml-latest-small", name, digest) for name, digest in data["movielens"].items()]
    return pd.DataFrame([{"dataset": dataset, "what": what, "sha256": f"`{show(digest)}`"}
                         for dataset, what, digest in rows])


def weights_table(full: bool = False) -> pd.DataFrame:
    """The pretrained weights the runs used, once each, with their (shortened) sha256."""
    show = str if full else short_hash
    weights: dict[str | None, dict] = {}
    for _, prov in _provenances():
        if prov.get("weights"):
            weights.setdefault(prov["weights"].get("sha256"), prov["weights"])
    return pd.DataFrame([{"weights": w.get("name"), "file": f"`{w.get('file')}`", "sha256": f"`{show(digest)}`"}
                         for digest, w in weights.items()])


def values() -> SimpleNamespace:
    """What the appendix's prose quotes: the runs table, how many runs, their total wall time, and
    the measured full feature extraction on the 2-core CPU."""
    runs = runs_table()
    cpu = load_json("features_cpu_onnx")["timings"]
    total = sum(prov["wall_time_s"] for _, prov in _provenances())
    return SimpleNamespace(runs=runs, n_runs=len(runs), total_minutes=f"{total / 60:.1f}",
                           cpu_extract_minutes=f"{cpu['extract_wall_s'] / 60:.0f} minutes")


def _short_difference(described: str, name: str) -> str:
    """A difference as a printed table can hold it: numbers to 4 digits, the stage's own JSON implied."""
    if not described:
        return "none"
    described = described.removeprefix(f"{name}.json:")
    described = re.sub(r"-?\d+\.\d{5,}(e-?\d+)?", lambda m: f"{float(m.group()):.4g}", described)
    return re.sub(r"(?<=[a-z\]])([.:])(?=[a-z])", "\\1\u200b", described)  # a long field path may wrap there


def reproduce_table() -> pd.DataFrame:
    """Each stage's latest re-derivation by ``python -m lib reproduce`` (results/reproduce.json), and
    the book's stages not re-derived yet."""
    rows = {row["stage"]: row for row in load_json("reproduce")["stages"]}
    table = []
    for stage in STAGES:
        row = rows.get(stage.name) or {}
        if not row and stage.group != "book":
            continue
        table.append({"stage": f"`{stage.name}`", "cores": stage.threads,
                      "wall min": f"{row['seconds'] / 60:.1f}" if row else "",
                      "CPU min": f"{row['cpu_seconds'] / 60:.1f}" if row.get("cpu_seconds") else "",
                      "load": f"{row['load']:.1f}" if row.get("load") is not None else "",
                      "verdict": row.get("verdict", "not re-derived yet"),
                      "worst difference": ("" if not row else "timings: not compared" if stage.tolerance is TIMINGS
                                           else _short_difference(row["worst"], stage.name)),
                      "date": row.get("date", "")})
    return pd.DataFrame(table)


def reproduce_values() -> SimpleNamespace:
    """What the appendix says of the re-derivations: how many of the book's stages, how many matched."""
    doc = load_json("reproduce")
    rows = [row for row in doc["stages"] if row["stage"] in doc["book_stages"]]
    verdicts = [row["verdict"] for row in rows]
    run = doc["last_run"]
    loads = [row["load"] for row in doc["stages"] if row["stage"] in run["stages"] and row.get("load") is not None]
    recorded = lambda key: f"{run[key]:.0f}" if run.get(key) else "not recorded"  # noqa: E731
    return SimpleNamespace(
        run_cores=str(run["cores"]), run_load_low=f"{min(loads, default=float('nan')):.1f}",
        run_load_high=f"{max(loads, default=float('nan')):.1f}",
        training_tolerance=f"{100 * TRAINING.atol:.1f} points", n_book=len(doc["book_stages"]),
        machines=" and ".join(sorted({row["cpu"] for row in rows})) or "none", n_done=len(rows),
        **{f"n_{v.lower()}": verdicts.count(v) for v in ("exact", "match", "MISMATCH", "regenerated")},
        minutes=f"{sum(row['seconds'] for row in rows) / 60:.0f}", run_stages=len(run["stages"]),
        run_wall=f"{run['wall_minutes']:.0f}", run_cpu=recorded("cpu_minutes"),
        run_projected=recorded("projected_quiet_wall_minutes"),
        missing=", ".join(n for n in doc["book_stages"] if n not in doc["book_stages_rederived"]) or "none")
