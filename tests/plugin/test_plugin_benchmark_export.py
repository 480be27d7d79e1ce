"""--aitune-report NAME.benchmark.json: the file pytest writes names the rootdir's commit, not "unknown"."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo), "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_the_benchmark_export_names_the_rootdirs_commit_from_anywhere(
    project, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    project.add_fixture("tune_lin")
    _git(project.path, "init", "-q")
    _git(project.path, "add", "-A")
    _git(project.path, "commit", "-q", "-m", "tune fixtures")
    head = _git(project.path, "rev-parse", "HEAD")

    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not a checkout: the commit must come from the rootdir
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(elsewhere.parent))
    monkeypatch.chdir(elsewhere)
    report = elsewhere / "aitune.benchmark.json"
    result = project.tune(
        str(project.path), "--rootdir", str(project.path), "--aitune-update", "--aitune-report", str(report)
    )

    assert result.ret == pytest.ExitCode.OK
    doc = json.loads(report.read_text())
    assert doc["commit_info"]["id"] == head
    assert [b["name"] for b in doc["benchmarks"]] == ["tune_lin[eager]"]
