"""``aitune-ci baseline-pr``: real git, a bare remote and the local GitHub server, night after night.

Plus the pure rules (which files, the size and LFS rule, the PR body, where the token goes) without git.
"""

# ruff: noqa: F811 - tests take the imported `github_server` fixture as an argument
from __future__ import annotations

import base64
import datetime
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from github_server import FakeGitHub, Fault, github_server  # noqa: F401 - the fixture

from aitune_ci.cli import main
from aitune_ci.github.baseline_pr import (
    BOT_NAME,
    DEFAULT_BRANCH,
    Change,
    FileFacts,
    default_body,
    find_open_pull,
    lfs_pointer_oid,
    parse_name_status,
    parse_status,
    plan_files,
    select_paths,
)
from aitune_ci.github.client import GitHubClient
from aitune_ci.github.git import push_target, redact_url

HAS_LFS = shutil.which("git") is not None and (
    subprocess.run(["git", "lfs", "version"], capture_output=True).returncode == 0
)
NO_LFS_REASON = (
    "git-lfs is not installed here (`git lfs version` fails): the LFS path is covered only by the pure "
    "plan_files tests and the refusal without git-lfs"
)
TODAY = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
KEY = "cpu-x86_64-test"


# --- a user's repository, its remote, and the runner's environment --------------------------------


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    path = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(path)], check=True)
    return path


@pytest.fixture
def repo(tmp_path: Path, remote: Path) -> Path:
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    git(work, "config", "user.name", "Dev")
    git(work, "config", "user.email", "dev@example.com")
    (work / "README.md").write_text("hello\n")
    (work / ".gitignore").write_text(".aitune/**/*.tmp\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "init")
    git(work, "remote", "add", "origin", str(remote))
    git(work, "push", "-q", "origin", "main")
    return work


@pytest.fixture
def runner(
    repo: Path, tmp_path: Path, github_server: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeGitHub]:
    """The environment a workflow step has: token, repository, API and server URL, an output file."""
    monkeypatch.chdir(repo)
    monkeypatch.setenv("GITHUB_TOKEN", github_server.token)
    monkeypatch.setenv("GITHUB_REPOSITORY", github_server.repository)
    monkeypatch.setenv("GITHUB_API_URL", github_server.url)
    monkeypatch.setenv("GITHUB_SERVER_URL", github_server.url)
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "github_output"))
    for name in ("GITHUB_RUN_ID", "GITHUB_STEP_SUMMARY"):
        monkeypatch.delenv(name, raising=False)
    yield github_server


def write(repo: Path, relative: str, text: str | bytes) -> Path:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def nightly_files(repo: Path, latency: float = 1.0) -> None:
    """What a nightly `pytest --aitune --aitune-update` leaves behind, lock file included."""
    write(repo, f".aitune/baselines/{KEY}/tune_a.json", f'{{"latency_ms": {latency}}}\n')
    write(repo, f".aitune/artifacts/{KEY}/tune_a.ait", b"PK\x03\x04 small artifact " + str(latency).encode())
    history = repo / f".aitune/history/{KEY}.jsonl"
    history.parent.mkdir(parents=True, exist_ok=True)
    with history.open("a") as f:  # the history grows night after night
        f.write(f'{{"latency_ms": {latency}}}\n')
    write(repo, f".aitune/history/{KEY}.jsonl.lock", "")


