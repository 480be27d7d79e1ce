"""The GitHub loop, simulated with real tools in a user's repository made by ``aitune-ci init``.

A bare git remote, the local REST stand-in (tests/github_server.py), and the workflows init wrote,
run job by job by tests/actions_runner.py: every ``run:`` step of the composite action runs in bash
with the runner's ``GITHUB_*`` files and an event payload; real pytest tunes real (tiny) models.
Emulated, because they cannot run here: actions/checkout (a fetch from the bare remote and a
``git lfs pull``), upload/download-artifact (a per-run folder store), actions/cache (always a miss),
and the action's install step: the templates install aitune-ci into a fresh venv from PyPI (no
network here, minutes on two cores), so the runner gives the action ``install: false`` with the
Python that runs these tests, the action's own path for a Python that already has aitune-ci.

Nightly: a fresh repo opens the refresh PR, the next night updates it, and after it is merged the
next night opens a new one. PR check: a two-shard matrix and its merge job post one comment that
lists every fixture. A fork's PR runs nothing on the GPU runner.
"""

# ruff: noqa: F811 - tests take the imported `github_server` fixture as an argument

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from actions_runner import ActionsRunner, ExpressionError, WorkflowRun, condition, evaluate, interpolate
from github_server import FakeGitHub, github_server  # noqa: F401 - the fixture
from test_baseline_pr import HAS_LFS, git, remote_files

from aitune_ci.cli.init_command import DEFAULT_ACTION_REF, InitOptions, render_files
from aitune_ci.github.baseline_pr import DEFAULT_BRANCH, lfs_pointer_oid
from aitune_ci.report.markdown import DEFAULT_MARKER

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ("tune_small_mlp", "tune_tiny_a", "tune_tiny_b")
GPU = ["self-hosted", "linux", "gpu"]

#: The user's settings: eager only and a 0.2 s budget keep each pytest run to seconds; a 300%
#: threshold without re-measurement keeps microsecond models on a shared 2-core machine from
#: timing as regressed (tests/plugin/conftest.py says why).
PYPROJECT = """\
[tool.pytest.ini_options]
aitune_backends = "eager"
aitune_measure_seconds = "0.2"

[tool.aitune]
threshold = "300%"
max_confirmations = 0
"""

#: Two more fixtures beside the starter's tune_small_mlp; ``width`` changes tune_tiny_b's baseline.
MORE_FIXTURES = """

@ait.tune_fixture
def tune_tiny_a():
    return ait.TuneSpec(model=nn.Linear(8, 4).eval(), samples=[torch.randn(2, 8)], backends=["eager"], device="cpu")


@ait.tune_fixture
def tune_tiny_b():
    return ait.TuneSpec(
        model=nn.Linear({width}, 4).eval(), samples=[torch.randn(2, {width})], backends=["eager"], device="cpu"
    )
"""

#: The workflows check out with `lfs: true`, as init writes them (actions/checkout fails without git-lfs too).
needs_git_lfs = pytest.mark.skipif(not HAS_LFS, reason="git-lfs is not installed: `git lfs version` fails")

#: Inputs the runner gives the action where the workflow says nothing (see the module docstring).
INSTALL_OVERRIDE = {"install": "false", "python": sys.executable}


# --- a user's repository, its remote, the runner --------------------------------------------------


def make_user_repo(tmp_path: Path, *init_args: str, width: int = 8) -> tuple[Path, Path]:
    """``aitune-ci init`` (the real console script) in a new repo, plus fixtures; pushed to a bare remote."""
    remote, work = tmp_path / "remote.git", tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    git(work, "config", "user.name", "Dev")
    git(work, "config", "user.email", "dev@example.com")
    (work / "README.md").write_text("hello\n")
    cli = Path(sys.executable).parent / "aitune-ci"
    done = subprocess.run([str(cli), "init", *init_args], cwd=work, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (work / "pyproject.toml").write_text(PYPROJECT)
    set_width(work, width, commit=False)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "adopt aitune-ci")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")
    return work, remote


def set_width(work: Path, width: int, *, commit: bool = True) -> None:
    """The starter conftest plus MORE_FIXTURES at this width (a changed model: a changed baseline)."""
    conftest = work / "tests" / "aitune" / "conftest.py"
    starter = conftest.read_text().split("\n\n@ait.tune_fixture\ndef tune_tiny_a")[0]
    conftest.write_text(starter + MORE_FIXTURES.format(width=width))
    if commit:
        git(work, "commit", "-q", "-am", f"tune_tiny_b: width {width}")
        git(work, "push", "-q", "origin", "main")


