"""The latency test of a verdict: is the current run slower than its baseline, beyond its noise?

Pure functions on plain data (no torch, no files), so every rule below is tested in milliseconds.

**Latency test.** ``d = log(current median / baseline median)``. Its variance has three parts:

* each run's standard error of the median, from the spread of its round medians
  (``1.2533 * s / sqrt(rounds)``, the asymptotic SE of a median);
* the *between-run* offset of each run, ``sigma_run``: on a GPU, whole measurement windows of a
  launch-bound or cuDNN model can come out 10-70% slow while the spread inside each window stays
  small (``reports/h100/`` has the measurements), so the rounds of one run can all share one slow
  window and averaging them does not remove it.
  ``sigma_run`` is the largest of: the RMS of the baseline's ``noise_history`` (the round spreads of
  its past runs), the baseline's and the current run's own round spreads, ``policy.noise_floor``,
  and the between-run evidence:

  - with ``MEASURED_RUNS`` or more ``run_medians_ms`` (updates in separate processes on the same
    weights and samples), the SD of the last ``MEASURED_WINDOW``: it *is* the process-to-process
    noise. A spread from a few runs is itself uncertain, so it is read wider by ``t_{n-1} / z`` at
    99.5% (x1.8 from 5 runs, x1.4 from 7). Processes fall into speed modes (on the H200 and on the
    2-core CI CPU alike, 25-45% apart, bench/verdict_trust.py): three runs often all landed in one
    mode and armed a 5-8% bar that the next process then crossed;
  - with fewer, it is not measured, and the verdict does not judge latency against the stored
    baseline at all (``verdict.judge``): a process's offset cannot be seen from inside it.

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

**MDE** (minimum detectable effect) is the smallest slowdown caught with 80% power at this noise.
A slowdown must clear both bars: its estimate must land above the effective threshold, and its p
below ``alpha``. So ``MDE = exp(max(log(1 + threshold) + z_0.8 * sd, (z_{1-alpha} + z_0.8) * sd)) - 1``:
a slowdown exactly at the threshold is caught only half the time, so the threshold alone is not the
MDE. A noisy check reports a large MDE instead of pretending to guard 5%.

**Paired ratio** (old ``.ait`` artifact and fresh build timed interleaved in one process): drift
cancels in the ratio, so its CI is the noise; a regression is ``ratio - 1 > threshold`` and
``ci_low > 1``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist, median

from aitune_ci.config import Policy
from aitune_ci.result import LatencyStats
from aitune_ci.stats import log_spread
from aitune_ci.store.baseline import BackendBaseline
from aitune_ci.verdict.model import PairedRatio, RatioLike

__all__ = [
    "MEASURED_RUNS",
    "LatencyTest",
    "paired_test",
    "pool_latency",
    "pool_paired",
    "unpaired_test",
]

_NORMAL = NormalDist()
_MEDIAN_SE_FACTOR = math.sqrt(math.pi / 2.0)  # SE(median) = 1.2533 * sigma / sqrt(n) for normal data
_POWER = 0.8
_CI_Z = _NORMAL.inv_cdf(0.975)

#: Separate-process medians needed before their spread is trusted as the between-run noise.
MEASURED_RUNS = 5
#: The most recent run medians read: a real speed change in the code ages out of it within a week
#: of nightlies instead of posing as noise for twenty.
MEASURED_WINDOW = 7
#: Student's t at 99.5% by degrees of freedom (n - 1 runs) for ``_few_runs_factor``, up to the
#: window's ``MEASURED_WINDOW - 1``.
_T995 = {2: 9.925, 3: 5.841, 4: 4.604, 5: 4.032, 6: 3.707}


@dataclass(frozen=True)
class LatencyTest:
    """One latency comparison: the change, its uncertainty, and whether it clears the bar either way."""

    delta: float
    delta_ci: tuple[float, float]
    p_slower: float
    p_faster: float
    threshold: float
    mde: float
    noise: float
    regressed: bool
    improved: bool
    #: separate-process medians behind ``noise`` (stored mode); below ``MEASURED_RUNS`` it is unmeasured
    between_runs: int = 0


def _median_se(round_medians: Sequence[float], cv: float, iterations: int) -> float:
    """Relative SE of one run's median: from its round medians, else from its per-call CV."""
    spread = log_spread(round_medians)
    if spread is not None:
        return _MEDIAN_SE_FACTOR * spread / math.sqrt(len(round_medians))
    if cv > 0 and iterations > 0:
        return _MEDIAN_SE_FACTOR * cv / math.sqrt(iterations)
    return 0.0


def _few_runs_factor(runs: int) -> float:
    """How much wider a spread measured from ``runs`` values must be read (``t_{runs-1} / z`` at 99.5%)."""
    return _T995[min(max(runs - 1, min(_T995)), max(_T995))] / _NORMAL.inv_cdf(0.995)


def _run_medians(baseline: BackendBaseline) -> list[float]:
    """The baseline's usable separate-process medians (``MEASURED_WINDOW`` most recent)."""
    return [m for m in baseline.run_medians_ms if m > 0 and math.isfinite(m)][-MEASURED_WINDOW:]


def _between_run_noise(baseline: BackendBaseline, current: LatencyStats, policy: Policy) -> float:
    """``sigma_run``: how far one run's median can sit from the truth, relative (see module docs)."""
    assert baseline.latency is not None
    spreads = [h for h in baseline.noise_history if math.isfinite(h) and h >= 0]
    candidates = [policy.noise_floor]
    if spreads:
        candidates.append(math.sqrt(sum(h * h for h in spreads) / len(spreads)))
    for spread in (baseline.latency.spread, log_spread(current.round_medians_ms)):
        if spread is not None:
            candidates.append(spread)
    medians = _run_medians(baseline)
    if len(medians) >= MEASURED_RUNS:
        # The plain SD, not log_spread's MAD-capped one: a minority of slow processes is the very
        # noise to see here, not an outlier to discount.
        between = statistics.stdev(math.log(m) for m in medians)
        candidates.append(between * _few_runs_factor(len(medians)))
    return max(candidates)


