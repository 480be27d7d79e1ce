"""Judging one check: its verdict against the baseline entry, confirmed by re-measuring when in doubt."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from aitune_ci.config import Acknowledgement, Policy
from aitune_ci.cpu_load import CONTENDED_CORES
from aitune_ci.environment import CPU_SPEED_FIELDS
from aitune_ci.formatting import fmt_db, fmt_p, fmt_pct
from aitune_ci.result import BackendResult, LatencyStats, TuneResult
from aitune_ci.stats import log_spread
from aitune_ci.status import BackendStatus, VerdictKind
from aitune_ci.store.baseline import BackendBaseline, Baseline
from aitune_ci.task_metric_gates import metric_drops
from aitune_ci.verdict.latency import (
    MEASURED_RUNS,
    LatencyTest,
    paired_test,
    pool_latency,
    pool_paired,
    unpaired_test,
)
from aitune_ci.verdict.metrics import MetricCheck, build_time_check, judge_metric, throughput_check
from aitune_ci.verdict.model import (
    ACCURACY,
    LATENCY,
    METRIC_REASONS,
    NOT_COMPARED,
    NOT_JUDGED,
    NOW_FAILING,
    REASON_ORDER,
    TASK_METRIC,
    RatioLike,
    Verdict,
)
from aitune_ci.verdict.text import with_message

__all__ = ["compare_backend", "judge_with_confirmations", "parts_change", "require_baseline", "winner_change"]


def compare_backend(
    fixture: str,
    baseline: BackendBaseline | None,
    current: BackendResult,
    policy: Policy,
    paired: RatioLike | None = None,
    env_diff: Mapping[str, tuple[Any, Any]] | None = None,
    *,
    confirmations: int = 0,
    inputs_changed: Sequence[str] = (),
    base_in_process: bool = False,
) -> Verdict:
    """Judge one (fixture, backend) check against its baseline entry.

    Args:
        fixture: the tune_* fixture's name.
        baseline: the backend's entry in the committed baseline, or None when there is none.
        current: this run's result row (with ``latency`` pooled over re-measurements, if any).
        policy: ``RepoConfig.policy_for(fixture, backend)``.
        paired: an interleaved A/B ratio current/baseline-artifact; used instead of the medians.
        env_diff: environment fields that differ from the baseline (``environment_differences``).
        confirmations: how many re-measurements are pooled into ``current.latency``.
        inputs_changed: which of the model's weights and the samples differ from the baseline's
            (``Baseline.inputs_changed``): accuracy deltas then say so instead of regressing.
        base_in_process: the baseline is the PR's base, built in this process after this run's
            builds (relative mode): cold build times are then not compared (``build_time_check``).

    Returns:
        The verdict. ``needs_confirmation`` asks the caller to re-measure and call again with
        ``confirmations + 1``; run ``apply_run_correction`` over all verdicts before failing any.
    """
    facts = dict(
        fixture=fixture,
        backend=current.backend,
        env_mismatch=dict(env_diff or {}),
        quarantined=policy.quarantined,
        warn_only=policy.warn_only,
        confirmations=confirmations,
        max_confirmations=policy.max_confirmations,
        alpha=policy.alpha,
        acknowledged=policy.acknowledged.reason if policy.acknowledged else None,
        baseline_median_ms=baseline.latency.median_ms if baseline and baseline.latency else None,
        current_median_ms=current.latency.median_ms if current.latency else None,
    )
    a_ms, b_ms = (getattr(paired, "a_ms", None), getattr(paired, "b_ms", None)) if paired else (None, None)
    if a_ms is not None and b_ms is not None:
        # The verdict rests on the pair: before and now are its two sides' medians over the same
        # rounds. The two tunes' own medians were taken at other moments (an unchanged base read
        # 0.04585 ms and its head 0.03165 ms, paired +0.0%, in one relative check).
        facts.update(baseline_median_ms=a_ms, current_median_ms=b_ms)
    verdict = _when_a_side_did_not_work(baseline, current, facts)
    if verdict is None:
        assert baseline is not None
        verdict = _compare_working(
            baseline, current, policy, paired, confirmations, facts, inputs_changed, base_in_process
        )
    if current.review and policy.acknowledged is None and verdict.kind is not VerdictKind.SKIPPED:
        verdict = _for_review(verdict, current.review)
    return with_message(verdict)


def _for_review(v: Verdict, review: str) -> Verdict:
    """An implausible win (``aitune_ci.sanity``) FAILS until a human acknowledges it in ``[tool.aitune.acknowledged]``.

    Neither PASS (it may be skipped work) nor dropped (it may be real): someone has to look.
    """
    return replace(
        v,
        kind=VerdictKind.FAILED,
        reasons=(),
        known_failure=False,
        needs_confirmation=False,
        notes=(f"flagged for review: {review}", *v.notes),
    )


def _when_a_side_did_not_work(
    baseline: BackendBaseline | None, current: BackendResult, facts: dict[str, Any]
) -> Verdict | None:
    """SKIPPED, FAILED, REGRESSED (now failing) or NEW; None when both sides worked and can be compared."""
    status = BackendStatus(current.status)
    notes: list[str] = []
    if status is BackendStatus.UNAVAILABLE:
        notes.append(f"unavailable here: {current.error or current.description or 'no reason given'}")
        if baseline is not None and baseline.worked:
            notes.append("it worked when the baseline was written; this run cannot check it")
        return Verdict(kind=VerdictKind.SKIPPED, notes=tuple(notes), **facts)
    if status.broken:
        notes.append(_failure_text(current))
        if baseline is not None and baseline.worked:
            why = (ACCURACY, NOW_FAILING) if status is BackendStatus.INACCURATE else (NOW_FAILING,)
            return Verdict(kind=VerdictKind.REGRESSED, reasons=why, notes=tuple(notes), **facts)
        known = baseline is not None and baseline.status.broken
        if known:
            notes.append(f"the baseline records it as {baseline.status} too")
        return Verdict(kind=VerdictKind.FAILED, known_failure=known, notes=tuple(notes), **facts)
    if baseline is None:
        return Verdict(kind=VerdictKind.NEW, notes=("no baseline for this backend yet",), **facts)
    if not baseline.worked:
        return Verdict(
            kind=VerdictKind.NEW,
            notes=(f"it was {baseline.status} when the baseline was written and works now",),
            **facts,
        )
    return None


def _compare_working(
    baseline: BackendBaseline,
    current: BackendResult,
    policy: Policy,
    paired: RatioLike | None,
    confirmations: int,
    facts: dict[str, Any],
    inputs_changed: Sequence[str] = (),
    base_in_process: bool = False,
) -> Verdict:
    """Both sides worked: accuracy against the baseline, then latency, then what the team acknowledged."""
    notes: list[str] = []
    reasons: list[str] = []
    if baseline.precision != current.precision:
        notes.append(f"precision changed: {baseline.precision} -> {current.precision}")
    sqnr_note = _sqnr_drop(baseline, current, policy)
    if sqnr_note and inputs_changed:
        # Another model or other inputs give other numbers: not the backend's doing. The absolute
        # accuracy gate (against this run's own eager reference) still applies through the status.
        notes.append(f"model or samples changed since the baseline ({' and '.join(inputs_changed)}): {sqnr_note}")
    elif sqnr_note:
        notes.append(sqnr_note)
        reasons.append(ACCURACY)
    task_drops = metric_drops(baseline.task_metrics, current.task_metrics)
    if task_drops and inputs_changed:
        notes.extend(
            f"model or samples changed since the baseline ({' and '.join(inputs_changed)}): {t}" for t in task_drops
        )
    elif task_drops:
        notes.extend(task_drops)
        reasons.append(TASK_METRIC)
    test, not_compared = _latency_test(baseline, current, policy, paired, confirmations, facts["env_mismatch"])
    if not_compared:
        notes.append(not_compared)
    elif test is not None and test.regressed:
        reasons.append(LATENCY)
    metrics = gated_metrics(baseline, current, policy, test, not_compared, base_in_process=base_in_process)
    reasons.extend(m.reason for m in metrics if m.regressed)
    if policy.acknowledged is not None:
        notes.extend(_acknowledge(policy.acknowledged, test, reasons))

    if reasons:
        kind = VerdictKind.REGRESSED
    elif test is not None and test.improved:
        kind = VerdictKind.IMPROVED
        notes.append(f"faster with p={fmt_p(test.p_faster)}")
    else:
        kind = VerdictKind.PASS
    ordered = tuple(r for r in REASON_ORDER if r in reasons)
    # Inconclusive: the point estimate is past the threshold but the evidence is not yet enough.
    # Measuring more (pooled) settles it either way, rather than passing a likely regression.
    inconclusive = not reasons and test is not None and not test.regressed and test.delta > test.threshold
    return Verdict(
        kind=kind,
        reasons=ordered,
        notes=tuple(notes),
        metrics=tuple(metrics),
        paired=paired is not None and test is not None,
        needs_confirmation=(
            (ordered == (LATENCY,) or inconclusive)
            and confirmations < policy.max_confirmations
            and not policy.quarantined
        ),
        **facts,
        **(_test_fields(test) if test is not None else {}),
    )


def _latency_test(
    baseline: BackendBaseline,
    current: BackendResult,
    policy: Policy,
    paired: RatioLike | None,
    confirmations: int,
    env_diff: Mapping[str, tuple[Any, Any]],
) -> tuple[LatencyTest | None, str | None]:
    """The latency test (paired when an A/B ratio is given), or None and why latency was not compared."""
    if baseline.latency is None or current.latency is None:
        return None, f"{NOT_COMPARED}: " + ("no baseline latency" if baseline.latency is None else "not measured")
    old, new = baseline.latency.batch_size, current.latency.batch_size
    if old is not None and new is not None and old != new:
        return None, f"{NOT_COMPARED}: batch size changed {old} -> {new}; update the baseline"
    if paired is not None:
        busy = _paired_contention(getattr(paired, "cpu_contention", None))
        return (None, busy) if busy else (paired_test(paired, policy), None)
    speed = {k: v for k, v in env_diff.items() if k in CPU_SPEED_FIELDS}
    if speed:
        return None, (
            f"{NOT_COMPARED}: this run may use "
            + ", ".join(
                f"{new} {_SPEED_WORDS[k].removesuffix('s') if new == 1 else _SPEED_WORDS[k]} (the baseline {old})"
                for k, (old, new) in sorted(speed.items())
            )
            + "; pytest -n splits the cores and OMP_NUM_THREADS/torch.set_num_threads set the threads, so judge it "
            "set up as the baseline was, or in relative mode (--aitune-against)"
        )
    busy = _contention(baseline.latency.cpu_contention, current.latency.cpu_contention)
    if busy:
        return None, busy
    test = unpaired_test(baseline, current.latency, policy, confirmations)
    return _judgeable(test, policy)


_MIB = 1024.0 * 1024.0


def gated_metrics(
    baseline: BackendBaseline,
    current: BackendResult,
    policy: Policy,
    latency: LatencyTest | None,
    latency_unjudged: str | None,
    *,
    base_in_process: bool = False,
) -> list[MetricCheck]:
    """Every metric beyond latency that this run measured, compared with the baseline entry.

    ``latency`` and ``latency_unjudged`` are the check's latency test and why it was not made:
    throughput at the tuned batch size inherits the latency's noise (``throughput_check``).
    """
    old, new = baseline.metrics, current
    checks = [
        build_time_check(
            old.build_s,
            old.build_cache,
            new.build_s,
            new.build_cache,
            policy.gate("build_time"),
            base_in_process=base_in_process,
        ),
        judge_metric("load_time", old.load_s, new.load_s, policy.gate("load_time")),
        judge_metric("first_call", old.first_call_ms, new.first_call_ms, policy.gate("first_call")),
        judge_metric(
            "peak_memory",
            None if old.peak_memory_bytes is None else old.peak_memory_bytes / _MIB,
            None if new.peak_memory_bytes is None else new.peak_memory_bytes / _MIB,
            policy.gate("peak_memory"),
        ),
        throughput_check(
            old.throughput_by_batch,
            new.throughput_by_batch,
            current.latency.batch_size if current.latency is not None else None,
            policy.gate("throughput"),
            latency_threshold=latency.threshold if latency is not None else None,
            latency_unjudged=latency_unjudged,
            round_spread=_sweep_spread(current),
            noise_k=policy.noise_k,
        ),
    ]
    return [c for c in checks if c is not None]


def _sweep_spread(current: BackendResult) -> float | None:
    """The round spread of the sweep point with the best throughput (its own within-run noise)."""
    points = [s for s in current.sweep if s.throughput]
    if not points:
        return None
    best = max(points, key=lambda s: s.throughput or 0.0)
    return log_spread(best.round_medians_ms)


def _contention(baseline: float | None, current: float | None) -> str | None:
    """Why a run measured while other processes took the CPU cannot be compared with a stored one."""
    sides = [
        (what, cores)
        for what, cores in (("this run", current), ("the baseline", baseline))
        if cores is not None and cores > CONTENDED_CORES
    ]
    if not sides:
        return None
    return (
        f"{NOT_JUDGED} against the stored baseline: other processes took "
        + " and ".join(f"{cores:.2f} CPU cores while {what} was measured" for what, cores in sides)
        + ", with no core idle; run it on a quiet machine (or with fewer pytest -n workers than cores)"
    )


def _paired_contention(cores: float | None) -> str | None:
    """Why an A/B pair timed while other processes took the CPU is not judged.

    Interleaving cancels a machine's drift, not necessarily a neighbour's: a user-repo trial on this
    2-core machine failed an unchanged ONNX Runtime model against its own artifact, confirmed, while
    another pytest ran. The rule is the stored mode's (``_contention``), however far the ratio lies:
    judging a contended pair whose whole CI lay past 1.5x (the most a spinning neighbour had moved
    one here was 1.12x) called unchanged code 40% faster, CI 0.594x-0.613x, beside another trial's
    compiles; what it missed instead, a 2.8x slowdown, every report now counts as not judged.
    """
    if cores is None or cores <= CONTENDED_CORES:
        return None
    return (
        f"{NOT_JUDGED}: other processes took {cores:.2f} CPU cores while the A/B pair was timed, with no "
        "core idle, and a neighbour's load does not cancel between the two sides; run it on a quiet machine "
        "(or with fewer pytest -n workers than cores)"
    )


#: A stored comparison whose noise widens the threshold past this many times the user's is not judged.
MAX_THRESHOLD_FACTOR = 4.0


def _judgeable(test: LatencyTest, policy: Policy) -> tuple[LatencyTest | None, str | None]:
    """``test``, or None and why a comparison with a stored baseline would be a coin toss.

    A process cannot see its own speed offset: on the H200, eager models' medians in separate
    processes sat up to 40-76% apart while the rounds inside each process agreed within a few percent
    (reports/h200/verdict_trust). So a stored baseline judges latency only once ``MEASURED_RUNS``
    updates in separate processes have measured that spread, and a check whose measured spread puts
    its bar past ``MAX_THRESHOLD_FACTOR`` times the user's reports the spread instead of a verdict.
    Relative mode (and a paired artifact A/B) needs neither.
    """
    if test.between_runs < MEASURED_RUNS:
        return None, (
            f"{NOT_JUDGED} against the stored baseline yet: it holds {test.between_runs} of the "
            f"{MEASURED_RUNS} runs in separate processes that measure how far one run's speed can sit off "
            "(each --aitune-update adds one); relative mode (--aitune-against) judges it now"
        )
    if test.threshold > MAX_THRESHOLD_FACTOR * policy.threshold:
        return None, (
            f"{NOT_JUDGED} against the stored baseline: its timings spread {fmt_pct(test.noise)[1:]} (between "
            f"rounds or between runs of unchanged code), so only a change beyond {fmt_pct(test.threshold)[1:]} would "
            "show; relative mode (--aitune-against) judges it"
        )
    return test, None


_SPEED_WORDS = {"cpus_usable": "CPU cores", "torch_threads": "torch threads"}


def _acknowledge(ack: Acknowledgement, test: LatencyTest | None, reasons: list[str]) -> list[str]:
    """Drop the reasons ``ack`` accepts from ``reasons``; the notes that say so (or why not)."""
    notes = []
    if LATENCY in reasons and test is not None:
        if ack.max_slowdown is None or test.delta <= ack.max_slowdown:
            reasons.remove(LATENCY)
            notes.append(f"slowdown {fmt_pct(test.delta)} accepted as acknowledged")
        else:
            notes.append(f"slowdown {fmt_pct(test.delta)} exceeds the acknowledged {fmt_pct(ack.max_slowdown)}")
    if ACCURACY in reasons:
        reasons.remove(ACCURACY)
        notes.append("SQNR drop accepted as acknowledged")
    if TASK_METRIC in reasons:
        reasons.remove(TASK_METRIC)
        notes.append("task metric drop accepted as acknowledged")
    accepted = [r for r in reasons if r in METRIC_REASONS]
    for reason in accepted:
        reasons.remove(reason)
    if accepted:
        notes.append(f"{', '.join(accepted)} accepted as acknowledged")
    return notes


def _test_fields(test: LatencyTest) -> dict[str, Any]:
    """The verdict's latency fields; ``q_value`` starts as ``p_value`` until the run is corrected."""
    return dict(
        delta=test.delta,
        delta_ci=test.delta_ci,
        p_value=test.p_slower,
        q_value=test.p_slower,
        threshold=test.threshold,
        mde=test.mde,
        noise=test.noise,
    )


