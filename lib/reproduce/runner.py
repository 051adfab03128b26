"""Run stages in dependency order, packed onto the CPU cores, resumably, into a scratch folder.

Each stage is its recorded command (``python -m lib …``) in its own process, its results, caches,
checkpoints and log sent to the scratch folder. ``state.json`` there records every finished stage with
the fingerprint of its inputs, so a killed run resumes where it stopped. Why not DVC: see the README.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from lib.core.artifacts import atomic_path
from lib.core.data import dataset_hashes
from lib.core.paths import REPO_ROOT, RESULTS_DIR
from lib.core.provenance import load_1min
from lib.core.stages import BY_NAME, Stage, in_order, upstream
from lib.reproduce.compare import Difference, compare_stage, stage_files

# The stage list itself is not a stage's code: its command is hashed on its own, and a tolerance
# or a description may change without making any artifact stale.
NOT_STAGE_CODE = ("lib/core/stages.py",)


@functools.lru_cache(maxsize=None)
def _lib_imports(path: str, mtime_ns: int) -> list[str]:
    """The ``lib`` modules a source file names in its imports (cached per file version)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(Path(path).read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("lib.")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lib"):
            names += [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    return names


def code_files(stage: Stage, root: Path = REPO_ROOT) -> list[Path]:
    """The ``lib`` source a stage runs: every module its command's module imports, directly or not,
    anywhere in its source (the CLI imports lazily, inside functions), with their packages."""
    from lib.cli import COMMANDS

    todo, seen = [COMMANDS[stage.command[0]][0], "lib.cli", "lib.__main__"], set()
    while todo:
        module = todo.pop()
        base = root.joinpath(*module.split("."))
        path = next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)
        if path is None or path in seen:
            continue
        seen.add(path)
        parts = module.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += _lib_imports(str(path), path.stat().st_mtime_ns)
    return sorted(p for p in seen if str(p.relative_to(root)) not in NOT_STAGE_CODE)


def fingerprints(root: Path = REPO_ROOT) -> dict[str, str]:
    """Each stage's input fingerprint: its command, the source it runs, its data's content hashes,
    the pinned requirements and its upstream stages' fingerprints (so a change flows downstream)."""
    data = dataset_hashes()
    found: dict[str, str] = {}
    for stage in in_order(list(BY_NAME)):
        digest = hashlib.sha256(json.dumps([stage.command, [data[d] for d in stage.data],
                                            [found[u] for u in upstream(stage)]]).encode())
        for file in (*code_files(stage, root), root / "requirements.txt"):
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
        found[stage.name] = digest.hexdigest()[:16]
    return found


@dataclass
class Outcome:
    """What became of one stage in this run."""
    stage: str
    status: str                      # ran, done earlier, up to date, failed, skipped, not run (budget)
    seconds: float = 0.0
    verdict: str = ""                # exact, match, MISMATCH, new, regenerated (adopted), "" (not compared)
    worst: str = ""
    differences: list[str] = field(default_factory=list)
    fingerprint: str = ""
    load: float | None = None        # 1-minute load average when it ended: other work slows a stage
    cpu_seconds: float | None = None # user + system time of the stage's process: what a busy machine
                                     # does not inflate the way it inflates wall time


def verdict_of(found: list[Difference], committed: bool) -> tuple[str, str, list[str]]:
    """(verdict, worst difference, the differences outside tolerance, described)."""
    if not committed:
        return "new", "", []
    outside = [d for d in found if not d.within]
    if outside:
        return "MISMATCH", outside[0].describe(), [d.describe() for d in outside[:20]]
    if not found:
        return "exact", "", []
    return "match", max(found, key=lambda d: d.relative).describe(), []


class State:
    """``state.json`` in the scratch folder: finished stages and their fingerprints."""

    def __init__(self, folder: Path):
        self.path = folder / "state.json"
        self.done: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def finished(self, stage: Stage, fingerprint: str, results: Path) -> bool:
        record = self.done.get(stage.name)
        return bool(record and record["fingerprint"] == fingerprint and (results / f"{stage.name}.json").is_file())

    def record(self, outcome: Outcome) -> None:
        self.done[outcome.stage] = {k: v for k, v in asdict(outcome).items() if k not in ("stage", "status")}
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.done, indent=2))


