"""The preface (index.qmd): the headline table and the facts its note quotes."""
from __future__ import annotations


from IPython.display import Markdown

from lib.book.format import md_table, text_values
from lib.book.summary import FINETUNE, GPU_FINETUNE, PROBE, headline
from lib.core.artifacts import load_json


# What the preface's note quotes, as printed.
PrefaceValues = text_values("PrefaceValues", (
    "backbone cpu cpu_cores stages gpu_device"
))


def values() -> PrefaceValues:
    """The backbone behind the CIFAR-10 answers, the CPU they ran on, and the lent GPU of the extra row."""
    probe, finetune = load_json(PROBE), load_json(FINETUNE)
    hardware = probe["provenance"]["hardware"]
    return PrefaceValues(backbone=probe["backbone"], cpu=hardware["cpu"], cpu_cores=str(hardware["cpu_count"]),
                         stages=str(finetune["recipe"]["trainable_stages"]),
                         gpu_device=load_json(GPU_FINETUNE)["hardware"]["device_name"])


def headline_table() -> Markdown:
    """The table as shown: question, answer, section reference."""
    return md_table(headline()[["question", "answer", "section"]].rename(columns={"section": "details"}))
