"""The ``aitune-ci report``, ``comment`` and ``merge`` commands: what CI does with the run files pytest wrote."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aitune_ci.atomic import atomic_write_text
from aitune_ci.errors import AituneCIError
from aitune_ci.github import echo_command, publish
from aitune_ci.report import REPORT_FORMATS, render_report, report_suffix
from aitune_ci.report.trends import mark_change_points
from aitune_ci.store.history import append_run_history, current_commit, history_path, read_history
from aitune_ci.store.runs import load_run, merge_runs

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["add_subcommands", "cmd_comment", "cmd_merge", "cmd_report"]

_RUNS_HELP = "run JSON written by `pytest --aitune --aitune-report run.json` (several are merged)"


def _dest(flag: str) -> str:
    """Where argparse keeps a flag's paths (``--benchmark-json`` → ``benchmark_json``)."""
    return flag[2:].replace("-", "_")


_DEFAULT_OUTPUT = (".html", "aitune-report.html")


def add_subcommands(sub: Any) -> None:
    """Add ``report``, ``comment`` and ``merge`` to an ``add_subparsers()`` object."""
    _add_report(sub)
    _add_comment(sub)
    _add_merge(sub)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="render HTML / markdown / pytest-benchmark reports from run JSON")
    p.add_argument("runs", nargs="+", metavar="RUN.json", help=_RUNS_HELP)
    for suffix, fmt in REPORT_FORMATS.items():
        default = "aitune-report.html when no other output is asked for" if suffix == _DEFAULT_OUTPUT[0] else "none"
        p.add_argument(
            fmt.flag,
            action="append",
            metavar="PATH",
            help=f"write the {fmt.description} here (repeatable). Default: {default}",
        )
    p.add_argument(
        "--history",
        action="append",
        metavar="FILE.jsonl",
        help="history file(s) for the trend charts. Default: <aitune-dir>/history/<hardware>.jsonl when it exists",
    )
    p.add_argument(
        "--append-history",
        metavar="DIR",
        default=None,
        help="first append this run to DIR/<hardware>.jsonl (nightly runs). Default: off",
    )
    p.add_argument(
        "--csv", metavar="PATH", default=None, help="export the history (with change points) as CSV. Default: none"
    )
    p.add_argument(
        "--commit",
        metavar="SHA",
        default=None,
        help="commit measured, for the history and reports. Default: $GITHUB_SHA, else git rev-parse HEAD",
    )
    p.add_argument("--aitune-dir", metavar="DIR", default=".aitune", help="where history lives. Default: .aitune")
    p.add_argument(
        "--report-url",
        metavar="URL",
        default=None,
        help="link to the published HTML report, shown in the reports. Default: none",
    )
    p.add_argument(
        "--title", metavar="TEXT", default="aitune-ci report", help="HTML page title. Default: 'aitune-ci report'"
    )
    p.set_defaults(func=cmd_report)


def _add_comment(sub: Any) -> None:
    p = sub.add_parser("comment", help="post the PR comment, step summary, step outputs and annotations for run JSON")
    p.add_argument("runs", nargs="+", metavar="RUN.json", help=_RUNS_HELP)
    p.add_argument(
        "--report-url",
        metavar="URL",
        default=None,
        help="link to the HTML report artifact, shown in the comment. Default: none",
    )
    p.add_argument(
        "--report-file",
        action="append",
        metavar="PATH",
        help="a report already written; its path becomes the step output report-<kind> (repeatable). Default: none",
    )
    p.add_argument(
        "--no-comment",
        action="store_true",
        help="only annotations, step summary and outputs; do not post the PR comment. Default: post it",
    )
    p.add_argument(
        "--fail-on-error",
        action="store_true",
        help="exit 1 when the comment cannot be posted. Default: warn and exit 0",
    )
    p.add_argument(
        "--bot-login",
        metavar="LOGIN",
        default=None,
        help="the login the token comments as: only this author's comments with the marker are ever updated "
        "(a GitHub App's installation token: '<app-slug>[bot]'). Default: the token's user from GET /user, "
        "else github-actions[bot]",
    )
    p.set_defaults(func=cmd_comment)


