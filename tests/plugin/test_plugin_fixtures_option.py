"""--aitune-fixtures: select tune fixtures by exact name (``-k tune_lin`` would also pick ``tune_lin_big``)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker


@pytest.fixture
def two(project):
    """tune_lin and tune_lin_big (a name containing the other), plus one ordinary test."""
    project.add_fixture("tune_lin")
    project.add_fixture("tune_lin_big")
    project.write("test_plain.py", "def test_plain():\n    pass\n")
    return project


def test_update_of_one_fixture_leaves_the_fixture_whose_name_contains_it_alone(two):
    result = two.tune("--aitune-update", "--aitune-fixtures", "tune_lin", "-v")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=3, deselected=2)  # tune_lin[eager], tune_lin[selection], test_plain
    result.stdout.fnmatch_lines_random(
        ["conftest.py::tune_lin[[]eager[]] PASSED*", "test_plain.py::test_plain PASSED*"]
    )
    assert "tune_lin_big" not in result.stdout.str()  # not tuned, not reported
    assert set(two.baselines()) == {"tune_lin"}


def test_the_printed_fix_command_rewrites_only_its_own_baseline(two):
    two.tune("--aitune-update").assert_outcomes(passed=5)
    big = two.baseline_path("tune_lin_big").read_bytes()
    two.scale_latency("tune_lin", "eager", 1 / two.FACTOR)
    regressed = two.tune()
    assert regressed.ret == pytest.ExitCode.TESTS_FAILED

    command = re.search(r"accept it with `pytest ([^`]+)`", regressed.stdout.str()).group(1).split()
    assert command == ["--aitune", "--aitune-update", "--aitune-fixtures", "tune_lin"]
    fixed = two.run(*command, "--aitune-measure-seconds", "0.2")  # as printed, with the tests' short budget

    fixed.assert_outcomes(passed=3, deselected=2)
    assert two.baseline_path("tune_lin_big").read_bytes() == big
    assert two.tune().ret == pytest.ExitCode.OK


def test_several_names_separated_by_commas(two):
    two.add_fixture("tune_other")

    result = two.tune("--aitune-fixtures", "tune_lin_big, tune_other")

    result.assert_outcomes(passed=5, deselected=2)
    assert set(two.verdicts(result)) == {"tune_lin_big[eager]", "tune_other[eager]"}


def test_unknown_name_is_a_usage_error_listing_the_fixtures(two):
    result = two.tune("--aitune-fixtures", "tune_lin_bigg")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--aitune-fixtures: no tune fixture named tune_lin_bigg*known: tune_lin, tune_lin_big*"]
    )


def test_empty_list_is_a_usage_error(project):
    result = project.tune("--aitune-fixtures", " , ")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aitune-fixtures expects tune fixture names*"])


def test_in_the_ini_file_as_well(two):
    two.configure(ini='aitune_fixtures = "tune_lin_big"')

    result = two.tune()

    result.assert_outcomes(passed=3, deselected=2)
    assert set(two.verdicts(result)) == {"tune_lin_big[eager]"}
