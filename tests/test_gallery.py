import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from lib.cifar.gallery import gallery_arrays, select_gallery


def _probs():
    # 3 classes, 8 test images: (true label, probability row)
    rows = [
        (0, [0.90, 0.05, 0.05]),  # 0 correct, conf .90
        (0, [0.60, 0.30, 0.10]),  # 1 correct, conf .60
        (0, [0.20, 0.70, 0.10]),  # 2 wrong -> class 1 at .70
        (0, [0.95, 0.03, 0.02]),  # 3 correct, conf .95
        (1, [0.10, 0.20, 0.70]),  # 4 wrong -> class 2 at .70
        (1, [0.05, 0.90, 0.05]),  # 5 correct, conf .90
        (1, [0.80, 0.10, 0.10]),  # 6 wrong -> class 0 at .80
        (2, [0.10, 0.10, 0.80]),  # 7 correct
    ]
    return np.array([r[1] for r in rows]), np.array([r[0] for r in rows])


def test_select_gallery_hand_made():
    probs, labels = _probs()
    sel = select_gallery(probs, labels, k=2)
    np.testing.assert_array_equal(sel["correct"], [[3, 0], [5, -1], [7, -1]])
    np.testing.assert_array_equal(sel["incorrect"], [[2, -1], [6, 4], [-1, -1]])


def test_select_gallery_ties_by_index_and_k_bounds():
    probs = np.array([[0.5, 0.5, 0.0], [0.6, 0.4, 0.0], [0.6, 0.4, 0.0]])
    sel = select_gallery(probs, np.array([0, 0, 0]), k=3)
    np.testing.assert_array_equal(sel["correct"][0], [1, 2, 0])
    with pytest.raises(ValueError):
        select_gallery(probs, np.array([0, 0]), k=3)
    with pytest.raises(ValueError):
        select_gallery(probs, np.array([0, 0, 0]), k=0)


def test_gallery_arrays_hold_the_selected_tiles():
    probs, labels = _probs()
    images = (np.arange(8)[:, None, None, None] * 10 + np.zeros((8, 32, 32, 3))).astype(np.uint8)
    sel = select_gallery(probs, labels, k=2)
    arrays = gallery_arrays(sel, images, probs)
    assert arrays["images"].shape == (3, 4, 32, 32, 3)
    np.testing.assert_array_equal(arrays["indices"][1], [5, -1, 6, 4])
    assert arrays["images"][1, 0, 0, 0, 0] == 50 and arrays["images"][1, 1].max() == 0
    np.testing.assert_array_equal(arrays["pred"][1], [1, -1, 0, 2])
    np.testing.assert_allclose(arrays["prob"][1, [0, 2, 3]], [0.9, 0.8, 0.7])
    assert np.isnan(arrays["prob"][1, 1])

