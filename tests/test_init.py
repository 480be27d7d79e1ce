"""``aitune-ci init``: what it writes into a user's repository, that it is idempotent and never clobbers,
that real actionlint and GitHub's schemas accept the workflows, and that the fork guard holds."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_workflows import _tool

from aitune_ci.cli import main
from aitune_ci.cli.init_command import DEFAULT_ACTION_REF, InitOptions, merge_lines, render_files
from aitune_ci.github.outcome import Outcome, decide, read_shard

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = (
    ".github/workflows/aitune-pr.yml",
    ".github/workflows/aitune-comment.yml",
    ".github/workflows/aitune-nightly.yml",
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    return tmp_path


def _init(repo: Path, *args: str) -> int:
    return main(["init", "--root", str(repo), *args])


def _files(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): p.read_text() for p in repo.rglob("*") if p.is_file() and ".git/" not in f"{p}/"}


def test_init_writes_workflows_lfs_ignores_and_a_starter_conftest(repo, capsys):
    assert _init(repo) == 0
    out = capsys.readouterr().out
    for name in (*WORKFLOWS, "tests/aitune/conftest.py"):
        assert (repo / name).is_file() and f"wrote {name}" in out
    assert "*.ait filter=lfs diff=lfs merge=lfs -text" in (repo / ".gitattributes").read_text().splitlines()
    ignore = (repo / ".gitignore").read_text().splitlines()
    assert {"/.aitune/**/*.lock", "*.jsonl.lock", "/aitune-report/"} <= set(ignore)
    assert "git lfs install" in out and "AITUNE_PR_TOKEN" in out and "aitune:run-fork" in out
    assert f"The workflows use {DEFAULT_ACTION_REF}, a tag: pin it" in out
    pr = yaml.safe_load((repo / WORKFLOWS[0]).read_text())
    step = pr["jobs"]["tune"]["steps"][1]
    assert step["uses"] == DEFAULT_ACTION_REF and step["with"]["pytest-args"] == "tests/aitune"
    assert pr["jobs"]["tune"]["runs-on"] == ["self-hosted", "linux", "gpu"]


def test_init_says_how_to_move_artifacts_committed_without_lfs_into_it(repo, capsys):
    """A repo that committed .ait files before init: the new LFS attribute shows them modified."""
    (repo / ".aitune" / "artifacts" / "cpu-x").mkdir(parents=True)
    (repo / ".aitune" / "artifacts" / "cpu-x" / "tune_a.ait").write_bytes(b"PK")
    assert _init(repo) == 0
    out = capsys.readouterr().out
    assert "1 .ait file(s) under .aitune were committed without LFS" in out and "git add --renormalize ." in out


def test_init_again_changes_nothing(repo, capsys):
    assert _init(repo, "--runner-labels", "self-hosted,gpu-h100", "--path", "perf") == 0
    before = _files(repo)
    capsys.readouterr()
    assert _init(repo, "--runner-labels", "self-hosted,gpu-h100", "--path", "perf") == 0
    out = capsys.readouterr().out
    assert _files(repo) == before
    assert "wrote" not in out and out.count("unchanged ") == 7  # with .github/actionlint.yaml


def test_init_declares_the_runners_labels_to_actionlint(repo, capsys):
    """actionlint failed the written workflows out of the box: label "gpu" is unknown."""
    assert _init(repo, "--runner-labels", "self-hosted,linux,gpu-h100,x64") == 0
    assert "wrote .github/actionlint.yaml" in capsys.readouterr().out
    config = yaml.safe_load((repo / ".github" / "actionlint.yaml").read_text())
    assert config == {"self-hosted-runner": {"labels": ["gpu-h100"]}}
    lint = subprocess.run(
        [_tool("actionlint"), *(str(repo / n) for n in WORKFLOWS)], cwd=repo, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # a config of the user's own is left alone; what it lacks is named
    (repo / ".github" / "actionlint.yaml").write_text("self-hosted-runner:\n  labels:\n    - cpu-big\n")
    assert _init(repo, "--runner-labels", "self-hosted,gpu-h100,cpu-big", "--force") == 0
    out = capsys.readouterr().out
    assert "add the runner label(s) gpu-h100 under self-hosted-runner" in out
    assert (repo / ".github" / "actionlint.yaml").read_text() == "self-hosted-runner:\n  labels:\n    - cpu-big\n"


def test_init_writes_no_starter_fixture_into_a_repo_that_has_its_own(repo, capsys):
    """A user's repo with tune_* fixtures got the toy MLP too, tuned (inductor, ~30 s) by every PR check."""
    own = repo / "tests" / "perf" / "conftest.py"
    own.parent.mkdir(parents=True)
    own.write_text("import aitune_ci as ait\n\n@ait.tune_fixture\ndef tune_ranker():\n    ...\n")
    assert _init(repo) == 0
    out = capsys.readouterr().out
    assert not (repo / "tests" / "aitune" / "conftest.py").exists()
    assert "kept out the starter tests/aitune/conftest.py: this repository declares tune_* fixtures already" in out
    assert "tests/perf/conftest.py" in out
    assert "re-run with `--path tests/perf --no-conftest --force` to point them at yours" in out


