import numpy as np
import pytest
from scipy.stats import binomtest

from lib.core.stats import format_p, mcnemar


def _pairs(both, a_only, b_only, neither):
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def test_counts_and_exact_p_match_binomial_test():
    a, b = _pairs(both=50, a_only=3, b_only=12, neither=7)
    r = mcnemar(a, b)
    assert (r.n, r.both_correct, r.both_wrong, r.a_only, r.b_only) == (72, 50, 7, 3, 12)
    assert r.discordant == 15
    assert r.p_exact == pytest.approx(binomtest(3, 15, 0.5).pvalue)
    # hand value: 2 * sum_{i<=3} C(15,i) / 2^15 = 2 * 576 / 32768
    assert r.p_exact == pytest.approx(2 * 576 / 32768)
    # mid-p subtracts one observed-point probability: C(15,3)/2^15 * 2 * 0.5 ... times 2 halves
    assert r.p_midp == pytest.approx(2 * (576 - 455 / 2) / 32768)
    assert r.p_midp < r.p_exact


def test_symmetric_in_the_two_models():
    a, b = _pairs(20, 9, 2, 4)
    assert mcnemar(a, b).p_exact == pytest.approx(mcnemar(b, a).p_exact)
    assert mcnemar(a, b).a_only == mcnemar(b, a).b_only


def test_no_discordant_pairs_and_balanced_pairs_give_p_one():
    a, b = _pairs(10, 0, 0, 5)
    assert mcnemar(a, b).p_exact == 1.0 and mcnemar(a, b).p_midp == 1.0
    a, b = _pairs(10, 4, 4, 0)
    assert mcnemar(a, b).p_exact == 1.0


def test_large_one_sided_difference_is_significant():
    a, b = _pairs(900, 5, 60, 35)
    r = mcnemar(a, b)
    assert r.p_exact < 1e-10
    assert format_p(r.p_exact) == "< 0.001"
    assert format_p(0.25) == "0.250"


def test_bad_input():
    with pytest.raises(ValueError, match="differ in length"):
        mcnemar([1, 0], [1])
    with pytest.raises(ValueError, match="at least one"):
        mcnemar([], [])
