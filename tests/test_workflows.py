"""The GitHub Action and workflows pass real actionlint and GitHub's published JSON schemas."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; `make test` installs it through the [dev] extra")
    return found


def test_there_are_pr_nightly_and_cpu_workflows():
    assert {p.name for p in WORKFLOWS} >= {"aitune-pr.yml", "aitune-nightly.yml", "ci.yml"}


def test_workflows_pass_actionlint():
    result = subprocess.run([_tool("actionlint"), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n")
    result = subprocess.run([_tool("actionlint"), str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0 and "nope" in result.stdout


@pytest.mark.parametrize(
    ("schema", "paths"),
    [("vendor.github-actions", [ROOT / "action.yml"]), ("vendor.github-workflows", WORKFLOWS)],
)
def test_action_and_workflows_match_githubs_schemas(schema, paths):
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_action_runs_pytest_with_aitune_and_reports_even_on_failure():
    text = (ROOT / "action.yml").read_text()
    assert "--aitune" in text and "aitune-ci comment" in text and "aitune-ci report" in text
    assert text.count("if: always()") >= 3
