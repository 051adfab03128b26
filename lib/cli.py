"""Command line: ``python -m lib <command>``.

Each package registers its commands in its ``__init__`` (``COMMANDS``); each command lives
in the module that owns the concept; that module provides
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen command's
module is imported, so one command never depends on another's imports.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from lib.core import provenance
from lib.core.errors import ReportError
from lib.core.paths import RESULTS_DIR

PACKAGES = ("lib.core", "lib.cifar", "lib.movies", "lib.book", "lib.bench", "lib.verify", "lib.reproduce")


# Each package's ``COMMANDS`` (name -> (module, help)); package ``__init__``s import nothing heavy.
COMMANDS: dict[str, tuple[str, str]] = {name: entry for package in PACKAGES
                                        for name, entry in importlib.import_module(package).COMMANDS.items()}
# Commands that write no artifact; every other command does, and is guarded against dirty trees.
READ_ONLY_COMMANDS = frozenset({"data", "recommend", "notebooks", "verify"})


def writes_committed_artifacts(args: argparse.Namespace) -> bool:
    """Whether this run writes into the repository's results/ (the artifacts the book shows)."""
    if args.command in READ_ONLY_COMMANDS:
        return False
    decides = getattr(importlib.import_module(args.module_name), "writes_results", None)
    if decides is not None:  # a command whose target is not a --results-dir says itself
        return bool(decides(args))
    target = getattr(args, "results_dir", None)
    return target is None or Path(target).resolve() == RESULTS_DIR.resolve()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """All commands with their help; only ``command``'s module is imported for its options.
    ``parser.command_parsers`` maps each command to its own parser (for its usage in errors)."""
    parser = argparse.ArgumentParser(prog="python -m lib",
                                     description="Run the report's computations; results go to results/.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.command_parsers = {}
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(module_name=module_name)
        parser.command_parsers[name] = command_parser
        if name not in READ_ONLY_COMMANDS:
            command_parser.add_argument(
                "--allow-dirty", action="store_true",
                help="run even though code has uncommitted changes (recorded, with their hash, in provenance)")
        if name == command:
            importlib.import_module(module_name).add_arguments(command_parser)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments; an unknown option is reported with its command's usage, not the top level's."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.command_parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def missing_dependency(exc: ModuleNotFoundError) -> str | None:
    """One line for a third-party package this Python lacks (None for a missing module of lib itself)."""
    if not exc.name or exc.name.partition(".")[0] == "lib":
        return None
    return (f"error: {sys.executable} has no {exc.name!r}: run the project's environment, "
            "'. .venv/bin/activate' or '.venv/bin/python -m lib ...' ('make test' creates .venv)")


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(list(sys.argv[1:] if argv is None else argv))
    except ModuleNotFoundError as exc:
        message = missing_dependency(exc)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader stopped early (`| head`): no traceback, and none at exit when stdout is flushed.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str]) -> int:
    from lib.core import distributed  # torch: inside main's check for a Python without the dependencies

    args = parse(argv)
    module = importlib.import_module(args.module_name)
    try:
        provenance.set_allow_dirty(getattr(args, "allow_dirty", False))
        start = provenance.record_start()
        if writes_committed_artifacts(args):
            provenance.require_clean_tree(start)
        with distributed.session(getattr(module, "RUNS_UNDER_TORCHRUN", False), args.command):
            return int(module.run(args) or 0)
    except ReportError as exc:
        print(f"error: {distributed.rank_label()}{exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