def _failure_text(current: BackendResult) -> str:
    if current.status == BackendStatus.INACCURATE:
        detail = current.error or (
            (current.accuracy.reason or current.accuracy.summary()) if current.accuracy else None
        )
        return f"fails its accuracy gate: {detail or 'no detail recorded'}"
    return f"fails: {current.error or 'no error recorded'}"


def _sqnr_drop(baseline: BackendBaseline, current: BackendResult, policy: Policy) -> str | None:
    """Text of an SQNR drop beyond ``policy.sqnr_drop_db``, or None (SQNR above the ceiling is rounding)."""
    worst = current.accuracy.worst if current.accuracy else None
    if baseline.accuracy is None or baseline.accuracy.sqnr_db is None or worst is None:
        return None
    old, new = baseline.accuracy.sqnr_db, worst.sqnr_db
    if math.isnan(old) or math.isnan(new):
        return None
    drop = min(old, policy.sqnr_ceiling_db) - min(new, policy.sqnr_ceiling_db)
    if drop <= policy.sqnr_drop_db:
        return None
    return (
        f"SQNR dropped {drop:.1f} dB ({fmt_db(old)} -> {fmt_db(new)} dB on {worst.path or 'the output'}; "
        f"limit {policy.sqnr_drop_db:g} dB)"
    )


