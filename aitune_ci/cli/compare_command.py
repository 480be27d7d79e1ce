"""The ``aitune-ci compare`` command: two run files from two environments, side by side."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from aitune_ci.atomic import atomic_write_text
from aitune_ci.compare import COMPARISON_KIND, CompareSettings, compare_runs, describe
from aitune_ci.errors import DataFileError
from aitune_ci.report.compare import comparison_suffix, render_comparison, render_comparison_text
from aitune_ci.store.runs import load_run

__all__ = ["EXIT_DRIFT", "add_subcommands", "cmd_compare", "load_compared_run"]

#: Exit status of ``--fail-on-drift`` when a backend got slower relative to eager, now fails, or lost accuracy.
EXIT_DRIFT = 1

_FIX = "pass the run JSON written by `pytest --aitune --aitune-report run.json` in each environment"
_DEFAULTS = CompareSettings()

_DESCRIPTION = f"""\
Compare two run JSONs, each written by `pytest --aitune --aitune-report run.json` in one
environment (e.g. before and after a torch, CUDA or driver upgrade), fixture by fixture and
backend by backend:

  eager drift         eager's median NEW / OLD: the framework or the machine got faster or
                      slower for every backend alike. It spans two processes, so their own
                      speed offsets are part of it (--run-noise).
  backend drift       (backend / eager) in NEW over the same in OLD. Within one run the
                      backends are timed in the same interleaved rounds, so what moved the
                      whole process cancels: a backend that only followed eager shows none.
  compile-time drift  build seconds NEW / OLD (one build per side, so no CI).

A change whose 95% CI includes 0 is "within noise"; one beyond the noise but inside the
threshold is "under threshold"; only the rest is "slower" or "faster". Also shown: accuracy
moves (SQNR, cosine), backends that now fail, appeared, disappeared or became unavailable,
winner changes, and every environment field that differs. Runs from different hardware are
compared, with a warning that the hardware is part of every ratio.

