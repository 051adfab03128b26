"""``python -m lib data``: fetch and verify every dataset, then print a summary table."""
from __future__ import annotations

import argparse

import pandas as pd

from lib.core.data import DataDirs, fetch_all, add_data_arguments as add_arguments


def run(args: argparse.Namespace) -> int:
    rows = fetch_all(DataDirs.resolve(args.data_dir, args.mirror))
    table = pd.DataFrame(rows)[["dataset", "source", "size_mb", "verified"]]
    table["size_mb"] = table["size_mb"].map(lambda v: f"{v:,.1f} MB")
    print(table.rename(columns={"size_mb": "size"}).to_string(index=False))
    if args.mirror:
        # The mirror is read in place, not copied into data/: later commands must be told again.
        print(f"note: later commands read this mirror only when told again: pass --mirror {args.mirror} "
              f"or export DATA_MIRROR={args.mirror}")
    return 0
