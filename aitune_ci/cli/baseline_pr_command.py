"""The ``aitune-ci baseline-pr`` command: the nightly's changed baselines as a branch and an open PR."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from aitune_ci.errors import AituneCIError
from aitune_ci.github.actions import write_step_outputs
from aitune_ci.github.baseline_pr import (
    DEFAULT_BRANCH,
    GITHUB_MAX_FILE_BYTES,
    BaselinePROptions,
    refresh_baseline_pr,
    run_url_from_env,
)
from aitune_ci.github.client import GitHubClient

__all__ = ["COMMAND", "add_subcommands", "cmd_baseline_pr"]

COMMAND = "baseline-pr"

_DESCRIPTION = """\
Run inside the checked-out repository after `pytest --aitune --aitune-update`: commit what changed
under the aitune dir (new, modified and deleted files; lock files and ignored files never) on a
branch from HEAD, without touching your checkout; push it; and open a PR, or update the one still
open for that branch (a merged or closed one never blocks a new PR). No change: prints "baselines
unchanged" and exits 0. A file over GitHub's 100 MiB limit that .gitattributes does not route to
Git LFS is refused before anything is written.

Environment: GITHUB_TOKEN (contents: write and pull-requests: write), GITHUB_REPOSITORY
(owner/name), GITHUB_API_URL and GITHUB_SERVER_URL (set by Actions; default github.com). Step
outputs: pr-number, pr-url, action (opened, updated or unchanged).

A PR opened or pushed with the workflow's own GITHUB_TOKEN starts no workflow runs, so no checks
run on it. When they must, pass a GitHub App installation token or a fine-grained PAT (a secret,
contents and pull requests read/write) as GITHUB_TOKEN to this step instead.
"""


def _positive_mib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in MiB, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a size in MiB above 0, got {text!r}")
    return value


def add_subcommands(sub: Any) -> None:
    """Add ``baseline-pr`` to an ``add_subparsers()`` object."""
    p = sub.add_parser(
        COMMAND,
        help="commit refreshed baselines on a branch and open or update its PR (the nightly's last step)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--aitune-dir", metavar="DIR", default=".aitune", help="what to commit: this folder. Default: .aitune"
    )
    p.add_argument(
        "--branch",
        metavar="NAME",
        default=DEFAULT_BRANCH,
        help=f"the PR's branch (force-pushed). Default: {DEFAULT_BRANCH}",
    )
    p.add_argument(
        "--base", metavar="BRANCH", default=None, help="the PR's base branch. Default: the repository's default branch"
    )
    p.add_argument(
        "--title",
        metavar="TEXT",
        default=None,
        help="the PR's title (also set on an open PR). Default: 'aitune: nightly baseline refresh (YYYY-MM-DD)'",
    )
    p.add_argument(
        "--body-file",
        metavar="FILE",
        default=None,
        help="markdown for the PR's description. Default: a summary listing the changed files and this run",
    )
    p.add_argument("--remote", metavar="NAME", default="origin", help="git remote to push to. Default: origin")
    p.add_argument(
        "--max-file-mib",
        metavar="MIB",
        type=_positive_mib,
        default=GITHUB_MAX_FILE_BYTES / 2**20,
        help="refuse a file over this size not tracked by Git LFS; warn above half of it. "
        "Default: 100 (GitHub's limit; GitHub Enterprise Server may set another)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be committed; no commit, push or API call (no token needed). Default: off",
    )
    p.set_defaults(func=cmd_baseline_pr)


def cmd_baseline_pr(args: argparse.Namespace) -> int:
    """Open or update the baseline refresh PR; print what was done and write the step outputs."""
    env = os.environ
    max_bytes = int(args.max_file_mib * 2**20)
    options = BaselinePROptions(
        aitune_dir=args.aitune_dir,
        branch=args.branch,
        base=args.base,
        title=args.title,
        body=_read_body(args.body_file),
        remote=args.remote,
        dry_run=args.dry_run,
        max_file_bytes=max_bytes,
        warn_file_bytes=max_bytes // 2,
    )
    token = env.get("GITHUB_TOKEN", "").strip()
    client = None if args.dry_run else _client(token, env.get("GITHUB_REPOSITORY", "").strip())
    try:
        result = refresh_baseline_pr(
            options,
            client,
            token=token or None,
            server_url=env.get("GITHUB_SERVER_URL") or None,
            run_url=run_url_from_env(env),
        )
    finally:
        if client is not None:
            client.close()

    if result.action == "unchanged":
        print("baselines unchanged")
    elif result.action == "dry-run":
        for change in result.changes:
            print(f"{change.kind:>8}  {change.path}")
        print(f"dry run: would commit {len(result.changes)} file(s) to {args.branch} and open or update its PR")
        return 0  # outputs describe a PR; a dry run has none
    else:
        print(f"{result.action} PR #{result.number}: {len(result.changes)} file(s) on {args.branch}")
        print(result.url or "")
    write_step_outputs(result.outputs())
    return 0


def _client(token: str, repository: str) -> GitHubClient:
    if not token:
        raise AituneCIError(
            "GITHUB_TOKEN is not set: give the step `env: GITHUB_TOKEN: ${{ github.token }}` "
            "(or a GitHub App token / fine-grained PAT from a secret, so checks run on the PR)"
        )
    if not repository:
        raise AituneCIError("GITHUB_REPOSITORY is not set: give it as owner/name (Actions sets it)")
    try:
        return GitHubClient(token, repository)
    except ValueError as exc:
        raise AituneCIError(str(exc)) from None


def _read_body(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AituneCIError(f"--body-file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise AituneCIError(f"--body-file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
