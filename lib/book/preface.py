"""The preface (index.qmd): the headline table and the two facts its note quotes."""
from __future__ import annotations

from types import SimpleNamespace

from IPython.display import Markdown

from lib.book.format import md_table
from lib.book.summary import headline_markdown
from lib.core.artifacts import load_json


def values() -> SimpleNamespace:
    """The backbone behind the CIFAR-10 numbers and the GPU that trained them."""
    return SimpleNamespace(backbone=load_json("features")["backbone"],
                           finetune_device=load_json("finetune")["hardware"]["device_name"])


def headline_table() -> Markdown:
    return md_table(headline_markdown())
