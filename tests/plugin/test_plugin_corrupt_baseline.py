"""A corrupt baseline fails its fixture's items with the file and the fix, and is only rewritten on --aitune-update."""

from __future__ import annotations

import pytest

_TRUNCATED = '{"schema_version": 1, "fixture": "tune_bad", "backe'


@pytest.fixture
def corrupt(project):
    """tune_bad's baseline truncated mid-file; tune_good's intact."""
    project.add_fixture("tune_bad")
    project.add_fixture("tune_good")
    project.tune("--aitune-update").assert_outcomes(passed=4)
    project.baseline_path("tune_bad").write_text(_TRUNCATED)
    return project


def test_corrupt_baseline_fails_its_items_naming_the_file_and_the_command(corrupt):
    result = corrupt.tune("-v")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "conftest.py::tune_bad[[]eager[]] FAILED*",
            "conftest.py::tune_bad[[]selection[]] FAILED*",
            "conftest.py::tune_good[[]eager[]] PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"{corrupt.baseline_path('tune_bad')}: not valid JSON, the file may be truncated*"
            "regenerate it with `pytest --aitune --aitune-update --aitune-fixtures tune_bad`*"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    # not tuned: every item of the fixture fails on the baseline whatever a tune would measure
    assert (
        "tune_bad: not tuned: its baseline cannot be read (not valid JSON" in result.stderr.str() + result.stdout.str()
    )
    assert "tune_bad: tuned in" not in result.stderr.str() + result.stdout.str()
    # the count line says so instead of "no checks"
    result.stdout.fnmatch_lines(["aitune: 1 passed, 1 fixture broken (tune_bad: *)"])


def test_corrupt_baseline_is_left_untouched_without_update(corrupt):
    corrupt.tune()

    assert corrupt.baseline_path("tune_bad").read_text() == _TRUNCATED


def test_update_new_only_does_not_overwrite_a_corrupt_baseline(corrupt):
    result = corrupt.tune("--aitune-update-new-only")

    result.assert_outcomes(passed=2, failed=2)
    assert corrupt.baseline_path("tune_bad").read_text() == _TRUNCATED


def test_update_rewrites_a_corrupt_baseline_and_the_next_run_passes(corrupt):
    updated = corrupt.tune("--aitune-update")
    updated.assert_outcomes(passed=4)
    updated.stdout.fnmatch_lines(
        ["*tune_bad: replaced an unreadable baseline (not valid JSON*); the run history it held is not carried over"]
    )
    assert corrupt.load_baseline("tune_bad")["fixture"] == "tune_bad"

    rerun = corrupt.tune()

    assert rerun.ret == pytest.ExitCode.OK
    assert corrupt.verdicts(rerun) == {"tune_bad[eager]": "PASS", "tune_good[eager]": "PASS"}


def test_baseline_of_an_unknown_schema_version_says_to_upgrade_or_regenerate(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    data = project.load_baseline("tune_lin")
    data["schema_version"] = 99
    project.save_baseline("tune_lin", data)

    result = project.tune()

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*unknown baseline schema_version 99*a newer aitune-ci wrote it: upgrade aitune-ci to read it, or regenerate*"]
    )


def test_update_does_not_overwrite_a_baseline_a_newer_aitune_ci_wrote(project):
    """A runner still on an older aitune-ci would otherwise wipe what the newer one keeps (its run
    history: the stored latency verdict needs five runs of it)."""
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    data = project.load_baseline("tune_lin")
    data["schema_version"] = 99
    project.save_baseline("tune_lin", data)
    before = project.baseline_path("tune_lin").read_text()

    result = project.tune("--aitune-update")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*unknown baseline schema_version 99*so a newer aitune-ci wrote it; not overwritten*upgrade aitune-ci*"]
    )
    assert project.baseline_path("tune_lin").read_text() == before


def test_baseline_with_merge_conflict_markers_says_to_keep_one_side(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    path = project.baseline_path("tune_lin")
    lines = path.read_text().splitlines()
    path.write_text(
        "\n".join([*lines[:3], "<<<<<<< HEAD", *lines[3:5], "=======", *lines[3:5], ">>>>>>> nightly", *lines[5:]])
    )

    result = project.tune()

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*tune_lin.json: git merge-conflict markers at line 4, so it is not valid JSON*git checkout --ours*"]
    )


def test_baseline_with_a_wrong_field_type_names_the_field(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    data = project.load_baseline("tune_lin")
    data["backends"]["eager"]["latency"]["median_ms"] = "fast"
    project.save_baseline("tune_lin", data)

    result = project.tune()

    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*tune_lin.json: backends.eager.latency.median_ms: expected a number, found 'fast'*"])
