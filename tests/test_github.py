"""The GitHub client against a real HTTP server on 127.0.0.1, and the Actions file/command helpers."""

# ruff: noqa: F811 - tests take the imported `github_server` fixture as an argument

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path
from typing import Iterator

import pytest
from github_server import FakeGitHub, Fault, github_server  # noqa: F401 - the fixture

from aitune_ci.cli.console import console_logging
from aitune_ci.errors import AituneCIError, GitHubError
from aitune_ci.github import (
    DEFAULT_MARKER,
    MAX_COMMENT_CHARS,
    GitHubClient,
    annotation,
    post_report_comment,
    pull_request_number,
    upsert_comment,
    write_step_outputs,
    write_step_summary,
)

PR = 7
NOW = 1_700_000_000.0

_GITHUB_ENV = (
    "GITHUB_TOKEN",
    "GITHUB_REPOSITORY",
    "GITHUB_EVENT_PATH",
    "GITHUB_REF",
    "GITHUB_API_URL",
    "GITHUB_STEP_SUMMARY",
    "GITHUB_OUTPUT",
)


@pytest.fixture(autouse=True)
def _no_github_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests may themselves run in GitHub Actions: start from an environment without it."""
    for name in _GITHUB_ENV:
        monkeypatch.delenv(name, raising=False)


class Sleeps(list):
    """The injected ``sleep``: records each wait instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(server: FakeGitHub, sleeps: Sleeps, **kwargs) -> GitHubClient:
    kwargs.setdefault("clock", lambda: NOW)
    return GitHubClient(server.token, server.repository, api_url=server.url, sleep=sleeps, **kwargs)


# --- upsert: create and update paths ----------------------------------------------------------


def test_no_marked_comment_across_three_pages_creates_one(github_server: FakeGitHub) -> None:
    for i in range(250):  # per_page=100 → pages 1, 2, 3
        github_server.add_comment(PR, f"comment {i}", login="github-actions[bot]" if i % 2 else "octocat")
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, "## aitune-ci report\nall PASS")

    lists = github_server.requests_to("GET", github_server.comments_path(PR))
    assert [r.query.get("page") for r in lists] == [None, ["2"], ["3"]]
    assert all(r.query["per_page"] == ["100"] for r in lists)
    posts = github_server.requests_to("POST")
    assert len(posts) == 1 and posts[0].path == github_server.comments_path(PR)
    assert posts[0].json["body"] == f"{DEFAULT_MARKER}\n## aitune-ci report\nall PASS"
    assert github_server.requests_to("PATCH") == []
    created = github_server.comments[PR][-1]
    assert result.action == "created" and result.id == created["id"] and result.url == created["html_url"]
    assert len(github_server.comments[PR]) == 251


def test_marked_comment_on_page_two_is_patched_not_duplicated(github_server: FakeGitHub) -> None:
    for i in range(150):
        body = f"{DEFAULT_MARKER}\nold report" if i == 120 else f"comment {i}"
        github_server.add_comment(PR, body, login="github-actions[bot]")
    target = github_server.comments[PR][120]
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, f"{DEFAULT_MARKER}\nnew report")

    assert github_server.requests_to("POST") == []
    patches = github_server.requests_to("PATCH")
    assert [p.path for p in patches] == [github_server.comment_path(target["id"])]
    assert patches[0].json == {"body": f"{DEFAULT_MARKER}\nnew report"}  # marker not added twice
    assert target["body"] == f"{DEFAULT_MARKER}\nnew report"
    assert (result.action, result.id, result.url) == ("updated", target["id"], target["html_url"])
    assert len(github_server.comments[PR]) == 150


def test_latest_marked_comment_of_the_bot_is_preferred_over_others(github_server: FakeGitHub) -> None:
    older_bot = github_server.add_comment(PR, f"{DEFAULT_MARKER} v1", login="github-actions[bot]", user_type="Bot")
    newer_bot = github_server.add_comment(PR, f"{DEFAULT_MARKER} v2", login="github-actions[bot]", user_type="Bot")
    github_server.add_comment(PR, f"> quoting {DEFAULT_MARKER} v2", login="octocat")  # latest, but a human's
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, "v3")
    assert result.id == newer_bot["id"] != older_bot["id"]
    assert [p.path for p in github_server.requests_to("PATCH")] == [github_server.comment_path(newer_bot["id"])]