def command_for(stage: Stage, scratch: Path, mirror: str | None) -> list[str]:
    """The stage's recorded command, its outputs, caches and checkpoints sent to ``scratch``."""
    argv = [sys.executable, "-m", "lib", *stage.command, "--results-dir", str(scratch / "results")]
    if stage.data and mirror:
        argv += ["--mirror", mirror]
    if "cache" in stage.options:
        argv += ["--cache-dir", str(scratch / "cache")]
    if "checkpoints" in stage.options:
        argv += ["--checkpoint-dir", str(scratch / "checkpoints" / stage.name)]
    return argv + (["--no-progress"] if "no_progress" in stage.options else [])


@functools.lru_cache(maxsize=None)
def expected_seconds(stage: Stage, committed: Path) -> float:
    """The committed artifact's recorded wall time (the ETA), else a minute. Cached: the scheduler
    asks every second, and the committed artifacts do not change during a run."""
    try:
        return float(json.loads((committed / f"{stage.name}.json").read_text())["provenance"]["wall_time_s"])
    except (OSError, KeyError, ValueError):
        return 60.0


def critical_path_seconds(chosen: list[Stage], committed: Path, core_seconds: dict[str, float] | None = None
                          ) -> dict[str, float]:
    """Each stage's core-seconds (expected: recorded wall time x cores) plus the longest chain of chosen
    stages that wait for it: starting the longest chain first keeps both cores busy to the end (a 1-core
    stage started first would leave the other core idle while a 2-core stage waits)."""
    found: dict[str, float] = {}
    for stage in reversed(chosen):  # downstream stages come later in dependency order
        own = core_seconds[stage.name] if core_seconds else expected_seconds(stage, committed) * stage.threads
        after = [found[s.name] for s in chosen if stage.name in upstream(s) and s.name in found]
        found[stage.name] = own + max(after, default=0.0)
    return found


def projected_wall_seconds(chosen: list[Stage], cpu_seconds: dict[str, float], cores: int) -> float:
    """The run's wall time on a quiet machine: the runner's packing replayed with each stage lasting
    its measured CPU time over its cores. CPU time is what other work on a busy machine inflates
    least (thread pools waiting on a descheduled peer add some, so the projection errs long)."""
    names = {s.name for s in chosen}
    order = critical_path_seconds(chosen, RESULTS_DIR, cpu_seconds)
    pending, running, clock = list(chosen), {}, 0.0   # running: stage -> when it ends
    while pending or running:
        free = cores - sum(BY_NAME[n].threads for n in running)
        for stage in _ready(pending, running, names, order):
            if _fits(stage, free, running):
                running[stage.name] = clock + cpu_seconds[stage.name] / stage.threads
                pending.remove(stage)
                free -= stage.threads
        clock = min(running.values())
        running = {n: end for n, end in running.items() if end > clock}
    return clock


def _fits(stage: Stage, free: int, running: dict) -> bool:
    """The packing rule of the runner and its replay: a stage starts when its cores are free, or
    alone when it needs more cores than the machine has."""
    return stage.threads <= free or not running


def _ready(pending: list[Stage], running: dict[str, object], chosen: set[str], order: dict[str, float]
           ) -> list[Stage]:
    """Stages none of whose chosen upstream stages waits, the longest chain to the end first."""
    waiting = {s.name for s in pending} | set(running)
    return sorted((s for s in pending if not any(u in waiting for u in upstream(s) if u in chosen)),
                  key=lambda s: -order[s.name])


@dataclass
class Plan:
    stages: list[Stage]
    scratch: Path
    mirror: str | None = None
    cores: int = 2
    budget_minutes: float | None = None
    committed: Path = RESULTS_DIR
    skip: dict[str, str] = field(default_factory=dict)  # stage -> status, decided before running
    adopt: frozenset[str] = frozenset()  # stages whose rerun artifacts replace the committed ones
    progress: bool = True
    command: Callable[[Stage, Path, str | None], list[str]] = command_for


