"""What the book's interactive HTML widgets share: payload encoding and the page fragment.

Why not Observable JS: Quarto's OJS runtime loads module scripts, which Chromium refuses on
``file://``, and Observable's Inputs come from a CDN. Many readers open ``_book/index.html``
from disk and offline, so each widget is one ``<div>`` with a small inline script and style and
its data in a ``<script type="application/json">`` block (binary arrays as base64); the PDF and
the notebooks keep the static tables and figures.
"""
from __future__ import annotations

import base64
import io
import json
import os
import zlib
from pathlib import Path

import numpy as np

STATIC = Path(__file__).with_name("static")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_floats(V: np.ndarray, dtype: str) -> dict:
    """Row-major little-endian float32 or float16, byte planes shuffled (all first bytes, then all
    second bytes, ...) and deflated: lossless, about a third smaller than the raw bytes."""
    raw = np.ascontiguousarray(V, dtype="<f4" if dtype == "float32" else "<f2")
    if dtype == "float16" and not np.array_equal(raw.astype(np.float64), np.asarray(V, dtype=np.float64)):
        raise ValueError("float16 would round these vectors; store them as float32")
    planes = np.frombuffer(raw.tobytes(), dtype=np.uint8).reshape(-1, raw.itemsize).T
    return {"dtype": dtype, "data": b64(zlib.compress(planes.tobytes(), 9))}


def decode(encoded: dict, shape: tuple[int, int]) -> np.ndarray:
    """The float64 values the page computes with (the JavaScript twin is ``decodeSet``)."""
    itemsize = 4 if encoded["dtype"] == "float32" else 2
    planes = np.frombuffer(zlib.decompress(base64.b64decode(encoded["data"])), dtype=np.uint8)
    raw = planes.reshape(itemsize, -1).T.copy().tobytes()
    return np.frombuffer(raw, dtype="<f4" if itemsize == 4 else "<f2").reshape(shape).astype(np.float64)


def binary_bytes(encoded: dict) -> int:
    """Bytes of the binary arrays before base64."""
    return len(base64.b64decode(encoded["data"]))


def png_sprite(tiles: np.ndarray, columns: int = 24) -> tuple[bytes, int]:
    """(N, h, w, 3) uint8 tiles as one PNG grid, row-major; returns (png bytes, columns)."""
    from PIL import Image

    n, h, w, _ = tiles.shape
    rows = max(1, -(-n // columns))
    padded = np.zeros((rows * columns, h, w, 3), dtype=np.uint8)
    padded[:n] = tiles
    sheet = padded.reshape(rows, columns, h, w, 3).swapaxes(1, 2).reshape(rows * h, columns * w, 3)
    buffer = io.BytesIO()
    Image.fromarray(sheet).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue(), columns


def json_text(payload: dict) -> str:
    """Compact JSON that cannot close the ``<script>`` element holding it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def fragment(widget_id: str, body: str, payload: dict, script: str) -> str:
    """One widget: shared style, its markup, its data block and its script (which reads the data)."""
    css = (STATIC / "widgets.css").read_text()
    js = (STATIC / script).read_text()
    # the comment keeps Quarto from turning the widget's <table> into a Markdown table
    return (f'<!--| quarto-html-table-processing: none -->\n<style>{css}</style>\n'
            f'<div class="book-widget" id="{widget_id}" data-widget="{Path(script).stem}">{body}</div>\n'
            f'<script type="application/json" id="{widget_id}-data">{json_text(payload)}</script>\n'
            f'<script>{js}</script>\n')


def rendering_html() -> bool:
    """False only when Quarto is executing the chapter for a non-HTML format (it names the format in
    the file ``QUARTO_EXECUTE_INFO`` points to); True anywhere else."""
    info = os.environ.get("QUARTO_EXECUTE_INFO")
    try:
        identifier = json.loads(Path(info).read_text())["format"]["identifier"]
    except (TypeError, OSError, ValueError, KeyError):
        return True
    return identifier.get("base-format", "html") == "html"


class Html:
    """A widget's raw HTML. A chapter prints it in an ``output: asis`` cell: ``str()`` is a Pandoc raw
    HTML block. (Displayed as a Jupyter ``text/html`` output instead, a script in it makes Quarto add
    require.js and jQuery from a CDN to the page.)"""

    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html

    def __str__(self) -> str:
        if not rendering_html():
            return ""  # the block is HTML-only anyway; keeps the PDF's _freeze/ free of the payload
        if "\n```" in self.html:
            raise ValueError("a widget's HTML must not contain a line starting with ```")
        return f"\n```{{=html}}\n{self.html}\n```\n"
