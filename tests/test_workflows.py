"""The GitHub Action and workflows: real actionlint and GitHub's schemas, SHA pins, and the action's
own steps run in bash as the runner runs them (quoting, shard names, relative mode, baselines)."""

# ruff: noqa: F811 - tests take the imported `github_server` fixture as an argument

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from github_server import github_server  # noqa: F401 - the fixture

from aitune_ci.cli.init_command import PINS, InitOptions, render_files

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTION = yaml.safe_load((ROOT / "action.yml").read_text())

#: How the repository's own aitune workflows are made: `aitune-ci init` with these options, so they
#: run the repo's real example suite and cannot drift from what users get.
OWN_WORKFLOWS = InitOptions(
    path="bench/multigpu_suite",
    action_ref="./",
    constraints="constraints.txt",
    extras="all,dev",
    pip_args="torchvision",
    conftest=False,
)

#: What upload-artifact refuses in an artifact name (@actions/artifact's validateArtifactName).
ARTIFACT_NAME_FORBIDDEN = set('":<>|*?\r\n\\/')


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `make test` installs it through the [dev] extra")
    return found


def test_there_are_pr_comment_nightly_and_cpu_workflows():
    assert {p.name for p in WORKFLOWS} >= {"aitune-pr.yml", "aitune-comment.yml", "aitune-nightly.yml", "ci.yml"}