def _copy_inputs(stage: Stage, plan: Plan, chosen: set[str]) -> None:
    """Copy in the committed artifacts a stage reads from stages outside this run.

    An adopted stage reads the committed artifacts of every upstream stage that is not adopted too,
    over the rerun's (already compared) ones: what it replaces must agree with what stays committed.
    A rerun that matched only within tolerance can flip near-ties, such as the gallery's order."""
    results = plan.scratch / "results"
    for need in stage.needs:
        replace = need in chosen and stage.name in plan.adopt and need not in plan.adopt
        if need in chosen and not replace:
            continue
        present = set() if replace else stage_files(need, results)
        for name in stage_files(need, plan.committed) - present:
            shutil.copy2(plan.committed / name, results / name)


def adopt_artifacts(name: str, rerun: Path, committed: Path) -> None:
    """Replace stage ``name``'s committed files with the rerun's: the recipe changed on purpose, and
    the new artifact is the one this command wrote from the current code (never an edited file)."""
    new = stage_files(name, rerun)
    if f"{name}.json" not in new:
        raise FileNotFoundError(f"{name}: the rerun wrote no {name}.json to adopt")
    for old in stage_files(name, committed) - new:
        (committed / old).unlink()
    for file in sorted(new):
        with atomic_path(committed / file) as tmp:
            shutil.copy2(rerun / file, tmp)


def _finish(stage: Stage, plan: Plan, outcome: Outcome) -> Outcome:
    if stage.name in plan.adopt:
        adopt_artifacts(stage.name, plan.scratch / "results", plan.committed)
        outcome.verdict = "regenerated"
        return outcome
    committed = (plan.committed / f"{stage.name}.json").is_file()
    try:
        found = compare_stage(stage.name, plan.committed, plan.scratch / "results", stage.tolerance) \
            if committed else []
    except (OSError, ValueError, KeyError) as exc:  # an unreadable artifact is a mismatch, named
        outcome.verdict, outcome.worst = "MISMATCH", f"cannot compare: {type(exc).__name__}: {exc}"
        return outcome
    outcome.verdict, outcome.worst, outcome.differences = verdict_of(found, committed)
    return outcome


@dataclass
class _Running:
    stage: Stage
    process: subprocess.Popen
    started: float
    log: Path
    bar: object


