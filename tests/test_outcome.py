"""The action's outcome (pass / regressed / broken) and the fork PR's lookup: pure decisions, then the CLI."""

# ruff: noqa: F811 - tests take the imported `github_server` fixture as an argument

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from github_server import FakeGitHub, github_server  # noqa: F401 - the fixture

from aitune_ci.cli import main
from aitune_ci.errors import AituneCIError
from aitune_ci.github import GitHubClient
from aitune_ci.github.outcome import (
    EXIT_BROKEN,
    EXIT_REGRESSED,
    Outcome,
    ShardResult,
    decide,
    failed_tests,
    read_shard,
)
from aitune_ci.github.workflow_run import pull_request_of_run
from aitune_ci.status import VerdictKind
from aitune_ci.verdict import Verdict
from aitune_ci.verdict.model import ACCURACY, LATENCY, METRIC_REASONS, NOW_FAILING, TASK_METRIC


def _verdict(backend: str, kind: VerdictKind, *reasons: str, fixture: str = "tune_x", **kw) -> dict:
    return Verdict(fixture=fixture, backend=backend, kind=kind, reasons=reasons, **kw).to_json()


#: A real tune result (from the report tests' data), renamed per fixture.
_RESULT = json.loads((Path(__file__).parent / "data" / "report_run.json").read_text())["results"][0]


def _run(*verdicts: dict) -> dict:
    fixtures = sorted({v["fixture"] for v in verdicts}) or ["tune_x"]
    results = [{**_RESULT, "name": name} for name in fixtures]
    return {"schema_version": 1, "started": None, "results": results, "verdicts": list(verdicts)}


SLOWER = _verdict("inductor", VerdictKind.REGRESSED, LATENCY)
LESS_ACCURATE = _verdict("torchao-int8dq", VerdictKind.REGRESSED, ACCURACY)
NOW_BROKEN = _verdict("aoti", VerdictKind.REGRESSED, NOW_FAILING)
PASSING = _verdict("eager", VerdictKind.PASS)


def test_regressions_of_the_gated_metrics_and_task_metrics_count_as_regressions_not_breakage():
    memory = _verdict("inductor", VerdictKind.REGRESSED, METRIC_REASONS[1])
    top1 = _verdict("eager-bf16", VerdictKind.REGRESSED, TASK_METRIC)
    failed = ("tune_x[inductor]", "tune_x[eager-bf16]")
    decision = decide([ShardResult("run", 1, _run(PASSING, memory, top1), failed)])
    assert decision.outcome is Outcome.REGRESSED
    assert decision.regressions == failed


def test_a_run_whose_only_failures_are_latency_or_accuracy_regressions_regressed():
    shard = ShardResult("run", 1, _run(PASSING, SLOWER, LESS_ACCURATE), ("tune_x[inductor]", "tune_x[torchao-int8dq]"))
    decision = decide([shard])
    assert decision.outcome is Outcome.REGRESSED
    assert decision.regressions == ("tune_x[inductor]", "tune_x[torchao-int8dq]")
    assert decision.exit_code() == EXIT_REGRESSED
    assert decision.exit_code(fail_on_regression=False) == 0  # warn-only hides a regression


@pytest.mark.parametrize(
    ("failed", "verdicts", "says"),
    [
        (("tests.test_models.test_shapes",), (PASSING,), "tests.test_models.test_shapes"),  # a user's own test
        (("tune_x[aoti]",), (SLOWER, NOW_BROKEN), "tune_x[aoti]"),  # a backend that no longer builds
        (("tune_x[onnxruntime]",), (_verdict("onnxruntime", VerdictKind.FAILED),), "tune_x[onnxruntime]"),
        (("tune_x[selection]",), (PASSING,), "tune_x[selection]"),  # no backend could be selected
        (("tune_x[inductor]", "tests.t.test_y"), (SLOWER,), "tests.t.test_y"),  # a regression beside a failure
    ],
)
def test_a_failure_that_is_not_a_regression_breaks_the_run_even_warn_only(failed, verdicts, says):
    decision = decide([ShardResult("run", 1, _run(*verdicts), failed)])
    assert decision.outcome is Outcome.BROKEN
    assert says in " ".join(decision.reasons)
    assert decision.exit_code(fail_on_regression=False) == EXIT_BROKEN


