"""A real HTTP stand-in for the few GitHub REST endpoints aitune-ci uses, on 127.0.0.1, for tests.

It serves issue comments (list with ``Link`` pagination, create, update) and ``GET /user`` (403 for
an installation token such as GITHUB_TOKEN, as GitHub answers), checks the bearer token,
records every request, and replays programmed faults (403, 404, 429 + Retry-After, 500 ...) per
``(method, path)`` before answering normally. Use the ``github_server`` fixture.
For ``aitune-ci baseline-pr`` it also serves ``GET /repos/{r}`` (``default_branch``) and pull requests
(list filtered by state, head and base; create; get; update); ``merge_pull`` plays the person merging.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator, Mapping
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

__all__ = ["FakeGitHub", "Fault", "Recorded", "github_server"]

_LIST_OR_CREATE = re.compile(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments")
_ONE_COMMENT = re.compile(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)")
# Pull requests and the repository itself (for `aitune-ci baseline-pr`).
_REPOSITORY = re.compile(r"/repos/([^/]+/[^/]+)")
_PULLS = re.compile(r"/repos/([^/]+/[^/]+)/pulls")
_ONE_PULL = re.compile(r"/repos/([^/]+/[^/]+)/pulls/(\d+)")


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any


@dataclass(frozen=True)
class Fault:
    """A canned answer served instead of the normal one (any status, 2xx included)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # JSON; None → {"message": <reason phrase>}