def test_force_never_replaces_a_conftest_of_the_users_own_fixtures(repo, capsys):
    """Following init's advice (`--path tests --force`) replaced a new user's fixtures with the toy one."""
    own = repo / "tests" / "conftest.py"
    own.parent.mkdir(parents=True)
    text = "import aitune_ci as ait\n\n@ait.tune_fixture\ndef tune_ranker():\n    ...\n"
    own.write_text(text)
    assert _init(repo, "--path", "tests", "--force") == 0
    assert own.read_text() == text
    assert "kept out the starter tests/conftest.py" in capsys.readouterr().out
    # init's own starter, unchanged, is still rewritten by --force (and left alone without it)
    starter_repo = repo / "other"
    starter_repo.mkdir()
    assert _init(starter_repo) == 0 and _init(starter_repo, "--force") == 0
    assert "kept out" not in capsys.readouterr().out


def test_init_refuses_to_overwrite_a_changed_file_and_writes_nothing(repo, capsys):
    pr = repo / WORKFLOWS[0]
    pr.parent.mkdir(parents=True)
    pr.write_text("name: my own\n")
    assert _init(repo) == 1
    out = capsys.readouterr().out
    assert WORKFLOWS[0] in out and "--force" in out and "nothing was written" in out
    assert _files(repo) == {WORKFLOWS[0]: "name: my own\n"}  # not even .gitignore
    assert _init(repo, "--force") == 0
    assert "(overwritten)" in capsys.readouterr().out
    assert pr.read_text().startswith("# Written by `aitune-ci init`")


def test_init_merges_its_lines_into_existing_gitattributes_and_gitignore(repo):
    (repo / ".gitattributes").write_text("*.png binary")  # no final newline
    (repo / ".gitignore").write_text("build/\n*.jsonl.lock\n")
    assert _init(repo) == 0
    assert (repo / ".gitattributes").read_text() == (
        "*.png binary\n\n# aitune-ci (written by aitune-ci init)\n*.ait filter=lfs diff=lfs merge=lfs -text\n"
    )
    ignore = (repo / ".gitignore").read_text()
    assert ignore.startswith("build/\n*.jsonl.lock\n") and ignore.count("*.jsonl.lock") == 1
    assert merge_lines(ignore, ("/aitune-report/",)) is None


