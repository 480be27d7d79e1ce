"""The ``aitune-ci inspect`` command: read a committed ``.ait`` artifact without loading any of it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands", "cmd_inspect"]


def add_subcommands(sub: Any) -> None:
    """Add ``inspect`` to an ``add_subparsers()`` object."""
    p = sub.add_parser(
        "inspect", help="print a .ait artifact's manifest: backend per module, inputs, environment, members"
    )
    p.add_argument("file", metavar="FILE.ait", type=Path, help="the artifact to read (nothing is loaded or extracted)")
    p.add_argument("--json", action="store_true", help="print the validated manifest as JSON. Default: readable text")
    p.add_argument(
        "--no-verify", action="store_true", help="skip streaming every member through sha256. Default: verify"
    )
    p.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print the artifact's validated manifest, as text or JSON."""
    # lazy: the artifact store imports torch, kept off `aitune-ci --help` and the other commands
    from aitune_ci.store.artifact import artifact_sha256, format_manifest, inspect_artifact

    manifest = inspect_artifact(args.file, verify=not args.no_verify)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        print(format_manifest(manifest, sha256=artifact_sha256(args.file), path=args.file))
    return 0
