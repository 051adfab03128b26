"""``python -m lib reproduce``: re-derive the book's artifacts from the datasets and compare them
with ``results/``, field by field; one table, and exit 1 on any mismatch or failure.

A full run (no ``--only``) writes its summary to ``results/reproduce.json`` (appendix A shows
it), with each stage's input fingerprint: ``--stale`` reruns only stages whose fingerprint has
changed since, so on an unchanged tree it runs nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pandas as pd

from lib.core import artifacts, provenance
from lib.core.data import add_data_arguments
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT, RESULTS_DIR
from lib.core.stages import GROUPS, STAGES, in_order, stage
from lib.reproduce.runner import Outcome, Plan, execute, fingerprints, outcome_dicts

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
                        help="where reruns write results, caches, checkpoints and logs (default scratch/reproduce/); "
                             "rerunning with the same folder resumes")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores to pack stages onto")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="print the stages and their commands, run nothing")


def build_args(argv: list[str]) -> argparse.Namespace:
    """This command's options parsed from ``argv`` (tests and scripts)."""
    parser = argparse.ArgumentParser(prog="python -m lib reproduce")
    add_arguments(parser)
    return parser.parse_args(argv)


def chosen_groups(args: argparse.Namespace) -> set[str]:
    groups = {"book"}
    groups |= {"extra"} if args.with_extras else set()
    groups |= {"benchmark"} if args.with_benchmarks else set()
    if "gpu" in groups:  # never by default: only a CUDA machine can run them
        raise ConfigError("gpu stages run only by name with --only")
    return groups


def selected(args: argparse.Namespace) -> list:
    if args.only:
        return in_order([stage(name).name for name in args.only])
    return in_order([s.name for s in STAGES if s.group in chosen_groups(args)])


def recorded_fingerprints() -> dict[str, str]:
    """Fingerprints of the last full run (results/reproduce.json), stage -> fingerprint."""
    path = RESULTS_DIR / f"{NAME}.json"
    if not path.is_file():
        return {}
    return {row["stage"]: row["fingerprint"] for row in json.loads(path.read_text())["stages"]}


def table(outcomes: list[Outcome]) -> pd.DataFrame:
    return pd.DataFrame([{"stage": o.stage, "status": o.status, "minutes": round(o.seconds / 60, 1),
                          "verdict": o.verdict or "-", "worst difference": o.worst or "-"} for o in outcomes])


def summary_payload(args: argparse.Namespace, outcomes: list[Outcome], wall: float) -> dict:
    groups = {s.name: s.group for s in STAGES}
    book = [o for o in outcomes if groups[o.stage] == "book"]
    return {"groups": sorted(chosen_groups(args)), "cores": args.cores, "budget_minutes": args.budget,
            "stale_only": bool(args.stale), "wall_minutes": round(wall / 60, 2),
            "book_stage_minutes": round(sum(o.seconds for o in book) / 60, 2),
            "all_match": all(o.verdict in ("exact", "match") for o in outcomes),
            "tolerances": {s.name: s.tolerance.reason for s in STAGES if s.name in {o.stage for o in outcomes}},
            "stages": [{**row, "group": groups[row["stage"]], "threads": stage(row["stage"]).threads,
                        "command": stage(row["stage"]).command_line} for row in outcome_dicts(outcomes)]}


def full_run(args: argparse.Namespace) -> bool:
    """Whether this run covers every stage of its groups, so its summary goes to results/."""
    return not (args.only or args.stale or args.budget is not None or args.list)


def writes_results(args: argparse.Namespace) -> bool:
    """For the CLI's dirty-tree guard: only a full run writes into results/."""
    return full_run(args)


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
    outcomes = execute(Plan(stages, args.scratch.resolve(), mirror, args.cores, args.budget, skip=skip,
                            progress=args.progress))
    wall = time.perf_counter() - start
    print(table(outcomes).to_string(index=False))
    for o in outcomes:
        for line in o.differences[:5]:
            print(f"  {o.stage}: {line}")
    full = full_run(args)
    payload = summary_payload(args, outcomes, wall)
    config = {"argv": {k: str(v) for k, v in vars(args).items() if k not in ("module_name",)}}
    path = artifacts.save_json(NAME, payload, provenance.collect(seed=None, wall_time_s=wall, config=config),
                               None if full else args.scratch.resolve())
    print(f"{sum(o.status == 'ran' for o in outcomes)} stage(s) ran in {wall / 60:.1f} min; summary: {path}")
    bad = [o for o in outcomes if o.verdict == "MISMATCH" or o.status.startswith(("failed", "skipped"))]
    return 1 if bad else 0
