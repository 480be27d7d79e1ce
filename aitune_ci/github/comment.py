"""The report's PR comment: found again by its marker and updated, so a PR carries one report, not one per push."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

from aitune_ci.errors import GitHubError
from aitune_ci.github.actions import annotation, echo_command
from aitune_ci.github.client import GitHubClient, json_body
from aitune_ci.report.markdown import DEFAULT_MARKER, MAX_COMMENT_CHARS

__all__ = [
    "DEFAULT_AUTHOR",
    "CommentResult",
    "post_report_comment",
    "pull_request_number",
    "resolve_bot_login",
    "upsert_comment",
]

log = logging.getLogger(__name__)

#: The login a workflow's GITHUB_TOKEN comments as: by default, only its marked comments are updated.
DEFAULT_AUTHOR = "github-actions[bot]"

_PULL_REF = re.compile(r"refs/pull/(\d+)/(?:merge|head)")


@dataclass(frozen=True)
class CommentResult:
    """What :func:`upsert_comment` did: ``action`` is ``"created"`` or ``"updated"``."""

    action: Literal["created", "updated"]
    id: int
    url: str


def upsert_comment(
    client: GitHubClient,
    pr_number: int,
    body: str,
    marker: str = DEFAULT_MARKER,
    *,
    author: str = DEFAULT_AUTHOR,
) -> CommentResult:
    """Create the PR's report comment, or update the latest one that ``author`` wrote with ``marker`` in it.

    Every page of comments is read. Only ``author``'s own comments are candidates: a person's
    comment that quotes the marker is never edited (a new comment is created instead). The marker
    is added to ``body`` when missing.

    Args:
        author: the login the token comments as (``resolve_bot_login`` finds it).

    Raises:
        ValueError: ``body`` (with the marker) is longer than GitHub accepts (65,536 characters).
        GitHubError: the API refused or failed (see :class:`GitHubClient`).
    """
    if not marker:
        raise ValueError("marker must be a non-empty string, e.g. '<!-- aitune-ci:report -->'")
    if not author or not author.strip():
        raise ValueError(f"author must be the login the token comments as, e.g. {DEFAULT_AUTHOR!r}")
    if isinstance(pr_number, bool) or not isinstance(pr_number, int) or pr_number <= 0:
        raise ValueError(f"pr_number must be a positive int, got {pr_number!r}")
    if marker not in body:
        body = f"{marker}\n{body}"
    if len(body) > MAX_COMMENT_CHARS:
        raise ValueError(
            f"comment body is {len(body)} characters; GitHub accepts at most {MAX_COMMENT_CHARS}. "
            "Shorten the report (the markdown renderer truncates its tables to fit)."
        )
    mine = [
        c
        for c in client.paginate(client.repo_path("issues", pr_number, "comments"))
        if marker in (c.get("body") or "") and (c.get("user") or {}).get("login") == author
    ]
    if mine:
        existing = max(mine, key=lambda c: int(c["id"]))
        response = client.request("PATCH", client.repo_path("issues", "comments", existing["id"]), json={"body": body})
        action: Literal["created", "updated"] = "updated"
    else:
        response = client.request("POST", client.repo_path("issues", pr_number, "comments"), json={"body": body})
        action = "created"
    data = json_body(response)
    if not isinstance(data, dict) or "id" not in data:
        raise GitHubError(f"{action} the comment but GitHub's answer has no comment id: {str(data)[:200]}")
    return CommentResult(action=action, id=int(data["id"]), url=str(data.get("html_url") or data.get("url") or ""))


def resolve_bot_login(client: GitHubClient, login: str | None = None) -> str:
    """The login ``client``'s token comments as, so ``upsert_comment`` finds its own comments and no one else's.

    ``login`` when given. Else ``GET /user``: a personal access token (or a user's app token)
    comments as its user. A workflow's GITHUB_TOKEN gets 403 there (so does a GitHub App's
    installation token, which comments as ``<app-slug>[bot]``: pass that as ``login``) and
    comments as ``github-actions[bot]``, the fallback on 403 or 404.

    Raises:
        ValueError: ``login`` is empty.
        GitHubError: ``GET /user`` failed otherwise (a rejected token, an outage).
    """
    if login is not None:
        if not login.strip():
            raise ValueError(
                f"the bot login must not be empty: pass the login the token comments as, e.g. {DEFAULT_AUTHOR!r}"
            )
        return login.strip()
    try:
        data = json_body(client.request("GET", "/user"))
    except GitHubError as exc:
        if exc.status not in (403, 404):
            raise
        log.debug(
            "aitune-ci comment: the token cannot read GET /user (%s): commenting as %s", exc.status, DEFAULT_AUTHOR
        )
        return DEFAULT_AUTHOR
    name = data.get("login") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise GitHubError(
            f"GET /user answered without a login: {str(data)[:200]}; pass the bot's login with --bot-login"
        )
    return name.strip()


def pull_request_number(event_path: str | os.PathLike[str] | None = None) -> int | None:
    """The PR this workflow run is about, or None when it is not about a PR.

    Read from the event payload (``GITHUB_EVENT_PATH`` by default): ``pull_request.number``
    (pull_request, pull_request_target, pull_request_review...), ``issue.number`` when the issue is
    a PR (issue_comment), ``workflow_run.pull_requests[0].number``; else from ``GITHUB_REF``
    (``refs/pull/<n>/merge``). An unreadable payload is not an error: the ref is tried next.
    """
    path = event_path if event_path is not None else os.environ.get("GITHUB_EVENT_PATH")
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                event = json.load(f)
        except (OSError, ValueError):
            event = None
        if isinstance(event, dict):
            number = _pr_from_event(event)
            if number is not None:
                return number
    match = _PULL_REF.fullmatch(os.environ.get("GITHUB_REF", ""))
    return int(match.group(1)) if match else None


def post_report_comment(
    results_markdown: str,
    *,
    fail_on_error: bool = False,
    marker: str = DEFAULT_MARKER,
    bot_login: str | None = None,
    echo: Callable[[str], Any] = echo_command,
) -> int:
    """Upsert the report comment on this run's PR, configured from the environment; return an exit status.

    Reads ``GITHUB_TOKEN``, ``GITHUB_REPOSITORY``, ``GITHUB_EVENT_PATH`` / ``GITHUB_REF`` and
    ``GITHUB_API_URL``, and logs one INFO line saying what happened. Not a PR: logs why, returns 0.
    A missing setting or an API error echoes a ``::warning::`` workflow command and returns 0, so a
    comment never fails the test run; with ``fail_on_error`` it echoes ``::error::`` and returns 1.

    Args:
        bot_login: the login the token comments as; None asks GitHub (see :func:`resolve_bot_login`).
        echo: where workflow commands go; the runner reads them from stdout (the default).
    """
    token = os.environ.get("GITHUB_TOKEN", "").strip()
    repository = os.environ.get("GITHUB_REPOSITORY", "").strip()
    if not token:
        return _comment_failed(
            "GITHUB_TOKEN is not set; pass it to the step: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`",
            fail_on_error,
            echo,
        )
    if not repository:
        return _comment_failed(
            "GITHUB_REPOSITORY is not set (GitHub Actions sets it; elsewhere set it to owner/name)", fail_on_error, echo
        )
    pr = pull_request_number()
    if pr is None:
        log.info("aitune-ci comment: skipped, this run is not about a pull request (no PR in the event or GITHUB_REF)")
        return 0
    try:
        with GitHubClient(token, repository) as client:
            author = resolve_bot_login(client, bot_login)
            result = upsert_comment(client, pr, results_markdown, marker, author=author)
    except (GitHubError, ValueError) as exc:
        return _comment_failed(f"could not post the report on PR #{pr}: {exc}", fail_on_error, echo)
    log.info("aitune-ci comment: %s comment %s of %s on PR #%s: %s", result.action, result.id, author, pr, result.url)
    return 0


def _comment_failed(problem: str, fatal: bool, echo: Callable[[str], Any]) -> int:
    echo(annotation("error" if fatal else "warning", f"aitune-ci comment: {problem}", title="aitune-ci comment"))
    return 1 if fatal else 0


def _pr_from_event(event: Mapping[str, Any]) -> int | None:
    pr = event.get("pull_request")
    if isinstance(pr, dict) and _positive_int(pr.get("number")):
        return pr["number"]
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and _positive_int(issue.get("number")):
        return issue["number"]
    run = event.get("workflow_run")
    if isinstance(run, dict) and isinstance(run.get("pull_requests"), list) and run["pull_requests"]:
        first = run["pull_requests"][0]
        if isinstance(first, dict) and _positive_int(first.get("number")):
            return first["number"]
    return None


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