class FakeGitHub:
    """GitHub's issue-comment endpoints for one repository, served on 127.0.0.1 from a thread.

    Args:
        token: the only token accepted (``Authorization: Bearer <token>``); others get 401.
        repository: ``owner/name`` served; any other repository is 404.
        bot_login: the author of comments created through the API (what GITHUB_TOKEN posts as).
        max_per_page: GitHub caps ``per_page`` at 100.
        user_login: what ``GET /user`` answers for the token (a personal access token's user); None
            answers 403 "Resource not accessible by integration", as for GITHUB_TOKEN.
    """

    def __init__(
        self,
        token: str = "ghs_fake-token-for-tests",
        repository: str = "octo-org/hello",
        bot_login: str = "github-actions[bot]",
        max_per_page: int = 100,
        user_login: str | None = None,
    ) -> None:
        self.token = token
        self.user_login = user_login
        self.repository = repository
        self.bot_login = bot_login
        self.max_per_page = max_per_page
        self.comments: dict[int, list[dict[str, Any]]] = {}  # issue number -> comments, ascending id
        self.requests: list[Recorded] = []
        self.pulls: dict[int, dict[str, Any]] = {}  # PR number -> pull request, as GET /pulls/{n} answers
        self.default_branch = "main"
        self._faults: dict[tuple[str, str], deque[Fault]] = {}
        self._lock = threading.Lock()
        self._next_id = 1000
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), name="fake-github", daemon=True
        )

    @property
    def url(self) -> str:
        """The API root, e.g. ``http://127.0.0.1:54321`` (pass it as ``api_url``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeGitHub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state -------------------------------------------------------------------------------

    def open_pull(self, number: int) -> None:
        """Make PR ``number`` exist (with no comments yet); comments on unknown PRs are 404."""
        with self._lock:
            self.comments.setdefault(number, [])

    def add_comment(self, number: int, body: str, login: str = "octocat", user_type: str = "User") -> dict[str, Any]:
        """Seed an existing comment on PR ``number`` (created if needed) and return it."""
        with self._lock:
            return self._new_comment(number, body, login, user_type)

    def fail(self, method: str, path: str, *faults: Fault) -> None:
        """Queue canned answers for ``method path`` (query ignored); each request consumes one."""
        with self._lock:
            self._faults.setdefault((method.upper(), path), deque()).extend(faults)

    def requests_to(self, method: str, path: str | None = None) -> list[Recorded]:
        """The recorded requests with this method (and path), in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.method == method and (path is None or r.path == path)]

    def comments_path(self, number: int) -> str:
        return f"/repos/{self.repository}/issues/{number}/comments"

    def comment_path(self, comment_id: int) -> str:
        return f"/repos/{self.repository}/issues/comments/{comment_id}"

    def pulls_path(self) -> str:
        return f"/repos/{self.repository}/pulls"

    def pull_path(self, number: int) -> str:
        return f"/repos/{self.repository}/pulls/{number}"

    def merge_pull(self, number: int) -> None:
        """Mark pull request ``number`` merged (and so closed), as a person merging it would."""
        with self._lock:
            self.pulls[number].update(state="closed", merged=True, merged_at="2024-01-03T00:00:00Z")

    def write_requests(self) -> list[Recorded]:
        """The recorded requests that change something (every method but GET)."""
        with self._lock:
            return [r for r in self.requests if r.method != "GET"]

    # --- serving -----------------------------------------------------------------------------

    def handle(
        self, method: str, raw_path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """Answer one request: ``(status, headers, JSON body)``."""
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = body.decode("utf-8", "replace")
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.requests.append(Recorded(method, parts.path, query, lower, payload))
            queue = self._faults.get((method, parts.path))
            if queue:
                fault = queue.popleft()
                body_out = fault.body if fault.body is not None else {"message": HTTPStatus(fault.status).phrase}
                return fault.status, dict(fault.headers), body_out
            if lower.get("authorization") != f"Bearer {self.token}":
                return 401, {}, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}
            return self._route(method, parts.path, query, payload)

    def _route(self, method: str, path: str, query: dict[str, list[str]], payload: Any) -> tuple[int, dict, Any]:
        if path == "/user" and method == "GET":
            return self._user()
        if (answer := self._route_repository(method, path, query, payload)) is not None:
            return answer
        if m := _LIST_OR_CREATE.fullmatch(path):
            repo, number = m.group(1), int(m.group(2))
            if repo != self.repository or number not in self.comments:
                return _not_found()
            if method == "GET":
                return self._list(path, number, query)
            if method == "POST":
                if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
                    return 422, {}, {"message": "Invalid request.", "errors": ['"body" wasn\'t supplied.']}
                return 201, {}, self._new_comment(number, payload["body"], self.bot_login, "Bot")
        elif m := _ONE_COMMENT.fullmatch(path):
            repo, comment_id = m.group(1), int(m.group(2))
            comment = next((c for cs in self.comments.values() for c in cs if c["id"] == comment_id), None)
            if repo != self.repository or comment is None:
                return _not_found()
            if method == "PATCH":
                if not isinstance(payload, dict) or not isinstance(payload.get("body"), str):
                    return 422, {}, {"message": "Invalid request.", "errors": ['"body" wasn\'t supplied.']}
                comment["body"] = payload["body"]
                comment["updated_at"] = "2024-01-02T00:00:00Z"
                return 200, {}, comment
            if method == "GET":
                return 200, {}, comment
        return _not_found()

    def _list(self, path: str, number: int, query: dict[str, list[str]]) -> tuple[int, dict, Any]:
        per_page = max(1, min(int(query.get("per_page", ["30"])[0]), self.max_per_page))
        page = max(1, int(query.get("page", ["1"])[0]))
        comments = self.comments[number]
        last = max(1, -(-len(comments) // per_page))
        chunk = comments[(page - 1) * per_page : page * per_page]

        def link(p: int) -> str:
            return f"{self.url}{path}?{urlencode({'per_page': per_page, 'page': p})}"

        rels = []
        if page < last:
            rels += [f'<{link(page + 1)}>; rel="next"', f'<{link(last)}>; rel="last"']
        if page > 1:
            rels += [f'<{link(page - 1)}>; rel="prev"', f'<{link(1)}>; rel="first"']
        return 200, ({"Link": ", ".join(rels)} if rels else {}), chunk

    def _new_comment(self, number: int, body: str, login: str, user_type: str) -> dict[str, Any]:
        self._next_id += 1
        cid = self._next_id
        comment = {
            "id": cid,
            "body": body,
            "user": {"login": login, "type": user_type},
            "html_url": f"https://github.com/{self.repository}/pull/{number}#issuecomment-{cid}",
            "url": f"{self.url}{self.comment_path(cid)}",
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
        }
        self.comments.setdefault(number, []).append(comment)
        return comment

    # --- the repository and its pull requests -----------------------------------------------

    def _route_repository(
        self, method: str, path: str, query: dict[str, list[str]], payload: Any
    ) -> tuple[int, dict, Any] | None:
        """``GET /repos/{r}``, pulls list / create / get / update; None for a path it does not serve."""
        if m := _REPOSITORY.fullmatch(path):
            if method != "GET":
                return None
            if m.group(1) != self.repository:
                return _not_found()
            owner, name = self.repository.split("/")
            repo = {"full_name": self.repository, "name": name, "owner": {"login": owner}}
            return 200, {}, {**repo, "default_branch": self.default_branch}
        if m := _PULLS.fullmatch(path):
            if m.group(1) != self.repository:
                return _not_found()
            if method == "GET":
                return self._list_pulls(path, query)
            if method == "POST":
                return self._create_pull(payload)
            return None
        if m := _ONE_PULL.fullmatch(path):
            pr = self.pulls.get(int(m.group(2)))
            if m.group(1) != self.repository or pr is None:
                return _not_found()
            if method == "GET":
                return 200, {}, pr
            if method == "PATCH":
                return self._update_pull(pr, payload)
        return None

    def _list_pulls(self, path: str, query: dict[str, list[str]]) -> tuple[int, dict, Any]:
        state = query.get("state", ["open"])[0]
        head = query.get("head", [None])[0]
        base = query.get("base", [None])[0]
        found = [
            pr
            for _, pr in sorted(self.pulls.items(), reverse=True)  # newest first, like GitHub
            if state in ("all", pr["state"])
            and (head is None or pr["head"]["label" if ":" in head else "ref"] == head)
            and (base is None or pr["base"]["ref"] == base)
        ]
        per_page = max(1, min(int(query.get("per_page", ["30"])[0]), self.max_per_page))
        page = max(1, int(query.get("page", ["1"])[0]))
        chunk = found[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(found):
            rest = {k: v[0] for k, v in query.items() if k != "page"}
            headers["Link"] = f'<{self.url}{path}?{urlencode({**rest, "page": page + 1})}>; rel="next"'
        return 200, headers, chunk

    def _create_pull(self, payload: Any) -> tuple[int, dict, Any]:
        fields = ("title", "head", "base")
        if not isinstance(payload, dict) or not all(isinstance(payload.get(f), str) and payload[f] for f in fields):
            return 422, {}, {"message": "Invalid request.", "errors": ['"title", "head" and "base" are required.']}
        owner = self.repository.split("/")[0]
        ref = payload["head"].rpartition(":")[2]
        for other in self.pulls.values():
            if other["state"] == "open" and other["head"]["ref"] == ref and other["base"]["ref"] == payload["base"]:
                error = {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"A pull request already exists for {owner}:{ref}.",
                }
                return 422, {}, {"message": "Validation Failed", "errors": [error]}
        number = max([*self.comments, *self.pulls, 0]) + 1  # issues and pull requests share their numbers
        self.comments.setdefault(number, [])  # a new PR takes comments, as on GitHub
        self.pulls[number] = {
            "number": number,
            "state": "open",
            "title": payload["title"],
            "body": payload.get("body"),
            "head": {"ref": ref, "label": f"{owner}:{ref}"},
            "base": {"ref": payload["base"]},
            "merged": False,
            "merged_at": None,
            "user": {"login": self.bot_login, "type": "Bot"},
            "html_url": f"https://github.com/{self.repository}/pull/{number}",
            "url": f"{self.url}{self.pull_path(number)}",
        }
        return 201, {}, self.pulls[number]

    def _update_pull(self, pr: dict[str, Any], payload: Any) -> tuple[int, dict, Any]:
        if not isinstance(payload, dict):
            return 422, {}, {"message": "Invalid request."}
        for key in ("title", "body", "state"):
            if key in payload:
                pr[key] = payload[key]
        if "base" in payload:
            pr["base"] = {"ref": payload["base"]}
        return 200, {}, pr

    def _user(self) -> tuple[int, dict, Any]:
        """``GET /user``: the token's user, or GitHub's 403 for an installation token (GITHUB_TOKEN)."""
        if self.user_login is None:
            return (
                403,
                {},
                {
                    "message": "Resource not accessible by integration",
                    "documentation_url": "https://docs.github.com/rest/users/users#get-the-authenticated-user",
                    "status": "403",
                },
            )
        return 200, {}, {"login": self.user_login, "id": 583231, "type": "User"}


def _not_found() -> tuple[int, dict, Any]:
    return 404, {}, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, headers, payload = fake.handle(self.command, self.path, dict(self.headers.items()), body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # keep pytest output clean; every request is in fake.requests

    return Handler


@pytest.fixture
def github_server() -> Iterator[FakeGitHub]:
    """A running :class:`FakeGitHub`; stopped after the test."""
    with FakeGitHub() as server:
        yield server
