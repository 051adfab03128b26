"""Small helpers chapters use to show results: tables as Markdown, numbers as text."""
from __future__ import annotations

import re
from dataclasses import make_dataclass

import pandas as pd
from IPython.display import Markdown

TABLE_WIDTH_UNITS = 100


def text_values(name: str, names: str, **other_types: type) -> type:
    """A frozen dataclass of the values a chapter's prose quotes, each the text it prints (``str``
    unless ``other_types`` says otherwise): prose reads ``v.name`` and does no arithmetic."""
    return make_dataclass(name, [(n, other_types.get(n, str)) for n in names.split()], frozen=True)


def column_shares(frame: pd.DataFrame, index: bool = False) -> list[float]:
    """Relative column widths that leave every column room for its longest unbreakable word.

    Pandoc sizes a wide pipe table's columns by the dashes under its header; tabulate draws as
    many as the longest cell, so a column of long prose starves a column of long file names and
    the PDF prints one over the other. Each column first gets its longest word, then the rest is
    shared in proportion to how much more its longest cell needs.
    """
    table = frame.reset_index() if index else frame
    cells = [[str(c)] + [str(v) for v in table[c]] for c in table.columns]
    padding = 3  # a cell's inset, in characters
    need = [max(max((len(w) for w in re.split(r"\s+", s) if w), default=1) for s in col) + padding
            for col in cells]
    want = [max(len(s) for s in col) + padding for col in cells]
    spare = max(TABLE_WIDTH_UNITS - sum(need), 0)
    extra = [w - n for w, n in zip(want, need)]
    total_extra = sum(extra) or 1
    return [n + spare * e / total_extra for n, e in zip(need, extra)]


def md_table(frame: pd.DataFrame, index: bool = False, floatfmt: str = ".3f", **options) -> Markdown:
    """A pipe table that Quarto turns into a real table in HTML and PDF alike (widths: column_shares).
    ``options`` go to ``DataFrame.to_markdown`` (e.g. ``disable_numparse=True`` keeps preformatted numbers)."""
    lines = frame.to_markdown(index=index, floatfmt=floatfmt, **options).splitlines()
    rule = []
    for separator, share in zip(lines[1].strip("|").split("|"), column_shares(frame, index=index)):
        align = separator.strip()  # tabulate marks alignment with colons: ":---", "---:"
        rule.append(align[0].strip("-") + "-" * max(3, round(share)) + align[-1].strip("-"))
    lines[1] = "|" + "|".join(rule) + "|"
    return Markdown("\n".join(lines))


def and_join(items: list[str]) -> str:
    """Items as a sentence lists them: ["a", "b", "c"] -> "a, b and c"."""
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)


def minutes(seconds: float) -> str:
    """A duration as readers say it: '4.1 min', or '15 s' under a minute (never '0 min')."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def power_of_ten(value: float, digits: int = 1) -> str:
    """1.2e-06 -> '1.2 × 10⁻⁶' and 1e-07 -> '10⁻⁷': readers' notation, not Python's. Unicode, not TeX:
    inline values reach the page as plain text (backslashes and braces would be printed)."""
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    power = "10" + str(int(exponent)).translate(SUPERSCRIPTS)
    return power if float(mantissa) == 1.0 else f"{mantissa} × {power}"


SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def pct(fraction: float, digits: int = 1) -> str:
    """0.9123 -> '91.2%'."""
    return f"{100 * float(fraction):.{digits}f}%"


class TeX(str):
    """A value quoted inside $…$. Quarto escapes an inline str's Markdown characters (0.1 becomes
    0\\.1, which TeX reads as an accent); Markdown output it leaves as is. Still a str everywhere else."""

    def _repr_markdown_(self) -> str:
        return str(self)