def make_runner(tmp_path: Path, remote: Path, server: FakeGitHub) -> ActionsRunner:
    return ActionsRunner(
        tmp_path / "runner",
        remote,
        server,
        action_ref=DEFAULT_ACTION_REF,  # what init writes: the runner maps it to this checkout's action.yml
        action_root=ROOT,
        action_overrides=INSTALL_OVERRIDE,
    )


def repository_payload(server: FakeGitHub) -> dict[str, Any]:
    owner, name = server.repository.split("/")
    return {"full_name": server.repository, "name": name, "owner": {"login": owner}, "default_branch": "main"}


def pr_event(
    server: FakeGitHub, number: int, head: str, base: str, *, head_repo: str, association: str, action: str = "opened"
) -> dict[str, Any]:
    """A pull_request event payload as GitHub sends it (the fields the workflows and aitune-ci read)."""
    head_owner = head_repo.split("/")[0]
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "state": "open",
            "author_association": association,
            "user": {"login": head_owner},
            "labels": [],
            "head": {"sha": head, "ref": "feature", "label": f"{head_owner}:feature", "repo": {"full_name": head_repo}},
            "base": {"sha": base, "ref": "main", "repo": {"full_name": server.repository}},
        },
        "repository": repository_payload(server),
        "sender": {"login": head_owner},
    }


def open_pr(server: FakeGitHub, work: Path, remote: Path, number: int) -> tuple[str, str]:
    """A branch with one commit, pushed as GitHub keeps a PR's head (refs/pull/N/head); (head, base) SHAs."""
    base = git(work, "rev-parse", "main")
    git(work, "checkout", "-q", "-b", f"feature-{number}")
    (work / "README.md").write_text(f"hello from PR {number}\n")
    git(work, "commit", "-q", "-am", f"PR {number}")
    head = git(work, "rev-parse", "HEAD")
    git(work, "push", "-q", "origin", f"HEAD:refs/pull/{number}/head")
    git(work, "checkout", "-q", "main")
    server.pulls[number] = {
        "number": number,
        "state": "open",
        "head": {"ref": "feature", "sha": head},
        "base": {"ref": "main", "sha": base},
    }
    server.open_pull(number)
    return head, base


def nightly(runner: ActionsRunner, remote: Path) -> WorkflowRun:
    """One scheduled run of the nightly workflow on the remote's main (where GitHub reads a schedule's workflow)."""
    sha = git(remote, "rev-parse", "refs/heads/main")
    text = git(remote, "show", f"{sha}:.github/workflows/aitune-nightly.yml")
    event = {"schedule": "17 3 * * *", "repository": repository_payload(runner.server)}
    run = runner.run_workflow(text, "schedule", event, sha=sha, ref="refs/heads/main")
    assert run.triggered
    assert run.result("tune") == "success" and run.result("publish") == "success", run.log()[-12000:]
    return run


def open_pulls(server: FakeGitHub) -> list[dict[str, Any]]:
    return [pr for pr in server.pulls.values() if pr["state"] == "open"]


def branch_facts(remote: Path) -> tuple[str, str, dict[str, str]]:
    """The refresh branch on the remote: its commit, that commit's parent, and its files."""
    sha = git(remote, "rev-parse", f"refs/heads/{DEFAULT_BRANCH}")
    return sha, git(remote, "rev-parse", f"{sha}^"), remote_files(remote, DEFAULT_BRANCH)


def baseline(files: dict[str, str], fixture: str) -> str:
    (found,) = [
        text for name, text in files.items() if re.fullmatch(rf"\.aitune/baselines/[^/]+/{fixture}\.json", name)
    ]
    return found


def action_outputs(job: Any) -> dict[str, str]:
    """The composite action's outputs in a job (its one `uses:` step of the action has the outputs)."""
    (outputs,) = [o for o in job.step_outputs.values() if "outcome-reason" in o]
    return outputs


# --- the expression evaluator: what the runner trusts ----------------------------------------------


