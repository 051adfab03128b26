"""``python -m lib bench``: each fast path beside a baseline, in one process on one machine (the appendix).

``python -m lib bench`` measures four things and writes ``results/bench.json``:

1. *extraction* — the project's default pipeline (``lib.cifar.extract``: whole-batch tensor resize,
   ``inference_mode``, channels_last) against the textbook one (a CIFAR10-style ``Dataset``
   returning PIL images, ``transforms.Resize`` / ``ToTensor`` / ``Normalize``, a
   ``DataLoader``, the model in eval mode under ``no_grad``) on the same test images with
   the same backbone: images/s, their ratio, the largest feature difference, the achieved
   GFLOP/s against this machine's float32 matrix-multiply GFLOP/s, and where the time goes.
   *engines* — the engine table (``lib.bench.engines``) for EfficientNet-Lite0 and ResNet18:
   textbook pipeline, torch eager, torch bf16 (where the CPU has it) and ONNX Runtime, with the
   same-run sgemm rate and each engine's FLOP-based utilisation.
2. *linear* — the project's ``nn.Linear`` probe (full-batch L-BFGS, ``lib.cifar.linear.fit_one``)
   against scikit-learn ``LogisticRegression(lbfgs)`` on the same cached features and the
   same penalty: seconds for each to first reach a common test accuracy.
3. *embeddings* — the project's best optimiser (``best_run`` of ``results/movies.json``)
   stopped within 0.5% of the floor, against the public recipe (Adam, lr 0.01, an
   ``nn.Linear(M, d, bias=False)`` applied to one-hot rows of a dense X, 200 iterations).
4. *report* — wall time of ``python -m lib notebooks`` from the frozen artifacts.

Ratios are recorded, never asserted: timings on a shared CPU vary from run to run.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from lib.bench.common import NAME, PARTS, TARGETS, log
from lib.core.errors import ConfigError
from lib.core.paths import REPO_ROOT
from lib.core.provenance import load_average

from lib.bench.common import targets
from lib.bench.embeddings import bench_embeddings
from lib.bench.engines import bench_engines
from lib.bench.extraction import bench_extraction
from lib.bench.linear import bench_linear, linear_features
from lib.bench.report import bench_report


def _parse_parts(text: str) -> list[str]:
    parts = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown {unknown}; choose from {','.join(PARTS)}")
    return [p for p in PARTS if p in parts]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.core.data import add_data_arguments

    add_data_arguments(parser)
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--backbone", default="efficientnet_lite0", help="backbone for parts 1 and 2")
    parser.add_argument("--images", type=int, default=2048, help="test images for part 1 (default 2048)")
    parser.add_argument("--resolution", type=int, default=224, help="parts 1 and 2 input side (default 224)")
    parser.add_argument("--engine-images", type=int, default=512,
                        help="test images per backbone for the engine table (default 512)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers of the textbook pipeline (default 0: the 2 cores "
                             "already run the network)")
    parser.add_argument("--profile-images", type=int, default=128,
                        help="images profiled stage by stage in part 1 (default 128)")
    parser.add_argument("--linear-train", type=int, default=10000,
                        help="first N training images for part 2 (default 10000)")
    parser.add_argument("--linear-test", type=int, default=2000,
                        help="first N test images for part 2 (default 2000)")
    parser.add_argument("--linear-resolution", type=int, default=64,
                        help="feature resolution for part 2 (default 64)")
    parser.add_argument("--weight-decay", type=float, default=1e-2,
                        help="L2 penalty for both solvers in part 2 (default 0.01, chapter 1's choice)")
    parser.add_argument("--recipe-iterations", type=int, default=200,
                        help="iterations of the public embedding recipe (default 200)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "cache"), help="feature cache (default cache/)")
    parser.add_argument("--results-dir", default=None, help="artifact folder (default results/)")
    parser.add_argument("--random-weights", action="store_true", help="random backbone weights (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)


def _check(args: argparse.Namespace) -> list[str]:
    """The parts to run, after every option is validated (before any data is touched)."""
    from lib.cifar.backbones import check_resolution

    parts_wanted = _parse_parts(args.parts)
    for option in ("images", "engine_images", "batch_size", "profile_images", "linear_train", "linear_test",
                   "recipe_iterations"):
        if getattr(args, option) <= 0:
            raise ConfigError(f"--{option.replace('_', '-')} must be positive")
    if args.workers < 0 or args.weight_decay <= 0:
        raise ConfigError("--workers must be >= 0 and --weight-decay > 0")
    check_resolution(args.resolution)
    check_resolution(args.linear_resolution)
    return parts_wanted


def _extraction(args: argparse.Namespace, dirs) -> dict:
    """Part 1 on the first ``--images`` test images."""
    from lib.core.data import load_cifar10

    test = load_cifar10("test", dirs)
    n = min(args.images, len(test.labels))
    e = bench_extraction(test.images[:n], test.labels[:n], backbone_name=args.backbone,
                         resolution=args.resolution, batch_size=args.batch_size,
                         workers=args.workers, pretrained=not args.random_weights,
                         profile_images=args.profile_images, seed=args.seed)
    log(f"  project {e['project']['images_per_s']:.1f} img/s, textbook "
        f"{e['textbook']['images_per_s']:.1f} img/s: {e['speedup']:.2f}x; "
        f"{e['achieved_gflops']:.1f} GFLOP/s of {e['matmul']['gflops']:.1f} (matmul)")
    return e


def _engines(args: argparse.Namespace, dirs) -> dict:
    """The engine table, on the first ``--engine-images`` test images, for both backbones."""
    from lib.core.data import load_cifar10

    test = load_cifar10("test", dirs)
    n = min(args.engine_images, len(test.labels))
    result = bench_engines(test.images[:n], test.labels[:n], resolution=args.resolution,
                           pretrained=not args.random_weights, seed=args.seed)
    for name, table in result["backbones"].items():
        log(f"  {name}: " + "; ".join(f"{r['engine']} {r['images_per_s']:.1f} img/s "
                                      f"({r['sgemm_fraction']:.0%} of sgemm)" for r in table["rows"]))
    return result


def _linear(args: argparse.Namespace, dirs) -> tuple[dict, dict | None]:
    """Part 2 on cached features; returns the result and the weights' identity."""
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