def _add_merge(sub: Any) -> None:
    p = sub.add_parser("merge", help="merge the run JSON of CI shards (--aitune-shard i/n) into one")
    p.add_argument("runs", nargs="+", metavar="SHARD.json", help="run JSON of each shard")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="merged run JSON to write (required)")
    p.add_argument(
        "--allow-missing-shards",
        action="store_true",
        help="merge the shards there are when some of their split are missing (listed in the merged run's "
        "missing_shards); without it a missing shard is an error. Default: off",
    )
    p.set_defaults(func=cmd_merge)


def cmd_report(args: argparse.Namespace) -> int:
    """Render the HTML / markdown / benchmark reports of run files; append and chart the history."""
    run = _load_runs(args.runs)
    commit = args.commit or current_commit()
    if args.append_history:
        for path, lines in append_run_history(args.append_history, run, commit).items():
            print(
                f"appended {lines} line(s) to {path}" if lines else f"{path} holds this run already: nothing appended"
            )
    options = {"history": _history(args, run), "title": args.title, "report_url": args.report_url, "commit": commit}
    asked = {suffix: getattr(args, _dest(fmt.flag)) or [] for suffix, fmt in REPORT_FORMATS.items()}
    if not any(asked.values()):
        suffix, path = _DEFAULT_OUTPUT
        asked[suffix] = [path]
    for suffix, fmt in REPORT_FORMATS.items():
        for path in asked[suffix]:
            atomic_write_text(path, render_report(run, suffix, **{k: options[k] for k in fmt.keywords}))
            print(f"wrote {path}")
    return 0


def cmd_comment(args: argparse.Namespace) -> int:
    """Annotations, step summary and outputs, and the PR comment (upserted) of run files."""
    run = _load_runs(args.runs)
    reports = {REPORT_FORMATS[report_suffix(p)].name: p for p in args.report_file or []}
    return publish(
        run,
        report_url=args.report_url,
        reports=reports,
        comment=not args.no_comment,
        fail_on_error=args.fail_on_error,
        bot_login=args.bot_login,
        echo=echo_command,
    )


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge shard run files into one run file."""
    output = Path(args.output)
    if output.suffix.lower() != ".json":
        raise AituneCIError(f"merge writes a run JSON: name the output *.json, got {args.output}")
    if any(Path(p).resolve() == output.resolve() for p in args.runs):
        raise AituneCIError(f"-o {args.output} is one of the runs to merge: write the merged run to a new file")
    runs = [load_run(p) for p in args.runs]
    run = merge_runs(runs, sources=args.runs, allow_missing_shards=args.allow_missing_shards)
    atomic_write_text(args.output, json.dumps(run, indent=2, sort_keys=True) + "\n")
    print(
        f"merged {len(args.runs)} run file(s): {len(run['results'])} fixtures, {len(run['verdicts'])} checks -> {args.output}"
    )
    if run.get("missing_shards"):
        print(
            f"aitune-ci merge: shards {run['missing_shards']} are missing; their checks are not in {args.output}",
            file=sys.stderr,
        )
    return 0


def _load_runs(paths: list[str]) -> dict[str, Any]:
    runs = [load_run(p) for p in paths]
    return runs[0] if len(runs) == 1 else merge_runs(runs, sources=paths)


def _history(args: argparse.Namespace, run: dict[str, Any]) -> pd.DataFrame | None:
    """The history for the trend charts (with change points marked), exported as CSV when asked; None without one."""
    files = list(args.history or []) or _default_history_files(args, run)
    if not files:
        if args.csv:
            print(
                "aitune-ci report: no history file found, so no CSV was written (pass --history FILE)", file=sys.stderr
            )
        return None
    # lazy: pandas comes with the optional [report] extra, needed only when there is a history
    import pandas as pd

    frames = [read_history(p) for p in files]
    history = mark_change_points(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])
    if args.csv:
        history.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    return history


def _default_history_files(args: argparse.Namespace, run: dict[str, Any]) -> list[str]:
    """The history of each machine in ``run`` that exists: where ``--append-history`` writes, else in the aitune dir."""
    directory = Path(args.append_history) if args.append_history else Path(args.aitune_dir) / "history"
    keys = [r.get("environment", {}).get("hardware_key") for r in run.get("results", ())]
    found = []
    for key in dict.fromkeys(k for k in keys if isinstance(k, str) and k):
        with contextlib.suppress(ValueError):  # a key no history file can be named after has none
            if (path := history_path(directory, key)).is_file():
                found.append(str(path))
    return found