def test_strict_mode_missing_baseline_is_broken_not_a_regression():
    strict = _verdict("eager", VerdictKind.REGRESSED, LATENCY, baseline_required=True)
    assert decide([ShardResult("run", 1, _run(strict), ("tune_x[eager]",))]).outcome is Outcome.BROKEN


def test_a_quarantined_regression_does_not_count_as_one():
    quarantined = _verdict("inductor", VerdictKind.REGRESSED, LATENCY, quarantined=True)
    # Its item passed, so pytest did not fail it; a JUnit failure of that id must then be something else.
    assert decide([ShardResult("run", 0, _run(quarantined), ())]).outcome is Outcome.PASS
    assert decide([ShardResult("run", 1, _run(quarantined), ("tune_x[inductor]",))]).outcome is Outcome.BROKEN


@pytest.mark.parametrize(
    ("code", "run", "failed", "says"),
    [
        (None, _run(PASSING), (), "did not finish"),
        (2, _run(PASSING), (), "interrupted"),
        (3, _run(PASSING), (), "internal error"),
        (4, None, None, "usage error"),
        (137, None, None, "killed by signal 9"),
        (0, None, None, "wrote no results"),  # exit 0 and no run JSON: the report was never written
        (1, None, None, "wrote no results"),  # a crash in the session's end
        (1, _run(SLOWER), None, "no JUnit report"),  # cannot tell its failures apart
        (1, _run(PASSING), (), "lists no failed test"),
    ],
)
def test_a_run_that_crashed_or_left_no_results_is_broken(code, run, failed, says):
    decision = decide([ShardResult("run", code, run, failed)])
    assert decision.outcome is Outcome.BROKEN
    assert says in decision.reasons[0]


def test_no_tune_fixture_under_the_test_path_is_broken_and_says_where_to_look():
    empty = {"schema_version": 1, "started": None, "results": [], "verdicts": []}
    for code in (0, 5):
        decision = decide([ShardResult("run", code, empty if code == 0 else None, ())])
        assert decision.outcome is Outcome.BROKEN
        assert "pytest-args" in decision.reasons[0]
    # One shard of a matrix may get no fixture at all.
    assert decide([ShardResult("shard 3", 5, None)], require_checks=False).outcome is Outcome.PASS


def test_shards_combine_into_one_outcome():
    passed = ShardResult("shard 1", 0, _run(PASSING))
    regressed = ShardResult(
        "shard 2",
        1,
        _run(_verdict("inductor", VerdictKind.REGRESSED, LATENCY, fixture="tune_y")),
        ("tune_y[inductor]",),
    )
    empty = ShardResult("shard 3", 5, None)
    assert decide([passed, empty], expected_shards=2).outcome is Outcome.PASS
    decision = decide([passed, regressed, empty], expected_shards=3)
    assert decision.outcome is Outcome.REGRESSED and decision.regressions == ("tune_y[inductor]",)
    missing = decide([passed, regressed], expected_shards=4)
    assert missing.outcome is Outcome.BROKEN and "2 of 4 shard(s) sent no results" in missing.reasons[0]
    assert missing.regressions == ("tune_y[inductor]",)  # still listed


def test_a_passing_run_passes():
    decision = decide([ShardResult("run", 0, _run(PASSING, _verdict("inductor", VerdictKind.IMPROVED)), ())])
    assert decision.outcome is Outcome.PASS and decision.exit_code() == 0
    assert decision.summary() == "aitune-ci: pass"


def test_junit_failures_are_read_from_pytests_own_report(tmp_path):
    tests = tmp_path / "test_some.py"
    tests.write_text(
        textwrap.dedent(
            """
            import pytest

            def test_ok():
                pass

            def test_fails():
                assert False

            @pytest.fixture
            def broken():
                raise RuntimeError("setup")

            def test_errors(broken):
                pass

            @pytest.mark.parametrize("x", [1, 2])
            def test_param(x):
                assert x == 1
            """
        )
    )
    junit = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(tests), f"--junitxml={junit}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert sorted(failed_tests(junit)) == ["test_some.test_errors", "test_some.test_fails", "test_some.test_param[2]"]


