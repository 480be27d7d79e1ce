"""The ``aitune-ci outcome`` and ``find-pr`` commands: what the GitHub Action decides in Python rather than in bash."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from aitune_ci.errors import AituneCIError
from aitune_ci.github import GitHubClient, annotation, echo_command, write_step_outputs
from aitune_ci.github.outcome import (
    EXIT_BROKEN,
    EXIT_CODE_FILE,
    EXIT_REGRESSED,
    JUNIT_FILE,
    RUN_FILE,
    Outcome,
    decide,
    read_shard,
)
from aitune_ci.github.workflow_run import pull_request_of_run, write_pull_request_event

__all__ = ["add_subcommands", "cmd_find_pr", "cmd_outcome"]

#: GitHub shows 10 annotations of a kind per step: more would be dropped unseen.
_MAX_ANNOTATIONS = 10


def add_subcommands(sub: Any) -> None:
    """Add ``outcome`` and ``find-pr`` to an ``add_subparsers()`` object."""
    p = sub.add_parser(
        "outcome",
        help="decide whether a CI run passed, regressed or broke, from its report folder(s)",
        description=(
            f"Reads each FOLDER's {RUN_FILE} (--aitune-report), {JUNIT_FILE} (--junitxml) and {EXIT_CODE_FILE} "
            "(pytest's exit status) and decides: pass; regressed (every failed item is a latency or accuracy "
            "regression); or broken (pytest crashed, was interrupted or misused, wrote no results, or something "
            "else failed). Writes the step outputs outcome and outcome-reason. "
            f"Exits 0 on pass, {EXIT_REGRESSED} on regressed (0 with --warn-only), {EXIT_BROKEN} on broken."
        ),
    )
    p.add_argument(
        "folders",
        nargs="*",
        metavar="FOLDER",
        help="a report folder, one per shard of a matrix (none: every shard of --expect-shards is missing)",
    )
    p.add_argument(
        "--expect-shards",
        type=_positive,
        metavar="N",
        default=None,
        help="the matrix had N shards: fewer folders means a shard's job broke. Default: no check",
    )
    p.add_argument(
        "--warn-only",
        action="store_true",
        help="a regression only warns (exit 0); a broken run still fails. Default: a regression fails",
    )
    p.add_argument(
        "--allow-empty",
        action="store_true",
        help="no tune fixture ran is not an error (one shard of a matrix may get none). Default: it is",
    )
    p.set_defaults(func=cmd_outcome)

    p = sub.add_parser(
        "find-pr",
        help="find the pull request a workflow_run event is about, and write an event file naming it",
        description=(
            "For a workflow that runs `on: workflow_run` (the fork-PR comment): finds the pull request that the "
            "triggering run tested through the API (GitHub leaves workflow_run.pull_requests empty for forks), "
            "never from the run's uploaded files. Writes the step output pr-number (empty when there is none) "
            "and, when found, a pull_request event file: run `GITHUB_EVENT_PATH=FILE aitune-ci comment ...`. "
            "Needs GITHUB_TOKEN and GITHUB_REPOSITORY."
        ),
    )
    p.add_argument(
        "--event",
        metavar="FILE",
        default=None,
        help="the workflow_run event payload. Default: $GITHUB_EVENT_PATH",
    )
    p.add_argument("--output", required=True, metavar="FILE", help="where to write the pull_request event (required)")
    p.set_defaults(func=cmd_find_pr)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def cmd_outcome(args: argparse.Namespace) -> int:
    """Decide the outcome of the run(s) in ``args.folders``; echo it, write step outputs, return the exit status."""
    shards = [read_shard(folder) for folder in args.folders]
    decision = decide(shards, expected_shards=args.expect_shards, require_checks=not args.allow_empty)
    print(decision.summary())
    if decision.outcome is not Outcome.PASS:
        hidden = decision.outcome is Outcome.REGRESSED and args.warn_only
        level = "warning" if hidden else "error"
        for reason in decision.reasons[:_MAX_ANNOTATIONS]:
            echo_command(annotation(level, reason, title=f"aitune-ci: {decision.outcome}"))
    write_step_outputs({"outcome": str(decision.outcome), "outcome-reason": "; ".join(decision.reasons)})
    return decision.exit_code(fail_on_regression=not args.warn_only)


def cmd_find_pr(args: argparse.Namespace) -> int:
    """Find the PR of a workflow_run event; write the event file and the ``pr-number`` output."""
    event_path = args.event or os.environ.get("GITHUB_EVENT_PATH")
    if not event_path:
        raise AituneCIError("no event payload: pass --event FILE (in GitHub Actions, GITHUB_EVENT_PATH is set)")
    try:
        with open(event_path, encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError) as exc:
        raise AituneCIError(f"{event_path}: cannot read the event payload ({exc})") from None
    token = os.environ.get("GITHUB_TOKEN", "").strip()
    repository = os.environ.get("GITHUB_REPOSITORY", "").strip()
    if not token or not repository:
        raise AituneCIError(
            "GITHUB_TOKEN and GITHUB_REPOSITORY must be set: `env: GITHUB_TOKEN: ${{ github.token }}` on the step"
        )
    try:
        with GitHubClient(token, repository) as client:
            number = pull_request_of_run(client, event)
    except ValueError as exc:
        raise AituneCIError(f"{event_path}: {exc}") from None
    write_step_outputs({"pr-number": number})
    if number is None:
        print("aitune-ci find-pr: the triggering run is not about an open pull request; nothing to comment on")
        return 0
    write_pull_request_event(args.output, number)
    print(f"aitune-ci find-pr: pull request #{number} -> {args.output}")
    return 0
