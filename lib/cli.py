"""Command line: ``python -m lib <command>``.

Each command lives in the module that owns the concept; that module provides
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only
when their command runs (``--help`` imports them too, to list their options).
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            command.set_defaults(module=None, module_name=module_name)
            continue
        module.add_arguments(command)
        command.set_defaults(module=module, module_name=module_name)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.module is None:
        print(f"'{args.command}' is not implemented yet ({args.module_name} missing)", file=sys.stderr)
        return 2
    try:
        return int(args.module.run(args) or 0)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