@pytest.mark.parametrize("login", ["octocat", "dependabot[bot]", "ci-user"])
def test_a_marked_comment_of_another_author_is_never_edited_even_when_the_bot_has_none(
    github_server: FakeGitHub, login: str
) -> None:
    quoted = f"> {DEFAULT_MARKER}\n> all PASS\n\nWhy did this pass?"
    theirs = github_server.add_comment(PR, quoted, login=login)
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, "new report")
    assert github_server.requests_to("PATCH") == []
    assert theirs["body"] == quoted
    assert result.action == "created" and result.id != theirs["id"]
    assert github_server.comments[PR][-1]["user"]["login"] == "github-actions[bot]"


def test_the_authors_own_marked_comment_is_updated_and_others_are_left_alone(github_server: FakeGitHub) -> None:
    mine = github_server.add_comment(PR, f"{DEFAULT_MARKER} v1", login="ci-user")
    bots = github_server.add_comment(PR, f"{DEFAULT_MARKER} v1", login="github-actions[bot]", user_type="Bot")
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, "v2", author="ci-user")
    assert (result.action, result.id) == ("updated", mine["id"])
    assert mine["body"] == f"{DEFAULT_MARKER}\nv2" and bots["body"] == f"{DEFAULT_MARKER} v1"


def test_an_empty_author_is_refused_before_any_request(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    with client_for(github_server, Sleeps()) as client, pytest.raises(ValueError, match="github-actions"):
        upsert_comment(client, PR, "x", author=" ")
    assert github_server.requests == []


def test_custom_marker_keeps_reports_apart(github_server: FakeGitHub) -> None:
    github_server.add_comment(PR, f"{DEFAULT_MARKER} cpu report", login="github-actions[bot]")
    with client_for(github_server, Sleeps()) as client:
        result = upsert_comment(client, PR, "h100 report", marker="<!-- aitune-ci:report:h100 -->")
    assert result.action == "created"
    assert github_server.comments[PR][0]["body"] == f"{DEFAULT_MARKER} cpu report"


def test_body_longer_than_github_accepts_raises_before_any_request(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    with client_for(github_server, Sleeps()) as client:
        upsert_comment(client, PR, "x" * (MAX_COMMENT_CHARS - len(DEFAULT_MARKER) - 1))  # exactly the limit: fine
        github_server.requests.clear()
        with pytest.raises(ValueError, match="65536"):
            upsert_comment(client, PR, "x" * MAX_COMMENT_CHARS)
    assert github_server.requests == []


# --- retries, rate limits and errors ----------------------------------------------------------


def test_500_then_success_is_retried_and_creates_one_comment(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    github_server.fail("POST", github_server.comments_path(PR), Fault(500))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client:
        result = upsert_comment(client, PR, "report")
    assert len(github_server.requests_to("POST")) == 2
    assert sleeps == [1.0]
    assert result.action == "created" and len(github_server.comments[PR]) == 1


def test_persistent_5xx_gives_up_after_max_retries_with_backoff(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    github_server.fail("GET", github_server.comments_path(PR), *[Fault(502)] * 5)
    sleeps = Sleeps()
    with client_for(github_server, sleeps, max_retries=2) as client, pytest.raises(GitHubError) as err:
        upsert_comment(client, PR, "report")
    assert err.value.status == 502 and "3 times" in str(err.value)
    assert sleeps == [1.0, 2.0]
    assert len(github_server.requests_to("GET")) == 3


def test_429_waits_the_retry_after_seconds(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    github_server.fail("GET", github_server.comments_path(PR), Fault(429, {"Retry-After": "7"}))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client:
        assert upsert_comment(client, PR, "report").action == "created"
    assert sleeps == [7.0]
    assert len(github_server.requests_to("GET")) == 2


def test_403_with_no_remaining_requests_waits_until_the_reset(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 30)}
    body = {"message": "API rate limit exceeded for installation ID 1."}
    github_server.fail("POST", github_server.comments_path(PR), Fault(403, headers, body))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client:
        assert upsert_comment(client, PR, "report").action == "created"
    assert sleeps == [30.0]


def test_secondary_rate_limit_without_headers_waits_a_minute(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}
    github_server.fail("POST", github_server.comments_path(PR), Fault(403, {"x-ratelimit-remaining": "4000"}, body))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client:
        assert upsert_comment(client, PR, "report").action == "created"
    assert sleeps == [60.0]


def test_rate_limit_lifting_after_max_wait_fails_at_once(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 3600)}
    github_server.fail("GET", github_server.comments_path(PR), Fault(403, headers))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client, pytest.raises(GitHubError, match="rate limit") as err:
        upsert_comment(client, PR, "report")
    assert "3600 s" in str(err.value) and err.value.status == 403
    assert sleeps == [] and len(github_server.requests) == 1


def test_plain_403_raises_with_the_permissions_hint(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    body = {"message": "Resource not accessible by integration"}
    github_server.fail("POST", github_server.comments_path(PR), Fault(403, {"x-ratelimit-remaining": "999"}, body))
    sleeps = Sleeps()
    with client_for(github_server, sleeps) as client, pytest.raises(GitHubError) as err:
        upsert_comment(client, PR, "report")
    message = str(err.value)
    assert isinstance(err.value, AituneCIError) and err.value.status == 403
    assert message.startswith("403 Forbidden: the token cannot write PR comments")
    assert "permissions: pull-requests: write" in message and "Resource not accessible by integration" in message
    assert sleeps == [] and len(github_server.requests_to("POST")) == 1


def test_unknown_pr_gives_a_clear_404(github_server: FakeGitHub) -> None:
    with client_for(github_server, Sleeps()) as client, pytest.raises(GitHubError) as err:
        upsert_comment(client, 999, "report")
    assert err.value.status == 404
    assert "404: repository or PR not found, or the token cannot see it" in str(err.value)
    assert github_server.repository in str(err.value)


def test_rejected_token_gives_401_hint(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    client = GitHubClient("ghs_wrong", github_server.repository, api_url=github_server.url, sleep=Sleeps())
    with client, pytest.raises(GitHubError, match="401 Unauthorized") as err:
        upsert_comment(client, PR, "report")
    assert "GITHUB_TOKEN" in str(err.value) and "Bad credentials" in str(err.value)


def test_unreachable_api_is_retried_then_named(github_server: FakeGitHub) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    sleeps = Sleeps()
    client = GitHubClient("t0ken", "octo-org/hello", api_url=dead, sleep=sleeps, max_retries=2)
    with client, pytest.raises(GitHubError, match="no answer from") as err:
        upsert_comment(client, PR, "report")
    assert err.value.status is None and sleeps == [1.0, 2.0]


def test_pagination_link_to_another_host_is_not_followed(github_server: FakeGitHub) -> None:
    github_server.open_pull(PR)
    link = {"Link": '<http://attacker.invalid/steal?page=2>; rel="next"'}
    github_server.fail("GET", github_server.comments_path(PR), Fault(200, link, []))
    with client_for(github_server, Sleeps()) as client, pytest.raises(GitHubError, match="refusing to send the token"):
        upsert_comment(client, PR, "report")
    assert github_server.requests_to("POST") == []


def test_every_request_carries_the_token_and_api_headers(github_server: FakeGitHub) -> None:
    github_server.add_comment(PR, "hello")
    with client_for(github_server, Sleeps()) as client:
        upsert_comment(client, PR, "first")
        upsert_comment(client, PR, "second")
    assert [r.method for r in github_server.requests] == ["GET", "POST", "GET", "PATCH"]
    for r in github_server.requests:
        assert r.headers["authorization"] == f"Bearer {github_server.token}"
        assert r.headers["accept"] == "application/vnd.github+json"
        assert r.headers["x-github-api-version"] == "2022-11-28"
        assert r.headers["user-agent"].startswith("aitune-ci")


def test_token_never_appears_in_errors_logs_or_output(
    github_server: FakeGitHub, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    token = github_server.token
    github_server.open_pull(PR)
    path = github_server.comments_path(PR)
    echo = {"message": f"Bad credentials for token {token}"}  # a server that echoes the token back
    github_server.fail("GET", path, Fault(429, {"Retry-After": "1"}), Fault(500, {}, echo), Fault(403, {}, echo))
    github_server.fail("GET", path, Fault(404, {}, echo), Fault(422, {}, echo), Fault(401, {}, echo))
    github_server.fail("GET", path, *[Fault(503, {}, echo)] * 5)
    github_server.fail("GET", path, Fault(403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "9999999999"}, echo))
    texts: list[str] = []
    statuses = []
    caplog.set_level(logging.DEBUG)
    with client_for(github_server, Sleeps()) as client:
        texts.append(repr(client))
        for _ in range(6):
            with pytest.raises(GitHubError) as err:
                upsert_comment(client, PR, "report")
            texts += [str(err.value), repr(err.value)]
            statuses.append(err.value.status)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    with GitHubClient(token, "o/r", api_url=dead, sleep=Sleeps(), max_retries=1) as client:
        with pytest.raises(GitHubError) as err:
            upsert_comment(client, PR, "report")
        texts += [str(err.value), repr(err.value), repr(client)]
    assert statuses == [403, 404, 422, 401, 503, 403]
    assert "***" in texts[1]  # the echoed token was redacted, not dropped silently
    captured = capsys.readouterr()
    everything = "\n".join([*texts, caplog.text, captured.out, captured.err])
    assert "retrying" in caplog.text  # the retries were logged...
    assert token not in everything  # ...and nothing anywhere shows the token


# --- pull request number -------------------------------------------------------------------------


def _event(tmp_path: Path, payload: object) -> Path:
    path = tmp_path / "event.json"
    path.write_text(json.dumps(payload) if not isinstance(payload, str) else payload)
    return path


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"action": "opened", "pull_request": {"number": 42}}, 42),
        ({"action": "created", "issue": {"number": 43, "pull_request": {"url": "x"}}}, 43),
        ({"action": "created", "issue": {"number": 44}}, None),  # a comment on a plain issue
        ({"workflow_run": {"pull_requests": [{"number": 45}]}}, 45),
        ({"ref": "refs/heads/main", "commits": []}, None),  # push
    ],
)
def test_pr_number_comes_from_the_event_payload(tmp_path: Path, payload: object, expected: int | None) -> None:
    assert pull_request_number(_event(tmp_path, payload)) == expected


def test_pr_number_reads_github_event_path_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, {"pull_request": {"number": 9}})))
    assert pull_request_number() == 9


