import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from lib.cifar.gallery import gallery_arrays, plot_gallery, select_gallery


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


def test_gallery_arrays_and_plot():
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
    fig = plot_gallery(arrays["images"], arrays["pred"], arrays["prob"], classes=("a", "b", "c"),
                       indices=arrays["indices"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert "b\n0.900" in titles and "a\n0.800" in titles
    assert len([ax for ax in fig.axes if ax.images]) == int((arrays["indices"] >= 0).sum())
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_tile_captions_show_runner_up_for_correct_and_true_class_for_wrong():
    from lib.cifar.gallery import tile_captions

    probs = np.array([[0.97, 0.02, 0.01], [0.10, 0.85, 0.05]])  # image 0: class 0 right; image 1: true 0, said 1
    indices = np.array([[0, 1]])  # one row (true class 0): one correct tile, one wrong tile
    pred = np.array([[0, 1]])
    captions = tile_captions(pred, probs.max(1)[indices], indices, probs, classes=("cat", "dog", "automobile"))
    assert captions == [["2nd: dog\n0.02", "dog 0.85\ntrue: 0.1"]]
    plain = tile_captions(pred, probs.max(1)[indices], indices, None, classes=("cat", "dog", "automobile"))
    assert plain == [["cat\n0.970", "dog\n0.850"]]
