"""The preface (index.qmd): the headline table and the facts its note quotes."""
from __future__ import annotations

from types import SimpleNamespace

from IPython.display import Markdown

from lib.book.format import md_table
from lib.book.summary import FINETUNE, GPU_FINETUNE, PROBE, headline_markdown
from lib.core.artifacts import load_json


def values() -> SimpleNamespace:
    """The backbone behind the CIFAR-10 answers, the CPU they ran on, and the lent GPU of the extra row."""
    probe, finetune = load_json(PROBE), load_json(FINETUNE)
    return SimpleNamespace(backbone=probe["backbone"], cpu=probe["provenance"]["hardware"]["cpu"],
                           cpu_cores=probe["provenance"]["hardware"]["cpu_count"],
                           stages=finetune["recipe"]["trainable_stages"],
                           gpu_device=load_json(GPU_FINETUNE)["hardware"]["device_name"])


def headline_table() -> Markdown:
    return md_table(headline_markdown())
