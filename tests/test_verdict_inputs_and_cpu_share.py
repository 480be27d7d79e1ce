"""Two environment rules of a verdict: a changed model or samples, and a different share of the CPU."""

from __future__ import annotations

from test_verdict import baseline, check, current

from aitune_ci.environment import environment_differences, speed_differences
from aitune_ci.verdict import ACCURACY, LATENCY, PairedRatio, VerdictKind


def test_an_sqnr_drop_regresses_when_model_and_samples_are_the_baseline_s():
    v = check(baseline(sqnr_db=51.7), current(sqnr_db=44.7))

    assert v.kind is VerdictKind.REGRESSED and v.reasons == (ACCURACY,)


def test_an_sqnr_drop_after_the_model_changed_is_reported_as_that_not_as_a_regression():
    v = check(baseline(sqnr_db=51.7), current(sqnr_db=44.7), inputs_changed=["weights"])

    assert v.kind is VerdictKind.PASS and v.reasons == ()
    assert "Model or samples changed since the baseline (weights): SQNR dropped 7.0 dB" in v.message


def test_a_changed_model_still_fails_its_absolute_accuracy_gate():
    v = check(baseline(), current(status="inaccurate"), inputs_changed=["weights", "samples"])

    assert v.kind is VerdictKind.REGRESSED and ACCURACY in v.reasons


def test_latency_on_another_share_of_the_cpu_is_not_judged_against_medians():
    cpu = {"device_type": "cpu"}
    diff = environment_differences(
        {**cpu, "torch_threads": 2, "cpus_usable": 2}, {**cpu, "torch_threads": 1, "cpus_usable": 1}
    )

    v = check(baseline(), current(factor=2.0), env_diff=diff)  # twice as slow: one core instead of two

    assert v.kind is VerdictKind.PASS and v.delta is None
    assert (
        "Latency not compared: this run may use 1 CPU core (the baseline 2), 1 torch thread (the baseline 2)"
        in v.message
    )
    assert "Environment differs from the baseline (cpus_usable 2 -> 1, torch_threads 2 -> 1)" in v.message


def test_the_same_run_is_judged_when_the_comparison_is_paired_in_one_process():
    diff = {"torch_threads": (2, 1)}

    v = check(baseline(), current(factor=2.0), env_diff=diff, paired=PairedRatio(2.0, 1.95, 2.05, 20))

    assert v.kind is VerdictKind.REGRESSED and v.reasons == (LATENCY,)


def test_cpu_share_counts_on_cpu_runs_only_and_only_where_the_baseline_recorded_it():
    assert speed_differences({"torch_threads": 2}, {"device_type": "cpu", "torch_threads": 1}) == {
        "torch_threads": (2, 1)
    }
    assert speed_differences({"torch_threads": 2}, {"device_type": "cuda", "torch_threads": 1}) == {}
    assert speed_differences({}, {"device_type": "cpu", "torch_threads": 1, "cpus_usable": 1}) == {}
