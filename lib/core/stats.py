"""Statistics the book states: binomial standard errors, and McNemar's paired test of two classifiers.

Only the discordant pairs carry information: ``b`` examples that model A gets
wrong and model B gets right, ``c`` the other way round. Under the null
hypothesis (equal accuracy) each discordant example is a fair coin, so
``min(b, c)`` is compared with Binomial(b + c, 1/2). The exact (conditional)
two-sided p-value is ``min(1, 2 P(X <= min(b, c)))``; the mid-p version
subtracts half the probability of the observed value, which keeps the size
close to nominal without the exact test's conservatism (Fagerland, Lydersen &
Laake 2013, BMC Medical Research Methodology 13:91).

Hand-written on ``scipy.stats.binom`` because neither SciPy nor scikit-learn (the
requirements) provides McNemar's test, and ``binomtest`` gives no mid-p value.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import binom


@dataclass(frozen=True)
class McNemarResult:
    n: int                # paired examples
    both_correct: int
    both_wrong: int
    a_only: int           # A right, B wrong (c)
    b_only: int           # A wrong, B right (b)
    p_exact: float        # two-sided exact binomial p-value
    p_midp: float         # two-sided mid-p value

    @property
    def discordant(self) -> int:
        return self.a_only + self.b_only

    def as_dict(self) -> dict:
        return {**asdict(self), "discordant": self.discordant}


def mcnemar(correct_a, correct_b) -> McNemarResult:
    """McNemar's exact and mid-p tests from two boolean "was this example right" vectors."""
    a = np.asarray(correct_a).astype(bool).reshape(-1)
    b = np.asarray(correct_b).astype(bool).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired vectors differ in length: {a.size} vs {b.size}")
    if a.size == 0:
        raise ValueError("McNemar's test needs at least one paired example")
    a_only = int(np.count_nonzero(a & ~b))
    b_only = int(np.count_nonzero(~a & b))
    n_disc = a_only + b_only
    if n_disc == 0:
        p_exact = p_midp = 1.0
    else:
        k = min(a_only, b_only)
        tail = float(binom.cdf(k, n_disc, 0.5))
        point = float(binom.pmf(k, n_disc, 0.5))
        p_exact = min(1.0, 2.0 * tail)
        p_midp = min(1.0, 2.0 * (tail - 0.5 * point))
    return McNemarResult(n=int(a.size), both_correct=int(np.count_nonzero(a & b)),
                         both_wrong=int(np.count_nonzero(~a & ~b)), a_only=a_only, b_only=b_only,
                         p_exact=p_exact, p_midp=p_midp)


def binomial_se(rate: float, n: int) -> float:
    """Standard error of a proportion measured on ``n`` independent trials (NaN when n = 0):
    the one formula behind every ± on an accuracy or hit-rate in the book."""
    return math.sqrt(rate * (1.0 - rate) / n) if n else float("nan")


def relative_difference(ours: np.ndarray, reference: np.ndarray) -> float:
    """``||ours - reference|| / ||reference||`` in float32: how far another engine's features are."""
    ours, reference = np.asarray(ours, np.float32), np.asarray(reference, np.float32)
    return float(np.linalg.norm(ours - reference) / max(np.linalg.norm(reference), 1e-30))


def format_p(p: float) -> str:
    """p-values as prose: '0.032', '< 0.001', or '1.000'."""
    return "< 0.001" if p < 1e-3 else f"{p:.3f}"