def test_workflows_pass_actionlint():
    # `uses: ./` makes actionlint check every `with:` key against action.yml's inputs too.
    result = subprocess.run([_tool("actionlint"), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n"
    )
    result = subprocess.run([_tool("actionlint"), str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "nope" in result.stdout


def test_actionlint_catches_an_input_the_action_does_not_have(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)  # actionlint finds `./` from the repo root
    shutil.copy(ROOT / "action.yml", tmp_path / "action.yml")
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./\n        with:\n"
        "          pytest-argz: tests\n"
    )
    result = subprocess.run([_tool("actionlint"), str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "pytest-argz" in result.stdout


@pytest.mark.parametrize(
    ("schema", "paths"),
    [("vendor.github-actions", [ROOT / "action.yml"]), ("vendor.github-workflows", WORKFLOWS)],
)
def test_action_and_workflows_match_githubs_schemas(schema, paths):
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_repos_own_aitune_workflows_are_inits_templates_on_its_real_example_suite():
    for name, text in render_files(OWN_WORKFLOWS).items():
        assert (ROOT / name).read_text() == text, (
            f"{name} drifted from its template: regenerate it with {OWN_WORKFLOWS.command()}"
        )
    suite = ROOT / OWN_WORKFLOWS.path
    assert suite.is_dir() and "@ait.tune_fixture" in "".join(p.read_text() for p in suite.glob("*.py"))
    assert (ROOT / OWN_WORKFLOWS.constraints).is_file()


_USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", re.M)


def _uses(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2).strip()) for m in _USES.finditer(text)]


def test_every_action_is_pinned_to_a_commit_sha_with_its_version_and_one_sha_per_action():
    texts = {p.name: p.read_text() for p in [ROOT / "action.yml", *WORKFLOWS]}
    texts.update(render_files(InitOptions(shards=3)))
    seen: dict[str, str] = {}
    for name, text in texts.items():
        for ref, comment in _uses(text):
            if ref.startswith("./") or ref == "./" or ref.startswith("aitune-ci/aitune-ci@"):
                continue
            action, _, sha = ref.partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", sha), f"{name}: {ref} is not pinned to a commit SHA"
            assert re.fullmatch(r"# v\d+\.\d+\.\d+", comment), f"{name}: {ref} lacks its '# vX.Y.Z' comment"
            owner_repo = "/".join(action.split("/")[:2])
            assert seen.setdefault(owner_repo, sha) == sha, f"{owner_repo} is pinned to two commits"
    assert seen["actions/checkout"] == PINS["checkout"].split()[0]


def test_the_light_install_is_the_package_dependencies_without_torch():
    # The installed package's metadata is pyproject.toml's: `name>=x` and `name>=x; extra == "report"`.
    requires = [r.replace(" ", "") for r in metadata.requires("aitune-ci") or []]
    expected = {
        r.partition(";")[0]
        for r in requires
        if (";" not in r or r.endswith('extra=="report"')) and not r.startswith(("torch", "safetensors"))
    }
    install = next(s for s in ACTION["runs"]["steps"] if s.get("id") == "install")
    assert set(install["env"]["LIGHT_DEPS"].split()) == expected


def test_the_pr_check_runs_relative_mode_against_the_prs_base_by_default():
    inputs = ACTION["inputs"]
    assert inputs["against"]["default"] == "${{ github.event.pull_request.base.sha }}"
    assert inputs["relative"]["default"] == "true"
    pr = yaml.safe_load((ROOT / ".github" / "workflows" / "aitune-pr.yml").read_text())
    checkout = pr["jobs"]["tune"]["steps"][0]
    assert checkout["with"]["fetch-depth"] == 0 and checkout["with"]["persist-credentials"] is False


def test_the_nightly_writes_only_in_its_publish_job_and_keeps_no_credentials():
    nightly = yaml.safe_load((ROOT / ".github" / "workflows" / "aitune-nightly.yml").read_text())
    assert nightly["permissions"] == {"contents": "read"}
    tune, publish = nightly["jobs"]["tune"], nightly["jobs"]["publish"]
    assert tune["permissions"] == {"contents": "read"}
    assert publish["permissions"] == {"contents": "write", "pull-requests": "write"}
    for job in (tune, publish):
        checkouts = [s for s in job["steps"] if s.get("uses", "").startswith("actions/checkout@")]
        assert checkouts and all(s["with"]["persist-credentials"] is False for s in checkouts)
    assert publish["steps"][-1]["with"]["mode"] == "baseline-pr"
    assert "triggers no workflow" in (ROOT / ".github" / "workflows" / "aitune-nightly.yml").read_text()


# --- the action's steps, run in bash as the runner runs them -----------------------------------------


def _step(step_id: str) -> dict:
    return next(s for s in ACTION["runs"]["steps"] if s.get("id") == step_id)


def _outputs(path: Path) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT file: ``name=value`` and ``name<<DELIM`` ... ``DELIM`` lines."""
    out: dict[str, str] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    i = 0
    while i < len(lines):
        if "<<" in lines[i] and "=" not in lines[i].split("<<")[0]:
            name, delim = lines[i].split("<<", 1)
            end = lines.index(delim, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        else:
            name, _, value = lines[i].partition("=")
            out[name] = value
            i += 1
    return out


def run_step(step_id: str, tmp_path: Path, cwd: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    """Run one composite step's ``run:`` with the shell GitHub uses for ``shell: bash``; return it and its outputs."""
    step = _step(step_id)
    assert step["shell"] == "bash"
    script = tmp_path / f"{step_id}.sh"
    script.write_text(step["run"])
    output = tmp_path / f"{step_id}.out"
    output.unlink(missing_ok=True)
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RUNNER_TEMP": str(runner_temp),
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_PATH": str(tmp_path / "github_path"),
        **env,
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result, _outputs(output)


def _prep(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict]:
    defaults = {"MODE": "check", "SHARD": "", "SHARD_COUNT": "", "UPDATE": "false", "PYTHON": sys.executable}
    defaults |= {"EXTRAS": "all", "CONSTRAINTS": "", "PIP_ARGS": "", "ACTION_PATH": str(ROOT)}
    return run_step("prep", tmp_path, tmp_path, **(defaults | env))


@pytest.mark.parametrize(
    ("shard", "name"),
    [
        ("1/4", "aitune-shard-1-of-4"),
        (" 4 / 4 ", "aitune-shard-4-of-4"),
        ("02/12", "aitune-shard-2-of-12"),
        ("", "aitune-report"),
    ],
)
def test_a_shard_uploads_under_a_name_upload_artifact_accepts(tmp_path, shard, name):
    result, out = _prep(tmp_path, SHARD=shard)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out["artifact"] == name and not ARTIFACT_NAME_FORBIDDEN & set(out["artifact"])
    assert out["shard"] == ("" if not shard else name.removeprefix("aitune-shard-").replace("-of-", "/"))
    assert out["light"] == "false" and out["pip-key"].startswith("aitune-pip-Linux-X64-py3.")


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SHARD": "0/4"}, "shard must be i/n"),
        ({"SHARD": "5/4"}, "shard must be i/n"),
        ({"SHARD": "1-4"}, "shard must be i/n"),
        ({"SHARD": "1/4; rm -rf /"}, "shard must be i/n"),
        ({"SHARD": "1/2", "UPDATE": "true"}, "cannot be sharded"),
        ({"SHARD": "1/2", "MODE": "merge", "SHARD_COUNT": "2"}, "belongs to mode check"),
        ({"MODE": "merge"}, "needs shards: N"),
        ({"MODE": "deploy"}, "mode must be check, merge, comment or baseline-pr"),
        ({"PYTHON": "no-such-python3"}, "does not run"),
    ],
)
def test_bad_inputs_fail_the_first_step_with_what_to_do(tmp_path, env, says):
    result, _ = _prep(tmp_path, **env)
    assert result.returncode == 1 and "::error title=aitune-ci::" in result.stdout and says in result.stdout


