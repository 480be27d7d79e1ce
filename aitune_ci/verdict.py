"""Verdicts: is a (fixture, backend) check a pass, an improvement, a regression, new or skipped?

Pure functions on plain data (no torch, no files), so every rule below is tested in milliseconds.

**Latency test.** ``d = log(current median / baseline median)``. Its variance has three parts:

* each run's standard error of the median, from the spread of its round medians
  (``1.2533 * s / sqrt(rounds)``, the asymptotic SE of a median);
* the *between-run* offset of each run, ``sigma_run``: on the H100 whole measurement windows of a
  launch-bound or cuDNN model came out 10-70% slow while the spread inside each window stayed small,
  so the rounds of one run can all share one slow window and averaging them does not remove it.
  ``sigma_run`` is the largest of: the RMS of the baseline's ``noise_history`` (the round spreads of
  its past runs), the baseline's and the current run's own round spreads, and ``policy.noise_floor``.
  Both runs carry it; the current side's shrinks as ``1 / (1 + confirmations)`` when re-measurements
  are pooled into it (``pool_latency``), since each re-measurement is a fresh window.

A one-sided z test gives ``p`` (slower at all). A latency regression needs both
``delta > effective threshold`` and ``p`` (after Benjamini-Hochberg over the run, see
``apply_run_correction``) below ``alpha``.

**Effective threshold** = ``max(policy.threshold, noise_k * sigma_run)`` with ``noise_k = 3``: a run's
median sits more than 3 sigma away by chance with probability ~0.1% if the noise were normal, and
at most 10% for *any* distribution (Cantelli's bound ``1 / (1 + k^2)``); the window drifts we
measured are heavy-tailed, so a smaller k would flag noise, and a larger one would hide real
regressions of steady models, whose noise is ~0.3% and whose threshold is the user's 5% anyway.

**MDE** (minimum detectable effect) is the smallest slowdown caught with 80% power at this noise:
``max(effective threshold, exp((z_{1-alpha} + z_0.8) * sd) - 1)``. A noisy check reports a large MDE
instead of pretending to guard 5%.

**Paired ratio** (old ``.ait`` artifact and fresh build timed interleaved in one process): drift
cancels in the ratio, so its CI is the noise; a regression is ``ratio - 1 > threshold`` and
``ci_low > 1``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import Enum
from statistics import NormalDist, median
from typing import Any, Protocol

from aitune_ci.config import Policy, check_id
from aitune_ci.errors import DataFileError
from aitune_ci.result import BackendResult, LatencyStats, TuneResult
from aitune_ci.store.baseline import BackendBaseline, Baseline, LatencySummary, log_spread, update_command

__all__ = [
    "ACCURACY",
    "LATENCY",
    "NOW_FAILING",
    "PairedRatio",
    "RatioLike",
    "STRICT_NO_BASELINE",
    "Verdict",
    "VerdictKind",
    "apply_run_correction",
    "compare_backend",
    "count_line",
    "judge_with_confirmations",
    "pool_latency",
    "pool_paired",
    "require_baseline",
    "summary_counts",
    "winner_change",
]

#: Why a check regressed (the order in which ``Verdict.reasons`` lists them).
LATENCY = "latency"
ACCURACY = "accuracy"
NOW_FAILING = "now-failing"
_REASON_ORDER = (LATENCY, ACCURACY, NOW_FAILING)

_NORMAL = NormalDist()
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)  # SE(median) = 1.2533 * sigma / sqrt(n) for normal data
_POWER = 0.8
_CI_Z = _NORMAL.inv_cdf(0.975)


class VerdictKind(str, Enum):
    """The outcome of one check. FAILED: the backend fails and never worked in the baseline.

    Values equal names and compare equal to plain strings (``kind == "REGRESSED"``), so reports
    and JSON can use either.
    """

    PASS = "PASS"
    IMPROVED = "IMPROVED"
    REGRESSED = "REGRESSED"
    NEW = "NEW"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class RatioLike(Protocol):
    """A paired A/B estimate of current / baseline time (``aitune_ci.stats.RatioEstimate`` fits).

    ``ci_low``/``ci_high`` bound a 95% confidence interval of ``ratio``; ``n`` paired rounds.
    """

    @property
    def ratio(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def n(self) -> int: ...


@dataclass(frozen=True)
class PairedRatio:
    """A plain ``RatioLike`` (for callers and tests that have the numbers but not a RatioEstimate)."""

    ratio: float
    ci_low: float
    ci_high: float
    n: int


@dataclass(frozen=True)
class Verdict:
    """The judged outcome of one (fixture, backend) check, with everything needed to explain it.

    Attributes:
        delta: relative latency change, current vs baseline (+0.08 = 8% slower).
        delta_ci: 95% confidence interval of ``delta``.
        p_value: one-sided p that the current run is *slower* (the regression test); None when no
            latency comparison was made.
        q_value: ``p_value`` after Benjamini-Hochberg over the run (``apply_run_correction``);
            equal to ``p_value`` until then.
        threshold: the effective threshold applied (user's, or larger when noise demands).
        mde: minimum detectable slowdown at this check's noise (80% power).
        noise: the between-run relative noise (``sigma_run``) or, when paired, the ratio's SE.
        paired: the latency came from an interleaved A/B ratio against the baseline's artifact.
        env_mismatch: environment fields that differ from the baseline: ``{field: (old, new)}``.
        acknowledged: the reason from ``[tool.aitune.acknowledged]``, when one applies.
        needs_confirmation: a latency regression that must be re-measured before it fails.
        quarantined: listed in ``[tool.aitune] quarantine``: reported, never fails.
        known_failure: FAILED, and the baseline records the same backend as failing too.
        confirmations: re-measurements already pooled into the current latency.
        baseline_required: there is no baseline and ``--aitune-strict`` requires one, so the check
            fails whatever its kind (``require_baseline``).
        notes: further facts shown in the message (winner changes are reported separately).
    """

    fixture: str
    backend: str
    kind: VerdictKind
    reasons: tuple[str, ...] = ()
    baseline_median_ms: float | None = None
    current_median_ms: float | None = None
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    p_value: float | None = None
    q_value: float | None = None
    threshold: float | None = None
    mde: float | None = None
    noise: float | None = None
    paired: bool = False
    env_mismatch: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    acknowledged: str | None = None
    needs_confirmation: bool = False
    quarantined: bool = False
    known_failure: bool = False
    confirmations: int = 0
    max_confirmations: int = 0
    alpha: float = 0.05
    baseline_required: bool = False
    notes: tuple[str, ...] = ()
    message: str = ""

    @property
    def check_id(self) -> str:
        """``tune_resnet[inductor]``: the pytest item id and the ``[tool.aitune]`` key of this check."""
        return check_id(self.fixture, self.backend)

    @property
    def fails(self) -> bool:
        """Whether this verdict fails CI (once confirmed): a regression or a new failure, not quarantined.

        A check whose baseline ``--aitune-strict`` requires and is missing fails too.
        """
        if self.baseline_required:
            return True
        if self.quarantined:
            return False
        return self.kind is VerdictKind.REGRESSED or (self.kind is VerdictKind.FAILED and not self.known_failure)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, VerdictKind):
                value = value.value
            elif isinstance(value, float):
                value = _round(value)
            elif f.name == "delta_ci" and value is not None:
                value = [_round(x) for x in value]
            elif f.name == "env_mismatch":
                value = {k: [old, new] for k, (old, new) in sorted(value.items())}
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "<verdict>") -> Verdict:
        """Parse what ``to_json`` wrote (e.g. verdicts sent back by pytest-xdist workers)."""
        try:
            kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            kwargs["kind"] = VerdictKind(kwargs["kind"])
            kwargs["reasons"] = tuple(kwargs.get("reasons", ()))
            kwargs["notes"] = tuple(kwargs.get("notes", ()))
            if kwargs.get("delta_ci") is not None:
                low, high = kwargs["delta_ci"]
                kwargs["delta_ci"] = (low, high)
            kwargs["env_mismatch"] = {k: (v[0], v[1]) for k, v in kwargs.get("env_mismatch", {}).items()}
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFileError(
                source, f"malformed verdict ({type(exc).__name__}: {exc})", "re-run the check"
            ) from None


def _round(x: float) -> float:
    if not math.isfinite(x):
        return x
    return float(f"{x:.6g}")


# -- latency statistics --------------------------------------------------------------------------


@dataclass(frozen=True)
class _LatencyTest:
    delta: float
    delta_ci: tuple[float, float]
    p_slower: float
    p_faster: float
    threshold: float
    mde: float
    noise: float
    regressed: bool
    improved: bool


def _median_se(round_medians: Sequence[float], cv: float, iterations: int) -> float:
    """Relative SE of one run's median: from its round medians, else from its per-call CV."""
    spread = log_spread(list(round_medians))
    if spread is not None:
        return _MEDIAN_SE_FACTOR * spread / math.sqrt(len(round_medians))
    if cv > 0 and iterations > 0:
        return _MEDIAN_SE_FACTOR * cv / math.sqrt(iterations)
    return 0.0


def _between_run_noise(
    baseline: LatencySummary, history: Sequence[float], current: LatencyStats, policy: Policy
) -> float:
    """``sigma_run``: how far one run's median can sit from the truth, relative (see module docs)."""
    candidates = [policy.noise_floor]
    finite = [h for h in history if math.isfinite(h) and h >= 0]
    if finite:
        candidates.append(math.sqrt(sum(h * h for h in finite) / len(finite)))
    for spread in (baseline.spread, log_spread(list(current.round_medians_ms))):
        if spread is not None:
            candidates.append(spread)
    return max(candidates)


def _p_values(d: float, sd: float) -> tuple[float, float]:
    """One-sided p of (slower, faster) for log-ratio ``d`` with standard deviation ``sd``."""
    if sd <= 0:
        return (0.0, 1.0) if d > 0 else (1.0, 0.0) if d < 0 else (0.5, 0.5)
    z = d / sd
    # erfc keeps tiny tail probabilities exact (1 - cdf would round them to 0).
    return 0.5 * math.erfc(z / math.sqrt(2.0)), 0.5 * math.erfc(-z / math.sqrt(2.0))


def _mde(threshold: float, sd: float, alpha: float) -> float:
    z = _NORMAL.inv_cdf(1.0 - alpha) + _NORMAL.inv_cdf(_POWER)
    return max(threshold, math.expm1(z * sd))


def _unpaired_test(
    baseline: BackendBaseline, current: LatencyStats, policy: Policy, confirmations: int
) -> _LatencyTest:
    base = baseline.latency
    assert base is not None
    d = math.log(current.median_ms / base.median_ms)
    se_base = _median_se(base.round_medians_ms, base.cv, base.iterations)
    se_cur = _median_se(current.round_medians_ms, current.cv, current.iterations)
    sigma_run = _between_run_noise(base, baseline.noise_history, current, policy)
    var = se_base**2 + se_cur**2 + sigma_run**2 * (1.0 + 1.0 / (1 + confirmations))
    sd = math.sqrt(var)
    p_slower, p_faster = _p_values(d, sd)
    threshold = max(policy.threshold, policy.noise_k * sigma_run)
    log_thr = math.log1p(threshold)
    return _LatencyTest(
        delta=math.expm1(d),
        delta_ci=(math.expm1(d - _CI_Z * sd), math.expm1(d + _CI_Z * sd)),
        p_slower=p_slower,
        p_faster=p_faster,
        threshold=threshold,
        mde=_mde(threshold, sd, policy.alpha),
        noise=sigma_run,
        regressed=d > log_thr and p_slower < policy.alpha,
        improved=d < -log_thr and p_faster < policy.alpha,
    )


def _paired_test(paired: RatioLike, policy: Policy) -> _LatencyTest:
    ratio, low, high = float(paired.ratio), float(paired.ci_low), float(paired.ci_high)
    if not (ratio > 0 and low > 0 and high > 0):
        raise ValueError(f"a paired ratio and its CI must be positive, got {ratio}, ({low}, {high})")
    low, high = min(low, ratio), max(high, ratio)
    d = math.log(ratio)
    sd = (math.log(high) - math.log(low)) / (2.0 * _CI_Z)
    p_slower, p_faster = _p_values(d, sd)
    log_thr = math.log1p(policy.threshold)
    return _LatencyTest(
        delta=ratio - 1.0,
        delta_ci=(low - 1.0, high - 1.0),
        p_slower=p_slower,
        p_faster=p_faster,
        threshold=policy.threshold,
        mde=_mde(policy.threshold, sd, policy.alpha),
        noise=sd,
        regressed=d > log_thr and low > 1.0,
        improved=d < -log_thr and high < 1.0,
    )


def pool_paired(estimates: Sequence[RatioLike]) -> PairedRatio:
    """Pool independent paired A/B estimates (a first one and its confirmations) into one.

    Inverse-variance weighting in log space, each estimate's standard error read from its 95% CI:
    a confirmation adds evidence instead of having to clear the bar again on its own (requiring
    every one of three measurements to flag a real +10% would catch it only ~0.84^3 of the time).
    """
    if not estimates:
        raise ValueError("pool_paired needs at least one estimate")
    if len(estimates) == 1:
        e = estimates[0]
        return PairedRatio(float(e.ratio), float(e.ci_low), float(e.ci_high), int(e.n))
    logs, weights = [], []
    for e in estimates:
        low, high = min(float(e.ci_low), float(e.ratio)), max(float(e.ci_high), float(e.ratio))
        se = max((math.log(high) - math.log(low)) / (2.0 * _CI_Z), 1e-6)
        logs.append(math.log(float(e.ratio)))
        weights.append(1.0 / se**2)
    total = sum(weights)
    center = sum(w * x for w, x in zip(weights, logs, strict=True)) / total
    se = 1.0 / math.sqrt(total)
    return PairedRatio(
        math.exp(center), math.exp(center - _CI_Z * se), math.exp(center + _CI_Z * se), sum(int(e.n) for e in estimates)
    )


def pool_latency(runs: Sequence[LatencyStats]) -> LatencyStats:
    """Pool a first measurement with its confirmation re-measurements into one ``LatencyStats``.

    All round medians are kept (so their spread shows the run-to-run drift); the median is the
    median of all round medians. Pass the result to ``compare_backend`` with
    ``confirmations=len(runs) - 1``.
    """
    if not runs:
        raise ValueError("pool_latency needs at least one LatencyStats")
    if len(runs) == 1:
        return runs[0]
    rounds = tuple(x for r in runs for x in r.round_medians_ms)
    total_iters = sum(r.iterations for r in runs)
    weights = [r.iterations / total_iters if total_iters else 1.0 / len(runs) for r in runs]
    return LatencyStats(
        median_ms=median(rounds) if rounds else median(r.median_ms for r in runs),
        mean_ms=sum(w * r.mean_ms for w, r in zip(weights, runs, strict=True)),
        min_ms=min(r.min_ms for r in runs),
        p90_ms=median(r.p90_ms for r in runs),
        p99_ms=median(r.p99_ms for r in runs),
        iqr_ms=median(r.iqr_ms for r in runs),
        ci_low_ms=min(r.ci_low_ms for r in runs),
        ci_high_ms=max(r.ci_high_ms for r in runs),
        cv=sum(w * r.cv for w, r in zip(weights, runs, strict=True)),
        iterations=total_iters,
        rounds=sum(r.rounds for r in runs),
        batch_size=runs[0].batch_size,
        round_medians_ms=rounds,
        peak_memory_bytes=max((r.peak_memory_bytes for r in runs if r.peak_memory_bytes is not None), default=None),
    )


# -- the verdict of one check --------------------------------------------------------------------


def compare_backend(
    fixture: str,
    baseline: BackendBaseline | None,
    current: BackendResult,
    policy: Policy,
    paired: RatioLike | None = None,
    env_diff: Mapping[str, tuple[Any, Any]] | None = None,
    *,
    confirmations: int = 0,
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

    Returns:
        The verdict. ``needs_confirmation`` asks the caller to re-measure and call again with
        ``confirmations + 1``; run ``apply_run_correction`` over all verdicts before failing any.
    """
    base = dict(
        fixture=fixture,
        backend=current.backend,
        env_mismatch=dict(env_diff or {}),
        quarantined=policy.quarantined,
        confirmations=confirmations,
        max_confirmations=policy.max_confirmations,
        alpha=policy.alpha,
        acknowledged=policy.acknowledged.reason if policy.acknowledged else None,
        baseline_median_ms=baseline.latency.median_ms if baseline and baseline.latency else None,
        current_median_ms=current.latency.median_ms if current.latency else None,
    )
    notes: list[str] = []

    if current.status == "unavailable":
        notes.append(f"unavailable here: {current.error or current.description or 'no reason given'}")
        if baseline is not None and baseline.worked:
            notes.append("it worked when the baseline was written; this run cannot check it")
        return _finish(Verdict(kind=VerdictKind.SKIPPED, notes=tuple(notes), **base))

    failing = current.status in ("failed", "inaccurate")
    if failing:
        notes.append(_failure_text(current))
        if baseline is not None and baseline.worked:
            why = (ACCURACY, NOW_FAILING) if current.status == "inaccurate" else (NOW_FAILING,)
            return _finish(Verdict(kind=VerdictKind.REGRESSED, reasons=why, notes=tuple(notes), **base))
        known = baseline is not None and baseline.status in ("failed", "inaccurate")
        if known:
            notes.append(f"the baseline records it as {baseline.status} too")
        return _finish(Verdict(kind=VerdictKind.FAILED, known_failure=known, notes=tuple(notes), **base))

    if baseline is None:
        return _finish(Verdict(kind=VerdictKind.NEW, notes=("no baseline for this backend yet",), **base))
    if not baseline.worked:
        notes.append(f"it was {baseline.status} when the baseline was written and works now")
        return _finish(Verdict(kind=VerdictKind.NEW, notes=tuple(notes), **base))

    # Both ok: accuracy against the baseline, then latency.
    reasons: list[str] = []
    if baseline.precision != current.precision:
        notes.append(f"precision changed: {baseline.precision} -> {current.precision}")
    sqnr_note = _sqnr_drop(baseline, current, policy)
    if sqnr_note:
        notes.append(sqnr_note)
        reasons.append(ACCURACY)

    test: _LatencyTest | None = None
    if baseline.latency is None or current.latency is None:
        notes.append("latency not compared: " + ("no baseline latency" if baseline.latency is None else "not measured"))
    elif (
        baseline.latency.batch_size is not None
        and current.latency.batch_size is not None
        and baseline.latency.batch_size != current.latency.batch_size
    ):
        notes.append(
            f"latency not compared: batch size changed {baseline.latency.batch_size} -> "
            f"{current.latency.batch_size}; update the baseline"
        )
    else:
        test = (
            _paired_test(paired, policy)
            if paired is not None
            else _unpaired_test(baseline, current.latency, policy, confirmations)
        )
        if test.regressed:
            reasons.append(LATENCY)

    ack = policy.acknowledged
    if ack is not None:
        if LATENCY in reasons and test is not None:
            if ack.max_slowdown is None or test.delta <= ack.max_slowdown:
                reasons.remove(LATENCY)
                notes.append(f"slowdown {_pct(test.delta)} accepted as acknowledged")
            else:
                notes.append(f"slowdown {_pct(test.delta)} exceeds the acknowledged {_pct(ack.max_slowdown)}")
        if ACCURACY in reasons:
            reasons.remove(ACCURACY)
            notes.append("SQNR drop accepted as acknowledged")

    if reasons:
        kind = VerdictKind.REGRESSED
    elif test is not None and test.improved:
        kind = VerdictKind.IMPROVED
    else:
        kind = VerdictKind.PASS
    ordered = tuple(r for r in _REASON_ORDER if r in reasons)
    # Inconclusive: the point estimate is past the threshold but the evidence is not yet enough.
    # Measuring more (pooled) settles it either way, rather than passing a likely regression.
    inconclusive = not reasons and test is not None and not test.regressed and test.delta > test.threshold
    verdict = Verdict(
        kind=kind,
        reasons=ordered,
        notes=tuple(notes),
        paired=paired is not None and test is not None,
        needs_confirmation=(
            (ordered == (LATENCY,) or inconclusive)
            and confirmations < policy.max_confirmations
            and not policy.quarantined
        ),
        **base,
        **(
            dict(
                delta=test.delta,
                delta_ci=test.delta_ci,
                p_value=test.p_slower,
                q_value=test.p_slower,
                threshold=test.threshold,
                mde=test.mde,
                noise=test.noise,
            )
            if test is not None
            else {}
        ),
    )
    if kind is VerdictKind.IMPROVED and test is not None:
        verdict = replace(verdict, notes=verdict.notes + (f"faster with p={_p(test.p_faster)}",))
    return _finish(verdict)


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
) -> Verdict:
    """``compare_backend``, then re-measure a suspected latency regression until it is settled.

    This is the plugin's confirmation procedure (and the one ``bench/verdict_quality.py`` measures):
    while the verdict ``needs_confirmation``, take one more measurement, pool every measurement so
    far with ``pool_latency`` and judge again with ``confirmations = len(runs) - 1``. Run
    ``apply_run_correction`` over all of a run's verdicts afterwards.

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
        verdict = compare_backend(fixture, baseline, current, policy, paired=paired, env_diff=env_diff)
        while verdict.needs_confirmation and remeasure_paired is not None:
            if on_suspect is not None:
                on_suspect(verdict, len(estimates))
            estimates.append(remeasure_paired())
            verdict = compare_backend(
                fixture, baseline, current, policy, paired=pool_paired(estimates), env_diff=env_diff,
                confirmations=len(estimates) - 1,
            )
        return verdict
    verdict = compare_backend(fixture, baseline, current, policy, env_diff=env_diff)
    runs = [current.latency] if current.latency is not None else []
    while verdict.needs_confirmation and runs and remeasure is not None:
        if on_suspect is not None:
            on_suspect(verdict, len(runs))
        runs.append(remeasure())
        pooled = replace(current, latency=pool_latency(runs))
        verdict = compare_backend(fixture, baseline, pooled, policy, env_diff=env_diff, confirmations=len(runs) - 1)
    return verdict


def _failure_text(current: BackendResult) -> str:
    if current.status == "inaccurate":
        detail = (current.accuracy.reason or current.accuracy.summary()) if current.accuracy else current.error
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
        f"SQNR dropped {drop:.1f} dB ({_db(old)} -> {_db(new)} dB on {worst.path or 'the output'}; "
        f"limit {policy.sqnr_drop_db:g} dB)"
    )


# -- message -------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x * 100:+.1f}%"


def _db(x: float) -> str:
    return "inf" if x == math.inf else f"{x:.1f}"


def _p(x: float) -> str:
    return f"{x:.2g}"


def _render(v: Verdict) -> str:
    """The human text: what happened, by how much, with what confidence, and what to do."""
    head = f"{v.check_id}: {v.kind.value}"
    if v.reasons:
        head += f" ({', '.join(v.reasons)})"
    parts = [head]
    if v.current_median_ms is not None and v.baseline_median_ms is not None and v.delta is not None:
        direction = "slower" if v.delta > 0 else "faster"
        text = f"{v.current_median_ms:.4g} ms vs baseline {v.baseline_median_ms:.4g} ms: {_pct(v.delta)} {direction}"
        if v.delta_ci is not None:
            text += f" (95% CI {_pct(v.delta_ci[0])} to {_pct(v.delta_ci[1])}"
            text += f"; p={_p(v.p_value)}" if v.p_value is not None and v.delta > 0 else ""
            text += f", q={_p(v.q_value)} over the run" if v.q_value is not None and v.q_value != v.p_value else ""
            text += ")"
        text += f"{' [paired A/B]' if v.paired else ''}; threshold {_pct(v.threshold or 0.0)[1:]}"
        if v.mde is not None:
            text += f", smallest detectable slowdown at this noise {_pct(v.mde)[1:]}"
        parts.append(text)
    elif v.current_median_ms is not None and v.kind is VerdictKind.NEW:
        parts.append(f"{v.current_median_ms:.4g} ms")
    parts.extend(v.notes)
    if v.env_mismatch:
        diffs = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(v.env_mismatch.items()))
        parts.append(f"environment differs from the baseline ({diffs}): the change may come from the environment")
    if v.acknowledged:
        parts.append(f"acknowledged in [tool.aitune]: {v.acknowledged}")
    if v.needs_confirmation:
        parts.append(
            f"suspected: re-measuring before failing (confirmation {v.confirmations + 1} of {v.max_confirmations})"
        )
    elif v.kind is VerdictKind.REGRESSED and LATENCY in v.reasons and v.confirmations:
        parts.append(f"confirmed by {v.confirmations} re-measurement(s)")
    if v.quarantined and v.kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        parts.append("quarantined in [tool.aitune]: reported, does not fail")
    command = update_command(v.fixture)
    if v.baseline_required:
        parts.append(
            "no baseline for this hardware and --aitune-strict requires one: this check fails; "
            f"create it with `{update_command(v.fixture, new_only=True)}`"
        )
    elif v.kind is VerdictKind.REGRESSED:
        parts.append(
            f'if this is expected, accept it with `{command}`, or add "{v.check_id}" to '
            "[tool.aitune.acknowledged] in pyproject.toml with the reason"
        )
    elif v.kind is VerdictKind.NEW:
        parts.append(f"record it with `{command}`")
    elif v.kind is VerdictKind.IMPROVED:
        parts.append(f"lock the gain in with `{command}`")
    elif v.kind is VerdictKind.FAILED and not v.quarantined and not v.known_failure:
        parts.append(
            f'fix the backend, drop it from the spec, or quarantine "{v.check_id}" in [tool.aitune] of pyproject.toml'
        )
    return ". ".join([parts[0], *(p[:1].upper() + p[1:] for p in parts[1:])]) + "."


