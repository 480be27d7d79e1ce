"""Two-phase runs: write a baseline, edit its latency, rerun; the items and exit status follow the verdict."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker


@pytest.fixture
def tuned(project):
    """A repo whose tune_lin (eager, eager-bf16) baseline has just been written."""
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update").assert_outcomes(passed=3)
    return project


@pytest.mark.parametrize("xdist", [(), ("-n", "0")], ids=["plain", "n0"])
def test_baseline_edited_faster_makes_the_check_regress_and_the_run_fail(tuned, xdist):
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)

    result = tuned.tune("-v", *xdist)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines_random(
        ["conftest.py::tune_lin[[]eager[]] FAILED*", "conftest.py::tune_lin[[]eager-bf16[]] PASSED*"]
    )
    assert tuned.verdicts(result)["tune_lin[eager]"] == "REGRESSED (latency)"


def test_suspected_regression_is_remeasured_before_it_fails(tuned):
    tuned.configure(aitune=tuned.CONFIRMING_AITUNE)
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)

    result = tuned.tune()

    result.stdout.fnmatch_lines(
        [
            "*tune_lin · eager: suspected regressed (+*%), re-measuring (1/2)",
            "*tune_lin · eager: suspected regressed (+*%), re-measuring (2/2)",
        ]
    )
    result.stdout.fnmatch_lines(["tune_lin[[]eager[]]: REGRESSED (latency)*Confirmed by 2 re-measurement(s)*"])


def test_regression_message_says_how_to_accept_it(tuned):
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)

    result = tuned.tune()

    result.stdout.fnmatch_lines(
        [
            "tune_lin[[]eager[]]: REGRESSED (latency). * ms vs baseline * ms: +*% slower*"
            'accept it with `pytest --aitune --aitune-update --aitune-fixtures tune_lin`, or add "tune_lin[[]eager[]]" to '
            "[[]tool.aitune.acknowledged[]]*"
        ]
    )


def test_baseline_edited_slower_reports_improved_and_passes(tuned):
    tuned.scale_latency("tune_lin", "eager", tuned.FACTOR)

    result = tuned.tune()

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=3)
    assert tuned.verdicts(result) == {"tune_lin[eager]": "IMPROVED", "tune_lin[eager-bf16]": "PASS"}
    # eager-bf16 is not judged: its baseline holds one run (stored mode judges from five)
    assert tuned.count_line(result) == "aitune: 1 passed (1 with latency not judged), 1 improved"


def test_summary_table_lists_regressions_first_with_the_count_line_last(tuned):
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)
    tuned.scale_latency("tune_lin", "eager-bf16", tuned.FACTOR)

    result = tuned.tune()

    lines = tuned.summary(result)
    assert lines[0].split() == [
        "check",
        "median",
        "ms",
        "(before",
        "→",
        "now)",
        "Δ",
        "95%",
        "CI",
        "of",
        "Δ",
        "MDE",
        "against",
        "verdict",
    ]
    assert [line.split()[0] for line in lines[2:4]] == ["tune_lin[eager]", "tune_lin[eager-bf16]"]
    assert "+" in lines[2].split()[4]  # Δ of the regression: slower
    assert lines[-1] == "aitune: 1 improved, 1 regressed"


def test_selection_item_reports_the_winner(tuned):
    result = tuned.tune("-rA")

    result.stdout.fnmatch_lines(["PASSED conftest.py::tune_lin[[]selection[]]"])
    assert tuned.verdicts(result)["tune_lin[eager]"] == "PASS"