@pytest.mark.parametrize("payload", ["{not json", {"ref": "refs/heads/x"}])
def test_pr_number_falls_back_to_github_ref(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, payload: object) -> None:
    monkeypatch.setenv("GITHUB_REF", "refs/pull/12/merge")
    assert pull_request_number(_event(tmp_path, payload)) == 12


def test_no_event_and_a_branch_ref_is_not_a_pr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert pull_request_number(tmp_path / "missing.json") is None
    monkeypatch.setenv("GITHUB_REF", "refs/heads/main")
    assert pull_request_number() is None


# --- step summary, outputs, annotations -------------------------------------------------------


def test_step_summary_is_appended_only_when_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_step_summary("# nothing") is False
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert write_step_summary("## aitune-ci\n| a | b |") is True
    assert write_step_summary("second\n") is True
    assert summary.read_text() == "earlier step\n## aitune-ci\n| a | b |\nsecond\n"


def _parse_output_file(text: str) -> dict[str, str]:
    """Read $GITHUB_OUTPUT as the runner does: ``name=value`` or ``name<<DELIM`` ... ``DELIM``."""
    lines, out, i = text.split("\n"), {}, 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif "=" in line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def test_step_outputs_use_the_multiline_delimiter_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert write_step_outputs({"verdict": "pass"}) is False
    output = tmp_path / "output"
    output.write_text("earlier=1\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    report = tmp_path / "report.html"
    values = {
        "verdict": "REGRESSED",
        "regressed": 2,
        "failed": False,
        "report-html": report,
        "reports": ["a.json", "b.md"],
        "summary": "line one\nline two: with = and << inside\n",
    }
    assert write_step_outputs(values) is True
    text = output.read_text()
    headers = re.findall(r"^([\w-]+)<<(.*)$", text, flags=re.M)
    assert [name for name, _ in headers] == list(values)
    assert all(re.fullmatch(r"ghadelimiter_[0-9a-f-]{36}", d) for _, d in headers)
    assert len({d for _, d in headers}) == len(values)  # a fresh delimiter per value
    assert _parse_output_file(text) == {
        "earlier": "1",
        "verdict": "REGRESSED",
        "regressed": "2",
        "failed": "false",
        "report-html": str(report),
        "reports": '["a.json", "b.md"]',
        "summary": "line one\nline two: with = and << inside\n",
    }


def test_invalid_output_name_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    with pytest.raises(ValueError, match="step output name"):
        write_step_outputs({"ok": 1, "bad name": 2})
    assert not output.exists()


def test_annotation_escapes_message_and_properties() -> None:
    line = annotation(
        "error",
        "latency +12% (p=0.01)\r\nsee: report.html",
        file="tests/test_models.py",
        title="tune_resnet[inductor]: REGRESSED, latency",
        line=3,
    )
    assert line == (
        "::error file=tests/test_models.py,line=3,title=tune_resnet[inductor]%3A REGRESSED%2C latency"
        "::latency +12%25 (p=0.01)%0D%0Asee: report.html"
    )
    assert annotation("warning", "100% slower") == "::warning::100%25 slower"
    assert "\n" not in annotation("notice", "a\nb", title="x\ny")


def test_annotation_rejects_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="annotation level"):
        annotation("fatal", "boom")  # type: ignore[arg-type]


