"""What readers see: the frozen (rendered) headline table holds the artifacts' current values."""
from __future__ import annotations

import json

from lib.book import summary
from lib.core.paths import REPO_ROOT
from lib.verify.checks import MISMATCH, OK, Check
from lib.verify.provenance import GPU_ARTIFACTS

FROZEN_INDEX = REPO_ROOT / "_freeze" / "index" / "execute-results" / "html.json"


def headline_checks() -> list[Check]:
    """The headline answers come from artifacts a CPU re-derives, and every answer of the headline table,
    recomputed from results/, appears in the frozen preface."""
    frozen = json.loads(FROZEN_INDEX.read_text())["result"]["markdown"] if FROZEN_INDEX.exists() else ""
    checks = []
    for name in (summary.PROBE, summary.FINETUNE):
        cpu = name not in GPU_ARTIFACTS
        checks.append(Check("preface", f"headline answer from {name}", "re-derivable on a CPU" if cpu else
                            "needs a GPU", "answers must not need a GPU", OK if cpu else MISMATCH))
    for _, row in summary.headline().iterrows():
        found = str(row["answer"]) in frozen
        where = "in the frozen book" if found else "absent: run `make freeze`"
        checks.append(Check("preface", f"headline: {row['question'][:48]}", str(row["answer"]), where,
                            OK if found else MISMATCH))
    return checks