def test_the_light_modes_install_no_torch(tmp_path):
    for mode in ("merge", "comment", "baseline-pr"):
        result, out = _prep(tmp_path, MODE=mode, SHARD_COUNT="2")
        assert result.returncode == 0 and out["light"] == "true"


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A Python that is the real one, except that ``-m pytest`` records its arguments and exits $FAKE_EXIT."""
    argv_file = tmp_path / "pytest-argv"
    fake = tmp_path / "fakepy"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1" = -m ] && [ "$2" = pytest ]; then\n'
        f'  shift 2; printf "%s\\0" "$@" > {argv_file}; exit "${{FAKE_EXIT:-0}}"\n'
        "fi\n"
        f'exec {sys.executable} "$@"\n'
    )
    fake.chmod(0o755)
    return fake


def _tune(tmp_path: Path, fake_python: Path, cwd: Path | None = None, **env: str):
    defaults = {
        "PY": str(fake_python),
        "AITUNE_DIR": ".aitune",
        "AITUNE_REPORT_DIR": "aitune-report",
        "AITUNE_UPDATE": "false",
        "AITUNE_THRESHOLD": "",
        "AITUNE_SHARD": "",
        "AITUNE_AGAINST": "",
        "AITUNE_RELATIVE": "true",
        "AITUNE_PYTEST_ARGS": "",
        "TORCHINDUCTOR_CACHE_DIR": "",
    }
    cwd = cwd or tmp_path
    result, out = run_step("tune", tmp_path, cwd, **(defaults | env))
    argv_file = tmp_path / "pytest-argv"
    argv = argv_file.read_text().split("\0")[:-1] if argv_file.exists() else None
    return result, out, argv


def test_pytest_args_are_split_like_a_shell_not_on_every_space(tmp_path, fake_python):
    args = "tests/models -k \"tune_a or tune_b\" -m 'not slow' --aitune-backends=eager,inductor"
    result, out, argv = _tune(tmp_path, fake_python, AITUNE_PYTEST_ARGS=args, AITUNE_SHARD="2/4", FAKE_EXIT="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert argv[-6:] == ["tests/models", "-k", "tune_a or tune_b", "-m", "not slow", "--aitune-backends=eager,inductor"]
    assert argv[:2] == ["--aitune", "--aitune-dir"] and "--junitxml" in argv
    assert argv[argv.index("--aitune-shard") + 1] == "2/4"
    assert out["exit-code"] == "1" and (tmp_path / "aitune-report" / "pytest-exit-code").read_text() == "1\n"


def test_pytest_args_with_an_unclosed_quote_stop_before_pytest_runs(tmp_path, fake_python):
    result, _, argv = _tune(tmp_path, fake_python, AITUNE_PYTEST_ARGS='-k "tune_a or')
    assert result.returncode == 1 and argv is None
    assert "pytest-args is not valid shell quoting" in result.stdout
    assert not (tmp_path / "aitune-report" / "pytest-exit-code").exists()  # the outcome step: did not finish


def _git_repo(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "a.txt").write_text("a\n")
    subprocess.run([*git, "-C", str(path), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(path), "commit", "-qm", "base"], check=True)
    return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def test_relative_mode_passes_the_prs_base_and_needs_its_commit_in_the_checkout(tmp_path, fake_python):
    repo = tmp_path / "repo"
    base = _git_repo(repo)
    result, _, argv = _tune(tmp_path, fake_python, cwd=repo, AITUNE_AGAINST=base)
    assert result.returncode == 0 and argv[argv.index("--aitune-against") + 1] == base
    result, _, argv = _tune(tmp_path, fake_python, cwd=repo, AITUNE_AGAINST=base, AITUNE_RELATIVE="false")
    assert result.returncode == 0 and "--aitune-against" not in argv
    result, _, argv = _tune(tmp_path, fake_python, cwd=repo, AITUNE_AGAINST=base, AITUNE_UPDATE="true")
    assert "--aitune-against" not in argv and "--aitune-update" in argv  # the nightly writes baselines
    (tmp_path / "pytest-argv").unlink()
    result, _, argv = _tune(tmp_path, fake_python, cwd=repo, AITUNE_AGAINST="f" * 40)
    assert result.returncode == 1 and argv is None and "fetch-depth: 0" in result.stdout


def test_the_refreshed_baselines_are_the_changed_and_new_files_without_lock_files(tmp_path):
    repo = tmp_path / "repo"
    _git_repo(repo)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    (repo / ".aitune" / "baselines" / "cpu").mkdir(parents=True)
    (repo / ".aitune" / "baselines" / "cpu" / "tune_old.json").write_text("{}\n")
    (repo / ".aitune" / "baselines" / "cpu" / "tune_same.json").write_text("{}\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "baselines"], check=True)
    (repo / ".aitune" / "baselines" / "cpu" / "tune_old.json").write_text('{"new": 1}\n')
    (repo / ".aitune" / "baselines" / "NVIDIA-H200").mkdir()
    (repo / ".aitune" / "baselines" / "NVIDIA-H200" / "tune_new.json").write_text("{}\n")  # a new GPU: untracked
    (repo / ".aitune" / "history").mkdir()
    (repo / ".aitune" / "history" / "NVIDIA-H200.jsonl").write_text("{}\n")
    (repo / ".aitune" / "history" / "NVIDIA-H200.jsonl.lock").write_text("")
    stage = tmp_path / "stage"
    result, out = run_step("baselines", tmp_path, repo, AITUNE_DIR="./.aitune/", STAGE=str(stage))
    assert result.returncode == 0, result.stderr
    assert out["changed"] == "true"
    assert sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file()) == [
        "baselines/NVIDIA-H200/tune_new.json",
        "baselines/cpu/tune_old.json",
        "history/NVIDIA-H200.jsonl",
    ]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "refreshed"], check=True)
    (repo / ".aitune" / "history" / "NVIDIA-H200.jsonl.lock").unlink()
    result, out = run_step("baselines", tmp_path, repo, AITUNE_DIR=".aitune", STAGE=str(stage))
    assert out["changed"] == "false" and not any(stage.iterdir())


def test_the_merge_job_merges_the_shards_and_judges_them_all(tmp_path):
    shards = tmp_path / "runner_temp" / "aitune-shards"
    data = ROOT / "tests" / "data"
    for i, source in enumerate(("report_shard1.json", "report_shard2.json"), start=1):
        folder = shards / f"aitune-shard-{i}-of-3"
        folder.mkdir(parents=True)
        shutil.copy(data / source, folder / "run.json")
        (folder / "pytest-exit-code").write_text("0\n")
    env = {"PY": sys.executable, "AITUNE_REPORT_DIR": "aitune-report", "SHARDS_DIR": str(shards)}
    result, _ = run_step("merge", tmp_path, tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    merged = json.loads((tmp_path / "aitune-report" / "run.json").read_text())
    assert {r["name"] for r in merged["results"]} == {
        r["name"]
        for s in ("report_shard1.json", "report_shard2.json")
        for r in json.loads((data / s).read_text())["results"]
    }
    outcome_env = {**env, "MODE": "merge", "SHARD": "", "SHARD_COUNT": "3", "FAIL_ON_REGRESSION": "true"}
    result, out = run_step("outcome", tmp_path, tmp_path, **outcome_env)
    assert result.returncode == 11 and out["outcome"] == "broken" and "1 of 3 shard(s)" in out["outcome-reason"]
    (shards / "aitune-shard-3-of-3").mkdir()
    (shards / "aitune-shard-3-of-3" / "pytest-exit-code").write_text("5\n")  # a shard that got no fixture
    result, out = run_step("outcome", tmp_path, tmp_path, **outcome_env)
    assert result.returncode == 0 and out["outcome"] == "pass", result.stdout


def test_a_shard_fails_its_job_only_when_its_run_broke(tmp_path):
    report = tmp_path / "aitune-report"
    report.mkdir()
    (report / "pytest-exit-code").write_text("5\n")
    env = {"PY": sys.executable, "MODE": "check", "SHARD": "3/3", "SHARD_COUNT": "", "FAIL_ON_REGRESSION": "true"}
    env |= {"AITUNE_REPORT_DIR": "aitune-report", "SHARDS_DIR": str(tmp_path / "none")}
    result, out = run_step("outcome", tmp_path, tmp_path, **env)
    assert result.returncode == 0 and out["outcome"] == "pass"  # an empty shard is fine
    (report / "pytest-exit-code").write_text("3\n")
    result, out = run_step("outcome", tmp_path, tmp_path, **env)
    assert result.returncode == 11 and out["outcome"] == "broken"


def test_pytest_help_works_with_the_plugin_installed():
    result = subprocess.run([sys.executable, "-m", "pytest", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--aitune-threshold" in result.stdout and "--aitune-against" in result.stdout


def _publish_env(tmp_path: Path, mode: str, **env: str) -> dict[str, str]:
    return {
        "PY": sys.executable,
        "MODE": mode,
        "GITHUB_TOKEN": "",
        "AITUNE_DIR": ".aitune",
        "AITUNE_REPORT_DIR": "aitune-report",
        "AITUNE_COMMENT": "false",
        "AITUNE_APPEND_HISTORY": "false",
        "REPORT_URL": "https://github.com/octo-org/hello/actions/runs/1",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        **env,
    }


def test_the_check_job_publishes_reports_summary_and_outputs(tmp_path):
    (tmp_path / "aitune-report").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "report_run.json", tmp_path / "aitune-report" / "run.json")
    result, out = run_step("publish", tmp_path, tmp_path, **_publish_env(tmp_path, "check"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert {"report.html", "report.md", "pytest-benchmark.json"} <= {
        p.name for p in (tmp_path / "aitune-report").iterdir()
    }
    assert (tmp_path / "summary.md").read_text().count("<!-- aitune-ci") <= 1
    assert out["verdict"] in ("pass", "regressed", "failed", "none") and out["verdict-kind"]


def test_the_fork_comment_job_posts_to_the_pr_the_api_names(github_server, tmp_path):
    github_server.pulls[21] = {
        "number": 21,
        "state": "open",
        "head": {"ref": "feature", "label": "forker:feature", "sha": "a" * 40, "repo": {"full_name": "forker/hello"}},
        "base": {"ref": "main"},
    }
    github_server.comments.setdefault(21, [])
    event = tmp_path / "event.json"
    run = {"id": 5, "event": "pull_request", "head_sha": "a" * 40, "head_branch": "feature"}
    run |= {"head_repository": {"full_name": "forker/hello"}, "pull_requests": []}
    event.write_text(json.dumps({"action": "completed", "workflow_run": run}))
    (tmp_path / "aitune-report").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "report_run.json", tmp_path / "aitune-report" / "run.json")
    env = _publish_env(tmp_path, "comment", GITHUB_TOKEN=github_server.token)
    env |= {"GITHUB_REPOSITORY": github_server.repository, "GITHUB_API_URL": github_server.url}
    env |= {"GITHUB_EVENT_PATH": str(event)}
    result, out = run_step("publish", tmp_path, tmp_path, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out["pr-number"] == "21"
    assert len(github_server.comments[21]) == 1 and "runs/1" in github_server.comments[21][0]["body"]
    # Run again (a re-run of the comment workflow): the one comment is updated, not duplicated.
    result, _ = run_step("publish", tmp_path, tmp_path, **env)
    assert result.returncode == 0 and len(github_server.comments[21]) == 1
    # No run.json (the PR run tuned nothing): nothing is posted, and the step passes.
    (tmp_path / "aitune-report" / "run.json").unlink()
    result, _ = run_step("publish", tmp_path, tmp_path, **env)
    assert result.returncode == 0 and "no aitune-report/run.json" in result.stdout


def test_a_github_app_token_updates_its_one_comment_given_bot_login(github_server, tmp_path):
    """An App's installation token cannot read its own login (GET /user is 403), so the comment step
    took github-actions[bot] as the author to update and posted a new comment on every run."""
    github_server.bot_login = "acme-ci[bot]"
    github_server.comments.setdefault(3, [])
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 3, "pull_request": {"number": 3}}))
    (tmp_path / "aitune-report").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "report_run.json", tmp_path / "aitune-report" / "run.json")
    env = _publish_env(tmp_path, "check", GITHUB_TOKEN=github_server.token, AITUNE_COMMENT="true")
    env |= {"GITHUB_REPOSITORY": github_server.repository, "GITHUB_API_URL": github_server.url}
    env |= {"GITHUB_EVENT_PATH": str(event), "GITHUB_EVENT_NAME": "pull_request"}
    for _ in range(2):
        result, _ = run_step("publish", tmp_path, tmp_path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(github_server.comments[3]) == 2  # without bot-login: a second comment, as the user saw

    github_server.comments[3] = []
    env["AITUNE_BOT_LOGIN"] = "acme-ci[bot]"
    for _ in range(3):
        result, _ = run_step("publish", tmp_path, tmp_path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
    assert len(github_server.comments[3]) == 1


def test_a_test_path_that_does_not_exist_breaks_the_run_even_warn_only(tmp_path):
    repo = tmp_path / "repo"
    _git_repo(repo)
    result, out, _ = _tune(tmp_path, Path(sys.executable), cwd=repo, AITUNE_PYTEST_ARGS="tests/models")
    assert result.returncode == 0 and out["exit-code"] == "4", result.stdout + result.stderr  # usage error
    env = {"PY": sys.executable, "MODE": "check", "SHARD": "", "SHARD_COUNT": "", "FAIL_ON_REGRESSION": "false"}
    env |= {"AITUNE_REPORT_DIR": "aitune-report", "SHARDS_DIR": str(tmp_path / "none")}
    result, out = run_step("outcome", tmp_path, repo, **env)
    assert result.returncode == 11 and out["outcome"] == "broken"
    assert "pytest exited with 4, usage error" in out["outcome-reason"]


def test_the_check_job_end_to_end_on_a_repo_made_by_init(tmp_path):
    """prep → install (the runner's Python) → compile-cache key → tune in relative mode → publish → outcome."""
    repo = tmp_path / "repo"
    _git_repo(repo)
    assert (
        subprocess.run(
            [sys.executable, "-m", "aitune_ci.cli", "init", "--root", str(repo)], capture_output=True
        ).returncode
        == 0
    )
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "aitune-ci init"], check=True)
    base = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    result, prep = _prep(tmp_path)
    assert result.returncode == 0, result.stdout
    env = {"INSTALL": "false", "PYTHON": sys.executable, "VENV": prep["venv"], "LIGHT": "false", "EXTRAS": "all"}
    env |= {"CONSTRAINTS": "", "PIP_ARGS": "", "ACTION_PATH": str(ROOT), "LIGHT_DEPS": ""}
    result, install = run_step("install", tmp_path, repo, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    result, key = run_step("compile-key", tmp_path, repo, PY=install["python"])
    assert result.returncode == 0 and re.fullmatch(r"aitune-inductor-Linux-torch[\w.+]+-cuda\w+-[\w.+-]+", key["key"])
    args = "tests/aitune --aitune-backends eager --aitune-measure-seconds 0.3"
    result, tune, argv = _tune(
        tmp_path, Path(install["python"]), cwd=repo, AITUNE_PYTEST_ARGS=args, AITUNE_AGAINST=base
    )
    assert result.returncode == 0 and tune["exit-code"] in ("0", "1"), result.stdout[-3000:]
    result, published = run_step("publish", tmp_path, repo, **_publish_env(tmp_path, "check", PY=install["python"]))
    assert result.returncode == 0, result.stdout + result.stderr
    run = json.loads((repo / "aitune-report" / "run.json").read_text())
    assert {v["mode"] for v in run["verdicts"]} == {"relative"}  # judged against the PR's base, built here
    env = {"PY": install["python"], "MODE": "check", "SHARD": "", "SHARD_COUNT": "", "FAIL_ON_REGRESSION": "true"}
    env |= {"AITUNE_REPORT_DIR": "aitune-report", "SHARDS_DIR": str(tmp_path / "none")}
    result, outcome = run_step("outcome", tmp_path, repo, **env)
    assert outcome["outcome"] in ("pass", "regressed"), outcome  # a µs model on a busy CPU may time as slower
    assert result.returncode == (0 if outcome["outcome"] == "pass" else 10)