def test_init_rejects_bad_options_saying_what_is_expected(repo, capsys):
    assert _init(repo, "--action-ref", "aitune-ci") == 2
    assert "expected OWNER/REPO@REF" in capsys.readouterr().out
    assert _init(repo, "--runner-labels", "self-hosted,gpu box") == 2
    assert "comma-separated labels" in capsys.readouterr().out
    assert _init(repo, "--path", "../elsewhere") == 2
    assert "inside the repository" in capsys.readouterr().out
    assert _files(repo) == {}


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--shards", "3", "--constraints", "constraints.txt", "--pip-args", "-e . -r 'req s.txt'"),
        ("--action-ref", "./", "--shards", "2", "--extras", "all,dev", "--aitune-dir", "perf/.aitune"),
    ],
    ids=["default", "sharded", "local-action"],
)
def test_the_written_workflows_pass_actionlint_and_githubs_schema(repo, args):
    if "./" in args:  # a copy of the action in the repository: actionlint then checks every `with:` key
        shutil.copy(ROOT / "action.yml", repo / "action.yml")
    assert _init(repo, *args) == 0
    # actionlint knows GitHub's runner labels; a self-hosted runner's own ones are declared, as in this repo
    (repo / ".github" / "actionlint.yaml").write_text("self-hosted-runner:\n  labels:\n    - gpu\n")
    paths = [str(repo / name) for name in WORKFLOWS]
    lint = subprocess.run([_tool("actionlint"), *paths], cwd=repo, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    schema = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *paths],
        capture_output=True,
        text=True,
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr


def test_the_sharded_pr_check_is_a_matrix_and_one_merge_job(repo):
    assert _init(repo, "--shards", "3") == 0
    jobs = yaml.safe_load((repo / WORKFLOWS[0]).read_text())["jobs"]
    tune, merge = jobs["tune"], jobs["merge"]
    assert tune["strategy"]["matrix"]["shard"] == [1, 2, 3]
    assert tune["steps"][-1]["with"]["shard"] == "${{ matrix.shard }}/3" and "comment" not in tune["steps"][-1]["with"]
    assert merge["needs"] == "tune" and merge["runs-on"] == "ubuntu-latest"
    assert merge["steps"][-1]["with"]["mode"] == "merge" and merge["steps"][-1]["with"]["shards"] == "3"


def test_the_comment_workflow_runs_no_pull_request_code(repo):
    assert _init(repo) == 0
    text = (repo / WORKFLOWS[1]).read_text()
    comment = yaml.safe_load(text)
    assert comment[True]["workflow_run"]["workflows"] == ["aitune (PR)"]  # PyYAML reads `on:` as True
    assert yaml.safe_load((repo / WORKFLOWS[0]).read_text())["name"] == "aitune (PR)"
    assert comment["permissions"] == {"actions": "read", "pull-requests": "write"}
    steps = comment["jobs"]["comment"]["steps"]
    assert [s["uses"] for s in steps] == [DEFAULT_ACTION_REF] and steps[0]["with"]["mode"] == "comment"
    assert "actions/checkout" not in text


# --- the fork guard, evaluated ----------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>&&|\|\||==|!=|!|\(|\)|,)|(?P<name>[A-Za-z_][\w.-]*))")


def _evaluate(expression: str, context: dict[str, Any]) -> bool:
    """A GitHub Actions expression of the shape the templates use (&&, ||, !, ==, !=, contains, fromJSON)."""
    python = []
    pos = 0
    expression = expression.strip()
    while pos < len(expression):
        m = _TOKEN.match(expression, pos)
        assert m and m.end() > pos, f"cannot read {expression[pos:]!r}"
        pos = m.end()
        if m.group("str"):
            python.append(repr(m.group("str")[1:-1].replace("''", "'")))
        elif op := m.group("op"):
            python.append({"&&": " and ", "||": " or ", "!": " not "}.get(op, op))
        elif m.group("name") in ("contains", "fromJSON"):
            python.append(f"_{m.group('name')}")
        else:
            python.append(f"_get({m.group('name')!r})")

    def get(path: str) -> Any:
        value: Any = context
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value

    namespace = {"_get": get, "_contains": lambda seq, x: x in (seq or ()), "_fromJSON": json.loads}
    return bool(eval("".join(python), {"__builtins__": {}}, namespace))  # noqa: S307 - the tokens above only


