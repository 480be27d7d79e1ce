"""A path option's value that pytest took as its rootdir is a usage error that says how to write it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aitune_ci.plugin.rootdir import PATH_OPTIONS, hijacked_rootdir


def _repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    repo.mkdir()
    ini = repo / "pyproject.toml"
    ini.write_text("[tool.pytest.ini_options]\naitune_measure_seconds = '0.5'\n")
    report = tmp_path / "run.json"
    report.write_text("{}")  # an earlier run's report, outside the repo
    return repo, ini, report


def test_the_path_options_are_the_ones_with_a_path_value():
    assert set(PATH_OPTIONS) == {"--aitune-dir", "--aitune-report", "--aitune-cache-dir"}


def test_an_existing_report_outside_the_repo_given_as_a_separate_word_is_named_with_its_fix(tmp_path):
    repo, ini, report = _repo(tmp_path)
    why = hijacked_rootdir(["--aitune", "--aitune-report", str(report)], repo, tmp_path, None)
    assert why is not None
    assert f"--aitune-report={report}" in why and f"{ini} was not read" in why


def test_the_rootdir_pytest_finds_from_the_repo_is_left_alone(tmp_path):
    repo, ini, report = _repo(tmp_path)
    assert hijacked_rootdir(["--aitune", f"--aitune-report={report}"], repo, repo, ini) is None
    assert hijacked_rootdir(["--aitune", "--aitune-dir", ".aitune"], repo, repo, ini) is None
    assert hijacked_rootdir(["--aitune", "--aitune-report", str(tmp_path / "new.json")], repo, repo, ini) is None
    # --rootdir / -c are the user's own choice
    assert hijacked_rootdir(["--rootdir", str(tmp_path), "--aitune-report", str(report)], repo, tmp_path, None) is None


def test_the_rootdir_is_refused_before_the_conftests_fail_to_import(pytester):
    """A repo whose conftest imports its own package through the ini's ``pythonpath``: read from the
    wrong rootdir that ini is not read and the conftest fails on its import, which hid the cause.
    Run in a subprocess: the plugin must be loaded the way an installed one is, before conftests."""
    repo = pytester.path / "repo"
    (repo / "acme").mkdir(parents=True)
    (repo / "acme" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text('[tool.pytest.ini_options]\npythonpath = ["."]\ntestpaths = ["tests"]\n')
    (repo / "tests").mkdir()
    (repo / "tests" / "conftest.py").write_text("import acme  # found through the ini's pythonpath\n")
    report = pytester.path / "run.json"
    report.write_text("{}")  # an earlier run's report, outside the repo

    # the pytest command as a user runs it: `python -m pytest`, or pytester's runs (which put the
    # working directory on PYTHONPATH), would find the package without the ini
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pytest_command = shutil.which("pytest", path=Path(sys.executable).parent)
    assert pytest_command, f"no pytest command beside {sys.executable}"
    done = subprocess.run(
        [pytest_command, "--aitune", "--aitune-report", str(report)], cwd=repo, env=env, capture_output=True, text=True
    )

    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert f"ERROR: aitune: pytest took its rootdir {pytester.path}" in done.stderr
    assert f"Write the option with '=': --aitune-report={report}" in done.stderr
    assert "ModuleNotFoundError" not in done.stdout + done.stderr


def test_against_outside_a_git_checkout_says_what_to_do(tmp_path):
    from aitune_ci.plugin.against import BaseCheckout, BaseCheckoutError

    with pytest.raises(BaseCheckoutError, match=r"--aitune-against 'main' needs a git checkout.*drop --aitune-against"):
        BaseCheckout.create(tmp_path, "main", tmp_path / "work")