def _p_values(d: float, sd: float) -> tuple[float, float]:
    """One-sided p of (slower, faster) for log-ratio ``d`` with standard deviation ``sd``."""
    if sd <= 0:
        return (0.0, 1.0) if d > 0 else (1.0, 0.0) if d < 0 else (0.5, 0.5)
    z = d / sd
    # erfc keeps tiny tail probabilities exact (1 - cdf would round them to 0).
    return 0.5 * math.erfc(z / math.sqrt(2.0)), 0.5 * math.erfc(-z / math.sqrt(2.0))


def _mde(threshold: float, sd: float, alpha: float) -> float:
    """The slowdown caught with ``_POWER`` probability by ``d > log1p(threshold) and p < alpha``."""
    z_power = _NORMAL.inv_cdf(_POWER)
    past_threshold = math.log1p(threshold) + z_power * sd
    past_p = (_NORMAL.inv_cdf(1.0 - alpha) + z_power) * sd
    return math.expm1(max(past_threshold, past_p))


def _ratio_se(ratio: float, ci_low: float, ci_high: float) -> float:
    """The standard error of ``log(ratio)``, read from its 95% CI (widened to contain the ratio)."""
    low, high = min(ci_low, ratio), max(ci_high, ratio)
    return (math.log(high) - math.log(low)) / (2.0 * _CI_Z)


def unpaired_test(baseline: BackendBaseline, current: LatencyStats, policy: Policy, confirmations: int) -> LatencyTest:
    """Compare two runs' medians, with both runs' SEs and the between-run noise (see module docs)."""
    base = baseline.latency
    assert base is not None
    d = math.log(current.median_ms / base.median_ms)
    se_base = _median_se(base.round_medians_ms, base.cv, base.iterations)
    se_cur = _median_se(current.round_medians_ms, current.cv, current.iterations)
    sigma_run = _between_run_noise(baseline, current, policy)
    var = se_base**2 + se_cur**2 + sigma_run**2 * (1.0 + 1.0 / (1 + confirmations))
    sd = math.sqrt(var)
    p_slower, p_faster = _p_values(d, sd)
    threshold = max(policy.threshold, policy.noise_k * sigma_run)
    log_thr = math.log1p(threshold)
    return LatencyTest(
        delta=math.expm1(d),
        delta_ci=(math.expm1(d - _CI_Z * sd), math.expm1(d + _CI_Z * sd)),
        p_slower=p_slower,
        p_faster=p_faster,
        threshold=threshold,
        mde=_mde(threshold, sd, policy.alpha),
        noise=sigma_run,
        regressed=d > log_thr and p_slower < policy.alpha,
        improved=d < -log_thr and p_faster < policy.alpha,
        between_runs=len(_run_medians(baseline)),
    )


def paired_test(paired: RatioLike, policy: Policy) -> LatencyTest:
    """Judge an interleaved A/B ratio: drift cancels in it, so its CI alone is the noise."""
    ratio, low, high = float(paired.ratio), float(paired.ci_low), float(paired.ci_high)
    if not (ratio > 0 and low > 0 and high > 0):
        raise ValueError(f"a paired ratio and its CI must be positive, got {ratio}, ({low}, {high})")
    low, high = min(low, ratio), max(high, ratio)
    d = math.log(ratio)
    sd = _ratio_se(ratio, low, high)
    p_slower, p_faster = _p_values(d, sd)
    log_thr = math.log1p(policy.threshold)
    return LatencyTest(
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
    sides = _pooled_sides(estimates)
    busy = [c for c in (getattr(e, "cpu_contention", None) for e in estimates) if c is not None]
    contention = max(busy) if busy else None  # the busiest reading: a contended one can bias the pool
    if len(estimates) == 1:
        e = estimates[0]
        return PairedRatio(float(e.ratio), float(e.ci_low), float(e.ci_high), int(e.n), *sides, contention)
    logs, weights = [], []
    for e in estimates:
        se = max(_ratio_se(float(e.ratio), float(e.ci_low), float(e.ci_high)), 1e-6)
        logs.append(math.log(float(e.ratio)))
        weights.append(1.0 / se**2)
    total = sum(weights)
    center = sum(w * x for w, x in zip(weights, logs, strict=True)) / total
    se = 1.0 / math.sqrt(total)
    return PairedRatio(
        math.exp(center),
        math.exp(center - _CI_Z * se),
        math.exp(center + _CI_Z * se),
        sum(int(e.n) for e in estimates),
        *sides,
        contention,
    )


def _pooled_sides(estimates: Sequence[RatioLike]) -> tuple[float | None, float | None]:
    """Each side's median time over the estimates (geometric mean), or ``(None, None)`` when any lacks them."""
    sides = [(getattr(e, "a_ms", None), getattr(e, "b_ms", None)) for e in estimates]
    if any(a is None or b is None or a <= 0 or b <= 0 for a, b in sides):
        return None, None
    a = math.exp(sum(math.log(a) for a, _ in sides) / len(sides))
    b = math.exp(sum(math.log(b) for _, b in sides) / len(sides))
    return a, b


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
        cpu_contention=max((r.cpu_contention for r in runs if r.cpu_contention is not None), default=None),
    )