Exit status: 0; with --fail-on-drift, {EXIT_DRIFT} when a backend got slower relative to eager,
now fails, or lost accuracy;
2 when an input cannot be read (missing, corrupt, not a run file, unknown schema_version)."""


def add_subcommands(sub: Any) -> None:
    """Add ``compare`` to an ``add_subparsers()`` object."""
    p = sub.add_parser(
        "compare",
        help="compare two run JSONs from different environments (torch, CUDA, driver upgrades): eager, backend "
        "and compile-time drift, accuracy and availability changes",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: aitune-ci compare torch-2.12.json torch-2.13.json -o compare.md -o compare.html",
    )
    p.add_argument("old", metavar="OLD.json", help="run JSON of the old environment (the reference)")
    p.add_argument("new", metavar="NEW.json", help="run JSON of the new environment")
    p.add_argument(
        "-o",
        "--output",
        action="append",
        metavar="PATH",
        type=_output_path,
        help="also write the comparison here, as markdown (.md), a self-contained HTML page (.html) or JSON "
        "(.json), by suffix (repeatable). Default: the table on the terminal only",
    )
    p.add_argument(
        "--threshold",
        type=_fraction,
        metavar="FRACTION",
        default=_DEFAULTS.threshold,
        help=f"relative latency change that counts as eager or backend drift once beyond the noise. "
        f"Default: {_DEFAULTS.threshold:g} ({_DEFAULTS.threshold * 100:g}%%)",
    )
    p.add_argument(
        "--build-threshold",
        type=_fraction,
        metavar="FRACTION",
        default=_DEFAULTS.build_threshold,
        help=f"relative build-time change that counts as compile-time drift (one build per side has no CI). "
        f"Default: {_DEFAULTS.build_threshold:g} ({_DEFAULTS.build_threshold * 100:g}%%)",
    )
    p.add_argument(
        "--min-build-change",
        type=_fraction,
        metavar="SECONDS",
        default=_DEFAULTS.min_build_change_s,
        help=f"build-time changes smaller than this never count. Default: {_DEFAULTS.min_build_change_s:g} s",
    )
    p.add_argument(
        "--run-noise",
        type=_fraction,
        metavar="FRACTION",
        default=_DEFAULTS.run_noise,
        help="how far one process's speed can sit off, added to each side of the eager drift (it compares two "
        "processes; backend drift cancels it). Fresh processes of unchanged code sat 25-45%% apart on an H200 and "
        "a 2-core CPU: from one run per side, only a large eager drift is told from that. Lower it for a machine "
        f"whose process spread you measured. Default: {_DEFAULTS.run_noise:g}",
    )
    p.add_argument(
        "--sqnr-drop",
        type=_fraction,
        metavar="DB",
        default=_DEFAULTS.sqnr_drop_db,
        help=f"an SQNR drop larger than this many dB is an accuracy drop. Default: {_DEFAULTS.sqnr_drop_db:g}",
    )
    p.add_argument(
        "--fail-on-drift",
        action="store_true",
        help=f"exit {EXIT_DRIFT} when a backend got slower relative to eager beyond noise and threshold, "
        "now fails, or lost accuracy (SQNR drop). "
        "Default: exit 0 whatever the comparison shows",
    )
    p.add_argument(
        "--title",
        metavar="TEXT",
        default="aitune-ci compare",
        help="title of the markdown and HTML. Default: 'aitune-ci compare'",
    )
    p.set_defaults(func=cmd_compare)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 such as 0.05, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 such as 0.05, got {text!r}")
    return value


def _output_path(text: str) -> str:
    try:
        comparison_suffix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _what_else(path: Path) -> str | None:
    """What a JSON file that is not a run file looks like, for the error; None when it is no clue."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    if data.get("kind") == COMPARISON_KIND:
        return "the output of `aitune-ci compare`"
    if isinstance(data.get("fixture"), str) and isinstance(data.get("backends"), dict):
        return "a committed baseline (.aitune/baselines/...)"
    if "results" not in data and not ("backends" in data and "name" in data):
        return f"a JSON object with no 'results' (keys: {', '.join(sorted(map(str, data))[:8]) or 'none'})"
    return None


def load_compared_run(path: str) -> dict[str, Any]:
    """``load_run`` with a clearer error for a JSON file that is some other aitune-ci file.

    Raises:
        DataFileError: missing, corrupt, of an unknown schema_version, or not a run file; the
            message names the file and the command that writes the right one.
    """
    try:
        return load_run(path)
    except DataFileError:
        other = _what_else(Path(path))
        if other is not None:
            raise DataFileError(path, f"not an aitune-ci run file: it looks like {other}", _FIX) from None
        raise


def cmd_compare(args: argparse.Namespace) -> int:
    """Compare the two run files; print the table, write the outputs, return the exit status."""
    settings = CompareSettings(
        threshold=args.threshold,
        build_threshold=args.build_threshold,
        min_build_change_s=args.min_build_change,
        run_noise=args.run_noise,
        sqnr_drop_db=args.sqnr_drop,
    )
    old, new = load_compared_run(args.old), load_compared_run(args.new)
    comparison = compare_runs(old, new, settings, old_label=args.old, new_label=args.new)
    print(render_comparison_text(comparison), end="")
    for path in args.output or []:
        atomic_write_text(path, render_comparison(comparison, path, title=args.title))
        print(f"wrote {path}")
    drifts, breakages = comparison.backend_drifts, comparison.breakages
    if args.fail_on_drift and (drifts or breakages):
        for row in drifts:
            print(f"aitune-ci compare: backend drift: {row.check} {describe(row.relative)}")  # type: ignore[arg-type]
        for row, event in breakages:
            print(f"aitune-ci compare: {event.kind}: {row.check}: {event.text}")
        return EXIT_DRIFT
    return 0
