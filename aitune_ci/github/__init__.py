"""GitHub integration: the PR comment (REST API), the step summary, step outputs and annotations."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Mapping
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from aitune_ci.errors import GitHubError
from aitune_ci.report.markdown import DEFAULT_MARKER, MAX_COMMENT_CHARS, render_markdown
from aitune_ci.report.view import RunView

__all__ = [
    "DEFAULT_AUTHOR",
    "DEFAULT_MARKER",
    "MAX_COMMENT_CHARS",
    "CommentResult",
    "GitHubClient",
    "annotation",
    "annotations",
    "post_report_comment",
    "publish",
    "step_outputs",
    "pull_request_number",
    "upsert_comment",
    "write_step_outputs",
    "write_step_summary",
]

log = logging.getLogger(__name__)

#: The login behind the GITHUB_TOKEN of a workflow: its marked comment is preferred when several exist.
DEFAULT_AUTHOR = "github-actions[bot]"

_API_VERSION = "2022-11-28"
_MAX_PAGES = 100  # 10,000 comments at per_page=100: beyond that something loops
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PULL_REF = re.compile(r"refs/pull/(\d+)/(?:merge|head)")
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


@dataclass(frozen=True)
class CommentResult:
    """What :func:`upsert_comment` did: ``action`` is ``"created"`` or ``"updated"``."""

    action: Literal["created", "updated"]
    id: int
    url: str


class _BearerAuth(AuthBase):
    """``Authorization: Bearer <token>`` on every request, with a repr that hides the token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


