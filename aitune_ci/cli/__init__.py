"""The ``aitune-ci`` command, the shell around the library: every command is a thin handler over it."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from aitune_ci.cli import (
    artifact_commands,
    baseline_pr_command,
    ci_commands,
    compare_command,
    init_command,
    machine_commands,
    report_commands,
    run_command,
)
from aitune_ci.cli.console import console_logging
from aitune_ci.errors import AituneCIError

__all__ = ["build_parser", "main"]

_DESCRIPTION = (
    "Tune PyTorch models across inference backends and guard their speed and accuracy in CI: "
    "run pytest with aitune, render and publish its reports, merge CI shards, compare two runs from "
    "different environments, inspect artifacts, and see what this machine can run."
)


def build_parser() -> argparse.ArgumentParser:
    """The ``aitune-ci`` parser: each subcommand's ``func`` handles it."""
    parser = argparse.ArgumentParser(prog="aitune-ci", description=_DESCRIPTION)
    # Options here must stay flags without a value: split_pytest_args finds the command by that.
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the library's debug messages too. Default: off"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_command.add_subcommands(sub)  # run
    machine_commands.add_subcommands(sub)  # backends, demo
    artifact_commands.add_subcommands(sub)  # inspect
    report_commands.add_subcommands(sub)  # report, comment, merge
    compare_command.add_subcommands(sub)  # compare
    ci_commands.add_subcommands(sub)  # outcome, find-pr
    init_command.add_subcommands(sub)  # init
    baseline_pr_command.add_subcommands(sub)  # baseline-pr
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console entry point: run one command, return its exit status (2 on an aitune-ci error)."""
    own, pytest_args = run_command.split_pytest_args(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(own)
    if args.command == run_command.COMMAND:
        args.pytest_args = pytest_args
    with console_logging(verbose=args.verbose):
        try:
            return int(args.func(args) or 0)
        except AituneCIError as exc:
            print(f"aitune-ci: error: {exc}", file=sys.stderr)
            return 2