def test_junit_names_of_aitune_items_are_check_ids_even_under_xdist_loadgroup(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<?xml version="1.0"?><testsuites><testsuite name="pytest">'
        '<testcase classname="conftest" name="tune_x[inductor]@aitune-tune_x"><failure message="slower"/></testcase>'
        '<testcase classname="conftest" name="tune_x[eager]"/>'
        '<testcase classname="conftest" name="tune_y[selection]"><error message="boom"/></testcase>'
        "</testsuite></testsuites>"
    )
    assert failed_tests(junit) == ("tune_x[inductor]", "tune_y[selection]")
    (tmp_path / "bad.xml").write_text("<testsuites><testcase")
    with pytest.raises(AituneCIError, match="bad.xml: not a readable JUnit report"):
        failed_tests(tmp_path / "bad.xml")


def _shard_folder(folder: Path, code: int | None, run: dict | None, junit_failures: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True)
    if code is not None:
        (folder / "pytest-exit-code").write_text(f"{code}\n")
    if run is not None:
        (folder / "run.json").write_text(json.dumps(run))
    cases = "".join(f'<testcase classname="conftest" name="{n}"><failure/></testcase>' for n in junit_failures)
    (folder / "junit.xml").write_text(f"<testsuites><testsuite>{cases}</testsuite></testsuites>")
    return folder


def test_read_shard_reads_what_the_action_leaves_and_names_what_is_missing(tmp_path):
    shard = read_shard(_shard_folder(tmp_path / "a", 1, _run(SLOWER), ("tune_x[inductor]",)))
    assert (shard.exit_code, shard.failed) == (1, ("tune_x[inductor]",)) and shard.run["verdicts"]
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "run.json").write_text("{not json")
    broken = read_shard(tmp_path / "b")
    assert broken.exit_code is None and broken.run is None and "not valid JSON" in broken.run_error
    assert read_shard(tmp_path / "c").run_error.endswith("run.json is missing")


def test_outcome_command_writes_step_outputs_and_exits_by_outcome(tmp_path, monkeypatch, capsys):
    output = tmp_path / "github_output"
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    regressed = _shard_folder(tmp_path / "r", 1, _run(SLOWER), ("tune_x[inductor]",))
    assert main(["outcome", str(regressed)]) == EXIT_REGRESSED
    assert "::error title=aitune-ci%3A regressed::1 check(s) regressed: tune_x[inductor]" in capsys.readouterr().out
    assert main(["outcome", str(regressed), "--warn-only"]) == 0
    assert "::warning title=aitune-ci%3A regressed::" in capsys.readouterr().out
    crashed = _shard_folder(tmp_path / "c", 3, None)
    assert main(["outcome", str(crashed), "--warn-only"]) == EXIT_BROKEN
    text = output.read_text()
    assert text.count("outcome<<") == 3
    assert [line for line in text.splitlines() if line in ("regressed", "broken")] == [
        "regressed",
        "regressed",
        "broken",
    ]


def test_outcome_command_caps_its_annotations(tmp_path, capsys):
    folders = [str(_shard_folder(tmp_path / f"s{i}", 3, None)) for i in range(14)]
    assert main(["outcome", *folders]) == EXIT_BROKEN
    assert capsys.readouterr().out.count("::error") == 10


def test_outcome_of_a_matrix_with_a_shard_missing_is_broken(tmp_path, capsys):
    passed = _shard_folder(tmp_path / "s1", 0, _run(PASSING))
    assert main(["outcome", str(passed), "--expect-shards", "2"]) == EXIT_BROKEN
    assert "1 of 2 shard(s) sent no results" in capsys.readouterr().out
    assert main(["outcome", "--expect-shards", "2"]) == EXIT_BROKEN