def _finish(v: Verdict) -> Verdict:
    return replace(v, message=_render(v))


def require_baseline(v: Verdict) -> Verdict:
    """``--aitune-strict`` and no baseline: a check that would not fail anyway now fails, saying why.

    A check that fails on its own (a backend that does not work) keeps its verdict.
    """
    if v.fails:
        return v
    return _finish(replace(v, baseline_required=True))


# -- the whole run -------------------------------------------------------------------------------


def _benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted q-values, in input order (step-up: q_(i) = min_{j>=i} p_(j) * m / j)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        q[i] = min(running, 1.0)
    return q


def apply_run_correction(verdicts: Iterable[Verdict], alpha: float | None = None) -> list[Verdict]:
    """Control false alarms over the whole run: Benjamini-Hochberg over every latency p-value.

    With 40 checks, a 5% test would flag two of them by chance; BH keeps the expected share of
    false regressions among those flagged at ``alpha``. A latency regression whose q exceeds
    ``alpha`` loses that reason (becoming PASS when nothing else regressed) with a note. Order is
    kept; applying it twice gives the same result.

    Args:
        alpha: the run's false-discovery rate; defaults to each verdict's ``policy.alpha``.
    """
    verdicts = list(verdicts)
    tested = [i for i, v in enumerate(verdicts) if v.p_value is not None]
    if not tested:
        return verdicts
    q_values = _benjamini_hochberg([verdicts[i].p_value for i in tested])  # type: ignore[misc]
    out = list(verdicts)
    for i, q in zip(tested, q_values, strict=True):
        v = replace(verdicts[i], q_value=q)
        limit = alpha if alpha is not None else v.alpha
        if LATENCY in v.reasons and q > limit:
            reasons = tuple(r for r in v.reasons if r != LATENCY)
            note = (
                f"latency {_pct(v.delta or 0.0)} not significant once {len(tested)} checks of this run are "
                f"taken into account (q={_p(q)} > {limit:g})"
            )
            v = replace(
                v,
                reasons=reasons,
                kind=VerdictKind.REGRESSED if reasons else VerdictKind.PASS,
                needs_confirmation=False,
                notes=v.notes + (note,),
            )
        out[i] = _finish(v)
    return out


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
    old, new = dict(baseline.module_choice), dict(result.module_choice)
    for module in sorted(set(old) | set(new)):
        if old.get(module) != new.get(module):
            parts.append(f"module {module}: {old.get(module) or 'none'} -> {new.get(module) or 'none'}")
    return "; ".join(parts) or None


