"""The confirmation loop shared by the plugin and the verdict-quality bench: re-measure while suspected."""

from __future__ import annotations

import pytest
from synthetic_latency import stats

from aitune_ci.config import Policy
from aitune_ci.result import BackendResult, LatencyStats
from aitune_ci.store.baseline import BackendBaseline, LatencySummary
from aitune_ci.verdict import LATENCY, PairedRatio, Verdict, VerdictKind, judge_with_confirmations, pool_paired

BASELINE = BackendBaseline(status="ok", latency=LatencySummary.from_stats(stats()), run_medians_ms=(10.0,) * 5)


class Remeasure:
    """Returns the given factors' stats in turn and counts the calls (a scripted re-measurement)."""

    def __init__(self, *factors: float) -> None:
        self.factors = list(factors)
        self.calls = 0

    def __call__(self) -> LatencyStats:
        self.calls += 1
        return stats(factor=self.factors.pop(0))


def judge(first: float, remeasure: Remeasure | None, policy: Policy | None = None, **kw) -> Verdict:
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=first))
    return judge_with_confirmations("tune_mlp", BASELINE, row, policy or Policy(), remeasure, **kw)


def test_steady_run_is_not_remeasured():
    again = Remeasure()
    v = judge(1.0, again)
    assert v.kind is VerdictKind.PASS
    assert again.calls == 0 and v.confirmations == 0


def test_slowdown_that_persists_fails_after_every_confirmation():
    again = Remeasure(1.3, 1.3)
    v = judge(1.3, again)
    assert again.calls == 2
    assert v.kind is VerdictKind.REGRESSED and v.reasons == (LATENCY,)
    assert v.confirmations == 2 and not v.needs_confirmation and v.fails


def test_one_slow_window_is_cleared_by_a_normal_remeasurement_and_stops_there():
    again = Remeasure(1.0, 1.0)
    v = judge(1.3, again)
    assert again.calls == 1 and v.confirmations == 1
    assert v.kind is not VerdictKind.REGRESSED and not v.fails and not v.needs_confirmation


def test_confirmations_stop_at_the_policy_limit():
    again = Remeasure(1.3, 1.3, 1.3, 1.3)
    v = judge(1.3, again, Policy(max_confirmations=1))
    assert again.calls == 1 and v.confirmations == 1 and v.fails


def test_without_a_way_to_remeasure_the_first_verdict_stands():
    v = judge(1.3, None)
    assert v.kind is VerdictKind.REGRESSED and v.needs_confirmation and v.confirmations == 0


def test_on_suspect_sees_each_suspicion_before_its_remeasurement():
    seen: list[tuple[int, int]] = []
    again = Remeasure(1.3, 1.3)
    judge(1.3, again, on_suspect=lambda verdict, measured: seen.append((verdict.confirmations, measured)))
    assert seen == [(0, 1), (1, 2)]


def test_pooled_paired_estimates_narrow_the_interval_and_keep_the_center():
    one = PairedRatio(1.10, 1.02, 1.19, 5)
    pooled = pool_paired([one, PairedRatio(1.10, 1.02, 1.19, 5), PairedRatio(1.10, 1.02, 1.19, 5)])
    assert pooled.ratio == pytest.approx(1.10, rel=1e-9)
    assert pooled.ci_high - pooled.ci_low < (one.ci_high - one.ci_low) / 1.6  # sqrt(3) narrower
    assert pooled.n == 15


def test_pooled_paired_estimates_keep_each_sides_median_only_when_every_estimate_has_it():
    pooled = pool_paired([PairedRatio(1.1, 1.0, 1.2, 5, 2.0, 2.2), PairedRatio(1.1, 1.0, 1.2, 5, 8.0, 8.8)])
    assert (pooled.a_ms, pooled.b_ms) == (pytest.approx(4.0), pytest.approx(4.4))  # geometric means
    assert pool_paired([PairedRatio(1.1, 1.0, 1.2, 5, 2.0, 2.2), PairedRatio(1.1, 1.0, 1.2, 5)]).a_ms is None


def test_a_paired_confirmation_adds_evidence_instead_of_having_to_clear_the_bar_alone():
    # First estimate: suspected (+12%, CI above 1). A second, noisier one alone would not
    # be significant, but pooled with the first the slowdown stands.
    first = PairedRatio(1.12, 1.04, 1.21, 5)
    second = PairedRatio(1.11, 0.99, 1.24, 5)
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    verdict = judge_with_confirmations(
        "tune_x", BASELINE, row, Policy(max_confirmations=1), None, paired=first, remeasure_paired=lambda: second
    )
    assert verdict.kind == "REGRESSED" and verdict.paired


