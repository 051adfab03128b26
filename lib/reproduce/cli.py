"""``python -m lib reproduce``: re-derive the book's artifacts from the datasets and compare them
with ``results/``, field by field; one table, and exit 1 on any mismatch or failure.

Each run records its outcomes in ``results/reproduce.json`` (appendix A shows it), a lock file:
every stage keeps its latest verdict with its inputs' fingerprint, commit, machine and minutes, so
runs of some stages add up to the whole book; ``--stale`` reruns only stages whose fingerprint changed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lib.core import artifacts, provenance
from lib.core.data import add_data_arguments
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT, RESULTS_DIR
from lib.core.stages import GROUPS, STAGES, in_order, stage
from lib.reproduce.runner import Outcome, Plan, execute, fingerprints, projected_wall_seconds

NAME = "reproduce"
DEFAULT_SCRATCH = REPO_ROOT / "scratch" / "reproduce"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--only", nargs="+", metavar="STAGE", default=None,
                        help="run these stages (their upstream artifacts are taken from results/)")
    parser.add_argument("--with-extras", action="store_true", help="also the extra stages (labelled extras)")
    parser.add_argument("--with-benchmarks", action="store_true", help="also the benchmark stages (timings)")
    parser.add_argument("--stale", action="store_true",
                        help="only stages whose inputs changed since the run recorded in results/reproduce.json")
    parser.add_argument("--budget", type=float, default=None, metavar="MIN",
                        help="start no stage that would end after MIN minutes (by its recorded wall time)")
    parser.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH,
                        help="where reruns write results, caches, checkpoints and logs "
                             "(default scratch/reproduce/); rerunning with the same folder resumes")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores to pack stages onto")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--adopt", nargs="+", metavar="STAGE", default=(),
                        help="stages whose recipe changed on purpose: their rerun artifacts replace the committed "
                             "ones (verdict 'regenerated') instead of being compared; needs a clean git tree")
    parser.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")
    parser.add_argument("--no-record", dest="record", action="store_false",
                        help="keep the summary in the scratch folder instead of recording it in "
                             "results/reproduce.json (which needs committed code)")


def build_args(argv: list[str]) -> argparse.Namespace:
    """This command's options parsed from ``argv`` (tests and scripts)."""
    parser = argparse.ArgumentParser(prog="python -m lib reproduce")
    add_arguments(parser)
    return parser.parse_args(argv)


def selected(args: argparse.Namespace) -> list:
    if args.only:
        gpu = [name for name in args.only if stage(name).group == "gpu"]
        if gpu and not args.list and not _cuda():
            raise ConfigError(f"{', '.join(gpu)} were recorded on a lent GPU and need CUDA, "
                              "which this machine lacks")
        return in_order([stage(name).name for name in args.only])
    # never "gpu": those run only by name (--only), on a CUDA machine
    groups = {"book", *(["extra"] if args.with_extras else []), *(["benchmark"] if args.with_benchmarks else [])}
    return in_order([s.name for s in STAGES if s.group in groups])


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _load(name: str, folder: Path) -> dict | None:
    """An artifact (through the artifact loader), or None where there is none."""
    try:
        return artifacts.load_json(name, folder)
    except FileNotFoundError:
        return None


def recorded_fingerprints() -> dict[str, str]:
    """Each stage's fingerprint at its recorded re-derivation (results/reproduce.json)."""
    return {row["stage"]: row["fingerprint"] for row in (_load(NAME, RESULTS_DIR) or {}).get("stages", [])}


def table(outcomes: list[Outcome]) -> pd.DataFrame:
    return pd.DataFrame([{"stage": o.stage, "status": o.status, "minutes": round(o.seconds / 60, 1),
                          "verdict": o.verdict or "-", "worst difference": o.worst or "-"} for o in outcomes])


def _row(outcome: Outcome, scratch: Path, block: dict) -> dict:
    """One stage's record in the summary: its outcome and which code, machine and day produced the
    rerun artifact (its own provenance, ``block`` where it has none)."""
    s = stage(outcome.stage)
    made = (_load(outcome.stage, scratch / "results") or {}).get("provenance", block)
    return {**asdict(outcome), "group": s.group, "threads": s.threads, "command": s.command_line,
            "commit": made["git"].get("commit"), "cpu": made["hardware"]["cpu"], "date": made["created_utc"][:10]}


