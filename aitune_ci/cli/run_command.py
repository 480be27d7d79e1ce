"""The ``aitune-ci run`` command: pytest with aitune on, for a CI step that needs only one command."""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from typing import Any, Sequence

__all__ = ["add_subcommands", "cmd_run", "split_pytest_args"]

log = logging.getLogger(__name__)

COMMAND = "run"


def add_subcommands(sub: Any) -> None:
    """Add ``run`` to an ``add_subparsers()`` object; its arguments are taken by :func:`split_pytest_args`."""
    p = sub.add_parser(
        COMMAND,
        help="run pytest with --aitune in this directory; every argument after `run` goes to pytest",
        description="Runs `python -m pytest --aitune [PYTEST_ARGS...]` with this Python; exits with pytest's status.",
        usage="aitune-ci run [PYTEST_ARGS...]",
        add_help=False,  # `aitune-ci run --help` is pytest's help, which lists the --aitune-* options
    )
    p.set_defaults(func=cmd_run, pytest_args=[])


def split_pytest_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(the CLI's own arguments, pytest's)``: everything after ``run`` belongs to pytest, untouched.

    argparse would read pytest's options (``-k``, ``-x``, ``--help``) as its own, so they are cut
    off first. The options before a command are flags that take no value, so the command is the
    first argument that is not an option.
    """
    argv = list(argv)
    command = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if command is None or argv[command] != COMMAND:
        return argv, []
    return argv[: command + 1], argv[command + 1 :]


def cmd_run(args: argparse.Namespace) -> int:
    """Run pytest with ``--aitune`` in a child Python (exactly ``python -m pytest``); return its exit status."""
    command = [sys.executable, "-m", "pytest", "--aitune", *args.pytest_args]
    if any(a in ("-h", "--help") for a in args.pytest_args):
        print(
            "aitune-ci run [PYTEST ARGS]: runs `pytest --aitune PYTEST ARGS` here. pytest's help follows; "
            "aitune-ci's own options are in its 'aitune' section.\n",
            flush=True,
        )
    log.debug("aitune-ci run: %s", shlex.join(command))
    with subprocess.Popen(command) as pytest:
        try:
            status = pytest.wait()
        except KeyboardInterrupt:
            # The terminal sent Ctrl-C to pytest too: let it stop cleanly and report what ran.
            status = pytest.wait()
    return status if status >= 0 else 128 - status  # killed by signal N: the shell's 128 + N
