"""Verdicts on synthetic results: latency statistics, accuracy, failures, policy and run-wide correction."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from synthetic_latency import ROUNDS, stats

from aitune_ci.config import Acknowledgement, Policy
from aitune_ci.result import AccuracyReport, BackendResult, LeafMetrics, TuneResult
from aitune_ci.status import VerdictMode
from aitune_ci.store.baseline import AccuracySummary, BackendBaseline, Baseline, LatencySummary
from aitune_ci.verdict import (
    ACCURACY,
    LATENCY,
    NOW_FAILING,
    PairedRatio,
    Verdict,
    VerdictKind,
    apply_run_correction,
    compare_backend,
    count_line,
    parts_change,
    pool_latency,
    require_baseline,
    summary_counts,
    winner_change,
)
from aitune_ci.verdict.text import with_message


def accuracy(sqnr_db: float = 60.0, passed: bool = True) -> AccuracyReport:
    leaf = LeafMetrics(
        path="out",
        shape=(4, 8),
        max_abs=1e-3,
        max_rel=1e-3,
        mean_abs=1e-4,
        cosine=0.9999,
        sqnr_db=sqnr_db,
        rmse_ratio=1.0,
        nan_count=0,
        inf_count=0,
        passed=passed,
    )
    return AccuracyReport(passed=passed, precision="int8", gate="sqnr>=25", leaves=(leaf,))


def current(factor: float = 1.0, rounds: tuple[float, ...] = ROUNDS, sqnr_db: float = 60.0, **kw) -> BackendResult:
    kw.setdefault("status", "ok")
    return BackendResult(
        backend=kw.pop("backend", "inductor"),
        latency=stats(rounds, factor),
        accuracy=accuracy(sqnr_db),
        **kw,
    )


def baseline(factor: float = 1.0, history: tuple[float, ...] = (), sqnr_db: float = 60.0, **kw) -> BackendBaseline:
    """A baseline whose five updates measured the same median (a steady machine) unless ``run_medians_ms`` says."""
    kw.setdefault("status", "ok")
    latency = LatencySummary.from_stats(stats(kw.pop("rounds", ROUNDS), factor))
    kw.setdefault("run_medians_ms", (latency.median_ms,) * 5)
    return BackendBaseline(
        latency=latency,
        accuracy=AccuracySummary(passed=True, max_abs=1e-3, sqnr_db=sqnr_db, cosine=0.9999, rmse_ratio=1.0),
        noise_history=history,
        **kw,
    )


def check(base: BackendBaseline | None, cur: BackendResult, policy: Policy | None = None, **kw) -> Verdict:
    return compare_backend("tune_resnet", base, cur, policy or Policy(), **kw)


# -- latency -------------------------------------------------------------------------------------


def test_identical_runs_pass_with_zero_delta():
    v = check(baseline(), current())
    assert v.kind is VerdictKind.PASS
    assert v.reasons == ()
    assert v.delta == pytest.approx(0.0)
    assert v.p_value == pytest.approx(0.5)
    assert not v.needs_confirmation and not v.fails


def test_baseline_edited_30pct_faster_is_latency_regression_that_needs_confirmation():
    v = check(baseline(factor=1 / 1.3), current())
    assert v.kind is VerdictKind.REGRESSED
    assert v.reasons == (LATENCY,)
    assert v.delta == pytest.approx(0.30, rel=1e-6)
    assert v.delta_ci[0] > 0.2 and v.delta_ci[1] < 0.4
    assert v.p_value < 1e-6
    assert v.needs_confirmation
    assert "+30.0% slower" in v.message
    assert "pytest --aitune --aitune-update --aitune-fixtures tune_resnet" in v.message
    assert "confirmation 1 of 2" in v.message


def test_regression_still_present_after_last_confirmation_is_final():
    pooled = pool_latency([stats(factor=1.3), stats(factor=1.31), stats(factor=1.29)])
    cur = replace(current(), latency=pooled)
    v = check(baseline(), cur, confirmations=2)
    assert v.kind is VerdictKind.REGRESSED and v.fails
    assert not v.needs_confirmation
    assert "Confirmed by 2 re-measurement(s)" in v.message


def test_slower_baseline_is_improved():
    v = check(baseline(factor=1.3), current())
    assert v.kind is VerdictKind.IMPROVED
    assert v.delta == pytest.approx(1 / 1.3 - 1, rel=1e-6)
    assert not v.fails and not v.needs_confirmation


def test_3pct_slowdown_under_5pct_threshold_passes():
    v = check(baseline(), current(factor=1.03))
    assert v.kind is VerdictKind.PASS
    assert v.delta == pytest.approx(0.03, rel=1e-6)
    assert v.threshold == pytest.approx(0.058, abs=0.002)  # 3 x the 1.9% round spread beats 5%


def test_slowdown_above_threshold_on_a_quiet_machine_regresses():
    quiet = (10.0, 10.01, 9.99, 10.005, 9.995)
    v = check(baseline(rounds=quiet), current(factor=1.06, rounds=quiet))
    assert v.threshold == pytest.approx(0.05)
    assert v.kind is VerdictKind.REGRESSED


def test_big_slowdown_with_huge_noise_is_not_judged_and_says_what_would_show():
    noisy = (10.0, 14.0, 9.0, 17.0, 10.0, 12.0)
    v = check(baseline(), current(factor=1.5, rounds=noisy))
    assert v.kind is not VerdictKind.REGRESSED
    assert not v.fails
    # honest: at this noise a stored comparison is a coin toss, so it names the bar instead of a verdict
    assert "latency not judged against the stored baseline" in v.message.lower()
    assert "only a change beyond" in v.message


def test_tight_windows_do_not_override_noisy_history():
    # Both runs are tight inside (1-2%), but earlier runs of this backend drifted ~10% between
    # windows: a 20% shift is within what a slow window does, so it must not fail.
    noisy_history = (0.08, 0.12, 0.1, 0.09, 0.11)
    assert check(baseline(history=noisy_history), current(factor=1.2)).kind is VerdictKind.PASS
    assert check(baseline(), current(factor=1.2)).kind is VerdictKind.REGRESSED


def test_pooled_confirmations_tighten_the_confidence_interval():
    base = baseline(history=(0.02,) * 5)
    one = check(base, current(factor=1.04))
    pooled = replace(current(), latency=pool_latency([stats(factor=1.04)] * 3))
    three = check(base, pooled, confirmations=2)
    assert (three.delta_ci[1] - three.delta_ci[0]) < (one.delta_ci[1] - one.delta_ci[0])
    assert three.mde < one.mde


def test_paired_ratio_decides_latency_when_given():
    # The medians look identical, but the interleaved A/B ratio shows 8% with a tight CI.
    v = check(baseline(), current(), paired=PairedRatio(1.08, 1.06, 1.10, 30))
    assert v.paired and v.kind is VerdictKind.REGRESSED and v.reasons == (LATENCY,)
    assert v.delta == pytest.approx(0.08)
    assert v.delta_ci == pytest.approx((0.06, 0.10))
    assert v.threshold == pytest.approx(0.05)
    assert "[paired A/B]" in v.message


def test_a_paired_verdict_shows_the_pairs_own_medians_as_before_and_now():
    # The tunes' medians (taken at other moments) say 10 ms -> 10 ms; the pair's rounds say 8 -> 8.64.
    v = check(baseline(), current(), paired=PairedRatio(1.08, 1.06, 1.10, 30, a_ms=8.0, b_ms=8.64))
    assert (v.baseline_median_ms, v.current_median_ms) == (8.0, 8.64)
    assert "8.64 ms vs" in v.message and "8 ms" in v.message
    without_sides = check(baseline(), current(), paired=PairedRatio(1.08, 1.06, 1.10, 30))
    assert (without_sides.baseline_median_ms, without_sides.current_median_ms) == (
        baseline().latency.median_ms,
        current().latency.median_ms,
    )


def test_paired_ratio_whose_ci_includes_one_passes():
    v = check(baseline(), current(), paired=PairedRatio(1.08, 0.98, 1.20, 30))
    assert v.kind is VerdictKind.PASS
    assert v.mde > 0.08


def test_changed_batch_size_is_not_compared():
    base = replace(baseline(), latency=replace(baseline().latency, batch_size=8))
    cur = replace(current(factor=2.0), latency=stats(factor=2.0, batch_size=16))
    v = check(base, cur)
    assert v.kind is VerdictKind.PASS and v.delta is None
    assert "batch size changed 8 -> 16" in v.message


# -- accuracy and failures -----------------------------------------------------------------------


def test_sqnr_drop_beyond_limit_is_accuracy_regression():
    v = check(baseline(sqnr_db=40.0), current(sqnr_db=35.0))
    assert v.kind is VerdictKind.REGRESSED and v.reasons == (ACCURACY,)
    assert not v.needs_confirmation
    assert "SQNR dropped 5.0 dB" in v.message


def test_sqnr_drop_within_limit_passes():
    assert check(baseline(sqnr_db=40.0), current(sqnr_db=38.0)).kind is VerdictKind.PASS


def test_sqnr_changes_above_the_ceiling_are_rounding_not_regressions():
    assert check(baseline(sqnr_db=math.inf), current(sqnr_db=120.0)).kind is VerdictKind.PASS
    # ...but falling from float32-exact to TF32-like accuracy is caught.
    assert check(baseline(sqnr_db=math.inf), current(sqnr_db=65.0)).reasons == (ACCURACY,)


def test_ok_to_failed_is_now_failing_regression_with_the_error():
    cur = BackendResult(backend="inductor", status="failed", error="RuntimeError: triton crashed")
    v = check(baseline(), cur)
    assert v.kind is VerdictKind.REGRESSED and v.reasons == (NOW_FAILING,)
    assert v.fails and not v.needs_confirmation
    assert "triton crashed" in v.message


def test_ok_to_inaccurate_is_accuracy_and_now_failing_regression():
    cur = BackendResult(backend="inductor", status="inaccurate", accuracy=accuracy(10.0, passed=False))
    v = check(baseline(), cur)
    assert v.reasons == (ACCURACY, NOW_FAILING)
    assert "Fails its accuracy gate" in v.message


@pytest.mark.parametrize("mode", ["stored", "relative"])
def test_a_backend_that_stopped_working_is_to_be_fixed_not_accepted(mode: str):
    """New users followed the advice: an acknowledgement left the check failing, and an update only
    recorded the failure as known, reported as FAILED on every run after."""
    inaccurate = check(
        baseline(), BackendResult(backend="inductor", status="inaccurate", accuracy=accuracy(10.0, passed=False))
    )
    crashed = check(
        baseline(), BackendResult(backend="inductor", status="failed", error="RuntimeError: triton crashed")
    )
    for v in (inaccurate, crashed):
        if mode == "relative":
            v = with_message(replace(v, mode=VerdictMode.RELATIVE, base_ref="main (1a2b3c4d5e6f)"))
        assert "[tool.aitune.acknowledged]" not in v.message and "--aitune-update" not in v.message
        assert 'drop it from the spec\'s backends, or quarantine "tune_resnet[inductor]" in [tool.aitune]' in v.message
    assert "widen the spec's TuneSpec(tolerance=...), which every backend of the fixture shares" in inaccurate.message
    assert "tolerance" not in crashed.message


def test_unavailable_is_skipped_and_says_it_used_to_work():
    cur = BackendResult(backend="tensorrt", status="unavailable", error="tensorrt is not installed")
    v = check(baseline(), cur)
    assert v.kind is VerdictKind.SKIPPED and not v.fails
    assert "tensorrt is not installed" in v.message
    assert "It worked when the baseline was written" in v.message
    assert "worked" not in check(None, cur).message.lower()


def test_missing_baseline_is_new_with_the_command_to_record_it():
    v = check(None, current())
    assert v.kind is VerdictKind.NEW and not v.fails
    assert "Record it with `pytest --aitune --aitune-update --aitune-fixtures tune_resnet`" in v.message


def test_backend_that_works_now_but_failed_in_baseline_is_new():
    v = check(BackendBaseline(status="failed", error="old crash"), current())
    assert v.kind is VerdictKind.NEW
    assert "It was failed when the baseline was written" in v.message


def test_failing_backend_with_no_history_of_working_is_failed():
    cur = BackendResult(backend="onnxruntime", status="failed", error="export failed")
    new = check(None, cur)
    assert new.kind is VerdictKind.FAILED and new.fails
    assert "quarantine" in new.message
    known = check(BackendBaseline(status="failed", error="export failed"), cur)
    assert known.kind is VerdictKind.FAILED and known.known_failure and not known.fails


# -- policy ---------------------------------------------------------------------------------------


def test_acknowledged_slowdown_within_max_slowdown_passes_with_the_note():
    policy = Policy(acknowledged=Acknowledgement("expected 8% slower: fused attention off", 0.10))
    v = check(baseline(), current(factor=1.08), policy)
    # Without the acknowledgement the same numbers regress.
    assert check(baseline(), current(factor=1.08)).kind is VerdictKind.REGRESSED
    assert v.kind is VerdictKind.PASS
    assert v.acknowledged == "expected 8% slower: fused attention off"
    assert "expected 8% slower: fused attention off" in v.message


def test_slowdown_beyond_acknowledged_max_still_regresses():
    policy = Policy(acknowledged=Acknowledgement("expected 8% slower", 0.10))
    v = check(baseline(), current(factor=1.25), policy)
    assert v.kind is VerdictKind.REGRESSED
    assert "exceeds the acknowledged +10.0%" in v.message
    # it is already acknowledged: the fix is its max_slowdown, not another entry
    assert 'raise the max_slowdown of "tune_resnet[inductor]" in [tool.aitune.acknowledged]' in v.message, v.message
    assert 'add "tune_resnet[inductor]" to' not in v.message


def test_an_acknowledged_pass_says_so_in_the_terminal_table():
    from aitune_ci.report.terminal import format_verdict_table

    policy = Policy(acknowledged=Acknowledgement("expected 8% slower", 0.10))
    table = format_verdict_table([check(baseline(), current(factor=1.08), policy)])
    assert "PASS (acknowledged)" in table


def test_quarantined_check_is_reported_but_never_fails():
    policy = Policy(quarantined=True)
    slow = check(baseline(), current(factor=1.5), policy)
    broken = check(baseline(), BackendResult(backend="inductor", status="failed", error="boom"), policy)
    for v in (slow, broken):
        assert v.kind is VerdictKind.REGRESSED and v.quarantined
        assert not v.fails and not v.needs_confirmation
        assert "Quarantined in [tool.aitune]" in v.message
    assert summary_counts([slow, broken])["quarantined"] == 2


def test_env_mismatch_appears_in_the_message():
    v = check(baseline(), current(), env_diff={"torch": ("2.11.0", "2.12.0"), "driver": ("580.1", "590.2")})
    assert v.env_mismatch == {"torch": ("2.11.0", "2.12.0"), "driver": ("580.1", "590.2")}
    assert "torch 2.11.0 -> 2.12.0" in v.message
    assert "driver 580.1 -> 590.2" in v.message


# -- the whole run --------------------------------------------------------------------------------


def test_benjamini_hochberg_keeps_true_regression_and_drops_borderline_ones():
    base = baseline(history=(0.016,) * 5)
    verdicts = [compare_backend(f"tune_m{i}", base, current(), Policy()) for i in range(17)]
    true = compare_backend("tune_true", base, current(factor=1.3), Policy())
    borderline = [compare_backend(f"tune_b{i}", base, current(factor=1.065), Policy()) for i in range(2)]
    # Each borderline check is significant on its own...
    for v in borderline:
        assert v.kind is VerdictKind.REGRESSED and 0.005 < v.p_value < 0.05
    corrected = apply_run_correction([*verdicts, true, *borderline])
    by_fixture = {v.fixture: v for v in corrected}
    assert by_fixture["tune_true"].kind is VerdictKind.REGRESSED
    assert by_fixture["tune_true"].q_value < 0.05
    # ...but not once the 20 checks of the run are taken into account.
    for i in range(2):
        v = by_fixture[f"tune_b{i}"]
        assert v.kind is VerdictKind.PASS and v.q_value > 0.05 and not v.needs_confirmation
        assert "not significant once 20 checks" in v.message
    assert all(v.kind is VerdictKind.PASS for v in corrected[:17])
    assert apply_run_correction(corrected) == corrected


def test_count_line_lists_nonzero_outcomes_in_fixed_order():
    new = check(None, current())
    passed = check(baseline(), current())
    regressed = check(baseline(), current(factor=1.5))
    skipped = check(baseline(), BackendResult(backend="tensorrt", status="unavailable", error="x"))
    verdicts = [new, passed, *[passed] * 11, regressed, new, skipped, skipped, skipped]
    assert count_line(verdicts) == "aitune: 12 passed, 1 regressed, 2 new, 3 skipped"
    assert count_line([]) == "aitune: no checks"


def test_count_line_says_how_many_passes_could_not_judge_their_latency():
    """A new user's busy runner read "aitune: 5 passed" over slowdowns that were never judged."""
    passed = check(baseline(), current())
    unjudged = check(baseline(), current(factor=1.5, rounds=(10.0, 14.0, 9.0, 17.0, 10.0, 12.0)))
    assert unjudged.kind is VerdictKind.PASS and unjudged.latency_unjudged is not None
    same_work = replace(unjudged, identical_to_base=True)  # nothing could have changed: not counted
    assert passed.latency_unjudged is None and same_work.latency_unjudged is None

    assert count_line([passed, unjudged, same_work]) == "aitune: 3 passed (1 with latency not judged)"
    assert count_line([passed, same_work]) == "aitune: 2 passed"