def night(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["baseline-pr", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def remote_files(remote: Path, branch: str = DEFAULT_BRANCH) -> dict[str, str]:
    names = git(remote, "ls-tree", "-r", "--name-only", f"refs/heads/{branch}").splitlines()
    return {name: git(remote, "show", f"refs/heads/{branch}:{name}") for name in names}


def remote_has_branch(remote: Path, branch: str = DEFAULT_BRANCH) -> bool:
    return subprocess.run(["git", "rev-parse", "--verify", "-q", f"refs/heads/{branch}"], cwd=remote).returncode == 0


def step_outputs(tmp_path: Path) -> dict[str, str]:
    text = (tmp_path / "github_output").read_text()
    return {m[0]: m[2] for m in re.findall(r"^([\w-]+)<<(\S+)\n(.*?)\n\2$", text, re.M | re.S)}


# --- the nights --------------------------------------------------------------------------------


def test_first_night_with_only_untracked_files_opens_a_pr_without_the_lock_file(
    runner: FakeGitHub, repo: Path, remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)
    status_before = git(repo, "status", "--porcelain", "--untracked-files=all")

    rc, out, err = night(capsys)

    assert rc == 0, err
    assert "opened PR #1" in out
    assert "https://github.com/octo-org/hello/pull/1" in out
    files = remote_files(remote)
    assert f".aitune/baselines/{KEY}/tune_a.json" in files
    assert f".aitune/artifacts/{KEY}/tune_a.ait" in files
    assert f".aitune/history/{KEY}.jsonl" in files
    assert not any(name.endswith(".lock") for name in files)
    assert files["README.md"] == "hello"  # built on HEAD: the rest of the repository is there
    log = git(remote, "log", "-1", "--format=%an|%s|%P", f"refs/heads/{DEFAULT_BRANCH}")
    assert log == f"{BOT_NAME}|aitune: nightly baseline refresh ({TODAY})|{git(repo, 'rev-parse', 'HEAD')}"
    pr = runner.pulls[1]
    assert (pr["state"], pr["head"]["ref"], pr["base"]["ref"]) == ("open", DEFAULT_BRANCH, "main")
    assert f"added `.aitune/baselines/{KEY}/tune_a.json`" in pr["body"]
    assert "GITHUB_TOKEN" in pr["body"]
    # The user's checkout is as it was: same branch, nothing staged, the files still untracked.
    assert git(repo, "branch", "--show-current") == "main"
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == status_before
    assert step_outputs(tmp_path) == {"pr-number": "1", "pr-url": pr["html_url"], "action": "opened"}


def test_second_night_updates_the_open_pr_and_its_branch(
    runner: FakeGitHub, repo: Path, remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo, latency=1.0)
    assert night(capsys)[0] == 0
    nightly_files(repo, latency=2.0)

    rc, out, err = night(capsys, "--title", "baselines, night two")

    assert rc == 0, err
    assert "updated PR #1" in out
    assert list(runner.pulls) == [1]
    assert len(runner.requests_to("POST", runner.pulls_path())) == 1
    assert [r.json["title"] for r in runner.requests_to("PATCH", runner.pull_path(1))] == ["baselines, night two"]
    assert remote_files(remote)[f".aitune/baselines/{KEY}/tune_a.json"] == '{"latency_ms": 2.0}'
    assert remote_files(remote)[f".aitune/history/{KEY}.jsonl"].splitlines() == [
        '{"latency_ms": 1.0}',
        '{"latency_ms": 2.0}',
    ]
    assert step_outputs(tmp_path)["action"] == "updated"


def test_after_the_pr_is_merged_the_next_night_opens_a_new_one(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo, latency=1.0)
    assert night(capsys)[0] == 0
    # A person merges the PR; the runner's next checkout has the merged baselines.
    git(repo, "add", ".aitune")
    git(repo, "rm", "-q", "--cached", f".aitune/history/{KEY}.jsonl.lock")
    git(repo, "commit", "-q", "-m", "Merge the baseline refresh")
    git(repo, "push", "-q", "origin", "main")
    runner.merge_pull(1)
    nightly_files(repo, latency=3.0)

    rc, out, err = night(capsys)

    assert rc == 0, err
    assert "opened PR #2" in out
    assert runner.pulls[1]["merged"] and runner.pulls[1]["state"] == "closed"
    assert runner.pulls[2]["state"] == "open"
    assert not runner.requests_to("PATCH", runner.pull_path(1))
    changed = git(remote, "diff", "--name-only", "main", f"refs/heads/{DEFAULT_BRANCH}").splitlines()
    assert sorted(changed) == [
        f".aitune/artifacts/{KEY}/tune_a.ait",
        f".aitune/baselines/{KEY}/tune_a.json",
        f".aitune/history/{KEY}.jsonl",
    ]


def test_nothing_changed_says_baselines_unchanged_and_writes_nothing(
    runner: FakeGitHub, repo: Path, remote: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)
    git(repo, "add", ".aitune")
    git(repo, "rm", "-q", "--cached", f".aitune/history/{KEY}.jsonl.lock")
    git(repo, "commit", "-q", "-m", "baselines")
    write(repo, f".aitune/history/{KEY}.jsonl.lock", "held")  # a lock file alone is no change
    write(repo, f".aitune/baselines/{KEY}/scratch.tmp", "ignored by .gitignore")

    rc, out, err = night(capsys)

    assert (rc, out.strip()) == (0, "baselines unchanged"), err
    assert runner.write_requests() == []
    assert not remote_has_branch(remote)
    assert step_outputs(tmp_path) == {"pr-number": "", "pr-url": "", "action": "unchanged"}


def test_a_file_changed_and_changed_back_is_no_change(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, ".aitune/baselines/b.json", "{}\n")
    git(repo, "add", ".aitune")
    git(repo, "commit", "-q", "-m", "baselines")
    write(repo, ".aitune/baselines/b.json", "{ }\n")
    git(repo, "add", ".aitune")  # staged, then the working tree put back: git status still lists it
    write(repo, ".aitune/baselines/b.json", "{}\n")

    rc, out, _ = night(capsys)

    assert (rc, out.strip()) == (0, "baselines unchanged")
    assert runner.write_requests() == [] and not remote_has_branch(remote)


def test_a_deleted_baseline_is_committed_as_a_deletion(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, ".aitune/baselines/old.json", "{}\n")
    write(repo, ".aitune/baselines/kept.json", "{}\n")
    git(repo, "add", ".aitune")
    git(repo, "commit", "-q", "-m", "baselines")
    (repo / ".aitune/baselines/old.json").unlink()

    rc, out, err = night(capsys)

    assert rc == 0, err
    assert ".aitune/baselines/old.json" not in remote_files(remote)
    assert ".aitune/baselines/kept.json" in remote_files(remote)
    assert "deleted `.aitune/baselines/old.json`" in runner.pulls[1]["body"]


def test_an_oversized_file_outside_lfs_is_refused_and_nothing_is_lost(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)
    big = write(repo, f".aitune/artifacts/{KEY}/tune_big.ait", os.urandom(40 * 1024))
    before = big.read_bytes()
    status_before = git(repo, "status", "--porcelain", "--untracked-files=all")

    rc, out, err = night(capsys, "--max-file-mib", "0.01")  # 10 KiB stands in for GitHub's 100 MiB

    assert rc == 2
    assert f".aitune/artifacts/{KEY}/tune_big.ait is 40.0 KiB, over the 10.2 KiB per-file limit" in err
    assert "git lfs install && git lfs track '*.ait'" in err
    assert "aitune-ci init" in err and "commit .gitattributes" in err
    assert "nothing was committed or pushed" in err
    assert runner.write_requests() == []
    assert not remote_has_branch(remote)
    assert big.read_bytes() == before
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == status_before


def test_ait_outside_lfs_under_the_limit_is_committed_with_a_warning(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)

    rc, out, err = night(capsys)

    assert rc == 0
    assert "1 .ait artifact(s) are not tracked by Git LFS" in err
    assert "git lfs track '*.ait'" in err


def test_gitattributes_not_committed_yet_is_refused(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)
    write(repo, ".gitattributes", "*.ait filter=lfs diff=lfs merge=lfs -text\n")  # `aitune-ci init` ran, no commit

    rc, out, err = night(capsys)

    assert rc == 2
    assert "commit .gitattributes first" in err
    assert runner.write_requests() == [] and not remote_has_branch(remote)


@pytest.mark.skipif(not HAS_LFS, reason=NO_LFS_REASON)
def test_lfs_tracked_artifacts_go_through_lfs_whatever_their_size(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(repo, ".gitattributes", "*.ait filter=lfs diff=lfs merge=lfs -text\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "Track .ait with Git LFS")
    nightly_files(repo)
    big = write(repo, f".aitune/artifacts/{KEY}/tune_big.ait", os.urandom(40 * 1024))

    rc, out, err = night(capsys, "--max-file-mib", "0.01")

    assert rc == 0, err
    pointer = remote_files(remote)[f".aitune/artifacts/{KEY}/tune_big.ait"]
    oid = lfs_pointer_oid(pointer)
    assert oid is not None and "size 40960" in pointer
    uploaded = remote / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert uploaded.read_bytes() == big.read_bytes()
    assert "not tracked by Git LFS" not in err


def test_lfs_tracked_files_are_refused_when_git_lfs_is_missing(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write(repo, ".gitattributes", "*.ait filter=lfs diff=lfs merge=lfs -text\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "Track .ait with Git LFS")
    nightly_files(repo)
    # A PATH with git but without git-lfs.
    bin_dir = repo.parent / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "git")
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("GIT_EXEC_PATH", git(repo, "--exec-path"))

    rc, out, err = night(capsys)

    assert rc == 2
    assert "git-lfs is not installed here" in err
    assert runner.write_requests() == [] and not remote_has_branch(remote)


def test_dry_run_lists_the_files_and_touches_nothing(
    runner: FakeGitHub, repo: Path, remote: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    nightly_files(repo)

    rc, out, err = night(capsys, "--dry-run")

    assert rc == 0, err
    assert f"added  .aitune/baselines/{KEY}/tune_a.json" in out
    assert "would commit 3 file(s)" in out and ".lock" not in out
    assert runner.requests == []
    assert not remote_has_branch(remote)


def test_a_folder_that_does_not_exist_is_refused_not_reported_unchanged(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A nightly whose --aitune-dir names no folder (a typo, or the tune step's other aitune_dir)
    used to print "baselines unchanged" and pass, night after night."""
    nightly_files(repo)

    rc, out, err = night(capsys, "--dry-run", "--aitune-dir", ".aitnue")

    assert rc != 0 and "baselines unchanged" not in out
    assert "--aitune-dir .aitnue:" in err and "does not exist and git tracks nothing there" in err
    assert runner.requests == [] and not remote_has_branch(remote)


def test_a_folder_whose_tracked_files_were_all_deleted_is_committed_as_deletions(
    runner: FakeGitHub, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nightly_files(repo)
    git(repo, "add", ".aitune")
    git(repo, "commit", "-q", "-m", "baselines")
    shutil.rmtree(repo / ".aitune")

    rc, out, err = night(capsys, "--dry-run")

    assert rc == 0, err
    assert f"deleted  .aitune/baselines/{KEY}/tune_a.json" in out


def test_base_branch_and_body_file_are_used(
    runner: FakeGitHub, repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner.default_branch = "trunk"
    body = tmp_path / "body.md"
    body.write_text("Refreshed on the H200.\n")
    nightly_files(repo)

    assert night(capsys, "--body-file", str(body))[0] == 0
    assert (runner.pulls[1]["base"]["ref"], runner.pulls[1]["body"]) == ("trunk", "Refreshed on the H200.\n")
    nightly_files(repo, latency=5.0)
    assert night(capsys, "--base", "release")[0] == 0  # another base: its own PR
    assert runner.pulls[2]["base"]["ref"] == "release"


def test_github_refusing_the_pr_says_which_setting_to_change(
    runner: FakeGitHub, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    said = {"message": "GitHub Actions is not permitted to create or approve pull requests."}
    runner.fail("POST", runner.pulls_path(), Fault(403, body=said))
    nightly_files(repo)

    rc, _, err = night(capsys)

    assert rc == 2
    assert "not permitted to create or approve pull requests" in err
    assert "Allow GitHub Actions to create and approve pull requests" in err
    assert "pull-requests: write" in err
    # the first words are about pull requests: a new user read "cannot write PR comments" here
    assert "403 Forbidden: the token cannot open or update pull requests" in err and "PR comments" not in err


def test_missing_token_is_a_clear_error(
    runner: FakeGitHub, repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    nightly_files(repo)

    rc, _, err = night(capsys)

    assert rc == 2 and "GITHUB_TOKEN is not set" in err


def test_the_token_never_appears_in_output_or_errors(
    runner: FakeGitHub, repo: Path, remote: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = runner.token
    nightly_files(repo)
    rc, out, err = night(capsys)
    assert rc == 0 and token not in out + err

    # GitHub's error message quoting the token is redacted.
    nightly_files(repo, latency=2.0)
    runner.fail("PATCH", runner.pull_path(1), Fault(422, body={"message": f"bad credentials {token}"}))
    rc, out, err = night(capsys)
    assert rc == 2 and "bad credentials ***" in err and token not in out + err

    # An HTTP remote on GitHub's host gets the token through a credential helper: the server sees it as
    # basic auth for x-access-token, and git's failure message does not show it.
    git(repo, "remote", "set-url", "origin", f"{runner.url}/{runner.repository}.git")
    challenge = Fault(401, headers={"WWW-Authenticate": 'Basic realm="GitHub"'})  # what GitHub's git answers
    runner.fail("GET", f"/{runner.repository}.git/info/refs", challenge)
    nightly_files(repo, latency=3.0)
    rc, out, err = night(capsys)
    assert rc == 2 and "git" in err
    assert token not in out + err
    expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
    git_requests = [r for r in runner.requests if r.path.startswith(f"/{runner.repository}.git/")]
    assert any(r.headers.get("authorization") == expected for r in git_requests)


# --- the pure rules ----------------------------------------------------------------------------


def test_status_parsing_keeps_odd_names_and_both_sides_of_a_rename() -> None:
    raw = b"?? .aitune/a b.json\0 M .aitune/m.json\0 D .aitune/gone.json\0R  .aitune/new.json\0.aitune/old.json\0"
    assert parse_status(raw) == [
        ("??", ".aitune/a b.json"),
        (" M", ".aitune/m.json"),
        (" D", ".aitune/gone.json"),
        ("R ", ".aitune/new.json"),
        ("D ", ".aitune/old.json"),
    ]


def test_selection_drops_lock_files_and_sorts() -> None:
    entries = [
        ("??", ".aitune/history/k.jsonl.lock"),
        ("??", ".aitune/z.json"),
        (" M", ".aitune/history/k.jsonl"),
        ("MM", ".aitune/z.json"),
        ("??", ".aitune/.lock"),
    ]
    assert select_paths(entries) == (".aitune/history/k.jsonl", ".aitune/z.json")


def test_name_status_parsing() -> None:
    raw = b"A\0.aitune/a.json\0M\0.aitune/m.json\0D\0.aitune/d.json\0T\0.aitune/t\0"
    assert parse_name_status(raw) == (
        Change(".aitune/a.json", "added"),
        Change(".aitune/d.json", "deleted"),
        Change(".aitune/m.json", "modified"),
        Change(".aitune/t", "modified"),
    )


MiB = 2**20


def test_size_rule_refuses_a_big_file_outside_lfs_with_the_fix() -> None:
    plan = plan_files([FileFacts("a/resnet50.ait", 197 * MiB, False, False)], lfs_available=True)
    assert len(plan.refusals) == 1
    assert "a/resnet50.ait is 197.0 MiB, over the 100.0 MiB per-file limit of a push to GitHub" in plan.refusals[0]
    assert "git lfs install && git lfs track '*.ait'" in plan.refusals[0]
    other = plan_files([FileFacts("a/dump.bin", 101 * MiB, False, False)], lfs_available=True)
    assert "git lfs track '*.bin'" in other.refusals[0]


def test_size_rule_warns_between_the_limits_and_lets_lfs_files_through() -> None:
    plan = plan_files(
        [
            FileFacts("b.json", 60 * MiB, False, False),
            FileFacts("c.ait", 900 * MiB, True, True),
            FileFacts("d.json", 10, False, False),
        ],
        lfs_available=True,
    )
    assert plan.refusals == ()
    assert plan.lfs_paths == ("c.ait",)
    assert len(plan.warnings) == 1 and "b.json is 60.0 MiB: GitHub warns above 50.0 MiB" in plan.warnings[0]


def test_size_rule_limits_are_configurable() -> None:
    facts = [FileFacts("x.json", 2048, False, False)]
    assert plan_files(facts, lfs_available=False, max_bytes=1024, warn_bytes=512).refusals
    assert plan_files(facts, lfs_available=False, max_bytes=4096, warn_bytes=1024).warnings
    assert plan_files(facts, lfs_available=False) == plan_files([], lfs_available=False)


def test_lfs_routed_file_without_git_lfs_or_with_disagreeing_attributes_is_refused() -> None:
    missing = plan_files([FileFacts("c.ait", 10, True, True)], lfs_available=False)
    assert "git-lfs is not installed" in missing.refusals[0]
    uncommitted = plan_files([FileFacts("c.ait", 10, False, True)], lfs_available=True)
    assert "commit .gitattributes first" in uncommitted.refusals[0]


def test_small_ait_outside_lfs_gets_one_warning_for_all() -> None:
    plan = plan_files([FileFacts(f"{i}.ait", 10, False, False) for i in range(3)], lfs_available=False)
    assert plan.refusals == ()
    assert len(plan.warnings) == 1 and plan.warnings[0].startswith("3 .ait artifact(s) are not tracked by Git LFS")


def test_lfs_pointer_oid() -> None:
    oid = "a" * 64
    assert lfs_pointer_oid(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize 3\n") == oid
    assert lfs_pointer_oid("PK\x03\x04 not a pointer") is None


def test_default_body_lists_changes_cuts_long_lists_and_explains_the_token() -> None:
    changes = [Change(f".aitune/b/{i:03}.json", "modified") for i in range(250)] + [Change(".aitune/x", "added")]
    body = default_body(changes, head="0123456789abcdef", aitune_dir=".aitune", run_url="https://gh/run/1")
    assert "[this nightly run](https://gh/run/1)" in body and "0123456789ab" in body
    assert "**251 file(s)**: 1 added, 250 modified." in body
    assert body.count("\n- modified `") == 200 and "- … and 51 more" in body
    assert "GITHUB_TOKEN" in body and "fine-grained PAT" in body


def test_push_target_sends_the_token_only_to_github_over_http_and_never_in_argv() -> None:
    token = "ghs_secret"
    https = push_target("origin", "https://github.com/o/r.git", token=token, server_url="https://github.com")
    assert https.authenticated and https.env == {"AITUNE_CI_PUSH_TOKEN": token}
    assert not any(token in c for c in https.config)
    assert "http.https://github.com/.extraheader=" in https.config
    for url in ("git@github.com:o/r.git", "ssh://git@github.com/o/r.git", "/srv/r.git", "https://evil.example/o/r"):
        target = push_target("origin", url, token=token, server_url="https://github.com")
        assert not target.authenticated and target.env == {}
    assert not push_target("origin", "https://github.com/o/r.git", token=None, server_url=None).authenticated
    ghes = push_target("origin", "https://ghe.corp/o/r.git", token=token, server_url="https://ghe.corp")
    assert ghes.authenticated


def test_redact_url_drops_credentials() -> None:
    assert redact_url("https://x-access-token:ghs_1@github.com/o/r.git") == "https://github.com/o/r.git"
    assert redact_url("git@github.com:o/r.git") == "git@github.com:o/r.git"


def test_a_merged_pr_is_never_taken_for_the_open_one(github_server: FakeGitHub) -> None:
    # A server that ignored the state filter would return it: the answer is checked too.
    merged = {"number": 7, "state": "closed", "merged_at": "2024-01-01T00:00:00Z"}
    merged |= {"head": {"ref": DEFAULT_BRANCH}, "base": {"ref": "main"}}
    github_server.fail("GET", github_server.pulls_path(), Fault(200, body=[merged]))
    with GitHubClient(github_server.token, github_server.repository, api_url=github_server.url) as client:
        assert find_open_pull(client, DEFAULT_BRANCH, "main") is None
        query = github_server.requests_to("GET", github_server.pulls_path())[0].query
        assert query["state"] == ["open"] and query["head"] == [f"octo-org:{DEFAULT_BRANCH}"]
        assert query["base"] == ["main"]
