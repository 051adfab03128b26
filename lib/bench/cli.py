"""``python -m lib bench``: each fast path beside a baseline, in one process on one machine (the appendix).

Writes ``results/bench.json`` with one entry per part: *extraction* (the project's pipeline,
``lib.cifar.extract``, against the textbook Dataset + PIL transforms + DataLoader loop on the same
images and backbone) and *engines* (``lib.bench.engines``), *linear* (the ``nn.Linear`` L-BFGS probe
against scikit-learn's ``LogisticRegression(lbfgs)`` to a common test accuracy), *embeddings* (the
best run of ``results/movies.json`` against the public Adam recipe, to within 0.5% of the floor) and
*report* (wall time of ``python -m lib notebooks``). Ratios are recorded, never asserted: timings
on a shared CPU vary from run to run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lib.bench.common import NAME, PARTS, TARGETS, log, targets
from lib.bench.embeddings import bench_embeddings
from lib.bench.engines import bench_engines
from lib.bench.extraction import bench_extraction
from lib.bench.linear import bench_linear, linear_features
from lib.bench.report import bench_report
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT
from lib.core.provenance import load_average

# flag -> (type, default, help), in --help's order
OPTIONS = {
    "--parts": (str, ",".join(PARTS), f"comma-separated subset of {','.join(PARTS)} (default: all)"),
    "--backbone": (str, "efficientnet_lite0", "backbone for parts 1 and 2"),
    "--images": (int, 2048, "test images for part 1 (default 2048)"),
    "--resolution": (int, 224, "parts 1 and 2 input side (default 224)"),
    "--engine-images": (int, 512, "test images per backbone for the engine table (default 512)"),
    "--batch-size": (int, 64, "images per forward pass (default 64)"),
    "--workers": (int, 0, "DataLoader workers of the textbook pipeline (default 0: the 2 cores already run "
                          "the network)"),
    "--profile-images": (int, 128, "images profiled stage by stage in part 1 (default 128)"),
    "--linear-train": (int, 10000, "first N training images for part 2 (default 10000)"),
    "--linear-test": (int, 2000, "first N test images for part 2 (default 2000)"),
    "--linear-resolution": (int, 64, "feature resolution for part 2 (default 64)"),
    "--weight-decay": (float, 1e-2, "L2 penalty for both solvers in part 2 (default 0.01, chapter 1's choice)"),
    "--recipe-iterations": (int, 200, "iterations of the public embedding recipe (default 200)"),
    "--cache-dir": (str, str(REPO_ROOT / "cache"), "feature cache (default cache/)"),
    "--results-dir": (str, None, "artifact folder (default results/)"),
}
POSITIVE = ("images", "engine_images", "batch_size", "profile_images", "linear_train", "linear_test",
            "recipe_iterations")
# What provenance records as the run's config (in this order), besides the parts.
CONFIG_KEYS = ("images", "engine_images", "resolution", "backbone", "batch_size", "workers", "profile_images",
               "linear_train", "linear_test", "linear_resolution", "weight_decay", "recipe_iterations",
               "random_weights")


def _parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown {unknown}; choose from {','.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    for flag, (kind, default, help_text) in OPTIONS.items():
        parser.add_argument(flag, type=kind, default=default, help=help_text)
    parser.add_argument("--random-weights", action="store_true", help="random backbone weights (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)


def _check(args: argparse.Namespace) -> list[str]:
    """The parts to run, after every option is validated (before any data is touched)."""
    from lib.cifar.backbones import check_resolution

    parts_wanted = _parse_parts(args.parts)
    for option in POSITIVE:
        if getattr(args, option) <= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be positive")
    if args.workers < 0 or args.weight_decay <= 0:
        raise ConfigError("--workers must be >= 0 and --weight-decay > 0")
    check_resolution(args.resolution)
    check_resolution(args.linear_resolution)
    return parts_wanted


def _test_images(dirs, count: int):
    """The first ``count`` test images and their labels."""
    from lib.core.data import load_cifar10

    test = load_cifar10("test", dirs)
    n = min(count, len(test.labels))
    return test.images[:n], test.labels[:n]


# Each part: (args, dirs) -> (its result, the weights' identity or None).
def _extraction(args: argparse.Namespace, dirs) -> tuple[dict, dict | None]:
    """Part 1 on the first ``--images`` test images."""
    e = bench_extraction(*_test_images(dirs, args.images), backbone_name=args.backbone,
                         resolution=args.resolution, batch_size=args.batch_size,
                         workers=args.workers, pretrained=not args.random_weights,
                         profile_images=args.profile_images, seed=args.seed)
    log(f"  project {e['project']['images_per_s']:.1f} img/s, textbook "
        f"{e['textbook']['images_per_s']:.1f} img/s: {e['speedup']:.2f}x; "
        f"{e['achieved_gflops']:.1f} GFLOP/s of {e['matmul']['gflops']:.1f} (matmul)")
    return e, e["weights"]


def _engines(args: argparse.Namespace, dirs) -> tuple[dict, None]:
    """The engine table, on the first ``--engine-images`` test images, for both backbones."""
    result = bench_engines(*_test_images(dirs, args.engine_images), resolution=args.resolution,
                           pretrained=not args.random_weights, seed=args.seed)
    for name, table in result["backbones"].items():
        log(f"  {name}: " + "; ".join(f"{r['engine']} {r['images_per_s']:.1f} img/s "
                                      f"({r['sgemm_fraction']:.0%} of sgemm)" for r in table["rows"]))
    return result, None


def _linear(args: argparse.Namespace, dirs) -> tuple[dict, dict | None]:
    """Part 2 on cached features."""
    feats = linear_features(args.backbone, args.linear_resolution, args.linear_train, args.linear_test,
                            dirs, Path(args.cache_dir), args.batch_size,
                            pretrained=not args.random_weights, seed=args.seed)
    result = bench_linear(*feats["train"], *feats["test"], args.weight_decay)
    result["resolution"] = args.linear_resolution
    result["extraction"] = {"train": feats["train_extraction"], "test": feats["test_extraction"],
                            "note": "not part of the timing"}
    log(f"  target accuracy {result['target_accuracy']:.4f}: project "
        f"{result['project']['seconds_to_target']:.2f} s, sklearn "
        f"{result['sklearn']['seconds_to_target']:.2f} s: {result['speedup']:.1f}x")
    return result, feats["weights"]


def _embeddings(args: argparse.Namespace, dirs) -> tuple[dict, None]:
    """Part 3 at the frozen run's d, for its best run (and its fastest, if different)."""
    from lib.core import artifacts
    from lib.core.data import load_movielens

    movies = artifacts.load_json("movies")
    # also the project's run that reached the gap soonest in the frozen run, if different
    timed = [r for r in movies["runs"] if r.get("target_seconds") is not None]
    fastest = min(timed, key=lambda r: r["target_seconds"])["name"] if timed else None
    extra = (fastest,) if fastest and fastest != movies["best_run"] else ()
    result = bench_embeddings(load_movielens(dirs).ratings, int(movies["dim"]), movies["best_run"],
                              extra, args.recipe_iterations, args.seed)
    result["fastest_run"] = fastest
    log(f"  {movies['best_run']}: {result['project'][movies['best_run']]['seconds_to_target']} s to "
        f"the gap; recipe gap after {args.recipe_iterations} it. {result['recipe']['gap']:.3g}")
    return result, None


