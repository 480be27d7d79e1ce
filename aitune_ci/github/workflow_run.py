"""The pull request behind a ``workflow_run`` event, found without trusting anything the triggering run uploaded.

A fork's pull request runs its workflow with a read-only token, so its report comment is posted by a
second workflow (``on: workflow_run``) that has ``pull-requests: write``. GitHub leaves
``workflow_run.pull_requests`` empty for a fork's pull request, and the artifact the run uploaded is
the fork's to forge, so the number is asked of the API: the open pull request whose head is the
run's head repository, branch and commit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from aitune_ci.atomic import atomic_write_text
from aitune_ci.github.client import GitHubClient

__all__ = ["pull_request_of_run", "write_pull_request_event"]

#: The events whose runs are about a pull request.
_PR_EVENTS = ("pull_request", "pull_request_target")


def pull_request_of_run(client: GitHubClient, event: Mapping[str, Any]) -> int | None:
    """The number of the open pull request a ``workflow_run`` event's run tested, or None.

    None when the run was not triggered by a pull request, or when no open pull request has the
    run's head commit any more (it was closed, or a newer push replaced it: that push's own run
    brings its own comment).

    Raises:
        ValueError: ``event`` is not a ``workflow_run`` event payload.
        GitHubError: the API refused or failed.
    """
    run = event.get("workflow_run")
    if not isinstance(run, Mapping):
        raise ValueError("not a workflow_run event: the payload has no 'workflow_run' object")
    if run.get("event") not in _PR_EVENTS:
        return None
    head_sha = run.get("head_sha")
    head_repo = (run.get("head_repository") or {}).get("full_name")
    head_branch = run.get("head_branch")
    for pr in run.get("pull_requests") or ():  # filled in for a pull request from this repository
        # GitHub matches these by branch name, so only one whose head is this very commit counts.
        if (
            isinstance(pr, Mapping)
            and _positive_int(pr.get("number"))
            and (pr.get("head") or {}).get("sha") == head_sha
        ):
            return int(pr["number"])
    if not (isinstance(head_sha, str) and isinstance(head_repo, str) and isinstance(head_branch, str)):
        return None
    owner = head_repo.split("/")[0]
    pulls = client.paginate(client.repo_path("pulls"), {"state": "open", "head": f"{owner}:{head_branch}"})
    for pr in pulls:
        head = pr.get("head") or {}
        if head.get("sha") == head_sha and (head.get("repo") or {}).get("full_name") == head_repo:
            if _positive_int(pr.get("number")):
                return int(pr["number"])
    return None


def write_pull_request_event(path: str | os.PathLike[str], number: int) -> None:
    """Write a minimal ``pull_request`` event payload naming PR ``number``, for ``GITHUB_EVENT_PATH``.

    ``aitune-ci comment`` finds its PR in the event payload; a ``workflow_run`` workflow gives it
    this file (for that one command) once :func:`pull_request_of_run` has found the number.
    """
    if not _positive_int(number):
        raise ValueError(f"a pull request number is a positive int, got {number!r}")
    atomic_write_text(path, json.dumps({"action": "completed", "pull_request": {"number": number}}) + "\n")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
