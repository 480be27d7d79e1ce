"""A small GitHub REST client, so a CI job survives GitHub's retries and rate limits and never leaks its token."""

from __future__ import annotations

import email.utils
import json
import logging
import os
import re
import time
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase

from aitune_ci.errors import GitHubError

__all__ = ["GitHubClient", "json_body"]

log = logging.getLogger(__name__)

_API_VERSION = "2022-11-28"
_MAX_PAGES = 100  # 10,000 comments at per_page=100: beyond that something loops
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


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
            items = json_body(response)
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
                "401 Unauthorized: GitHub rejected the token (missing, expired or malformed); pass it as "
                "GITHUB_TOKEN: the action's `github-token` input, or `env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}` "
                "on a step of your own"
            )
        elif status == 403 and "/pulls" in what:
            hint = (
                "403 Forbidden: the token cannot open or update pull requests; give the workflow `permissions: "
                "contents: write, pull-requests: write`, and for GITHUB_TOKEN allow it in the repository's Settings > "
                'Actions > General > Workflow permissions > "Allow GitHub Actions to create and approve pull '
                'requests" (or pass a GitHub App token or a fine-grained PAT as AITUNE_PR_TOKEN)'
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


def json_body(response: requests.Response) -> Any:
    """The decoded JSON body of a GitHub answer; a body that is not JSON is a :class:`GitHubError`."""
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
