"""Stored-baseline verdicts and the noise between processes: run-median history, the unmeasured stand-in, the MDE."""

from __future__ import annotations

import math
import random
import statistics
from statistics import NormalDist

import pytest
from synthetic_latency import ROUNDS, stats

from aitune_ci.config import Policy
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.stats import log_spread
from aitune_ci.store.baseline import BackendBaseline, Baseline, LatencySummary
from aitune_ci.verdict import VerdictKind, compare_backend
from aitune_ci.verdict.latency import MEASURED_RUNS, unpaired_test


def base(run_medians: tuple[float, ...] = (), factor: float = 1.0) -> BackendBaseline:
    return BackendBaseline(
        status="ok", latency=LatencySummary.from_stats(stats(factor=factor)), run_medians_ms=run_medians
    )


def test_without_five_runs_in_separate_processes_latency_is_not_judged_and_says_why():
    # Rounds that agree within 0.1% say nothing about how far this whole process sits off.
    steady_rounds = (10.0, 10.01, 9.99, 10.0, 10.005, 9.995, 10.0)
    for medians in ((), (10.0,), (10.0,) * (MEASURED_RUNS - 1)):
        first_nights = BackendBaseline(
            status="ok", latency=LatencySummary.from_stats(stats(steady_rounds)), run_medians_ms=medians
        )
        slow = BackendResult(backend="eager", status="ok", latency=stats(steady_rounds, factor=1.3))
        v = compare_backend("tune_x", first_nights, slow, Policy())
        assert v.kind is VerdictKind.PASS and v.delta is None and v.mde is None
        assert f"it holds {len(medians)} of the 5 runs in separate processes" in v.message
        assert "relative mode (--aitune-against) judges it now" in v.message


def test_five_runs_arm_the_stored_latency_verdict():
    steady_rounds = (10.0, 10.01, 9.99, 10.0, 10.005, 9.995, 10.0)
    armed = BackendBaseline(
        status="ok",
        latency=LatencySummary.from_stats(stats(steady_rounds)),
        run_medians_ms=(10.0, 10.02, 9.99, 10.01, 10.0),
    )
    slow = BackendResult(backend="eager", status="ok", latency=stats(steady_rounds, factor=1.3))
    v = compare_backend("tune_x", armed, slow, Policy())
    assert v.kind is VerdictKind.REGRESSED and v.threshold == pytest.approx(0.05)


def test_a_measured_spread_past_four_thresholds_is_reported_not_judged():
    bimodal = base((10.0, 6.5, 10.0, 6.4, 9.8))
    v = compare_backend(
        "tune_x", bimodal, BackendResult(backend="eager", status="ok", latency=stats(factor=1.5)), Policy()
    )
    assert v.kind is VerdictKind.PASS and v.delta is None
    assert "between runs of unchanged code" in v.message


def test_medians_that_wander_between_processes_widen_the_threshold():
    # Five separate processes measured 10 to 12 ms: a 15% change is not evidence here.
    medians = (10.0, 12.0, 8.5, 11.0, 9.5)
    test = unpaired_test(base(medians), stats(factor=1.15), Policy(), confirmations=0)
    # Five runs measure the spread loosely: it is read t_4 / z = 4.604 / 2.576 times wider.
    assert test.noise == pytest.approx(statistics.stdev(map(math.log, medians)) * 4.604 / 2.5758, rel=1e-3)
    assert test.threshold > 0.45 and not test.regressed
    assert test.between_runs == MEASURED_RUNS


def test_a_longer_history_narrows_the_reading_of_its_spread():
    five = unpaired_test(base((10.0, 11.0, 10.0, 11.0, 10.0)), stats(), Policy(), confirmations=0)
    seven = unpaired_test(base((10.0, 11.0, 10.0, 11.0, 10.0, 11.0, 10.0)), stats(), Policy(), confirmations=0)
    assert five.noise > 1.2 * seven.noise  # t_4 / t_6 = 1.24, the SDs alike


def test_only_the_last_seven_runs_count_so_a_real_step_ages_out():
    stepped = base((20.0, 20.0, 20.0) + (10.0,) * 7)
    test = unpaired_test(stepped, stats(), Policy(), confirmations=0)
    assert test.noise == pytest.approx(log_spread(ROUNDS))


def test_mde_is_where_the_rule_catches_four_in_five():
    """The reported MDE is the true slowdown that the rule flags 80% of the time (simulated, pure)."""
    policy = Policy()
    test = unpaired_test(base((10.0,) * 5), stats(), policy, confirmations=0)
    sd = (math.log1p(test.delta_ci[1]) - math.log1p(test.delta_ci[0])) / (2 * NormalDist().inv_cdf(0.975))
    rng = random.Random(7)
    log_thr = math.log1p(test.threshold)
    caught = 0
    trials = 20_000
    for _ in range(trials):
        d = math.log1p(test.mde) + rng.gauss(0.0, sd)
        p = 0.5 * math.erfc(d / sd / math.sqrt(2.0))
        caught += d > log_thr and p < policy.alpha
    assert caught / trials == pytest.approx(0.80, abs=0.015)
    assert test.mde > test.threshold  # a slowdown exactly at the threshold is caught only half the time


def test_run_medians_are_kept_across_updates_and_restart_when_the_inputs_change():
    def result(median: float, weights: str) -> TuneResult:
        row = BackendResult(backend="eager", status="ok", latency=stats(factor=median / 10.0))
        return TuneResult(
            name="tune_x",
            strategy="all",
            device="cpu",
            backends=(row,),
            winner="eager",
            winner_reason="only backend",
            environment={"hardware_key": "cpu-test"},
            inputs={"weights": weights, "samples": "s1"},
        )

    first = Baseline.from_result(result(10.0, "w1"))
    second = Baseline.from_result(result(11.0, "w1"), first)
    assert second.backends["eager"].run_medians_ms == pytest.approx((10.0, 11.0))
    again = Baseline.from_json(second.to_json())
    assert again.backends["eager"].run_medians_ms == pytest.approx((10.0, 11.0))
    changed = Baseline.from_result(result(12.0, "w2"), second)
    assert changed.backends["eager"].run_medians_ms == pytest.approx((12.0,))
    assert len(changed.backends["eager"].noise_history) == 3  # round spreads do not depend on the model's values