#: the note of a paired regression that stopped after a replicating window (``_replicated``)
REPLICATED_NOTE = "replicated: the first window and a fresh one each regressed on their own"


def _replicated(verdict: Verdict, estimates: Sequence[RatioLike], policy: Policy, checks_in_run: int) -> bool:
    """Whether a pooled paired regression needs no further window.

    So when every window so far (the first and at least one confirmation) regressed on its own, and
    the pooled p-value times ``checks_in_run`` is within ``policy.alpha``: Benjamini-Hochberg's q is
    at most p times the number of checks it corrects over, so the fixture's correction (the callers
    correct per fixture, ``apply_run_correction``) cannot clear it either.
    """
    if len(estimates) < 2 or verdict.reasons != (LATENCY,) or verdict.p_value is None:
        return False
    if any(_paired_contention(getattr(e, "cpu_contention", None)) for e in estimates):
        return False
    alone = all(paired_test(e, policy).regressed for e in estimates)
    return alone and verdict.p_value * max(1, checks_in_run) <= policy.alpha


def judge_with_confirmations(
    fixture: str,
    baseline: BackendBaseline | None,
    current: BackendResult,
    policy: Policy,
    remeasure: Callable[[], LatencyStats] | None,
    env_diff: Mapping[str, tuple[Any, Any]] | None = None,
    *,
    on_suspect: Callable[[Verdict, int], None] | None = None,
    paired: RatioLike | None = None,
    remeasure_paired: Callable[[], RatioLike] | None = None,
    inputs_changed: Sequence[str] = (),
    base_in_process: bool = False,
    checks_in_run: int = 1,
) -> Verdict:
    """``compare_backend``, then re-measure a suspected latency regression until it is settled.

    This is the plugin's confirmation procedure (and the one ``bench/verdict_quality.py`` measures):
    while the verdict ``needs_confirmation``, take one more measurement, pool every measurement so
    far with ``pool_latency`` and judge again with ``confirmations = len(runs) - 1``. Run
    ``apply_run_correction`` over all of a run's verdicts afterwards.

    A paired regression stops early once it is replicated (``_replicated``): the first window and a
    fresh one each regressed on their own, and the pooled p-value is small enough that the correction
    over ``checks_in_run`` checks cannot clear it. A further window could still pool it below the
    threshold, but only by reading much faster than both; on the CPU bench's recorded comparisons the
    rule changed no verdict (``reports/verdict_quality_replicated/``).

    Args:
        remeasure: takes one fresh measurement of ``current``'s backend; None when it can no longer
            be measured (the first verdict is then returned as is).
        on_suspect: called with the suspicious verdict and the number of measurements so far,
            before each re-measurement (for progress lines).
        paired: an A/B ratio of this build against the baseline's own artifact, timed interleaved
            in this process; when given, the verdict rests on it instead of the two medians.
        remeasure_paired: takes a fresh paired ratio, to confirm a suspected paired regression.
    """
    if paired is not None:
        estimates = [paired]
        verdict = compare_backend(
            fixture,
            baseline,
            current,
            policy,
            paired=paired,
            env_diff=env_diff,
            inputs_changed=inputs_changed,
            base_in_process=base_in_process,
        )
        while verdict.needs_confirmation and remeasure_paired is not None:
            if on_suspect is not None:
                on_suspect(verdict, len(estimates))
            estimates.append(remeasure_paired())
            verdict = compare_backend(
                fixture,
                baseline,
                current,
                policy,
                paired=pool_paired(estimates),
                env_diff=env_diff,
                inputs_changed=inputs_changed,
                base_in_process=base_in_process,
                confirmations=len(estimates) - 1,
            )
            if verdict.needs_confirmation and _replicated(verdict, estimates, policy, checks_in_run):
                verdict = with_message(
                    replace(verdict, needs_confirmation=False, notes=(*verdict.notes, REPLICATED_NOTE))
                )
        return verdict
    verdict = compare_backend(
        fixture,
        baseline,
        current,
        policy,
        env_diff=env_diff,
        inputs_changed=inputs_changed,
        base_in_process=base_in_process,
    )
    runs = [current.latency] if current.latency is not None else []
    while verdict.needs_confirmation and runs and remeasure is not None:
        if on_suspect is not None:
            on_suspect(verdict, len(runs))
        runs.append(remeasure())
        pooled = replace(current, latency=pool_latency(runs))
        verdict = compare_backend(
            fixture,
            baseline,
            pooled,
            policy,
            env_diff=env_diff,
            inputs_changed=inputs_changed,
            base_in_process=base_in_process,
            confirmations=len(runs) - 1,
        )
    return verdict


