"""Small helpers chapters use to show results: tables as Markdown, numbers as text."""
from __future__ import annotations

import pandas as pd
from IPython.display import Markdown


def md_table(frame: pd.DataFrame, index: bool = False, floatfmt: str = ".3f") -> Markdown:
    """A pipe table that Quarto turns into a real table in HTML and PDF alike."""
    return Markdown(frame.to_markdown(index=index, floatfmt=floatfmt))


def pct(fraction: float, digits: int = 1) -> str:
    """0.9123 -> '91.2%'."""
    return f"{100 * float(fraction):.{digits}f}%"