def _report(args: argparse.Namespace, dirs) -> tuple[dict, None]:
    result = bench_report()
    log(f"  notebooks {result['seconds']:.1f} s")
    return result, None


RUNNERS = {"extraction": _extraction, "engines": _engines, "linear": _linear, "embeddings": _embeddings,
           "report": _report}


def run(args: argparse.Namespace) -> int:
    from lib.core import artifacts, provenance
    from lib.core.data import DataDirs

    parts_wanted = _check(args)
    results_dir = Path(args.results_dir) if args.results_dir else None
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    start = time.perf_counter()
    config = {k: getattr(args, k) for k in CONFIG_KEYS}
    config["parts"] = parts_wanted
    parts: dict = {}
    weights = None
    part_seconds: dict = {}

    def save() -> Path:
        payload = {"parts": parts, "targets": targets(parts), "target_values": TARGETS,
                   "part_seconds": part_seconds}
        prov = provenance.collect(seed=args.seed, wall_time_s=time.perf_counter() - start, config=config,
                                  weights=weights)
        return artifacts.save_json(NAME, payload, prov, results_dir)

    for part in parts_wanted:
        t0 = time.perf_counter()
        log(f"{part} ... (load {list(load_average() or ())})")
        if part == "report":
            save()  # the appendix reads results/bench.json: give it this run's other parts
        parts[part], part_weights = RUNNERS[part](args, dirs)
        weights = weights or part_weights
        part_seconds[part] = round(time.perf_counter() - t0, 3)
    path = save()
    for row in targets(parts):
        value = "n/a" if row["value"] is None else f"{row['value']:.3g}"
        log(f"{row['part']:<10} {row['measure']:<52} {value:>8} ({row['goal']}): "
            f"{'met' if row['met'] else 'MISSED'}")
    log(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0
