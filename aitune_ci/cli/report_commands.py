"""The ``aitune-ci report``, ``comment`` and ``merge`` subcommands (argparse wiring + thin handlers).

``aitune_ci.cli`` calls ``add_subcommands(sub)``; each handler loads run files, calls the library
and prints one line per file written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_subcommands", "cmd_comment", "cmd_merge", "cmd_report"]


def _load(paths: list[str]) -> dict[str, Any]:
    from aitune_ci.store.runs import load_run, merge_runs

    runs = [load_run(p) for p in paths]
    return runs[0] if len(runs) == 1 else merge_runs(runs, sources=paths)


def _hardware_keys(run: dict[str, Any]) -> list[str]:
    keys = [r.get("environment", {}).get("hardware_key") for r in run.get("results", ())]
    return [k for k in dict.fromkeys(keys) if isinstance(k, str) and k]


def cmd_report(args: argparse.Namespace) -> int:
    """Render the HTML / markdown / benchmark reports of run files; append and chart the history."""
    from aitune_ci.atomic import atomic_write_text
    from aitune_ci.report import render_report

    run = _load(args.runs)
    from aitune_ci.store.history import append_run_history, current_commit

    commit = args.commit or current_commit()
    if args.append_history:
        for path in append_run_history(args.append_history, run, commit):
            print(f"appended to {path}")
    history = None
    history_files = list(args.history or [])
    if not history_files:
        base = Path(args.append_history) if args.append_history else Path(args.aitune_dir) / "history"
        history_files = [str(p) for k in _hardware_keys(run) if (p := base / f"{k}.jsonl").is_file()]
    if history_files:
        import pandas as pd

        from aitune_ci.store.history import mark_change_points, read_history

        frames = [read_history(p) for p in history_files]
        history = mark_change_points(pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0])
        if args.csv:
            history.to_csv(args.csv, index=False)
            print(f"wrote {args.csv}")
    elif args.csv:
        print("aitune-ci report: no history file found, so no CSV was written (pass --history FILE)", file=sys.stderr)
    outputs = {
        ".html": args.html or ([] if (args.markdown or args.benchmark_json or args.json) else ["aitune-report.html"]),
        ".md": args.markdown or [],
        ".benchmark.json": args.benchmark_json or [],
        ".json": args.json or [],
    }
    html = {"history": history, "title": args.title, "report_url": args.report_url, "commit": commit}
    for kind, options in (
        (".html", html),
        (".md", {"report_url": args.report_url}),
        (".benchmark.json", {"commit": commit}),
        (".json", {}),
    ):
        for path in outputs[kind]:
            atomic_write_text(path, render_report(run, kind, **options))
            print(f"wrote {path}")
    return 0


def cmd_comment(args: argparse.Namespace) -> int:
    """Annotations, step summary and outputs, and the PR comment (upserted) of run files."""
    from aitune_ci.github import publish
    from aitune_ci.report import report_suffix

    run = _load(args.runs)
    kinds = {".html": "html", ".md": "markdown", ".json": "json", ".benchmark.json": "benchmark"}
    reports = {kinds[report_suffix(p)]: p for p in args.report_file or []}
    return publish(
        run,
        report_url=args.report_url,
        reports=reports,
        comment=not args.no_comment,
        fail_on_error=args.fail_on_error,
    )


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge shard run files into one run file."""
    import json

    from aitune_ci.atomic import atomic_write_text

    run = _load(args.runs)
    atomic_write_text(args.output, json.dumps(run, indent=2, sort_keys=True) + "\n")
    print(
        f"merged {len(args.runs)} run file(s): {len(run['results'])} fixtures, {len(run['verdicts'])} checks -> {args.output}"
    )
    return 0


def add_subcommands(sub: Any) -> None:
    """Add ``report``, ``comment`` and ``merge`` to an ``add_subparsers()`` object."""
    runs_help = "run JSON written by `pytest --aitune --aitune-report run.json` (several are merged)"

    p = sub.add_parser("report", help="render HTML / markdown / pytest-benchmark reports from run JSON")
    p.add_argument("runs", nargs="+", metavar="RUN.json", help=runs_help)
    p.add_argument(
        "--html",
        action="append",
        metavar="PATH",
        help="write the HTML report here (repeatable). Default: aitune-report.html when no other output is asked for",
    )
    p.add_argument(
        "--markdown",
        action="append",
        metavar="PATH",
        help="write the markdown summary here (repeatable). Default: none",
    )
    p.add_argument(
        "--benchmark-json",
        action="append",
        metavar="PATH",
        help="write pytest-benchmark JSON here, for `pytest-benchmark compare` or github-action-benchmark (repeatable). Default: none",
    )
    p.add_argument(
        "--json", action="append", metavar="PATH", help="write the (merged) run JSON here (repeatable). Default: none"
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

    p = sub.add_parser("comment", help="post the PR comment, step summary, step outputs and annotations for run JSON")
    p.add_argument("runs", nargs="+", metavar="RUN.json", help=runs_help)
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
    p.set_defaults(func=cmd_comment)

    p = sub.add_parser("merge", help="merge the run JSON of CI shards (--aitune-shard i/n) into one")
    p.add_argument("runs", nargs="+", metavar="SHARD.json", help="run JSON of each shard")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="merged run JSON to write (required)")
    p.set_defaults(func=cmd_merge)
