"""``python -m lib reproduce``: the stage graph, resuming, comparison and staleness."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from lib.core import stages
from lib.core.errors import ConfigError
from lib.core.paths import RESULTS_DIR
from lib.reproduce import runner
from lib.reproduce.compare import RUNNER_FILES, compare_stage, owner
from lib.reproduce.runner import Plan, execute, fingerprints, verdict_of


def test_every_committed_file_belongs_to_exactly_one_stage() -> None:
    files = [p.name for p in RESULTS_DIR.iterdir() if p.is_file() and p.name not in RUNNER_FILES]
    orphans = [name for name in files if owner(name) is None]
    assert not orphans
    claimed = {name: [s.name for s in stages.STAGES if name == f"{s.name}.json"] for name in files}
    assert all(len(v) <= 1 for v in claimed.values())
    assert all((RESULTS_DIR / f"{s.name}.json").is_file() for s in stages.STAGES)


def test_stage_graph_is_acyclic_and_names_real_stages() -> None:
    names = [s.name for s in stages.in_order([s.name for s in stages.STAGES])]
    assert sorted(names) == sorted(stages.BY_NAME)
    for stage in stages.STAGES:
        assert set(stages.upstream(stage)) <= set(stages.BY_NAME)
        assert all(names.index(u) < names.index(stage.name) for u in stages.upstream(stage))
        assert stage.group in stages.GROUPS


def test_a_cycle_is_refused(monkeypatch) -> None:
    a = stages.Stage("a", "", ("x",), (), needs=("b",))
    b = stages.Stage("b", "", ("x",), (), needs=("a",))
    monkeypatch.setattr(stages, "STAGES", (a, b))
    with pytest.raises(ConfigError, match="cycle"):
        stages.in_order(["a", "b"])


def test_book_stages_read_no_gpu_artifact() -> None:
    gpu = {s.name for s in stages.STAGES if s.group == "gpu"}
    assert not {u for s in stages.STAGES if s.group == "book" for u in stages.upstream(s)} & gpu


def _fake_command(log: Path, interrupt_at: str | None = None):
    """A command that writes a tiny artifact into the scratch results (and notes that it ran)."""
    def command(stage, scratch, mirror):
        if stage.name == interrupt_at:
            raise KeyboardInterrupt  # the run is killed before this stage starts
        code = (f"import json, pathlib; pathlib.Path({str(log)!r}).open('a').write({stage.name!r} + '\\n'); "
                f"pathlib.Path({str(scratch / 'results' / (stage.name + '.json'))!r}).write_text("
                f"json.dumps({{'value': 1.0, 'provenance': {{'wall_time_s': 3}}}}))")
        return [sys.executable, "-c", code]
    return command


def _committed(tmp_path: Path, names: list[str], value: float = 1.0) -> Path:
    folder = tmp_path / "committed"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / f"{name}.json").write_text(json.dumps({"value": value, "provenance": {"wall_time_s": 1}}))
    return folder


def test_a_killed_run_resumes_with_the_stages_it_had_not_finished(tmp_path: Path) -> None:
    chosen = stages.in_order(["movies", "movies_hessian", "movies_decay"])
    log, scratch = tmp_path / "ran.txt", tmp_path / "scratch"
    plan = Plan(chosen, scratch, cores=1, committed=_committed(tmp_path, ["movies", "movies_hessian", "movies_decay"]),
                progress=False, command=_fake_command(log, interrupt_at="movies_hessian"))
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    assert log.read_text().split() == ["movies"]
    plan.command = _fake_command(log)
    outcomes = execute(plan)
    assert log.read_text().split() == ["movies", "movies_hessian", "movies_decay"]
    assert [o.status for o in outcomes] == ["done earlier", "ran", "ran"]
    assert {o.verdict for o in outcomes} == {"exact"}


def test_an_adopted_stage_replaces_its_committed_files_instead_of_comparing(tmp_path: Path) -> None:
    committed = _committed(tmp_path, ["movies", "movies_hessian"], value=2.0)
    (committed / "movies_hessian_old.csv").write_text("stale companion\n")
    plan = Plan(stages.in_order(["movies", "movies_hessian"]), tmp_path / "scratch", cores=1, committed=committed,
                progress=False, command=_fake_command(tmp_path / "ran.txt"), adopt=frozenset({"movies_hessian"}))
    outcomes = {o.stage: o for o in execute(plan)}
    assert outcomes["movies"].verdict == "MISMATCH"          # compared: 2.0 committed, 1.0 rerun
    assert outcomes["movies_hessian"].verdict == "regenerated"
    assert json.loads((committed / "movies_hessian.json").read_text())["value"] == 1.0
    assert not (committed / "movies_hessian_old.csv").exists()
    assert json.loads((committed / "movies.json").read_text())["value"] == 2.0  # never touched


def _command_reading_upstream(log: Path):
    """Like ``_fake_command``, but each stage's value is 1 + the sum of the values it reads upstream,
    so a downstream artifact shows which upstream files it was computed from."""
    def command(stage, scratch, mirror):
        results = scratch / "results"
        code = (f"import json, pathlib; r = pathlib.Path({str(results)!r}); "
                f"pathlib.Path({str(log)!r}).open('a').write({stage.name!r} + '\\n'); "
                f"v = 1.0 + sum(json.loads((r / (n + '.json')).read_text())['value'] for n in {list(stage.needs)!r}); "
                f"(r / {stage.name + '.json'!r}).write_text(json.dumps({{'value': v, 'provenance': {{'wall_time_s': 3}}}}))")
        return [sys.executable, "-c", code]
    return command


def test_an_adopted_stage_reads_the_committed_artifacts_of_upstream_stages_that_stay(tmp_path: Path) -> None:
    """The rerun of ``movies`` (1.0) differs from the committed one (5.0) and stays committed: the
    adopted ``movies_hessian`` must be computed from 5.0, the value the book keeps beside it."""
    assert "movies" in stages.BY_NAME["movies_hessian"].needs
    committed = _committed(tmp_path, ["movies", "movies_hessian"], value=5.0)
    log = tmp_path / "ran.txt"
    plan = Plan(stages.in_order(["movies", "movies_hessian"]), tmp_path / "scratch", cores=1, committed=committed,
                progress=False, command=_command_reading_upstream(log), adopt=frozenset({"movies_hessian"}))
    outcomes = {o.stage: o for o in execute(plan)}
    assert outcomes["movies"].verdict == "MISMATCH"  # compared with the rerun's own artifact (1.0 vs 5.0)
    assert json.loads((committed / "movies_hessian.json").read_text())["value"] == 1.0 + 5.0
    resumed = {o.stage: o for o in execute(plan)}  # the scratch folder now holds the committed movies.json
    assert resumed["movies"].status == "done earlier" and resumed["movies"].verdict == "MISMATCH"
    assert log.read_text().split() == ["movies", "movies_hessian"]


def test_a_tampered_artifact_is_a_mismatch_naming_the_field_and_both_values(tmp_path: Path) -> None:
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    committed.mkdir(), rerun.mkdir()
    shutil.copy(RESULTS_DIR / "movies_decay.json", rerun / "movies_decay.json")
    doc = json.loads((RESULTS_DIR / "movies_decay.json").read_text())
    doc["floor_loss"] = doc["floor_loss"] * 1.01
    (committed / "movies_decay.json").write_text(json.dumps(doc))
    found = compare_stage("movies_decay", committed, rerun, stages.BY_NAME["movies_decay"].tolerance)
    verdict, worst, described = verdict_of(found, committed=True)
    assert verdict == "MISMATCH"
    assert "floor_loss" in worst and repr(doc["floor_loss"])[:8] in worst
    assert verdict_of(compare_stage("movies_decay", rerun, rerun, stages.EXACT), True)[0] == "exact"


def test_another_gallery_selection_matches_but_not_another_count(tmp_path: Path) -> None:
    """Near-ties in a rerun's probabilities choose a few other images: a match; a count 10 % off is not."""
    import numpy as np

    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    committed.mkdir(), rerun.mkdir()
    doc = json.loads((RESULTS_DIR / "gallery_sprites.json").read_text())
    shutil.copy(RESULTS_DIR / "gallery_sprites.json", committed / "gallery_sprites.json")
    shutil.copy(RESULTS_DIR / "gallery_sprites.npz", committed / "gallery_sprites.npz")
    saved = dict(np.load(RESULTS_DIR / "gallery_sprites.npz"))
    np.savez(rerun / "gallery_sprites.npz", **{k: np.concatenate([v, v[..., :2]], axis=-1) if v.ndim == 2 else
                                               np.concatenate([v, v[:2]]) for k, v in saved.items()})
    tolerance = stages.BY_NAME["gallery_sprites"].tolerance
    for extra, expected in ((2, "match"), (doc["unique_images"] // 10, "MISMATCH")):
        (rerun / "gallery_sprites.json").write_text(json.dumps({**doc, "unique_images": doc["unique_images"] + extra}))
        found = compare_stage("gallery_sprites", committed, rerun, tolerance)
        assert verdict_of(found, committed=True)[0] == expected, extra


def test_timings_and_hardware_are_not_compared(tmp_path: Path) -> None:
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    committed.mkdir(), rerun.mkdir()
    doc = json.loads((RESULTS_DIR / "movies_decay.json").read_text())
    (committed / "movies_decay.json").write_text(json.dumps(doc))
    doc["provenance"]["wall_time_s"] += 100
    doc["provenance"]["hardware"] = {"cpu": "another"}
    (rerun / "movies_decay.json").write_text(json.dumps(doc))
    assert compare_stage("movies_decay", committed, rerun, stages.EXACT) == []


def _copy_of_lib(root: Path) -> Path:
    from lib.core.paths import REPO_ROOT

    shutil.copytree(REPO_ROOT / "lib", root / "lib", ignore=shutil.ignore_patterns("__pycache__", "static"))
    shutil.copy(REPO_ROOT / "requirements.txt", root / "requirements.txt")
    return root


def test_fingerprints_change_with_the_code_a_stage_runs_and_flow_downstream(tmp_path: Path) -> None:
    root = _copy_of_lib(tmp_path)
    before = fingerprints(root)
    assert fingerprints(root) == before
    likes = root / "lib/movies/likes.py"
    likes.write_text(likes.read_text() + "\n# changed\n")
    after = fingerprints(root)
    changed = {name for name in before if before[name] != after[name]}
    assert {"movies", "movies_hessian", "movies_baselines"} <= changed
    assert not changed & {"features_cpu_onnx", "finetune_cpu_partial", "gallery_sprites"}
    sprites = root / "lib/cifar/gallery_sprites.py"
    sprites.write_text(sprites.read_text() + "\n# changed\n")
    assert {n for n in after if after[n] != fingerprints(root)[n]} == {"gallery_sprites"}


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_a_stages_code_lies_in_the_packages_it_declares(stage) -> None:
    from lib.core.paths import REPO_ROOT
    from lib.reproduce.runner import code_files

    files = [str(p.relative_to(REPO_ROOT)) for p in code_files(stage)]
    assert "lib/cli.py" in files and len(files) > 5
    undeclared = [f for f in files if not any(f == entry or f.startswith(entry + "/") for entry in stage.code)]
    assert not undeclared


def test_stale_reruns_nothing_on_an_unchanged_tree(tmp_path: Path, monkeypatch) -> None:
    from lib.reproduce import cli

    monkeypatch.setattr(cli, "recorded_fingerprints", fingerprints)
    ran = []
    monkeypatch.setattr(cli, "execute", lambda plan: ran.append(plan) or [])
    args = cli.build_args(["--stale", "--no-record", "--scratch", str(tmp_path)])
    cli.run(args)
    plan = ran[0]
    assert {s.name for s in plan.stages} == set(plan.skip)
    assert set(plan.skip.values()) == {"up to date"}


def test_runs_record_into_results_unless_told_not_to() -> None:
    from lib.reproduce import cli

    assert cli.writes_results(cli.build_args(["--only", "movies"]))
    assert not cli.writes_results(cli.build_args(["--only", "movies", "--no-record"]))
    assert not cli.writes_results(cli.build_args(["--list"]))


def test_the_summary_keeps_each_stages_latest_outcome(tmp_path: Path) -> None:
    from lib.reproduce import cli
    from lib.reproduce.runner import Outcome

    block = {"git": {"commit": "a" * 40}, "hardware": {"cpu": "cpu A"}, "created_utc": "2026-12-01T00:00:00"}
    args = cli.build_args(["--scratch", str(tmp_path)])
    first = cli.summary_payload(None, [Outcome("movies", "ran", 60, "exact", fingerprint="f1"),
                                       Outcome("features_cpu_onnx", "ran", 600, "match", "x", fingerprint="f2")],
                                block, args, 660)
    later = {**block, "git": {"commit": "b" * 40}, "hardware": {"cpu": "cpu B"}}
    second = cli.summary_payload(first, [Outcome("movies", "ran", 50, "MISMATCH", "y", ["y"], "f3"),
                                         Outcome("movies_decay", "not run (budget)")], later, args, 50)
    rows = {row["stage"]: row for row in second["stages"]}
    assert set(rows) == {"movies", "features_cpu_onnx"}
    assert rows["movies"]["verdict"] == "MISMATCH" and rows["movies"]["cpu"] == "cpu B"
    assert rows["features_cpu_onnx"]["commit"] == "a" * 40 and not second["all_match"]
    assert "movies_decay" not in second["book_stages_rederived"]
    assert second["latest_run"]["stages"] == ["movies", "movies_decay"]
    assert second["last_run"] == first["last_run"]  # a part of the book does not time the whole book
    whole = [Outcome(name, "ran", 60, "exact", cpu_seconds=60) for name in second["book_stages"]]
    third = cli.summary_payload(second, whole, later, args, 900)
    assert third["last_run"] == third["latest_run"] and third["last_run"]["wall_minutes"] == 15.0


RUN_OPTIONS = {"mirror", "data_dir", "progress", "no_progress", "results_dir", "cache_dir", "checkpoint_dir", "allow_dirty"}


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda s: s.name)
def test_each_stage_runs_the_command_its_artifact_recorded(stage) -> None:
    """Parsed options of the stage's command equal those of the command line the artifact recorded
    (where it recorded one; the first GPU runs did not), run options aside."""
    import shlex

    from lib.cli import build_parser

    recorded = json.loads((RESULTS_DIR / f"{stage.name}.json").read_text())["provenance"].get("command")
    if recorded is None:
        assert stage.group == "gpu", "only the first GPU runs lack a recorded command"
        return
    argv = shlex.split(recorded)[3:]
    parse = lambda words: {k: v for k, v in vars(build_parser(words[0]).parse_args(words)).items()  # noqa: E731
                           if k not in RUN_OPTIONS}
    assert parse(list(stage.command)) == parse(argv)


def test_gpu_stages_are_refused_without_cuda(monkeypatch) -> None:
    from lib.reproduce import cli

    monkeypatch.setattr(cli, "_cuda", lambda: False)
    with pytest.raises(ConfigError, match="lent GPU"):
        cli.selected(cli.build_args(["--only", "finetune"]))
    assert [s.name for s in cli.selected(cli.build_args(["--only", "movies"]))] == ["movies"]


def test_arrays_differing_only_in_skipped_or_equal_values_give_no_difference() -> None:
    import numpy as np

    from lib.reproduce.compare import compare_arrays

    tol = stages.Tolerance(rtol=1e-3)
    assert compare_arrays(np.array([1.0, 2.0]), np.array([1.0, 2.0000001]), tol, "a.npy") != []
    assert all(d.within for d in compare_arrays(np.array([1.0, 2.0]), np.array([1.0, 2.0000001]), tol, "a.npy"))
    skipping = stages.Tolerance(skip=("a.npy*",))
    assert compare_arrays(np.array([1.0, 2.0]), np.array([1.0, 3.0]), skipping, "a.npy") == []


def test_nan_in_both_arrays_does_not_hide_a_real_difference() -> None:
    import numpy as np

    from lib.reproduce.compare import compare_arrays

    found = compare_arrays(np.array([np.nan, 1.0, 2.0]), np.array([np.nan, 1.0, 2.5]), stages.EXACT, "c.npz:x")
    assert [(d.path, d.old, d.new, d.within) for d in found] == [("c.npz:x[2]", 2.0, 2.5, False)]


def test_a_field_pattern_never_skips_a_whole_file_named_like_it(tmp_path: Path) -> None:
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    committed.mkdir(), rerun.mkdir()
    doc = json.loads((RESULTS_DIR / "gallery_sprites.json").read_text())
    (rerun / "gallery_sprites.json").write_text(json.dumps(doc))
    doc["k"] = doc["k"] + 5
    (committed / "gallery_sprites.json").write_text(json.dumps(doc))
    found = compare_stage("gallery_sprites", committed, rerun, stages.BY_NAME["gallery_sprites"].tolerance)
    assert [d.path for d in found if not d.within] == ["gallery_sprites.json:k"]


def test_a_terminated_runner_stops_its_running_stages(tmp_path: Path) -> None:
    import os
    import signal
    import threading

    pid_file = tmp_path / "pid"

    def sleeper(stage, scratch, mirror):
        return [sys.executable, "-c", f"import os, pathlib, time; pathlib.Path({str(pid_file)!r})"
                                      ".write_text(str(os.getpid())); time.sleep(60)"]

    plan = Plan(stages.in_order(["movies"]), tmp_path / "scratch", cores=1,
                committed=_committed(tmp_path, ["movies"]), progress=False, command=sleeper)
    timer = threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_the_quiet_projection_replays_the_packing_with_cpu_time() -> None:
    """Two 1-core stages side by side, then a 2-core stage: 100 s + 300 core-s / 2 cores = 250 s;
    a downstream stage waits for its upstream one."""
    from lib.reproduce.runner import projected_wall_seconds

    chosen = stages.in_order(["movies", "finetune_pilot_cpu", "probe_variants"])
    cpu = {"movies": 100.0, "finetune_pilot_cpu": 100.0, "probe_variants": 300.0}
    assert projected_wall_seconds(chosen, cpu, cores=2) == pytest.approx(250.0)
    chain = stages.in_order(["movies", "movies_hessian"])
    assert projected_wall_seconds(chain, {"movies": 100.0, "movies_hessian": 50.0}, cores=2) == pytest.approx(150.0)


def test_a_stages_cpu_time_is_recorded(tmp_path: Path) -> None:
    def busy(stage, scratch, mirror):  # half a second of CPU, then a sleep that costs none
        return [sys.executable, "-c", "import time; end = time.process_time() + 0.5\n"
                "while time.process_time() < end: pass\ntime.sleep(1.0)"]

    plan = Plan(stages.in_order(["movies"]), tmp_path / "scratch", cores=1, committed=_committed(tmp_path, ["movies"]),
                progress=False, command=busy)
    (outcome,) = execute(plan)
    assert 0.5 <= outcome.cpu_seconds < 1.2 <= outcome.seconds