def _start(stage: Stage, plan: Plan, chosen: set[str], slot: int) -> _Running:
    from tqdm import tqdm

    _copy_inputs(stage, plan, chosen)
    log = plan.scratch / "logs" / f"{stage.name}.log"
    with open(log, "ab") as handle:
        handle.write(f"\n$ {' '.join(stage.command)}  ({time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
        handle.flush()
        # A stage gets the default Ctrl-C even where this runner was started with it ignored (nohup, &),
        # so that stopping the runner lets a finetune write its checkpoint.
        process = subprocess.Popen(plan.command(stage, plan.scratch, plan.mirror), cwd=REPO_ROOT, stdout=handle,
                                   stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    bar = tqdm(total=round(expected_seconds(stage, plan.committed)), desc=f"{stage.name:<28}", unit="s",
               position=slot + 1, leave=False, disable=not plan.progress, mininterval=1.0,
               bar_format="{desc} {percentage:3.0f}%|{bar:20}| {elapsed}<{remaining} {postfix}")
    return _Running(stage, process, time.monotonic(), log, bar)


def _decide_before_start(stage: Stage, plan: Plan, state: State, fingerprint: str, failed: set[str],
                         elapsed: float) -> Outcome | None:
    """An outcome that spares running the stage (already decided, done earlier, upstream failed,
    over budget), or None to run it."""
    if stage.name in plan.skip:
        return Outcome(stage.name, plan.skip[stage.name], fingerprint=fingerprint)
    if any(u in failed for u in stage.needs):
        return Outcome(stage.name, "skipped (upstream failed)", fingerprint=fingerprint)
    if state.finished(stage, fingerprint, plan.scratch / "results"):
        record = state.done[stage.name]
        outcome = Outcome(stage.name, "done earlier", record["seconds"], fingerprint=fingerprint,
                          load=record.get("load"), cpu_seconds=record.get("cpu_seconds"))
        if not record.get("verdict") or stage.name in plan.adopt:
            return _finish(stage, plan, outcome)
        # Compared when it ran: its files may since be the committed inputs of an adopted stage.
        outcome.verdict, outcome.worst = record["verdict"], record.get("worst", "")
        outcome.differences = record.get("differences", [])
        return outcome
    budget = plan.budget_minutes
    if budget is not None and elapsed + expected_seconds(stage, plan.committed) > 60 * budget:
        return Outcome(stage.name, "not run (budget)", fingerprint=fingerprint)
    return None


def _last_line(log: Path) -> str:
    try:
        tail = log.read_bytes()[-400:].decode(errors="replace").replace("\r", "\n").strip().splitlines()
    except OSError:
        return ""
    return tail[-1][:60] if tail else ""


def _children_cpu_seconds() -> float:
    return sum(resource.getrusage(resource.RUSAGE_CHILDREN)[:2])  # user + system time


def _poll(running: dict[str, _Running], plan: Plan, state: State, prints: dict[str, str],
          outcomes: dict[str, Outcome], failed: set[str]) -> None:
    for name, job in list(running.items()):
        seconds = time.monotonic() - job.started
        job.bar.total = max(job.bar.total, round(seconds) + 1)
        job.bar.update(round(seconds) - job.bar.n)
        job.bar.set_postfix_str(_last_line(job.log), refresh=False)
        before = _children_cpu_seconds()
        code = job.process.poll()  # reaps the stage: its CPU time moves into the children's total
        if code is None:
            continue
        cpu = round(_children_cpu_seconds() - before, 1)
        job.bar.close()
        del running[name]
        outcome = Outcome(name, "ran" if code == 0 else f"failed (exit {code})", round(seconds, 1),
                          fingerprint=prints[name], load=load_1min(), cpu_seconds=cpu)
        if code == 0:
            state.record(outcome)  # finished: kept even if the comparison below fails
            state.record(_finish(job.stage, plan, outcome))  # and with its verdict, for a resumed run
        else:
            failed.add(name)
            tail = job.log.read_text(errors="replace").strip().splitlines()[-12:]
            print(f"\n{name} failed (exit {code}); the end of {job.log}:\n  " + "\n  ".join(tail), file=sys.stderr)
        outcomes[name] = outcome


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop(running: dict[str, _Running], grace_s: float = 120.0) -> None:
    """SIGINT to every running stage (finetuning writes its checkpoint on the way out), then wait;
    a stage still running after ``grace_s`` is killed."""
    for job in running.values():
        job.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    for job in running.values():
        try:
            job.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()


def execute(plan: Plan) -> list[Outcome]:
    """Run ``plan.stages`` (already in dependency order); returns one outcome per stage, in order."""
    from tqdm import tqdm

    for folder in ("results", "logs", "cache", "checkpoints"):
        (plan.scratch / folder).mkdir(parents=True, exist_ok=True)
    state, prints = State(plan.scratch), fingerprints()
    chosen = {s.name for s in plan.stages}
    pending, running, outcomes, failed = list(plan.stages), {}, {}, set()
    remaining = critical_path_seconds(plan.stages, plan.committed)
    start = time.monotonic()
    overall = tqdm(total=len(pending), desc="stages", position=0, disable=not plan.progress, leave=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while pending or running:
            free = plan.cores - sum(job.stage.threads for job in running.values())
            for stage in _ready(pending, running, chosen, remaining):
                decided = _decide_before_start(stage, plan, state, prints[stage.name], failed,
                                               time.monotonic() - start)
                if decided is not None:
                    outcomes[stage.name] = decided
                    pending.remove(stage)
                    overall.update(1)
                elif _fits(stage, free, running):
                    running[stage.name] = _start(stage, plan, chosen, len(running))
                    pending.remove(stage)
                    free -= stage.threads
            before = len(outcomes)
            _poll(running, plan, state, prints, outcomes, failed)
            overall.update(len(outcomes) - before)
            if running:
                time.sleep(1.0)
    except BaseException:  # Ctrl-C, kill or an error here: stop the stages too, never leave them orphaned
        _stop(running)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        overall.close()
    return [outcomes[s.name] for s in plan.stages]
