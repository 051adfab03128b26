"""What readers see: the frozen (rendered) headline table holds the artifacts' current values."""
from __future__ import annotations

import json

from lib.book.summary import headline
from lib.core.paths import REPO_ROOT
from lib.verify.checks import MISMATCH, OK, Check

FROZEN_INDEX = REPO_ROOT / "_freeze" / "index" / "execute-results" / "html.json"


def headline_checks() -> list[Check]:
    """Every answer of the headline table, recomputed from results/, appears in the frozen preface."""
    frozen = json.loads(FROZEN_INDEX.read_text())["result"]["markdown"] if FROZEN_INDEX.exists() else ""
    checks = []
    for _, row in headline().iterrows():
        answer = str(row["answer"])
        found = answer in frozen
        checks.append(Check("preface", f"headline: {row['question'][:48]}", answer,
                            "in the frozen book" if found else "absent: run `make freeze`", OK if found else MISMATCH))
    return checks