def test_strict_missing_baseline_fails_and_is_counted_apart_from_new():
    new = require_baseline(check(None, current()))
    skipped = require_baseline(check(None, BackendResult(backend="tensorrt", status="unavailable", error="x")))
    for v in (new, skipped):
        assert v.baseline_required and v.fails
        assert "--aitune-strict requires one: this check fails" in v.message
        assert "`pytest --aitune --aitune-update-new-only --aitune-fixtures tune_resnet`" in v.message
    assert new.kind is VerdictKind.NEW  # the outcome is still what was measured
    passed = check(baseline(), current())
    assert count_line([passed, new, skipped]) == "aitune: 1 passed, 2 failed (no baseline, --aitune-strict)"


def test_strict_count_follows_a_real_failure_and_leaves_it_as_it_is():
    broken = check(None, BackendResult(backend="onnxruntime", status="failed", error="export failed"))
    assert require_baseline(broken) == broken  # fails on its own already
    new = require_baseline(check(None, current()))
    assert count_line([new, broken]) == "aitune: 1 failed, 1 failed (no baseline, --aitune-strict)"


def test_verdict_json_round_trip():
    v = check(baseline(), current(factor=1.3), env_diff={"torch": ("2.11", "2.12")})
    again = Verdict.from_json(v.to_json())
    assert again.to_json() == v.to_json()
    assert again.kind is VerdictKind.REGRESSED and again.env_mismatch == {"torch": ("2.11", "2.12")}
    required = require_baseline(check(None, current()))
    assert Verdict.from_json(required.to_json()) == required  # xdist workers send it to the controller


