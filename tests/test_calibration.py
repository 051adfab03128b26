import numpy as np
import pytest

from lib.cifar.calibration import confidence_summary, expected_calibration_error, reliability_bins


def _probs(confidence: np.ndarray, predicted: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """Rows whose top class is ``predicted`` with probability ``confidence``, the rest spread evenly."""
    rest = (1 - confidence) / (n_classes - 1)
    probs = np.repeat(rest[:, None], n_classes, axis=1)
    probs[np.arange(len(confidence)), predicted] = confidence
    return probs


def test_perfectly_calibrated_predictions_have_zero_ece():
    # 10 images at confidence 0.8 of which 8 are right, 10 at 0.5 of which 5 are right
    confidence = np.r_[np.full(10, 0.8), np.full(10, 0.5)]
    labels = np.zeros(20, dtype=int)
    predicted = np.r_[np.zeros(8), np.ones(2), np.zeros(5), np.ones(5)].astype(int)
    assert expected_calibration_error(_probs(confidence, predicted), labels, n_bins=10) == pytest.approx(0.0)


def test_ece_is_the_count_weighted_gap():
    # bin (0.9, 1.0]: 4 images at 0.95, all right -> gap +0.05; bin (0.5, 0.6]: 6 at 0.55, 3 right -> gap -0.05
    confidence = np.r_[np.full(4, 0.95), np.full(6, 0.55)]
    labels = np.zeros(10, dtype=int)
    predicted = np.r_[np.zeros(4), np.zeros(3), np.ones(3)].astype(int)
    probs = _probs(confidence, predicted)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins["count"].tolist() == [6, 4]
    assert bins["gap"].tolist() == pytest.approx([-0.05, 0.05])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.05)


def test_under_confident_model_shows_positive_gap():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    probs = _probs(np.full(500, 0.6), labels)  # always right, only 60% confident
    summary = confidence_summary(probs, labels)
    assert summary["accuracy"] == 1.0
    assert summary["mean_confidence"] == pytest.approx(0.6)
    assert summary["ece"] == pytest.approx(0.4)
    assert (reliability_bins(probs, labels)["gap"] > 0).all()


def test_bin_edges_put_confidence_one_in_the_last_bin():
    probs = _probs(np.array([1.0, 0.1 + 1e-12]), np.array([0, 0]))
    bins = reliability_bins(probs, np.array([0, 0]), n_bins=10)
    assert bins["bin"].tolist() == [1, 9]


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError):
        reliability_bins(np.full((3, 10), 0.1), np.zeros(4, dtype=int))
