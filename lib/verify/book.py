"""What readers see: the frozen (rendered) headline table holds the artifacts' current values."""
from __future__ import annotations

import json

from lib.book import summary
from lib.book.summary import headline
from lib.core.paths import REPO_ROOT
from lib.verify.checks import MISMATCH, OK, Check
from lib.verify.provenance import GPU_ARTIFACTS

FROZEN_INDEX = REPO_ROOT / "_freeze" / "index" / "execute-results" / "html.json"


def headline_checks() -> list[Check]:
    """The headline answers come from artifacts a CPU re-derives, and every answer of the headline table,
    recomputed from results/, appears in the frozen preface."""
    frozen = json.loads(FROZEN_INDEX.read_text())["result"]["markdown"] if FROZEN_INDEX.exists() else ""
    checks = [Check("preface", f"headline answer from {name}", "re-derivable on a CPU" if name not in GPU_ARTIFACTS
                    else "needs a GPU", "answers must not need a GPU", OK if name not in GPU_ARTIFACTS else MISMATCH)
              for name in (summary.PROBE, summary.FINETUNE)]
    for _, row in headline().iterrows():
        answer = str(row["answer"])
        found = answer in frozen
        checks.append(Check("preface", f"headline: {row['question'][:48]}", answer,
                            "in the frozen book" if found else "absent: run `make freeze`", OK if found else MISMATCH))
    return checks
