"""Chapters 1-2's prediction gallery browser (HTML only): choose a model and a class, see the
most confident correct and wrong test images.

Everything comes from ``results/gallery_sprites.npz`` (``python -m lib gallery-sprites``): the
selection made by ``lib.cifar.gallery.select_gallery`` from each model's frozen probabilities,
and the pixels of the selected test images, embedded as one PNG sprite sheet.
"""
from __future__ import annotations

import base64

import numpy as np

from lib.book import widgets
from lib.core.artifacts import load_arrays, load_json
from lib.core.data import CIFAR_CLASSES

SPRITES_FILE = "gallery_sprites.npz"


def payload(default_model: str = "features_cpu_onnx") -> dict:
    arrays = load_arrays(SPRITES_FILE)
    labels = load_json("gallery_sprites")["models"]
    models = [str(m) for m in arrays["models"]]
    png, columns = widgets.png_sprite(arrays["pixels"])
    return {
        "classes": list(CIFAR_CLASSES),
        "models": [{"name": m, "label": labels.get(m, m)} for m in models],
        "k": int(arrays["correct"].shape[2]),
        "defaultModel": models.index(default_model) if default_model in models else 0,
        "defaultClass": CIFAR_CLASSES.index("cat"),
        "sprite": widgets.b64(png), "columns": columns, "tile": int(arrays["pixels"].shape[1]),
        "testIndex": arrays["test_index"].tolist(),
        "correct": arrays["correct"].tolist(), "incorrect": arrays["incorrect"].tolist(),
        "pred": arrays["pred"].tolist(),
        "prob": np.round(arrays["prob"], 4).tolist(),
    }


def payload_bytes(data: dict) -> dict:
    return {"sprite_png": len(base64.b64decode(data["sprite"])),
            "embedded": len(widgets.json_text(data).encode())}


BODY = """
<div class="book-widget-figure">
<p class="bw-caption"><strong>Interactive gallery</strong> (HTML version only): choose a model and a
true class to see its most confident correct predictions and its most confident mistakes on the
test set, selected by the same rule as the static galleries; captions give the predicted class and
its probability.</p>
<div class="bw-controls">
  <label>Model <select class="bw-model"></select></label>
  <label>True class <select class="bw-class"></select></label>
  <label>Images <select class="bw-count"><option>5</option><option selected>10</option></select></label>
</div>
<div class="bw-gallery">
  <div class="bw-side correct"><h4>correct: most confident</h4><div class="bw-tiles bw-correct"></div></div>
  <div class="bw-side wrong"><h4>misclassified: most confident wrong class</h4>
    <div class="bw-tiles bw-incorrect"></div></div>
</div>
</div>"""


def browser(default_model: str) -> widgets.Html:
    """The widget for a chapter (display it inside an HTML-only div)."""
    return widgets.Html(widgets.fragment("gallery-browser", BODY, payload(default_model), "gallery_browser.js"))
