"""CIFAR-10 artifacts re-derived from the committed test probabilities and the verified labels."""
from __future__ import annotations

import numpy as np

from lib.cifar.gallery import gallery_arrays, select_gallery
from lib.cifar.metrics import accuracy_ci, confusion_matrix, per_class_accuracy
from lib.core.stats import mcnemar
from lib.core.artifacts import load_array, load_arrays, load_json, results_path
from lib.core.data import CifarSplit
from lib.verify.checks import Check, close, equal

CLASSIFIERS = ("features", "features_cpu_onnx", "finetune", "finetune_cpu", "finetune_cpu_partial",
               "finetune_cpu_partial_short")
# The book's answers (chapter 1's probe, chapter 2's finetune): both re-derivable on a 2-core CPU.
ANSWER_PAIR = ("features_cpu_onnx", "finetune_cpu_partial_short")


def classifier_checks(name: str, test: CifarSplit) -> list[Check]:
    """Accuracy, its Wilson interval, per-class accuracy, confusion matrix and the gallery."""
    doc = load_json(name)
    probs = load_array(f"{name}_test_probs.npy")
    labels = np.asarray(test.labels)
    pred = probs.argmax(axis=1)
    acc, lo, hi = accuracy_ci(pred == labels)
    ci = tuple(doc["test_ci95"]) if "test_ci95" in doc else (doc["test_ci_low"], doc["test_ci_high"])
    checks = [close(name, "test accuracy", doc["test_accuracy"], acc, rel=1e-12),
              close(name, "95% Wilson interval", ci, (lo, hi), rel=1e-9),
              close(name, "per-class accuracy", list(doc["per_class_accuracy"].values())
                    if isinstance(doc["per_class_accuracy"], dict) else doc["per_class_accuracy"],
                    per_class_accuracy(labels, pred), rel=1e-12)]
    if "confusion_matrix" in doc:
        checks.append(equal(name, "confusion matrix", np.asarray(doc["confusion_matrix"]),
                            confusion_matrix(labels, pred)))
    labels_file = results_path(f"{name}_test_labels.npy")
    if labels_file.exists():
        checks.append(equal(name, "stored test labels = verified CIFAR-10 labels", load_array(labels_file.name),
                            labels))
    return checks + gallery_checks(name, probs, test)


def gallery_checks(name: str, probs: np.ndarray, test: CifarSplit) -> list[Check]:
    """The stored gallery is the selection rule applied to the committed probabilities, pixel for pixel."""
    stored = load_arrays(f"{name}_gallery.npz")
    k = stored["indices"].shape[1] // 2
    expected = gallery_arrays(select_gallery(probs, test.labels, k), test.images, probs)
    return [equal(name, "gallery: selected test images", stored["indices"], expected["indices"]),
            equal(name, "gallery: pixels", stored["images"], expected["images"]),
            close(name, "gallery: shown probabilities", stored["prob"], expected["prob"], rel=1e-12)]


def mcnemar_checks(test: CifarSplit, shown: dict) -> list[Check]:
    """The book's paired comparison (its probe against its finetune), recounted from the probabilities."""
    probe, finetune = (load_array(f"{n}_test_probs.npy").argmax(axis=1) == np.asarray(test.labels)
                       for n in ANSWER_PAIR)
    result = mcnemar(probe, finetune)
    return [equal(ANSWER_PAIR[1], "McNemar: probe wrong -> finetune right", shown["b_only"], result.b_only),
            equal(ANSWER_PAIR[1], "McNemar: probe right -> finetune wrong", shown["a_only"], result.a_only)]