def _result(winner: str, module_choice: dict[str, str] | None = None) -> TuneResult:
    return TuneResult(
        name="tune_resnet",
        strategy="min-latency",
        device="cpu",
        backends=(),
        winner=winner,
        winner_reason="fastest correct",
        environment={"hardware_key": "cpu-x"},
        module_choice=module_choice or {},
    )


def test_winner_change_is_reported():
    old = Baseline(
        fixture="tune_resnet",
        hardware_key="cpu-x",
        environment={},
        updated_at="",
        winner="inductor",
        backends={},
        module_choice={"head": "eager"},
    )
    assert winner_change(old, _result("inductor", {"head": "eager"})) is None
    text = winner_change(old, _result("aoti", {"head": "inductor"}))
    assert "winner changed: inductor -> aoti (fastest correct)" in text
    assert "module head: eager -> inductor" in text
    assert winner_change(None, _result("aoti")) is None


def test_only_a_compared_mixed_verdict_gets_the_parts_note():
    from aitune_ci.check import _with_parts_note

    before, after = {"backbone": "eager"}, {"backbone": "onnxruntime"}
    note = "parts chosen differently: backbone: eager -> onnxruntime"
    passed = Verdict(fixture="tune_x", backend="mixed", kind=VerdictKind.PASS)
    assert note in _with_parts_note(passed, before, after).notes
    assert (
        "Parts chosen differently: backbone: eager -> onnxruntime." in _with_parts_note(passed, before, after).message
    )
    assert _with_parts_note(replace(passed, backend="eager"), before, after).notes == ()
    # Nothing to compare: no baseline's parts (none, or one written before the spec tuned parts), or a NEW mix.
    assert _with_parts_note(passed, {}, after).notes == ()
    assert _with_parts_note(replace(passed, kind=VerdictKind.NEW), before, after).notes == ()


def test_a_mix_whose_parts_were_chosen_differently_says_which():
    assert parts_change({"backbone": "eager", "head": "eager"}, {"backbone": "eager", "head": "eager"}) is None
    assert parts_change({}, {}) is None
    assert parts_change({"backbone": "eager", "head": "eager"}, {"head": "eager", "backbone": "onnxruntime"}) == (
        "parts chosen differently: backbone: eager -> onnxruntime"
    )
    assert parts_change({"neck": "inductor"}, {"backbone": "eager"}) == (
        "parts chosen differently: backbone: none -> eager, neck: inductor -> none"
    )