def _expressions(text: str) -> list[str]:
    """Every ``${{ }}`` and every ``if:`` in a workflow or action file."""
    found = [m.group(1) for m in re.finditer(r"\$\{\{(.*?)\}\}", text, re.S)]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("if"), str):
                found.append(node["if"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(text))
    return found


def test_every_expression_in_the_action_and_the_written_workflows_is_one_the_runner_reads():
    texts = [(ROOT / "action.yml").read_text(), *render_files(InitOptions(shards=2)).values()]
    texts += render_files(InitOptions()).values()
    contexts = {
        name: {} for name in ("github", "inputs", "steps", "needs", "matrix", "secrets", "runner", "env", "job")
    }
    expressions = [e for text in texts if text.lstrip().startswith(("#", "name")) for e in _expressions(text)]
    assert len(expressions) > 40
    for expression in expressions:
        condition(expression, contexts)  # raises ExpressionError on anything it does not know


@pytest.mark.parametrize(
    ("event", "cache_save", "status", "saved"),
    [
        ("schedule", "auto", "success", True),  # the nightly fills the cache every PR restores
        ("workflow_dispatch", "auto", "failure", True),  # builds made before a failing check are still good
        ("pull_request", "auto", "success", False),  # scoped to the PR's ref: it evicts the nightly's
        ("pull_request_target", "auto", "success", False),
        ("pull_request", "true", "success", True),
        ("schedule", "false", "success", False),
        ("schedule", "auto", "cancelled", False),
    ],
)
def test_the_compile_cache_is_saved_by_the_nightly_not_by_pull_requests(event, cache_save, status, saved):
    """A new user's review: every PR push saved up to 6 GB under its own key, which other PRs cannot
    restore and which evicts the nightly's cache from the repository's 10 GB."""
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    step = next(s for s in action["runs"]["steps"] if s.get("name") == "Save the compile cache")
    contexts = {
        "github": {"event_name": event},
        "inputs": {"cache-save": cache_save},
        "steps": {"compile-key": {"outputs": {"key": "k"}}, "compile-cache": {"outputs": {"cache-hit": "false"}}},
    }
    assert condition(step["if"], contexts, status) is saved


@pytest.mark.parametrize(
    "expression",
    [
        "startsWith(github.ref, 'refs/tags/')",
        "github.run_number > 1",
        "vars.GPU_RUNNER == 'x'",
        "github.event.commits[0].id",
        "format('{0}', github.sha)",
        "github.sha ==",
        "(github.sha",
    ],
)
def test_the_runner_refuses_an_expression_it_does_not_know(expression):
    with pytest.raises(ExpressionError):
        condition(expression, {"github": {"sha": "abc", "ref": "refs/heads/main"}})


def test_the_runner_evaluates_as_github_does():
    ctx = {
        "github": {"token": "t", "event": {"action": "Opened"}},
        "secrets": {},
        "steps": {"install": {"outcome": "failure"}},
    }
    assert evaluate("secrets.AITUNE_PR_TOKEN || github.token", ctx) == "t"  # || yields a value, not a bool
    assert evaluate("github.event.action == 'opened'", ctx) is True  # strings compare case-insensitively
    assert evaluate("""contains(fromJSON('["OWNER", "MEMBER"]'), 'member')""", ctx) is True
    assert evaluate("github.event.nope.deeper", ctx) is None
    assert interpolate("a-${{ github.event.nope }}-${{ github.token == 't' }}", ctx) == "a--true"
    assert condition("github.token != ''", ctx) and not condition("github.token != ''", ctx, "failure")  # success() &&
    assert condition("always() && github.token", ctx, "failure")
    assert not condition("always() && steps.install.outcome == 'success'", ctx)
    assert not condition("!(github.token)", ctx) and condition(None, ctx) and not condition(None, ctx, "failure")


_ARTIFACTS = """
name: artifacts
on: push
jobs:
  make:
    runs-on: ubuntu-latest
    strategy:
      matrix:
        shard: [1, 2]
    steps:
      - run: mkdir -p out && echo data > out/run.json && echo x > out/.hidden
      - uses: actions/upload-artifact@v7
        with:
          name: {name}
          path: out
      - id: after
        if: failure()
        run: echo "ran=yes" >> "$GITHUB_OUTPUT"
"""


@pytest.mark.parametrize(
    ("name", "results"),
    [
        ("report-${{ matrix.shard }}", ["success", "success"]),
        ("report-${{ matrix.shard }}/2", ["failure", "failure"]),  # upload-artifact refuses '/'
        ("report", ["success", "failure"]),  # one artifact per name and run: the second shard's upload fails
    ],
)
def test_the_runners_artifacts_follow_upload_artifacts_rules(tmp_path, github_server, name, results):
    runner = ActionsRunner(tmp_path, tmp_path / "none.git", github_server, action_ref="-", action_root=ROOT)
    run = runner.run_workflow(_ARTIFACTS.format(name=name), "push", {}, sha="0" * 40, ref="refs/heads/main")
    assert [job.result for job in run.jobs["make"]] == results
    assert [job.step_outputs.get("after", {}).get("ran") for job in run.jobs["make"]] == [
        "yes" if r == "failure" else None for r in results
    ]
    for folder in run.artifacts.values():  # hidden files stay behind without include-hidden-files
        assert sorted(p.name for p in folder.iterdir()) == ["run.json"]


# --- the nightly refresh ---------------------------------------------------------------------------


@needs_git_lfs
def test_nightly_opens_the_refresh_pr_updates_it_and_after_a_merge_opens_a_new_one(tmp_path, github_server):
    work, remote = make_user_repo(tmp_path)
    runner = make_runner(tmp_path, remote, github_server)
    main_1 = git(remote, "rev-parse", "refs/heads/main")

    # Night 1, a fresh repo: every baseline is new (untracked files) and the publish job opens the PR.
    first = nightly(runner, remote)
    tune, publish = first.job("tune"), first.job("publish")
    assert tune.labels == GPU and publish.labels == ["ubuntu-latest"]
    assert tune.outputs == {"baselines-changed": "true"}
    assert set(first.artifacts) == {"aitune-report", "aitune-baselines"}
    (pr,) = open_pulls(github_server)
    assert (pr["number"], pr["head"]["ref"], pr["base"]["ref"]) == (1, DEFAULT_BRANCH, "main")
    assert action_outputs(publish)["baseline-pr-url"] == pr["html_url"]
    sha_1, parent_1, files_1 = branch_facts(remote)
    assert parent_1 == main_1  # built on the night's checkout of main
    for fixture in FIXTURES:
        assert json.loads(baseline(files_1, fixture))
    assert any(re.fullmatch(r"\.aitune/history/[^/]+\.jsonl", name) for name in files_1)
    assert not [name for name in files_1 if name.endswith(".lock")]
    assert list((tune.workspace / ".aitune").rglob("*.jsonl.lock"))  # the run left lock files; none went in
    assert "tests/aitune/conftest.py" in files_1 and ".gitattributes" in files_1
    artifacts = [name for name in files_1 if name.endswith(".ait")]
    assert len(artifacts) == len(FIXTURES)
    for name in artifacts:  # .gitattributes from init routes them through Git LFS: pointers, objects uploaded
        oid = lfs_pointer_oid(files_1[name])
        assert oid and (remote / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).is_file(), name
    # The tune job held no token and wrote nothing to GitHub; the publish job wrote only the PR.
    assert {(r.method, r.path) for r in github_server.write_requests()} == {("POST", github_server.pulls_path())}

    # Night 2: a changed model, so a changed baseline: the same PR, its branch moved on the new main.
    set_width(work, 6)
    main_2 = git(remote, "rev-parse", "refs/heads/main")
    second = nightly(runner, remote)
    assert [pr["number"] for pr in open_pulls(github_server)] == [1] and list(github_server.pulls) == [1]
    assert len(github_server.requests_to("POST", github_server.pulls_path())) == 1
    assert len(github_server.requests_to("PATCH", github_server.pull_path(1))) == 1
    sha_2, parent_2, files_2 = branch_facts(remote)
    assert sha_2 != sha_1 and parent_2 == main_2
    assert baseline(files_2, "tune_tiny_b") != baseline(files_1, "tune_tiny_b")
    assert action_outputs(second.job("publish"))["baseline-pr-url"] == github_server.pulls[1]["html_url"]

    # A person merges it (main moves to the branch; the API says merged). Night 3 opens a new PR.
    git(remote, "update-ref", "refs/heads/main", sha_2)
    github_server.merge_pull(1)
    nightly(runner, remote)
    (pr,) = open_pulls(github_server)
    assert pr["number"] == 2 and pr["head"]["ref"] == DEFAULT_BRANCH
    assert github_server.pulls[1]["merged"] is True
    sha_3, parent_3, files_3 = branch_facts(remote)
    assert sha_3 != sha_2 and parent_3 == sha_2  # on top of the merged baselines
    history = [name for name in files_3 if name.startswith(".aitune/history/") and name.endswith(".jsonl")]
    assert history and all(len(files_3[h].splitlines()) > len(files_2[h].splitlines()) for h in history)
    assert not [name for name in files_3 if name.endswith(".lock")]


# --- the PR check: a two-shard matrix and its merge job --------------------------------------------


def the_report_comment(server: FakeGitHub, number: int) -> str:
    """The one report comment on PR ``number``, written once: one POST, no PATCH, one marked comment."""
    comments = server.comments[number]
    marked = [c for c in comments if DEFAULT_MARKER in c["body"]]
    writes = [r for r in server.write_requests() if "/comments" in r.path]
    assert len(comments) == 1 and len(marked) == 1, [c["body"][:200] for c in comments]
    assert [r.method for r in writes] == ["POST"], [(r.method, r.path) for r in writes]
    return marked[0]["body"]


@needs_git_lfs
def test_a_two_shard_pr_check_and_its_merge_job_post_one_comment_with_every_fixture(tmp_path, github_server):
    work, remote = make_user_repo(tmp_path, "--shards", "2")
    runner = make_runner(tmp_path, remote, github_server)
    head, base = open_pr(github_server, work, remote, 7)
    event = pr_event(github_server, 7, head, base, head_repo=github_server.repository, association="CONTRIBUTOR")
    text = git(remote, "show", f"{head}:.github/workflows/aitune-pr.yml")

    run = runner.run_workflow(text, "pull_request", event, sha=head, ref="refs/pull/7/merge")

    assert run.triggered and run.result("tune") == "success" and run.result("merge") == "success", run.log()[-12000:]
    shards, merge = run.jobs["tune"], run.job("merge")
    assert [job.matrix for job in shards] == [{"shard": 1}, {"shard": 2}]
    assert all(job.labels == GPU for job in shards) and merge.labels == ["ubuntu-latest"]
    assert set(run.artifacts) == {"aitune-shard-1-of-2", "aitune-shard-2-of-2", "aitune-report"}
    # The shards split the fixtures between them; each judged its own against the PR's base.
    tuned = [
        {
            v["fixture"]
            for v in json.loads((run.artifacts[f"aitune-shard-{i}-of-2"] / "run.json").read_text())["verdicts"]
        }
        for i in (1, 2)
    ]
    assert tuned[0] and tuned[1] and not tuned[0] & tuned[1] and tuned[0] | tuned[1] == set(FIXTURES)
    merged = json.loads((run.artifacts["aitune-report"] / "run.json").read_text())
    assert {v["fixture"] for v in merged["verdicts"]} == set(FIXTURES)
    assert {v["mode"] for v in merged["verdicts"]} == {"relative"}
    assert action_outputs(merge)["outcome"] == "pass", action_outputs(merge)
    # The shards neither summarise nor comment: the merge job writes the one summary and the one comment.
    assert all(not job.summaries for job in shards) and len(merge.summaries) == 1
    body = the_report_comment(github_server, 7)
    for fixture in FIXTURES:
        assert fixture in body and fixture in merge.summaries[0]
    assert f"actions/runs/{run.id}" in body

    # The check above would catch a second comment (a shard that upserts its own, say).
    github_server.add_comment(7, f"{DEFAULT_MARKER}\nshard 2 of 2", login=github_server.bot_login, user_type="Bot")
    with pytest.raises(AssertionError):
        the_report_comment(github_server, 7)


# --- fork pull requests ----------------------------------------------------------------------------


def test_a_fork_pr_runs_nothing_on_the_gpu_runner_and_a_same_repo_pr_runs_it(tmp_path, github_server):
    work, remote = make_user_repo(tmp_path, "--shards", "2")
    runner = make_runner(tmp_path, remote, github_server)
    head, base = open_pr(github_server, work, remote, 8)
    text = git(remote, "show", f"{head}:.github/workflows/aitune-pr.yml")
    fork = pr_event(github_server, 8, head, base, head_repo="forker/hello", association="NONE")

    run = runner.run_workflow(text, "pull_request", fork, sha=head, ref="refs/pull/8/merge")

    assert run.triggered  # the workflow starts; its jobs do not
    assert run.result("tune") == "skipped" and run.result("merge") == "skipped"
    assert [step for jobs in run.jobs.values() for job in jobs for step in job.ran()] == []
    assert not run.artifacts and not github_server.requests
    # The same guard lets a same-repo PR, a trusted author's fork and a fork a maintainer labelled run.
    workflow = yaml.safe_load(text)
    same_repo = pr_event(github_server, 8, head, base, head_repo=github_server.repository, association="NONE")
    member = pr_event(github_server, 8, head, base, head_repo="forker/hello", association="MEMBER")
    labelled = pr_event(github_server, 8, head, base, head_repo="forker/hello", association="NONE", action="labeled")
    other_label = json.loads(json.dumps(labelled))
    labelled["label"], other_label["label"] = {"name": "aitune:run-fork"}, {"name": "bug"}
    for event, runs in ((same_repo, True), (member, True), (labelled, True), (other_label, False), (fork, False)):
        github = runner.github_context("pull_request", event, head, "refs/pull/8/merge", run.id)
        assert runner.job_if(workflow, "tune", github) is runs, event
