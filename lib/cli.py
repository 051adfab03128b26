"""Command line: ``python -m lib <command>``.

Each command lives in the module that owns the concept; that module provides
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen command's
module is imported, so one command never depends on another's imports.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lib.errors import ReportError

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("lib.data_cli", "fetch and verify every dataset (CIFAR-10, MovieLens)"),
    "features": ("lib.features", "extract pretrained features and fit the logistic regression (chapter 1)"),
    "finetune": ("lib.finetune", "finetune the pretrained network on CIFAR-10 (chapter 2)"),
    "movies": ("lib.embeddings", "learn movie embeddings, compare optimisers, write results (chapter 3)"),
    "recommend": ("lib.recommend", "print the top-k movies similar to a title from the frozen embeddings"),
    "notebooks": ("lib.notebooks", "export chapters to executed notebooks plus notebooks/submission.ipynb"),
    "bench": ("lib.bench", "benchmark fast paths against baselines (appendix)"),
}


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The two options every command that reads data accepts."""
    parser.add_argument("--data-dir", default=None,
                        help="download/cache directory (env DATA_DIR, default data/)")
    parser.add_argument("--mirror", default=None,
                        help="read-only local copy of the datasets (env DATA_MIRROR)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All commands with their help; only ``command``'s module is imported for its options."""
    parser = argparse.ArgumentParser(prog="python -m lib",
                                     description="Run the report's computations; results go to results/.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(module_name=module_name)
        if name == command:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(args.module_name)
    try:
        return int(module.run(args) or 0)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