# --- post_report_comment: the CLI's entry point -------------------------------------------------


@pytest.fixture
def actions_env(github_server: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    """The environment of a pull_request workflow run pointed at the fake server, on the CLI's console."""
    github_server.open_pull(PR)
    monkeypatch.setenv("GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github_server.repository)
    monkeypatch.setenv("GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, {"pull_request": {"number": PR}})))
    with console_logging():
        yield github_server


def test_post_report_comment_creates_then_updates(actions_env: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    assert post_report_comment("report v1") == 0
    assert post_report_comment("report v2") == 0
    out = capsys.readouterr().out.splitlines()
    comment = actions_env.comments[PR][0]
    assert len(actions_env.comments[PR]) == 1 and comment["body"] == f"{DEFAULT_MARKER}\nreport v2"
    assert out == [
        f"aitune-ci comment: created comment {comment['id']} of github-actions[bot] on PR #{PR}: {comment['html_url']}",
        f"aitune-ci comment: updated comment {comment['id']} of github-actions[bot] on PR #{PR}: {comment['html_url']}",
    ]


@pytest.mark.parametrize(("fail_on_error", "level", "status"), [(False, "warning", 0), (True, "error", 1)])
def test_post_report_comment_api_error_warns_unless_asked_to_fail(
    actions_env: FakeGitHub, capsys: pytest.CaptureFixture[str], fail_on_error: bool, level: str, status: int
) -> None:
    actions_env.fail("POST", actions_env.comments_path(PR), Fault(403, {}, {"message": "Resource not accessible"}))
    assert post_report_comment("report", fail_on_error=fail_on_error) == status
    out = capsys.readouterr().out
    assert out.startswith(f"::{level} title=aitune-ci comment::") and out.count("\n") == 1
    assert "pull-requests: write" in out and actions_env.token not in out


def test_post_report_comment_outside_a_pr_skips_without_calling_github(
    actions_env: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, {"ref": "refs/heads/main"})))
    assert post_report_comment("report", fail_on_error=True) == 0
    assert "skipped" in capsys.readouterr().out and actions_env.requests == []


def test_post_report_comment_without_token_says_how_to_pass_it(
    actions_env: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    assert post_report_comment("report") == 0
    assert post_report_comment("report", fail_on_error=True) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("::warning") and out[1].startswith("::error") and "GITHUB_TOKEN" in out[0]
    assert actions_env.requests == []


def test_the_library_logs_its_status_lines_and_echoes_workflow_commands(
    github_server: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    github_server.open_pull(PR)
    monkeypatch.setenv("GITHUB_REPOSITORY", github_server.repository)
    monkeypatch.setenv("GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, {"pull_request": {"number": PR}})))
    caplog.set_level(logging.INFO, logger="aitune_ci")
    echoed: list[str] = []

    assert post_report_comment("report", echo=echoed.append) == 0  # no token: a warning command
    monkeypatch.setenv("GITHUB_TOKEN", github_server.token)
    assert post_report_comment("report", echo=echoed.append) == 0

    comment = github_server.comments[PR][0]
    assert [line.split("::")[1] for line in echoed] == ["warning title=aitune-ci comment"]
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("aitune_ci")] == [
        (
            "aitune_ci.github.comment",
            logging.INFO,
            f"aitune-ci comment: created comment {comment['id']} of github-actions[bot] on PR #{PR}: "
            f"{comment['html_url']}",
        )
    ]
    assert capsys.readouterr().out == ""  # without a console handler, the library writes nothing itself


# --- whose comments the client may touch --------------------------------------------------------


def test_github_token_comments_as_github_actions_bot_when_get_user_is_forbidden(
    actions_env: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    person = actions_env.add_comment(PR, f"quoting {DEFAULT_MARKER} here", login="octocat")
    assert post_report_comment("report v1") == 0
    assert post_report_comment("report v2") == 0
    gets = actions_env.requests_to("GET", "/user")
    assert len(gets) == 2  # asked each time, answered 403 as GitHub answers an installation token
    assert [c["id"] for c in actions_env.comments[PR]] == [person["id"], person["id"] + 1]
    assert person["body"] == f"quoting {DEFAULT_MARKER} here"
    assert actions_env.comments[PR][1]["body"] == f"{DEFAULT_MARKER}\nreport v2"
    assert "::" not in capsys.readouterr().out  # the 403 is expected: no warning


def test_a_personal_token_comments_as_its_user_found_with_get_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeGitHub(token="ghp_personal-token", bot_login="ci-user", user_login="ci-user") as server:
        server.open_pull(PR)
        for name, value in (("TOKEN", server.token), ("REPOSITORY", server.repository), ("API_URL", server.url)):
            monkeypatch.setenv(f"GITHUB_{name}", value)
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(_event(tmp_path, {"pull_request": {"number": PR}})))
        actions_bot = server.add_comment(PR, f"{DEFAULT_MARKER} old", login="github-actions[bot]", user_type="Bot")
        own = server.add_comment(PR, f"{DEFAULT_MARKER} old", login="ci-user")
        server.add_comment(PR, f"> {DEFAULT_MARKER} quoted", login="octocat")  # the latest, but a person's
        assert post_report_comment("new", fail_on_error=True) == 0
        assert [p.path for p in server.requests_to("PATCH")] == [server.comment_path(own["id"])]
        assert own["body"] == f"{DEFAULT_MARKER}\nnew" and actions_bot["body"] == f"{DEFAULT_MARKER} old"


def test_an_explicit_bot_login_is_used_without_asking_github(actions_env: FakeGitHub) -> None:
    app = actions_env.add_comment(PR, f"{DEFAULT_MARKER} old", login="acme-ci[bot]", user_type="Bot")
    assert post_report_comment("new", bot_login="acme-ci[bot]", fail_on_error=True) == 0
    assert actions_env.requests_to("GET", "/user") == []
    assert app["body"] == f"{DEFAULT_MARKER}\nnew" and len(actions_env.comments[PR]) == 1


def test_a_rejected_token_on_get_user_is_reported_not_guessed(
    actions_env: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    actions_env.fail("GET", "/user", Fault(401, {}, {"message": "Bad credentials"}))
    assert post_report_comment("report", fail_on_error=True) == 1
    out = capsys.readouterr().out
    assert out.startswith("::error title=aitune-ci comment::") and "GITHUB_TOKEN" in out
    assert actions_env.requests_to("POST") == [] and actions_env.requests_to("PATCH") == []


def test_cli_comment_posts_the_oversized_report_once_under_the_limit_with_its_bot_login(
    actions_env: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from large_run import large_run

    from aitune_ci.cli import main

    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(large_run(700, 234)))
    person = actions_env.add_comment(PR, f"> {DEFAULT_MARKER}\n> quoted", login="octocat")
    actions_env.bot_login = "acme-ci[bot]"  # a GitHub App's installation token comments as its app
    outputs = tmp_path / "outputs.txt"
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    args = ["comment", str(run_file), "--bot-login", "acme-ci[bot]", "--fail-on-error"]
    assert main(args) == 0
    assert main(args) == 0  # the second run updates its own comment
    ours = [c for c in actions_env.comments[PR] if c["user"]["login"] == "acme-ci[bot]"]
    assert len(ours) == 1 and len(actions_env.comments[PR]) == 2 and person["body"] == f"> {DEFAULT_MARKER}\n> quoted"
    body = ours[0]["body"]
    assert len(body) <= MAX_COMMENT_CHARS and body.startswith(DEFAULT_MARKER)
    assert body.count("| 🔴 REGRESSED") == 234 and "Nothing changed beyond the noise" not in body
    assert body.count("```") % 2 == 0 and body.count("<details>") == body.count("</details>")
    out = capsys.readouterr().out
    assert out.count("::error ") == 2 * 10 and out.count("::notice ") == 2  # 10 annotations + 1 notice per run
    written = outputs.read_text()
    assert re.search(r"^verdict<<(ghadelimiter_[\w-]+)\nregressed\n\1$", written, flags=re.M)
    assert re.search(r"^verdict-kind<<(ghadelimiter_[\w-]+)\nREGRESSED\n\1$", written, flags=re.M)
