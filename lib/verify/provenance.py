"""Provenance checks: written by code, from a clean commit, with a command and the weights used."""
from __future__ import annotations

from lib.verify.checks import NOT_HERE, OK, STALE, Check

# Artifacts whose runs need a GPU: when their provenance is not clean, only a GPU rerun fixes it. The book
# shows them only as labelled extras ("recorded on a lent GPU"), never as an answer.
GPU_ARTIFACTS = frozenset({"features", "finetune", "finetune_pilot_cuda"})
GPU_EXTRA = "extra, recorded on a lent GPU: "
USES_WEIGHTS = frozenset({"features", "features_cpu_timing", "features_cpu_onnx", "finetune", "finetune_cpu",
                          "finetune_cpu_partial", "finetune_cpu_partial_short", "finetune_pilot_cpu",
                          "finetune_pilot_cuda", "bench"})


def provenance_checks(name: str, doc: dict) -> list[Check]:
    prov = doc["provenance"]
    git = prov.get("git", {})
    clean = bool(git.get("commit")) and git.get("dirty") is False and "note" not in git
    issues = [text for bad, text in (
        (not clean, "hand-edited git block" if "note" in git else f"dirty={git.get('dirty')}"),
        (not prov.get("command"), "no command"),
        (name in USES_WEIGHTS and not prov.get("weights"), "no weights identity"),
    ) if bad]
    if not issues:
        return [Check(name, "provenance: clean commit, command, weights", "written by code", "—", OK, "—")]
    if name in GPU_ARTIFACTS:
        return [Check(name, "provenance", "; ".join(issues), GPU_EXTRA + "rerun on a GPU from a clean commit",
                      NOT_HERE, "—")]
    return [Check(name, "provenance", "; ".join(issues), f"rerun: {prov.get('command') or 'see appendix A'}",
                  STALE, "—")]