def _pr_event(action: str, head_repo: str, association: str = "CONTRIBUTOR", label: str | None = None) -> dict:
    event = {
        "action": action,
        "pull_request": {"head": {"repo": {"full_name": head_repo}}, "author_association": association},
    }
    if label:
        event["label"] = {"name": label}
    return {"github": {"repository": "octo-org/models", "event": event}}


@pytest.mark.parametrize(
    ("event", "runs"),
    [
        (_pr_event("opened", "octo-org/models"), True),
        (_pr_event("synchronize", "octo-org/models"), True),
        (_pr_event("opened", "stranger/models"), False),
        (_pr_event("synchronize", "stranger/models", "FIRST_TIME_CONTRIBUTOR"), False),
        (_pr_event("labeled", "stranger/models", label="aitune:run-fork"), True),
        (_pr_event("labeled", "stranger/models", label="bug"), False),
        (_pr_event("synchronize", "stranger/models", label="aitune:run-fork"), False),  # a push after the label
        (_pr_event("opened", "member/models", "MEMBER"), True),
        (_pr_event("labeled", "octo-org/models", label="bug"), False),  # a label is not a new commit
    ],
)
def test_a_forks_code_runs_on_the_gpu_runner_only_when_a_maintainer_says_so(repo, event, runs):
    assert _init(repo, "--shards", "2") == 0
    guard = yaml.safe_load((repo / WORKFLOWS[0]).read_text())["jobs"]["tune"]["if"]
    assert _evaluate(guard, event) is runs


def test_the_fork_comment_runs_only_for_a_forks_pull_request_run(repo):
    assert _init(repo) == 0
    guard = yaml.safe_load((repo / WORKFLOWS[1]).read_text())["jobs"]["comment"]["if"]

    def run(event: str, head: str, conclusion: str = "failure") -> dict:
        run = {"event": event, "head_repository": {"full_name": head}, "conclusion": conclusion}
        return {"github": {"repository": "octo-org/models", "event": {"workflow_run": run}}}

    assert _evaluate(guard, run("pull_request", "stranger/models"))
    assert not _evaluate(guard, run("pull_request", "octo-org/models"))  # commented in its own job
    assert not _evaluate(guard, run("pull_request", "stranger/models", "skipped"))
    assert not _evaluate(guard, run("push", "stranger/models"))


def test_render_files_is_what_init_writes(repo):
    options = InitOptions(path="bench/suite", shards=2, constraints="c.txt")
    assert _init(repo, "--path", "bench/suite", "--shards", "2", "--constraints", "c.txt") == 0
    for name, text in render_files(options).items():
        assert (repo / name).read_text() == text
    assert options.command() == "aitune-ci init --path bench/suite --shards 2 --constraints c.txt"


def test_the_starter_conftest_tunes_and_checks_with_the_real_plugin(repo):
    assert _init(repo) == 0
    common = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "tests/aitune", "--aitune"]
    common += ["--aitune-backends", "eager", "--aitune-measure-seconds", "0.3"]
    common += ["--aitune-report", "out/run.json", "--junitxml", "out/junit.xml"]
    first = subprocess.run([*common, "--aitune-update"], cwd=repo, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert list((repo / ".aitune" / "baselines").glob("*/tune_small_mlp.json"))
    second = subprocess.run(common, cwd=repo, capture_output=True, text=True, timeout=600)
    (repo / "out" / "pytest-exit-code").write_text(f"{second.returncode}\n")
    # The check ran and judged: on a shared 2-core CI machine a µs-scale model may well time as regressed,
    # which is the verdict's business; a broken run is the starter's.
    decision = decide([read_shard(repo / "out")])
    assert decision.outcome is not Outcome.BROKEN, decision.reasons
    run = json.loads((repo / "out" / "run.json").read_text())
    assert [v["fixture"] for v in run["verdicts"]] == ["tune_small_mlp"]