class GitHubClient:
    """A small GitHub REST client: retries, rate-limit waits, clear errors, and a token kept secret.

    Transient failures (5xx, connection errors, timeouts) are retried with exponential backoff
    (a POST retried after a lost answer may rarely create a second comment; the next run updates the
    latest one, so the report stays right).
    A rate limit (429, or 403 with ``x-ratelimit-remaining: 0`` or a secondary-limit message) waits
    as long as ``Retry-After`` / ``x-ratelimit-reset`` say, unless that is longer than ``max_wait``:
    then it fails at once rather than hold a CI job. Other 4xx raise :class:`GitHubError` with what
    to change. The token is sent only to ``api_url``'s host and never appears in a message or repr.

    Args:
        token: a GitHub token (in Actions: ``GITHUB_TOKEN``).
        repository: ``"owner/name"`` (in Actions: ``GITHUB_REPOSITORY``).
        api_url: REST root; default ``$GITHUB_API_URL`` or ``https://api.github.com`` (GHES works).
        timeout: ``(connect, read)`` seconds per request.
        max_retries: retries after the first attempt, shared by transient errors and rate limits.
        sleep: called with the seconds to wait; tests inject a recorder so they do not wait.
        max_wait: the longest single wait in seconds (backoff and rate limits are capped by it).
        backoff: first backoff in seconds, doubled at each retry.
        clock: epoch seconds, to turn ``x-ratelimit-reset`` into a wait.
    """

    def __init__(
        self,
        token: str,
        repository: str,
        api_url: str | None = None,
        timeout: tuple[float, float] = (5, 30),
        max_retries: int = 4,
        sleep: Callable[[float], Any] = time.sleep,
        *,
        max_wait: float = 60.0,
        backoff: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError("a GitHub token is required (in Actions: `env: GITHUB_TOKEN: ${{ github.token }}`)")
        if not _REPOSITORY.fullmatch(repository or ""):
            raise ValueError(f"repository must be 'owner/name' (like GITHUB_REPOSITORY), got {repository!r}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.repository = repository
        self.api_url = (api_url or os.environ.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.backoff = backoff
        self._sleep = sleep
        self._clock = clock
        self._token = token
        self._origin = _origin(self.api_url)
        self._session = requests.Session()
        # As session auth (not a plain header) it keeps ~/.netrc from replacing the token, keeps proxy
        # settings from the environment working, and is dropped by requests on a redirect to another host.
        self._session.auth = _BearerAuth(token)
        self._session.headers.update(
            {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": _API_VERSION, "User-Agent": "aitune-ci"}
        )

    def __repr__(self) -> str:
        return f"GitHubClient(repository={self.repository!r}, api_url={self.api_url!r})"

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def repo_path(self, *parts: object) -> str:
        """``/repos/{owner}/{name}/<parts...>``."""
        return "/".join([f"/repos/{self.repository}", *map(str, parts)])

    def request(
        self,
        method: str,
        path_or_url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> requests.Response:
        """Send one API request with retries; return the 2xx/3xx response or raise GitHubError."""
        url = self._url(path_or_url)
        what = f"{method} {urlsplit(url).path}"
        attempt = 0
        limited = 0  # secondary limits without a header wait 60 s, then exponentially longer
        while True:
            try:
                response = self._session.request(method, url, json=json, params=params, timeout=self.timeout)
            except _TRANSIENT as exc:
                reason = self._redact(f"{type(exc).__name__}: {exc}")
                if attempt >= self.max_retries:
                    # `from None`: the requests exception holds the prepared request and its headers.
                    raise GitHubError(
                        f"no answer from {self.api_url} for {what} after {attempt + 1} attempts ({reason}). "
                        "Check GITHUB_API_URL and the runner's network, or re-run the job.",
                        None,
                    ) from None
                self._wait(min(self.backoff * 2**attempt, self.max_wait), what, type(exc).__name__, attempt)
                attempt += 1
                continue
            status = response.status_code
            if status < 400:
                return response
            limit = _rate_limit_wait(response, self._clock(), limited)
            if limit is not None:
                wait, known = limit
                limited += 1
                if known and wait > self.max_wait:
                    raise GitHubError(
                        f"{status}: GitHub rate limit reached for {what}; it lifts in {wait:.0f} s, longer than "
                        f"the {self.max_wait:.0f} s this client waits. Re-run the job later. "
                        f"GitHub said: {self._said(response)}",
                        status,
                    )
                if attempt >= self.max_retries:
                    raise GitHubError(
                        f"{status}: GitHub rate limit still reached for {what} after {attempt + 1} attempts. "
                        f"Re-run the job later. GitHub said: {self._said(response)}",
                        status,
                    )
                self._wait(min(wait, self.max_wait), what, f"rate limited ({status})", attempt)
                attempt += 1
                continue
            if status >= 500 and attempt < self.max_retries:
                retry_after = _retry_after(response.headers.get("retry-after"), self._clock())
                backoff = retry_after if retry_after is not None else self.backoff * 2**attempt
                self._wait(min(backoff, self.max_wait), what, f"{status} {response.reason}", attempt)
                attempt += 1
                continue
            raise self._status_error(what, response, attempt + 1)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Yield every item of a list endpoint, following ``Link: <...>; rel="next"`` (``per_page=100``)."""
        url: str = self._url(path)
        query: Mapping[str, Any] | None = {"per_page": 100, **(params or {})}
        seen = {url}
        for _ in range(_MAX_PAGES):
            response = self.request("GET", url, params=query)
            items = _json(response)
            if not isinstance(items, list):
                raise GitHubError(f"GET {urlsplit(url).path}: expected a JSON list, got {type(items).__name__}")
            yield from items
            next_url = response.links.get("next", {}).get("url")
            if not next_url:
                return
            if next_url in seen:
                raise GitHubError(f"GET {urlsplit(url).path}: the pagination links loop back to a page already read")
            seen.add(next_url)
            url, query = self._url(next_url), None  # the next link carries its own query
        raise GitHubError(f"GET {urlsplit(url).path}: more than {_MAX_PAGES} pages; refusing to read on")

    def _url(self, path_or_url: str) -> str:
        if "://" not in path_or_url:
            return f"{self.api_url}/{path_or_url.lstrip('/')}"
        if _origin(path_or_url) != self._origin:
            # A link to another host would carry our Authorization header there.
            raise GitHubError(
                f"refusing to send the token to {_origin(path_or_url)}: GitHub links must stay on {self._origin}"
            )
        return path_or_url

    def _wait(self, seconds: float, what: str, why: str, attempt: int) -> None:
        log.warning(
            "aitune-ci: %s: %s; retrying in %.1f s (retry %d of %d)", what, why, seconds, attempt + 1, self.max_retries
        )
        self._sleep(seconds)

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _said(self, response: requests.Response) -> str:
        """GitHub's own explanation (``message`` and ``errors``), short and with the token redacted."""
        try:
            data = response.json()
        except ValueError:
            said = response.text.strip() or "(empty body)"
        else:
            if isinstance(data, dict):
                said = str(data.get("message") or "(no message)")
                if data.get("errors"):
                    said += f" {json.dumps(data['errors'])}"
            else:
                said = json.dumps(data)
        said = " ".join(self._redact(said).split())
        return said if len(said) <= 300 else said[:297] + "..."

    def _status_error(self, what: str, response: requests.Response, attempts: int) -> GitHubError:
        status = response.status_code
        if status == 401:
            hint = (
                "401 Unauthorized: GitHub rejected the token (missing, expired or malformed); "
                "pass it to the step as `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`"
            )
        elif status == 403:
            hint = (
                "403 Forbidden: the token cannot write PR comments; give the workflow "
                "`permissions: pull-requests: write` (a PR from a fork gets a read-only token: "
                "post the comment from a `workflow_run` job instead)"
            )
        elif status == 404:
            hint = (
                f"404: repository or PR not found, or the token cannot see it; check GITHUB_REPOSITORY "
                f"({self.repository}), the PR number, and that the token has access to the repository"
            )
        elif status == 422:
            hint = "422 Unprocessable Entity: GitHub rejected the request body"
        elif status >= 500:
            hint = (
                f"{status} {response.reason}: GitHub failed {attempts} times in a row; probably an outage "
                "(https://www.githubstatus.com), re-run the job later"
            )
        else:
            hint = f"{status} {response.reason}"
        return GitHubError(f"{hint} [{what}]. GitHub said: {self._said(response)}", status)


def upsert_comment(
    client: GitHubClient,
    pr_number: int,
    body: str,
    marker: str = DEFAULT_MARKER,
    *,
    author: str | None = DEFAULT_AUTHOR,
) -> CommentResult:
    """Create the PR's report comment, or update the one that carries ``marker``.

    Every page of comments is read. Among the comments holding the marker, those written by
    ``author`` are preferred (a quoted marker in someone else's comment must not be hijacked), and
    the latest of them is updated; with none, a new comment is created. The marker is added to
    ``body`` when missing.

    Raises:
        ValueError: ``body`` (with the marker) is longer than GitHub accepts (65,536 characters).
        GitHubError: the API refused or failed (see :class:`GitHubClient`).
    """
    if not marker:
        raise ValueError("marker must be a non-empty string, e.g. '<!-- aitune-ci:report -->'")
    if isinstance(pr_number, bool) or not isinstance(pr_number, int) or pr_number <= 0:
        raise ValueError(f"pr_number must be a positive int, got {pr_number!r}")
    if marker not in body:
        body = f"{marker}\n{body}"
    if len(body) > MAX_COMMENT_CHARS:
        raise ValueError(
            f"comment body is {len(body)} characters; GitHub accepts at most {MAX_COMMENT_CHARS}. "
            "Shorten the report (the markdown renderer truncates its tables to fit)."
        )
    marked = [
        c for c in client.paginate(client.repo_path("issues", pr_number, "comments")) if marker in (c.get("body") or "")
    ]
    mine = [c for c in marked if author and (c.get("user") or {}).get("login") == author]
    candidates = mine or marked
    if candidates:
        existing = max(candidates, key=lambda c: int(c["id"]))
        response = client.request("PATCH", client.repo_path("issues", "comments", existing["id"]), json={"body": body})
        action: Literal["created", "updated"] = "updated"
    else:
        response = client.request("POST", client.repo_path("issues", pr_number, "comments"), json={"body": body})
        action = "created"
    data = _json(response)
    if not isinstance(data, dict) or "id" not in data:
        raise GitHubError(f"{action} the comment but GitHub's answer has no comment id: {str(data)[:200]}")
    return CommentResult(action=action, id=int(data["id"]), url=str(data.get("html_url") or data.get("url") or ""))


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


def write_step_summary(markdown: str) -> bool:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY``; False (nothing written) when it is not set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(markdown if markdown.endswith("\n") else markdown + "\n")
    return True


def write_step_outputs(outputs: Mapping[str, object]) -> bool:
    """Append step outputs to ``$GITHUB_OUTPUT``; False (nothing written) when it is not set.

    Every value uses the multi-line form ``name<<ghadelimiter_<uuid>`` ... ``ghadelimiter_<uuid>``,
    so any text is safe. Values: bool → ``true``/``false``, None → empty, paths → their string,
    list/tuple/dict → JSON (read it with ``fromJSON()``), anything else → ``str()``.

    Raises:
        ValueError: an output name is not a valid step output id (letters, digits, ``_``, ``-``).
    """
    path = os.environ.get("GITHUB_OUTPUT")
    if not path:
        return False
    chunks = []
    for name, value in outputs.items():  # validate everything before writing anything
        if not isinstance(name, str) or not _OUTPUT_NAME.fullmatch(name):
            raise ValueError(
                f"step output name {name!r} is invalid: start with a letter or '_', then letters, digits, '_' or '-'"
            )
        text = _output_text(value)
        delimiter = f"ghadelimiter_{uuid.uuid4()}"
        if delimiter in text:  # a uuid4 collision: astronomically unlikely, but never write a broken file
            raise ValueError(f"step output {name!r} contains its own delimiter")
        chunks.append(f"{name}<<{delimiter}\n{text}\n{delimiter}\n")
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(chunks))
    return True


def annotation(
    level: Literal["error", "warning", "notice"],
    message: str,
    file: str | os.PathLike[str] | None = None,
    title: str | None = None,
    line: int | None = None,
) -> str:
    """A workflow command such as ``::error file=a.py,line=3,title=T::message``, escaped; print it to emit it.

    ``file`` should be relative to the repository root for GitHub to attach it to the diff.
    """
    if level not in ("error", "warning", "notice"):
        raise ValueError(f"annotation level must be 'error', 'warning' or 'notice', got {level!r}")
    properties = [
        f"{key}={_escape_property(os.fspath(value) if key == 'file' else str(value))}"
        for key, value in (("file", file), ("line", line), ("title", title))
        if value is not None
    ]
    head = f"::{level} {','.join(properties)}" if properties else f"::{level}"
    return f"{head}::{_escape_data(message)}"


def post_report_comment(results_markdown: str, *, fail_on_error: bool = False, marker: str = DEFAULT_MARKER) -> int:
    """Upsert the report comment on this run's PR, configured from the environment; return an exit status.

    Reads ``GITHUB_TOKEN``, ``GITHUB_REPOSITORY``, ``GITHUB_EVENT_PATH`` / ``GITHUB_REF`` and
    ``GITHUB_API_URL``, and prints one line saying what happened. Not a PR: prints why, returns 0.
    A missing setting or an API error prints a ``::warning::`` annotation and returns 0, so a
    comment never fails the test run; with ``fail_on_error`` it prints ``::error::`` and returns 1.
    """
    token = os.environ.get("GITHUB_TOKEN", "").strip()
    repository = os.environ.get("GITHUB_REPOSITORY", "").strip()
    if not token:
        return _comment_failed(
            "GITHUB_TOKEN is not set; pass it to the step: `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}`",
            fail_on_error,
        )
    if not repository:
        return _comment_failed(
            "GITHUB_REPOSITORY is not set (GitHub Actions sets it; elsewhere set it to owner/name)", fail_on_error
        )
    pr = pull_request_number()
    if pr is None:
        print("aitune-ci comment: skipped, this run is not about a pull request (no PR in the event or GITHUB_REF)")
        return 0
    try:
        with GitHubClient(token, repository) as client:
            result = upsert_comment(client, pr, results_markdown, marker)
    except (GitHubError, ValueError) as exc:
        return _comment_failed(f"could not post the report on PR #{pr}: {exc}", fail_on_error)
    print(f"aitune-ci comment: {result.action} comment {result.id} on PR #{pr}: {result.url}")
    return 0


def _comment_failed(problem: str, fatal: bool) -> int:
    print(annotation("error" if fatal else "warning", f"aitune-ci comment: {problem}", title="aitune-ci comment"))
    sys.stdout.flush()
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


def _rate_limit_wait(response: requests.Response, now: float, times_limited: int) -> tuple[float, bool] | None:
    """``(seconds to wait, whether GitHub said so)`` for a rate-limited response; None when it is not one.

    GitHub's rules: ``retry-after`` seconds if present; else if ``x-ratelimit-remaining`` is 0,
    until ``x-ratelimit-reset`` (epoch seconds); else (a secondary limit) at least a minute,
    growing exponentially while it persists. Only a wait GitHub stated is known to be needed.
    """
    status = response.status_code
    if status not in (403, 429):
        return None
    headers = response.headers
    retry_after = _retry_after(headers.get("retry-after"), now)
    if retry_after is not None:
        return retry_after, True
    guess = 60.0 * 2**times_limited
    if headers.get("x-ratelimit-remaining", "").strip() == "0":
        try:
            return max(1.0, float(headers["x-ratelimit-reset"]) - now), True
        except (KeyError, ValueError):
            return guess, False
    if status == 429 or _mentions_secondary_limit(response):
        return guess, False
    return None


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _mentions_secondary_limit(response: requests.Response) -> bool:
    text = response.text.lower()
    return "secondary rate limit" in text or "abuse detection" in text


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise GitHubError(
            f"{response.request.method} {urlsplit(response.url).path}: GitHub answered {response.status_code} "
            f"with a body that is not JSON: {response.text[:200]!r}",
            response.status_code,
        ) from None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _output_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, os.PathLike):
        return os.fspath(value)  # type: ignore[return-value]
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


# --- a run, published in GitHub Actions -------------------------------------------------------


def annotations(run: Mapping[str, Any]) -> list[str]:
    """``::error`` lines for checks that fail CI, ``::warning`` for tolerated failures and an environment mismatch."""
    view = RunView.from_run(run)
    lines = []
    for v in view.verdicts:
        kind = v.kind.value if hasattr(v.kind, "value") else str(v.kind)
        first = (v.message or f"{v.check_id}: {kind}").split(". ")[0]
        if v.fails:
            lines.append(annotation("error", v.message or first, title=f"aitune-ci: {v.check_id} {kind.lower()}"))
        elif kind in ("REGRESSED", "FAILED"):
            lines.append(
                annotation("warning", v.message or first, title=f"aitune-ci: {v.check_id} {kind.lower()} (tolerated)")
            )
    if view.env_mismatch:
        diffs = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in view.env_mismatch.items())
        lines.append(
            annotation(
                "warning",
                f"the environment differs from the baseline ({diffs}); latency changes may come from it",
                title="aitune-ci: environment mismatch",
            )
        )
    return lines


def step_outputs(run: Mapping[str, Any], reports: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Step outputs: ``verdict``, ``failing`` (true when CI should fail), each count, ``total`` and ``report-<kind>`` paths."""
    view = RunView.from_run(run)
    out: dict[str, Any] = {"verdict": view.overall, "failing": view.failing, **view.counts, "total": len(view.verdicts)}
    for kind, path in (reports or {}).items():
        out[f"report-{kind}"] = str(path)
    return out


def publish(
    run: Mapping[str, Any],
    *,
    report_url: str | None = None,
    reports: Mapping[str, str | Path] | None = None,
    comment: bool = True,
    fail_on_error: bool = False,
    echo: Callable[[str], Any] = print,
) -> int:
    """In GitHub Actions: print annotations, write the step summary and outputs, upsert the PR comment.

    Outside Actions (no ``GITHUB_STEP_SUMMARY`` / ``GITHUB_OUTPUT``) those writes are skipped.
    Returns the exit status of posting the comment (0 unless ``fail_on_error`` and it failed).
    """
    for line in annotations(run):
        echo(line)
    body = render_markdown(run, report_url=report_url)
    write_step_summary(body)
    write_step_outputs(step_outputs(run, reports))
    if not comment:
        return 0
    return post_report_comment(body, fail_on_error=fail_on_error)