# --- the fork PR behind a workflow_run event ------------------------------------------------------


def _workflow_run(**run) -> dict:
    base = {
        "id": 99,
        "event": "pull_request",
        "head_sha": "a" * 40,
        "head_branch": "feature",
        "head_repository": {"full_name": "forker/hello"},
        "pull_requests": [],
    }
    return {"action": "completed", "workflow_run": {**base, **run}}


def _add_pull(server: FakeGitHub, number: int, owner: str, branch: str, sha: str, state: str = "open") -> None:
    server.pulls[number] = {
        "number": number,
        "state": state,
        "head": {"ref": branch, "label": f"{owner}:{branch}", "sha": sha, "repo": {"full_name": f"{owner}/hello"}},
        "base": {"ref": "main"},
    }


def _client(server: FakeGitHub) -> GitHubClient:
    return GitHubClient(server.token, server.repository, api_url=server.url)


def test_a_fork_pr_is_found_through_the_api_by_its_head_commit(github_server: FakeGitHub):
    _add_pull(github_server, 7, "forker", "feature", "b" * 40)  # an older push of the same branch: other commit
    _add_pull(github_server, 8, "someone", "feature", "a" * 40)  # another fork's branch of the same name
    with _client(github_server) as client:
        assert pull_request_of_run(client, _workflow_run()) is None
        _add_pull(github_server, 9, "forker", "feature", "a" * 40)
        assert pull_request_of_run(client, _workflow_run()) == 9
        _add_pull(github_server, 9, "forker", "feature", "a" * 40, state="closed")
        assert pull_request_of_run(client, _workflow_run()) is None


def test_a_same_repo_pr_comes_from_the_event_only_when_its_head_is_the_runs(github_server: FakeGitHub):
    with _client(github_server) as client:
        same = _workflow_run(pull_requests=[{"number": 5, "head": {"sha": "a" * 40}}])
        assert pull_request_of_run(client, same) == 5
        assert github_server.requests == []  # no API call needed
        # GitHub matches pull_requests by branch name: another PR's head is not this run's.
        stranger = _workflow_run(pull_requests=[{"number": 6, "head": {"sha": "c" * 40}}])
        assert pull_request_of_run(client, stranger) is None
        assert pull_request_of_run(client, _workflow_run(event="push")) is None
        with pytest.raises(ValueError, match="no 'workflow_run'"):
            pull_request_of_run(client, {"pull_request": {"number": 1}})


def test_find_pr_writes_an_event_file_that_comment_then_posts_to(github_server: FakeGitHub, tmp_path, monkeypatch):
    _add_pull(github_server, 12, "forker", "feature", "a" * 40)
    github_server.comments.setdefault(12, [])
    event = tmp_path / "event.json"
    event.write_text(json.dumps(_workflow_run()))
    output = tmp_path / "github_output"
    for key, value in {
        "GITHUB_TOKEN": github_server.token,
        "GITHUB_REPOSITORY": github_server.repository,
        "GITHUB_API_URL": github_server.url,
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_OUTPUT": str(output),
    }.items():
        monkeypatch.setenv(key, value)
    pr_event = tmp_path / "pr-event.json"
    assert main(["find-pr", "--output", str(pr_event)]) == 0
    assert json.loads(pr_event.read_text())["pull_request"]["number"] == 12
    assert "pr-number<<" in output.read_text() and "\n12\n" in output.read_text()
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(pr_event))
    run = tmp_path / "run.json"
    run.write_text(json.dumps(_run(PASSING)))
    assert main(["comment", str(run)]) == 0
    assert [c["body"] for c in github_server.comments[12]] and "tune_x" in github_server.comments[12][0]["body"]


def test_find_pr_without_a_token_says_what_to_set(tmp_path, monkeypatch, capsys):
    event = tmp_path / "event.json"
    event.write_text(json.dumps(_workflow_run()))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    assert main(["find-pr", "--event", str(event), "--output", str(tmp_path / "e.json")]) == 2
    assert "GITHUB_TOKEN and GITHUB_REPOSITORY must be set" in capsys.readouterr().err