def require_baseline(v: Verdict) -> Verdict:
    """``--aitune-strict`` and no baseline: a check that would not fail anyway now fails, saying why.

    A check that fails on its own (a backend that does not work) keeps its verdict.
    """
    if v.fails:
        return v
    return with_message(replace(v, baseline_required=True))


def winner_change(baseline: Baseline | None, result: TuneResult) -> str | None:
    """Text describing a change of the winning backend (or per-module choice), or None."""
    if baseline is None:
        return None
    parts = []
    if baseline.winner != result.winner:
        text = f"winner changed: {baseline.winner or 'none'} -> {result.winner or 'none'}"
        if result.winner_reason:
            text += f" ({result.winner_reason})"
        parts.append(text)
    parts.extend(f"module {change}" for change in _part_changes(baseline.module_choice, result.module_choice))
    return "; ".join(parts) or None


def parts_change(before: Mapping[str, str], after: Mapping[str, str]) -> str | None:
    """The mixed model's note when its parts' backends differ from the side it is judged against.

    A mixed row compares two mixes then, not one model's two versions: part of its change may be
    the choice (an onnxruntime part between eager ones adds copies that no part measured alone).
    """
    changes = _part_changes(before, after)
    return f"parts chosen differently: {', '.join(changes)}" if changes else None


def _part_changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """``backbone: eager -> onnxruntime`` for each part whose backend differs, in sorted order."""
    return [
        f"{part}: {before.get(part) or 'none'} -> {after.get(part) or 'none'}"
        for part in sorted(set(before) | set(after))
        if before.get(part) != after.get(part)
    ]
