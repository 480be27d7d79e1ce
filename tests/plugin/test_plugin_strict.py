"""--aitune-strict: a missing baseline fails (with the command that creates it) instead of reporting NEW, and is counted so."""

from __future__ import annotations

import pytest


def test_missing_baseline_under_strict_fails_with_the_exact_command(project):
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))

    result = project.tune("--aitune-strict")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=2)  # the selection item does not need a baseline
    result.stdout.fnmatch_lines(
        [
            "tune_lin[[]eager[]]: no baseline for this hardware and --aitune-strict is set. Create it with:",
            "    pytest --aitune --aitune-update-new-only --aitune-fixtures tune_lin",
        ]
    )
    assert project.count_line(result) == "aitune: 2 failed (no baseline, --aitune-strict)"


def test_strict_passes_once_the_baseline_exists(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")

    result = project.tune("--aitune-strict")

    assert result.ret == pytest.ExitCode.OK
    assert project.verdicts(result) == {"tune_lin[eager]": "PASS"}


def test_strict_with_update_new_only_writes_the_baseline_and_passes(project):
    project.add_fixture("tune_lin")

    result = project.tune("--aitune-strict", "--aitune-update-new-only")

    assert result.ret == pytest.ExitCode.OK
    assert set(project.baselines()) == {"tune_lin"}
    assert project.count_line(result) == "aitune: 1 new"  # written now: nothing failed


def test_strict_fails_only_the_fixture_without_a_baseline(project):
    project.add_fixture("tune_old")
    project.tune("--aitune-update")
    project.add_fixture("tune_fresh")

    result = project.tune("--aitune-strict", "-v")

    result.stdout.fnmatch_lines_random(
        ["conftest.py::tune_old[[]eager[]] PASSED*", "conftest.py::tune_fresh[[]eager[]] FAILED*"]
    )
    assert project.count_line(result) == "aitune: 1 passed, 1 failed (no baseline, --aitune-strict)"
