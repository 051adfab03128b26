"""The pipeline behind ``results/``: one stage per artifact, its command, inputs and outputs.

This is the single list of how every frozen artifact is made. ``python -m lib reproduce`` runs
it (in dependency order, into a scratch folder) and compares what it gets with ``results/``;
the reproducibility appendix prints its commands. A stage declares what its output depends on
(the ``lib`` packages it runs, the datasets it reads, the artifacts of other stages) so that a
fingerprint of those inputs says whether a committed artifact is stale. Data only: nothing
here imports the code it describes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

# Groups: "book" stages make what the book reads (the one-hour budget); "extra" stages make
# labelled extras the book does not need for an answer; "benchmark" stages measure speed;
# "gpu" stages were recorded on a lent GPU and run only where CUDA is present.
GROUPS = ("book", "extra", "benchmark", "gpu")
TIMING_REASON = "timings and speeds depend on the machine and its load; only the structure is compared"


@dataclass(frozen=True)
class Tolerance:
    """How a rerun's artifact is compared with the committed one, and why.

    Numbers match when ``|new - old| <= atol + rtol * |old|``; ``fields`` overrides that for
    field paths matching a pattern (fnmatch on ``a.b[3].c``-style paths); ``skip`` lists paths not
    compared; ``arrays="shape"`` compares only the shape and dtype of companion arrays, ``arrays="none"``
    only that they exist."""
    rtol: float = 0.0
    atol: float = 0.0
    reason: str = "deterministic: the same code, data, seed and threads give the same bits"
    fields: tuple[tuple[str, float, float], ...] = ()
    skip: tuple[str, ...] = ()
    arrays: str = "values"  # or "shape", or "none"


EXACT = Tolerance()
# Float32 training on 2 threads: another CPU's kernels round differently, and training amplifies
# it (different early stopping, different epochs' weights). Accuracies then move like a reseeded
# run's: within 0.5 points (about 2.5 binomial standard errors at 95 % on 10,000 images).
TRAINING = Tolerance(
    rtol=0.05, atol=0.005,
    reason="float32 training on 2 threads: other CPUs round differently and training amplifies it; "
           "accuracies within 0.5 points, other numbers within 5 %, per-image arrays by shape",
    fields=(("*per_class_accuracy*", 0.0, 0.03), ("*confusion_matrix*", 0.0, 40)),
    skip=("*gallery*", "*indices*", "*best_iteration*", "*iterations_run*", "*best_epoch*", "*history*",
          "*selection*", "*curve*", "*weight_decay*", "*C", "*mcnemar*", "*both_*", "*a_only", "*b_only",
          "*discordant", "*p_exact", "*p_midp", "*test_correct", "*sklearn*"),
    arrays="shape")
# Float64 on one thread: converged runs agree to 1e-9 across CPUs (README); runs that hover at a
# large learning rate amplify rounding (checked to 5 %).
MOVIES = Tolerance(
    rtol=1e-6, atol=1e-9,
    reason="float64 on one thread: other CPUs' BLAS round the last bits differently; converged values "
           "agree to 1e-6 relative; overlaps and shares of neighbour lists over the whole catalogue count "
           "near-ties among rarely liked movies, which that rounding reorders: within 0.005",
    fields=(("*overlap*", 0.0, 0.005), ("movies_sensitivity*:*", 0.0, 0.005), ("*neighbours.share*", 0.0, 0.005)))
# A pilot trains 16 steps on 1,024 images and scores 1,000: another CPU's rounding moves its early
# accuracies like a reseed. Three binomial standard errors on 1,000 images at 50 % is 4.7 points.
PILOT = Tolerance(
    rtol=0.1, atol=0.05,
    reason="a 16-step pilot scored on 1,000 images: other CPUs' rounding moves its accuracies like a "
           "reseed; within 5 points (3 binomial standard errors), losses within 10 %",
    skip=TRAINING.skip, arrays="shape")
# The HTML gallery's images are each classifier's most confident right and wrong test predictions; on
# another CPU a training stage matches within tolerance yet near-tied probabilities change places, so a
# few other images are chosen (539 -> 541 in a rerun on a Zen 5 EPYC). Which ones is select_gallery's
# rule, tested on the committed probabilities (tests/test_widgets.py); here only how many.
SELECTION = Tolerance(
    rtol=0.05, atol=0.0,
    reason="the gallery's images follow near-ties in the training stages' probabilities, which other CPUs' "
           "rounding reorders: their number within 5 %, the images themselves not compared",
    arrays="none")
TIMINGS = Tolerance(rtol=float("inf"), atol=float("inf"), reason=TIMING_REASON, arrays="shape",
                    skip=("*profile*",))  # operators ranked by their time


@dataclass(frozen=True)
class Stage:
    name: str                   # the artifact: results/<name>.json (+ the companions it lists)
    purpose: str
    command: tuple[str, ...]    # python -m lib <command> --mirror DIR
    code: tuple[str, ...]       # lib packages (or modules) whose source the result depends on
    data: tuple[str, ...] = ()  # datasets read: "cifar10", "movielens"
    needs: tuple[str, ...] = () # stages whose artifacts this one reads
    after: tuple[str, ...] = () # stages to run first because they fill a cache this one reuses
    threads: int = 2            # CPU cores it keeps busy (the scheduler packs stages onto cores)
    group: str = "book"
    options: frozenset[str] = field(default_factory=frozenset)  # cache, checkpoints, no_progress
    tolerance: Tolerance = EXACT

    @property
    def command_line(self) -> str:
        return "python -m lib " + " ".join(self.command) + (" --mirror DIR" if self.data else "")


CIFAR = ("lib/core", "lib/cifar", "lib/cli.py", "lib/__main__.py", "lib/__init__.py")
MOVIES_CODE = ("lib/core", "lib/movies", "lib/cli.py", "lib/__main__.py", "lib/__init__.py")
LITE0 = ("--backbone", "efficientnet_lite0")
PARTIAL = (*LITE0, "--trainable-stages", "2", "--resolution", "160", "--batch-size", "128", "--lr", "0.1",
           "--backbone-lr-scale", "0.5", "--schedule", "onecycle")
PARTIAL_RUN = ("--channels-last", "on", "--amp", "off", "--flip-average", "--threads", "2", "--max-minutes", "55")
FINETUNE_OPTIONS = frozenset({"cache", "checkpoints", "no_progress"})

STAGES: tuple[Stage, ...] = (
    Stage("features_cpu_onnx", "chapter 1: all 60,000 images through the frozen network on the 2-core CPU "
          "(ONNX Runtime), logistic regression, galleries",
          ("features", *LITE0, "--resolution", "224", "--name", "features_cpu_onnx"), CIFAR, ("cifar10",),
          options=frozenset({"cache"}), tolerance=TRAINING),
    Stage("features_cpu_timing", "chapter 1: extraction speed on the 2-core CPU (ONNX Runtime and torch)",
          ("features", "--cpu-timing", *LITE0, "--sweep", "64", "128", "224"), CIFAR, ("cifar10",),
          tolerance=TIMINGS),
    Stage("finetune_pilot_cpu", "chapter 2: resolution pilot on the 2-core CPU",
          ("finetune", *LITE0, "--pilot", "--pilot-resolutions", "64,96,128", "--pilot-train", "1024",
           "--pilot-val", "1000", "--batch-size", "64", "--threads", "1"), CIFAR, ("cifar10",),
          threads=1, options=frozenset({"cache", "checkpoints"}), tolerance=PILOT),
    Stage("finetune_cpu_partial_short", "chapter 2: finetuning the last two stages on cached activations in "
          "3 epochs, 2-core CPU (the schedule that fits the book's hour)",
          ("finetune", "--name", "finetune_cpu_partial_short", *PARTIAL, "--epochs", "3", "--warmup-epochs", "0.45",
           *PARTIAL_RUN), CIFAR, ("cifar10",), needs=("features_cpu_onnx",),  # its flips compare with the probe
          options=FINETUNE_OPTIONS, tolerance=TRAINING),
    Stage("probe_variants", "chapter 2: the probe with flips and label smoothing, 3 validation splits",
          ("probe-variants", *LITE0), CIFAR, ("cifar10",), after=("features_cpu_onnx",),
          options=frozenset({"cache"}), tolerance=TRAINING),
    Stage("gallery_sprites", "chapters 1-2: test images for the HTML gallery browser",
          ("gallery-sprites", "-k", "10"), CIFAR, ("cifar10",),
          needs=("features_cpu_onnx", "finetune_cpu_partial_short", "finetune_cpu"), threads=1, tolerance=SELECTION),
    Stage("movies", "chapter 3: likes, co-occurrence, embeddings, optimisers, recommendations, evaluation",
          ("movies",), MOVIES_CODE, ("movielens",), threads=1, options=frozenset({"no_progress"}),
          tolerance=MOVIES),
    Stage("movies_hessian", "chapter 3: Hessian eigenvalues, predicted and observed learning-rate limits",
          ("movies-hessian",), MOVIES_CODE, ("movielens",), needs=("movies",), threads=1, tolerance=MOVIES),
    Stage("movies_decay", "chapter 3: Adam and RMSprop with a cosine-decayed learning rate",
          ("movies-decay",), MOVIES_CODE, ("movielens",), needs=("movies",), threads=1, tolerance=MOVIES),
    Stage("movies_starts", "chapter 3: the main optimisers from three other random starts, lists compared",
          ("movies-starts",), MOVIES_CODE, ("movielens",), needs=("movies",), threads=1, tolerance=MOVIES),
    Stage("movies_baselines", "chapter 3: EASE, ALS and item-item cosine on the same held-out likes",
          ("movie-baselines",), MOVIES_CODE, ("movielens",), needs=("movies",), threads=1, tolerance=MOVIES),
    Stage("finetune_cpu", "extra: the full finetuning recipe on the 2-core CPU at 64 px (superseded)",
          ("finetune", *LITE0, "--name", "finetune_cpu", "--resolution", "64", "--epochs", "3", "--threads", "2",
           "--max-minutes", "45"), CIFAR, ("cifar10",), needs=("features_cpu_onnx",), group="extra",
          options=FINETUNE_OPTIONS, tolerance=TRAINING),
    Stage("finetune_cpu_partial", "extra: the partial finetune in 10 epochs (reuses the cached activations; "
          "about an hour on a 2-core CPU without AVX-512)",
          ("finetune", "--name", "finetune_cpu_partial", *PARTIAL, "--epochs", "10", "--warmup-epochs", "1.5",
           *PARTIAL_RUN), CIFAR, ("cifar10",), needs=("features_cpu_onnx",), after=("finetune_cpu_partial_short",),
          group="extra", options=FINETUNE_OPTIONS, tolerance=TRAINING),
    Stage("movies_scale", "appendix: chapter 3's pipeline on synthetic likes up to MovieLens-32M's size",
          ("bench-scale", "--sizes", "5"),
          ("lib/core", "lib/movies", "lib/bench", "lib/cli.py", "lib/__main__.py", "lib/__init__.py"),
          ("movielens",), group="benchmark", tolerance=TIMINGS),
    Stage("bench_distributed", "appendix B: one and two processes, bytes all-reduced per step, "
          "projection to 8 and 64 GPUs or nodes", ("bench-distributed",),
          ("lib/core", "lib/cifar", "lib/movies", "lib/bench", "lib/cli.py", "lib/__main__.py", "lib/__init__.py"),
          ("cifar10", "movielens"), needs=("movies", "finetune_cpu_partial_short", "movies_scale", "finetune"),
          group="benchmark", tolerance=TIMINGS),
    Stage("bench", "appendix: fast paths against baselines (extraction, probe, embeddings, report)",
          ("bench",), ("lib/core", "lib/cifar", "lib/movies", "lib/book", "lib/bench", "lib/cli.py",
                       "lib/__main__.py", "lib/__init__.py"), ("cifar10", "movielens"), group="benchmark",
          tolerance=TIMINGS),
    Stage("features", "extra, recorded on a lent GPU: features at 64/128/224 px, logistic regression, gallery",
          ("features", *LITE0, "--resolution", "224", "--sweep", "64", "128", "224"), CIFAR, ("cifar10",),
          group="gpu", options=frozenset({"cache"}), tolerance=TRAINING),
    Stage("finetune_pilot_cuda", "extra, recorded on a lent GPU: resolution pilot",
          ("finetune", *LITE0, "--pilot", "--pilot-resolutions", "160,224", "--pilot-train", "2560",
           "--pilot-val", "2000"), CIFAR, ("cifar10",), group="gpu", options=frozenset({"cache", "checkpoints"}),
          tolerance=PILOT),
    Stage("finetune", "extra, recorded on a lent GPU: finetuning every layer at 224 px",
          ("finetune", *LITE0, "--resolution", "224", "--epochs", "9", "--max-minutes", "4.5"), CIFAR, ("cifar10",),
          needs=("features_cpu_onnx",), group="gpu", options=FINETUNE_OPTIONS, tolerance=TRAINING),
)
BY_NAME = {stage.name: stage for stage in STAGES}


def stage(name: str) -> Stage:
    from lib.core.errors import ConfigError

    if name not in BY_NAME:
        raise ConfigError(f"no stage {name!r}; stages: {', '.join(BY_NAME)}")
    return BY_NAME[name]


def upstream(stage_: Stage) -> tuple[str, ...]:
    """Stages that must finish first: those whose artifacts it reads, then those filling its caches."""
    return stage_.needs + stage_.after


def in_order(names: list[str] | tuple[str, ...]) -> list[Stage]:
    """The named stages in an order that puts every stage after its upstream ones (STAGES' order
    breaks ties); raises on a cycle."""
    from lib.core.errors import ConfigError

    chosen, done, ordered = set(names), set(), []
    while len(ordered) < len(chosen):
        ready = [s for s in STAGES if s.name in chosen and s.name not in done
                 and all(u in done or u not in chosen for u in upstream(s))]
        if not ready:
            raise ConfigError(f"stage graph has a cycle among {sorted(chosen - done)}")
        ordered.append(ready[0])
        done.add(ready[0].name)
    return ordered