#: ``count_line``'s label for checks that fail only because ``--aitune-strict`` wants a missing baseline.
STRICT_NO_BASELINE = "failed (no baseline, --aitune-strict)"

_COUNT_LABELS = (
    ("passed", VerdictKind.PASS),
    ("improved", VerdictKind.IMPROVED),
    ("regressed", VerdictKind.REGRESSED),
    ("failed", VerdictKind.FAILED),
    ("new", VerdictKind.NEW),
    ("skipped", VerdictKind.SKIPPED),
)


def summary_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """Checks per outcome; quarantined regressions/failures are counted as ``quarantined`` only."""
    counts = {label: 0 for label, _ in _COUNT_LABELS}
    counts["quarantined"] = 0
    labels = {kind: label for label, kind in _COUNT_LABELS}
    for v in verdicts:
        if v.quarantined and v.kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
            counts["quarantined"] += 1
        else:
            counts[labels[v.kind]] += 1
    return counts


def count_line(verdicts: Iterable[Verdict]) -> str:
    """``aitune: 12 passed, 1 regressed, 2 new, 3 skipped`` (outcomes with a zero count left out).

    Checks failed by ``--aitune-strict`` for want of a baseline are counted apart, after ``failed``
    (``2 failed (no baseline, --aitune-strict)``), not as the ``new`` or ``skipped`` their verdict says.
    """
    verdicts = list(verdicts)
    required = [v for v in verdicts if v.baseline_required]
    counts = summary_counts([v for v in verdicts if not v.baseline_required])
    shown = []
    for label, n in counts.items():
        if n:
            shown.append(f"{n} {label}")
        if label == "failed" and required:
            shown.append(f"{len(required)} {STRICT_NO_BASELINE}")
    return "aitune: " + (", ".join(shown) if shown else "no checks")