def test_an_inconclusive_slowdown_past_the_threshold_is_measured_again_not_passed():
    # +9% point estimate, CI touching 1: not significant alone, but past the 5% threshold.
    first = PairedRatio(1.09, 0.995, 1.19, 5)
    calls = []

    def again():
        calls.append(1)
        return PairedRatio(1.10, 1.05, 1.15, 5)

    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    verdict = judge_with_confirmations("tune_x", BASELINE, row, Policy(), None, paired=first, remeasure_paired=again)
    assert calls and verdict.kind == "REGRESSED"


def test_a_small_inconclusive_change_under_the_threshold_is_not_remeasured():
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    verdict = judge_with_confirmations(
        "tune_x",
        BASELINE,
        row,
        Policy(),
        None,
        paired=PairedRatio(1.02, 0.98, 1.06, 5),
        remeasure_paired=lambda: pytest.fail("must not re-measure"),
    )
    assert verdict.kind == "PASS" and verdict.confirmations == 0


def _count_calls(estimate):
    calls = []

    def again():
        calls.append(1)
        return estimate

    return calls, again


def test_a_paired_regression_that_a_fresh_window_replicates_on_its_own_fails_without_a_second_confirmation():
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    calls, again = _count_calls(PairedRatio(1.15, 1.14, 1.16, 10))
    verdict = judge_with_confirmations(
        "tune_x", BASELINE, row, Policy(), None, paired=PairedRatio(1.15, 1.14, 1.16, 10), remeasure_paired=again
    )
    assert verdict.kind == "REGRESSED" and len(calls) == 1 and verdict.confirmations == 1
    assert "confirmed by 1 re-measurement" in verdict.message.lower()


def test_a_confirmation_that_does_not_regress_on_its_own_is_followed_by_the_next():
    # Pooled with the first it still regresses, but alone it does not: one more window decides.
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    calls, again = _count_calls(PairedRatio(1.06, 0.98, 1.15, 10))
    verdict = judge_with_confirmations(
        "tune_x", BASELINE, row, Policy(), None, paired=PairedRatio(1.15, 1.14, 1.16, 10), remeasure_paired=again
    )
    assert len(calls) == 2 and verdict.confirmations == 2


def test_a_replicated_regression_weak_enough_for_the_run_correction_to_clear_is_measured_again():
    # Each window regresses alone (+8%, CI above 1), pooled p ~5e-4: with one check that stands, but
    # Benjamini-Hochberg over 1000 checks could clear it, so the last window is still taken.
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    window = PairedRatio(1.08, 1.01, 1.15, 10)
    for checks, expected_calls in ((1, 1), (1000, 2)):
        calls, again = _count_calls(window)
        judge_with_confirmations(
            "tune_x", BASELINE, row, Policy(), None, paired=window, remeasure_paired=again, checks_in_run=checks
        )
        assert len(calls) == expected_calls, checks


def test_a_first_window_that_was_only_inconclusive_is_not_replicated_by_one_regressed_window():
    # +9%, CI touching 1: suspected but not significant alone. One significant window after it is a
    # single regressed window, not a replication, so the last confirmation is still taken.
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    calls, again = _count_calls(PairedRatio(1.15, 1.14, 1.16, 10))
    verdict = judge_with_confirmations(
        "tune_x", BASELINE, row, Policy(), None, paired=PairedRatio(1.09, 0.995, 1.19, 5), remeasure_paired=again
    )
    assert len(calls) == 2 and verdict.kind == "REGRESSED"
    assert "replicated" not in verdict.message.lower()


def test_a_replicated_regression_says_why_it_stopped():
    row = BackendResult(backend="eager", status="ok", latency=stats(factor=1.0))
    _, again = _count_calls(PairedRatio(1.15, 1.14, 1.16, 10))
    verdict = judge_with_confirmations(
        "tune_x", BASELINE, row, Policy(), None, paired=PairedRatio(1.15, 1.14, 1.16, 10), remeasure_paired=again
    )
    assert "replicated: the first window and a fresh one each regressed on their own" in verdict.message.lower()
