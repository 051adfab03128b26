"""One verification row (artifact, check, committed, recomputed, verdict) and how rows are made."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OK, MISMATCH, NOT_HERE = "ok", "MISMATCH", "not re-derivable here"
STALE = "STALE: rerun"  # numbers may be right, but the provenance is not what code writes from a clean commit


@dataclass(frozen=True)
class Check:
    artifact: str
    check: str
    committed: str
    recomputed: str
    verdict: str
    tolerance: str = "exact"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    array = np.asarray(value)
    if array.size > 4 and array.dtype.kind in "biuf":
        return f"{array.shape} array, sum {array.sum():.10g}"
    if array.size > 4:  # titles and other text: the first two and the count
        first = ", ".join(str(v) for v in array.ravel()[:2])
        return f"{array.size} items: {first}, …"
    return str(value)


def close(artifact: str, check: str, committed: object, recomputed: object, rel: float = 0.0,
          abs_: float = 0.0) -> Check:
    """Numbers (or arrays of them) equal within ``rel``/``abs_``; exact when both are 0."""
    a, b = np.asarray(committed, dtype=np.float64), np.asarray(recomputed, dtype=np.float64)
    same = a.shape == b.shape and bool(np.allclose(a, b, rtol=rel, atol=abs_, equal_nan=True))
    tolerance = "exact" if rel == abs_ == 0 else f"rel {rel:g}" if not abs_ else f"abs {abs_:g}"
    return Check(artifact, check, _show(committed), _show(recomputed), OK if same else MISMATCH, tolerance)


def equal(artifact: str, check: str, committed: object, recomputed: object) -> Check:
    """Exactly equal values: counts, indices, lists of titles."""
    same = np.array_equal(np.asarray(committed, dtype=object), np.asarray(recomputed, dtype=object))
    return Check(artifact, check, _show(committed), _show(recomputed), OK if same else MISMATCH)


def not_here(artifact: str, check: str, committed: str, why: str) -> Check:
    return Check(artifact, check, committed, why, NOT_HERE, "—")