def _embeddings(args: argparse.Namespace, dirs) -> dict:
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
    return result


def run(args: argparse.Namespace) -> int:
    from lib.core import artifacts, provenance
    from lib.core.data import DataDirs

    parts_wanted = _check(args)
    results_dir = Path(args.results_dir) if args.results_dir else None
    dirs = DataDirs.resolve(args.data_dir, args.mirror)
    start = time.perf_counter()
    config = {k: getattr(args, k) for k in ("images", "engine_images", "resolution", "backbone", "batch_size", "workers",
                                             "profile_images", "linear_train", "linear_test",
                                             "linear_resolution", "weight_decay", "recipe_iterations",
                                             "random_weights")}
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
        if part == "extraction":
            parts[part] = _extraction(args, dirs)
            weights = parts[part]["weights"]
        elif part == "engines":
            parts[part] = _engines(args, dirs)
        elif part == "linear":
            parts[part], linear_weights = _linear(args, dirs)
            weights = weights or linear_weights
        elif part == "embeddings":
            parts[part] = _embeddings(args, dirs)
        elif part == "report":
            save()  # the appendix reads results/bench.json: give it this run's other parts
            parts[part] = bench_report()
            log(f"  notebooks {parts[part]['seconds']:.1f} s")
        part_seconds[part] = round(time.perf_counter() - t0, 3)
    path = save()
    for row in targets(parts):
        value = "n/a" if row["value"] is None else f"{row['value']:.3g}"
        log(f"{row['part']:<10} {row['measure']:<52} {value:>8} ({row['goal']}): "
            f"{'met' if row['met'] else 'MISSED'}")
    log(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    return 0
