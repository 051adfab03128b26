import numpy as np
import pytest
from scipy.stats import binomtest

from lib.core.errors import ConfigError
from lib.cifar.metrics import accuracy_ci, confusion_matrix, per_class_accuracy, stratified_split


@pytest.mark.parametrize("k,n", [(90, 100), (1, 7), (9312, 10000), (0, 50), (50, 50)])
def test_accuracy_ci_matches_scipy_wilson(k, n):
    correct = np.zeros(n, dtype=bool)
    correct[:k] = True
    acc, lo, hi = accuracy_ci(correct)
    ref = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert acc == pytest.approx(k / n)
    assert lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)
    assert 0.0 <= lo <= acc <= hi <= 1.0


def test_accuracy_ci_known_value_and_width_shrinks():
    acc, lo, hi = accuracy_ci([1] * 90 + [0] * 10)
    assert (round(lo, 4), round(hi, 4)) == (0.8256, 0.9448)
    _, lo2, hi2 = accuracy_ci([1] * 900 + [0] * 100)
    assert hi2 - lo2 < hi - lo


def test_accuracy_ci_rejects_empty():
    with pytest.raises(ValueError):
        accuracy_ci([])


def test_confusion_and_per_class_against_hand_counts():
    y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2, 2, 0, 2])
    cm = confusion_matrix(y_true, y_pred, n_classes=4)
    expected = np.zeros((4, 4), int)
    expected[0] = [2, 1, 0, 0]
    expected[1] = [0, 1, 1, 0]
    expected[2] = [1, 0, 3, 0]
    np.testing.assert_array_equal(cm, expected)
    acc = per_class_accuracy(y_true, y_pred, n_classes=4)
    np.testing.assert_allclose(acc[:3], [2 / 3, 1 / 2, 3 / 4])
    assert np.isnan(acc[3])  # no example of class 3
    with pytest.raises(ValueError):
        confusion_matrix([0, 5], [0, 1], n_classes=4)


def test_stratified_split_proportions_disjoint_deterministic():
    rng = np.random.default_rng(1)
    labels = rng.choice(10, size=5000, p=np.r_[np.full(9, 0.08), 0.28])
    tr, va = stratified_split(labels, 500, seed=3)
    assert len(va) == 500 and len(tr) == 4500
    assert np.intersect1d(tr, va).size == 0
    np.testing.assert_array_equal(np.sort(np.r_[tr, va]), np.arange(5000))
    expected = np.bincount(labels, minlength=10) * 500 / 5000
    assert np.all(np.abs(np.bincount(labels[va], minlength=10) - expected) <= 1)
    tr2, va2 = stratified_split(labels, 500, seed=3)
    np.testing.assert_array_equal(va, va2)
    _, va3 = stratified_split(labels, 500, seed=4)
    assert not np.array_equal(va, va3)
    with pytest.raises(ConfigError):
        stratified_split(labels, 0, seed=0)
    with pytest.raises(ConfigError):
        stratified_split(labels, 5000, seed=0)
