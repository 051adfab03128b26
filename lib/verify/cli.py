"""``python -m lib verify [--quick] [--strict] [NAME ...]``: one table, exit 1 on any mismatch."""
from __future__ import annotations

import argparse
import sys

import pandas as pd

from lib.core.artifacts import load_json
from lib.core.data import DataDirs, add_data_arguments, load_cifar10, load_movielens
from lib.verify.checks import MISMATCH, STALE, Check
from lib.verify.provenance import provenance_checks

ARTIFACTS = ("features", "features_cpu_timing", "features_cpu_onnx", "finetune_pilot_cpu", "finetune_pilot_cuda",
             "finetune", "finetune_cpu", "finetune_cpu_partial", "finetune_cpu_partial_short", "gallery_sprites",
             "movies", "movies_hessian", "movies_decay", "movies_baselines", "movies_scale", "bench", "preface")


def collect_checks(names: list[str], dirs: DataDirs, quick: bool) -> list[Check]:
    from lib.verify import book, cifar, movies, scale

    checks: list[Check] = []
    for name in (n for n in names if n != "preface"):
        checks += provenance_checks(name, load_json(name))
    if any(n in cifar.CLASSIFIERS for n in names):
        test = load_cifar10("test", dirs)
        for name in (n for n in cifar.CLASSIFIERS if n in names):
            checks += cifar.classifier_checks(name, test)
        if set(cifar.ANSWER_PAIR) <= set(names):  # chapter 2's comparison, as the chapter shows it
            from lib.book import finetuning

            shown = finetuning.data()
            counts = {"b_only": int(shown.gained.replace(",", "")), "a_only": int(shown.lost.replace(",", ""))}
            checks += cifar.mcnemar_checks(test, counts)
    if "movies" in names:
        checks += movies.movies_checks(load_movielens(dirs), quick)
    if "movies_scale" in names:
        checks += scale.scale_checks(load_movielens(dirs), quick)
    if "preface" in names:
        checks += book.headline_checks()
    return checks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"artifacts to check (default all: {', '.join(ARTIFACTS)})")
    parser.add_argument("--quick", action="store_true",
                        help="movies: rerun only the floor and the best run (full: every run and the lists)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on artifacts whose provenance needs a rerun (STALE)")


def run(args: argparse.Namespace) -> int:
    unknown = sorted(set(args.names) - set(ARTIFACTS))
    if unknown:
        print(f"error: unknown artifact(s) {', '.join(unknown)}; known: {', '.join(ARTIFACTS)}", file=sys.stderr)
        return 2
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    checks = collect_checks(args.names or list(ARTIFACTS), dirs, args.quick)
    table = pd.DataFrame([vars(c) for c in checks])
    with pd.option_context("display.max_colwidth", 60, "display.width", 250):
        print(table.to_string(index=False))
    failing = {MISMATCH, STALE} if args.strict else {MISMATCH}
    bad = [c for c in checks if c.verdict in failing]
    counts = table["verdict"].value_counts().to_dict()
    print("; ".join(f"{n} {v}" for v, n in counts.items()))
    return 1 if bad else 0