def summary_payload(previous: dict | None, outcomes: list[Outcome], block: dict, args: argparse.Namespace,
                    wall: float) -> dict:
    """The summary as a lock file: each stage keeps its latest compared outcome (this run's where it
    compared one, else the previous summary's), so runs of some stages add up to the whole book."""
    rows = {row["stage"]: row for row in (previous or {}).get("stages", [])}
    rows.update({o.stage: _row(o, args.scratch.resolve(), block) for o in outcomes if o.verdict})
    ordered = [rows[s.name] for s in STAGES if s.name in rows]
    book = [s.name for s in STAGES if s.group == "book"]
    cpu = {o.stage: o.cpu_seconds for o in outcomes}
    known = bool(cpu) and None not in cpu.values()  # every stage ran now or earlier in this scratch folder
    run = {"stages": [o.stage for o in outcomes], "cores": args.cores, "budget_minutes": args.budget,
           "wall_minutes": round(wall / 60, 2), "cpu_minutes": round(sum(cpu.values()) / 60, 1) if known else None,
           "projected_quiet_wall_minutes":  # the whole run on a quiet machine (see projected_wall_seconds)
               round(projected_wall_seconds(in_order(list(cpu)), cpu, args.cores) / 60, 1) if known else None}
    # "last_run" is what appendix A times the book by, so only a run of every book stage replaces
    # it; "latest_run" is this run, whatever it covered.
    whole_book = set(book) <= {o.stage for o in outcomes if o.status in ("ran", "done earlier")}
    last = run if whole_book or not previous else previous.get("last_run", run)
    return {"stages": ordered,
            "book_stages": book, "book_stages_rederived": [n for n in book if n in rows],
            "all_match": all(row["verdict"] in ("exact", "match") for row in ordered),
            "all_rederived": all(row["verdict"] in ("exact", "match", "regenerated") for row in ordered),
            "tolerances": {s.name: s.tolerance.reason for s in STAGES if s.name in rows},
            "last_run": last, "latest_run": run}


def writes_results(args: argparse.Namespace) -> bool:
    """For the CLI's dirty-tree guard: a run records its outcomes in results/ unless --no-record."""
    return args.record and not args.list


def run(args: argparse.Namespace) -> int:
    stages = selected(args)
    if args.list:
        for s in stages:
            print(f"{s.name:<28} {s.group:<9} {s.threads} core(s)  {s.command_line}")
        return 0
    mirror = args.mirror or os.environ.get("DATA_MIRROR")
    skip = {}
    if args.stale:
        now, recorded = fingerprints(), recorded_fingerprints()
        skip = {s.name: "up to date" for s in stages if recorded.get(s.name) == now[s.name]}
    start = time.perf_counter()
    adopt = frozenset(stage(name).name for name in args.adopt)
    strays = adopt - {s.name for s in stages}
    if strays:
        raise ConfigError(f"--adopt {', '.join(sorted(strays))}: not among the stages run")
    outcomes = execute(Plan(stages, args.scratch.resolve(), mirror, args.cores, args.budget, skip=skip,
                            progress=args.progress, adopt=adopt))
    wall = time.perf_counter() - start
    print(table(outcomes).to_string(index=False))
    for o in outcomes:
        for line in o.differences[:5]:
            print(f"  {o.stage}: {line}")
    block = provenance.collect(seed=None, wall_time_s=wall, config={"argv": sys.argv[1:]})
    target = RESULTS_DIR if args.record else args.scratch.resolve()
    payload = summary_payload(_load(NAME, target), outcomes, block, args, wall)
    path = artifacts.save_json(NAME, payload, block, target)
    print(f"{sum(o.status == 'ran' for o in outcomes)} stage(s) ran in {wall / 60:.1f} min; summary: {path}")
    bad = [o for o in outcomes if o.verdict == "MISMATCH" or o.status.startswith(("failed", "skipped"))]
    return 1 if bad else 0
