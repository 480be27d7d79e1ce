"""Accuracy regressions against the baseline: an SQNR drop, and a backend whose accuracy gate now fails."""

from __future__ import annotations

import pytest

#: A tolerance that only exact outputs pass (every closeness test off), so eager-bf16 fails it.
NOTHING_BUT_EXACT = "tolerance=ait.Tolerance(atol=0.0, rtol=0.0, max_rmse_ratio=1.0, close_sqnr_db=float('inf'))"


@pytest.fixture
def tuned(project):
    """tune_lin with eager and eager-bf16 (SQNR about 49 dB against fp32), baseline written."""
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update").assert_outcomes(passed=3)
    sqnr = project.load_baseline("tune_lin")["backends"]["eager-bf16"]["accuracy"]["sqnr_db"]
    assert 30 < sqnr < 70, f"bf16 SQNR of a tiny Linear should be ~49 dB, the baseline says {sqnr}"
    return project


def test_sqnr_drop_beyond_the_limit_regresses_on_accuracy(tuned):
    tuned.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)  # the current run looks ~30 dB worse

    result = tuned.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=2, failed=1)
    assert tuned.verdicts(result) == {"tune_lin[eager]": "PASS", "tune_lin[eager-bf16]": "REGRESSED (accuracy)"}
    result.stdout.fnmatch_lines(
        ["tune_lin[[]eager-bf16[]]: REGRESSED (accuracy)*SQNR dropped * dB (78.0 -> * dB*limit 3 dB)*--aitune-update*"]
    )


def test_accuracy_regression_is_not_remeasured(tuned):
    tuned.configure(aitune=tuned.CONFIRMING_AITUNE)
    tuned.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)

    result = tuned.tune()

    assert tuned.verdicts(result)["tune_lin[eager-bf16]"] == "REGRESSED (accuracy)"
    assert "re-measuring" not in result.stdout.str()


def test_sqnr_drop_within_the_repo_limit_passes(tuned):
    tuned.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)
    tuned.configure(aitune=tuned.AITUNE + "\nsqnr_drop_db = 40.0")

    result = tuned.tune()

    assert result.ret == pytest.ExitCode.OK
    assert tuned.verdicts(result)["tune_lin[eager-bf16]"] == "PASS"


def test_backend_that_now_fails_its_accuracy_gate_regresses_as_now_failing(tuned):
    (tuned.path / "conftest.py").unlink()
    tuned.add_fixture(
        "tune_lin",
        backends=("eager", "eager-bf16"),
        spec=NOTHING_BUT_EXACT,
    )

    result = tuned.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert tuned.verdicts(result)["tune_lin[eager-bf16]"] == "REGRESSED (accuracy, now-failing)"
    result.stdout.fnmatch_lines(
        ["tune_lin[[]eager-bf16[]]: REGRESSED (accuracy, now-failing)*Fails its accuracy gate*"]
    )


def test_inaccurate_backend_is_never_the_winner(tuned):
    (tuned.path / "conftest.py").unlink()
    tuned.add_fixture(
        "tune_lin",
        backends=("eager", "eager-bf16"),
        spec=NOTHING_BUT_EXACT,
    )

    result = tuned.tune("-rA")

    result.stdout.fnmatch_lines(["PASSED conftest.py::tune_lin[[]selection[]]"])
    assert "winner eager-bf16" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*tune_lin: winner eager *"])
