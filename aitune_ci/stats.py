"""Statistics of latency samples: pure functions on floats, so every rule is testable in milliseconds.

Nothing here reads a clock or imports torch; :mod:`aitune_ci.measure` collects the samples.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from aitune_ci.result import LatencyStats

__all__ = [
    "RatioEstimate",
    "bootstrap_median_ci",
    "coefficient_of_variation",
    "iqr",
    "is_settled",
    "log_spread",
    "minimum_detectable_effect",
    "paired_ratio",
    "percentile",
    "relative_half_width",
    "summarize",
]

Samples = Sequence[float] | np.ndarray


def _array(samples: Samples, what: str = "samples") -> np.ndarray:
    """Samples as a 1-D float64 array; empty or non-finite input is a caller bug, said plainly."""
    arr = np.asarray(samples, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError(f"{what} is empty: measure at least one iteration before computing statistics")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN or Inf: a timer returned garbage, re-run the measurement")
    return arr


def percentile(samples: Samples, q: float) -> float:
    """The ``q``-th percentile (0..100), linearly interpolated between order statistics (numpy's default)."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within 0..100, got {q}")
    return float(np.percentile(_array(samples), q))


def iqr(samples: Samples) -> float:
    """Interquartile range p75 - p25: a spread that ignores the outliers a noisy machine produces."""
    p25, p75 = np.percentile(_array(samples), [25.0, 75.0])
    return float(p75 - p25)


def coefficient_of_variation(samples: Samples) -> float:
    """Sample standard deviation over the mean (0.0 for fewer than two samples or no spread)."""
    arr = _array(samples)
    if arr.size < 2:
        return 0.0
    std = float(np.std(arr, ddof=1))
    mean = float(np.mean(arr))
    if std == 0.0:
        return 0.0
    return std / abs(mean) if mean != 0.0 else math.inf


def log_spread(values: Sequence[float]) -> float | None:
    """The spread of ``log(values)``: the relative spread between rounds (0.02 ~ 2%).

    Log space makes it relative and symmetric for slow and fast windows. The sample standard
    deviation, except that with five or more rounds it is capped by the normal-consistent median
    absolute deviation (1.4826 x MAD): one round hit by a stall (seen on shared CI machines) would
    otherwise make the whole check look hopelessly noisy, while for well-behaved rounds the SD is
    the smaller, more efficient estimate. None when fewer than two positive values exist.
    """
    logs = [math.log(v) for v in values if isinstance(v, (int, float)) and v > 0 and math.isfinite(v)]
    if len(logs) < 2:
        return None
    sd = statistics.stdev(logs)
    if len(logs) >= 5:
        center = statistics.median(logs)
        mad = 1.4826 * statistics.median(abs(x - center) for x in logs)
        if mad > 0:
            return min(sd, mad)
    return sd


def _bootstrap_medians(arr: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Medians of ``resamples`` bootstrap resamples of ``arr``, drawn in O(resamples + n log n).

    Resampling n values with replacement from the sorted data draws n uniform indices; the
    resample's k-th smallest value is the data at its k-th smallest index, and the k-th smallest of
    n uniforms is Beta(k, n - k + 1). So the resample median is sampled directly from that Beta
    law instead of building ``resamples x n`` arrays: the same distribution as naive resampling
    (a test checks it), cheap enough to evaluate after every measurement round even with 10^5
    samples. For even n the upper middle value follows from the lower one: the other n - k draws
    are uniform above it, and their minimum is ``u + (1 - u) * Beta(1, n - k)``.
    """
    x = np.sort(arr)
    n = x.size
    rng = np.random.default_rng(seed)
    k = (n + 1) // 2  # 1-based rank of the lower middle value
    u_low = rng.beta(k, n - k + 1, size=resamples)
    lower = x[np.minimum((u_low * n).astype(np.int64), n - 1)]
    if n % 2:
        return lower
    u_high = u_low + (1.0 - u_low) * rng.beta(1, n - k, size=resamples)
    upper = x[np.minimum((u_high * n).astype(np.int64), n - 1)]
    return (lower + upper) / 2.0


def bootstrap_median_ci(
    samples: Samples, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median, deterministic for a given ``seed``.

    Args:
        samples: the measured values (any order).
        confidence: coverage of the interval, e.g. 0.95.
        resamples: bootstrap resamples; 2000 keeps the interval's ends stable to about 1%.
        seed: seeds the generator, so the same samples always give the same interval.

    Returns:
        ``(low, high)``; a single sample gives ``(x, x)``.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    arr = _array(samples)
    if arr.size == 1:
        return float(arr[0]), float(arr[0])
    medians = _bootstrap_medians(arr, resamples, seed)
    alpha = 1.0 - confidence
    low, high = np.quantile(medians, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def relative_half_width(low: float, high: float, center: float) -> float:
    """Half the interval's width relative to ``center`` (0.01 = the median is known to ±1%)."""
    if center == 0.0:
        return 0.0 if high == low else math.inf
    return (high - low) / 2.0 / abs(center)


def summarize(
    samples_ms: Samples,
    *,
    round_medians_ms: Sequence[float] = (),
    batch_size: int | None = None,
    peak_memory_bytes: int | None = None,
    rounds: int | None = None,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> LatencyStats:
    """Describe per-iteration latencies (ms) as :class:`~aitune_ci.result.LatencyStats`.

    The confidence interval is conservative on purpose. Iterations inside one round share that
    moment's machine state (clocks, neighbours, caches), so a bootstrap that treats them as
    independent understates the uncertainty: whole windows drift by several percent. With three or
    more ``round_medians_ms``, the interval is therefore the union of the per-iteration bootstrap
    CI and the bootstrap CI of the round medians (the between-window noise), widened if needed so
    it always contains the reported median.

    Args:
        samples_ms: every timed iteration, in milliseconds.
        round_medians_ms: the median of each interleaved round, in round order.
        batch_size: items per call, for throughput (None when unknown).
        peak_memory_bytes: as measured by the caller (None when unknown).
        rounds: number of rounds; defaults to ``len(round_medians_ms)`` (at least 1).
        confidence, resamples, seed: passed to :func:`bootstrap_median_ci`.
    """
    arr = _array(samples_ms, "samples_ms")
    medians = tuple(float(m) for m in round_medians_ms)
    median = float(np.median(arr))
    p25, p75, p90, p99 = (float(v) for v in np.percentile(arr, [25.0, 75.0, 90.0, 99.0]))
    low, high = bootstrap_median_ci(arr, confidence, resamples, seed)
    if len(medians) >= 3:
        r_low, r_high = bootstrap_median_ci(medians, confidence, resamples, seed)
        low, high = min(low, r_low), max(high, r_high)
    return LatencyStats(
        median_ms=median,
        mean_ms=float(np.mean(arr)),
        min_ms=float(np.min(arr)),
        p90_ms=p90,
        p99_ms=p99,
        iqr_ms=p75 - p25,
        ci_low_ms=min(low, median),
        ci_high_ms=max(high, median),
        cv=coefficient_of_variation(arr),
        iterations=int(arr.size),
        rounds=rounds if rounds is not None else max(1, len(medians)),
        batch_size=batch_size,
        round_medians_ms=medians,
        peak_memory_bytes=peak_memory_bytes,
    )


def is_settled(times: Samples, window: int = 5, tolerance: float = 0.02) -> bool:
    """Whether warm-up is over: the latest window's median is within ``tolerance`` of the one before.

    The rule compares the median of the last ``window`` times with the median of the ``window``
    times just before them; the relative difference ``|m_last - m_prev| / m_prev`` must be at most
    ``tolerance``. Medians ignore the odd outlier (a GC pause, a page fault), so only a sustained
    trend — caches, allocator, autotuning or clock ramp-up still settling — keeps warm-up going.
    Fewer than ``2 * window`` times is never settled.
    """
    if window < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be non-negative, got {tolerance}")
    arr = np.asarray(times, dtype=np.float64).reshape(-1)
    if arr.size < 2 * window:
        return False
    last = float(np.median(arr[-window:]))
    prev = float(np.median(arr[-2 * window : -window]))
    if prev == 0.0:
        return last == 0.0
    return abs(last - prev) / abs(prev) <= tolerance


@dataclass(frozen=True)
class RatioEstimate:
    """How much slower B is than A, from paired rounds: >1 means B is slower.

    Attributes:
        ratio: median of the per-round ratios ``b / a`` (or of per-unit ratios, see :func:`paired_ratio`).
        ci_low, ci_high: bootstrap confidence interval of that median.
        n: number of paired rounds it rests on.
        a_ms, b_ms: the median of A's and of B's round times over those same rounds, when known:
            what a report shows as before and now, so the two agree with the ratio's rounds.
        cpu_contention: cores' worth of CPU other processes took while the rounds ran with no core
            idle (``cpu_load.contended_cores``; 0.0 when a core was spare, None when unknown).
    """

    ratio: float
    ci_low: float
    ci_high: float
    n: int
    a_ms: float | None = None
    b_ms: float | None = None
    cpu_contention: float | None = None

    @property
    def change(self) -> float:
        """Relative change of B against A (0.05 = 5% slower)."""
        return self.ratio - 1.0

    @property
    def half_width(self) -> float:
        """Relative half-width of the CI around the ratio (the resolution of this comparison)."""
        return relative_half_width(self.ci_low, self.ci_high, self.ratio)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ratio": self.ratio, "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n}
        if self.a_ms is not None and self.b_ms is not None:
            out.update(a_ms=self.a_ms, b_ms=self.b_ms)
        if self.cpu_contention is not None:
            out["cpu_contention"] = self.cpu_contention
        return out


def paired_ratio(
    a_rounds: Samples,
    b_rounds: Samples,
    *,
    rounds_per_unit: int = 1,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> RatioEstimate:
    """Compare B with A round by round: the median of ``b[i] / a[i]`` and its bootstrap CI.

    Each round's A and B were timed moments apart, so drift of the machine cancels in their ratio;
    this is how an old artifact and a fresh build are compared in one process. The median is taken
    of the log ratios: with an even count it is the geometric mean of the middle two. ``a_ms`` and
    ``b_ms`` are the two sides' median round times over the same rounds (in the rounds' unit).

    With ``rounds_per_unit`` k > 1, each run of k consecutive rounds is first combined into one
    ratio (the geometric mean of its rounds'), and the median and CI are taken over those units; a
    trailing incomplete unit is left out. ``measure_paired`` alternates ABBA and BAAB rounds and
    passes 2: a position effect ``k`` makes its rounds read ``r·k`` and ``r/k``, and each pair's
    combined ratio is ``r`` again, before the median rather than after it.
    """
    a = _array(a_rounds, "a_rounds")
    b = _array(b_rounds, "b_rounds")
    if a.size != b.size:
        raise ValueError(f"paired rounds must match one to one: {a.size} A rounds vs {b.size} B rounds")
    if rounds_per_unit < 1:
        raise ValueError(f"rounds_per_unit must be at least 1, got {rounds_per_unit}")
    if a.size < rounds_per_unit:
        raise ValueError(f"{a.size} paired round(s) cannot form one unit of {rounds_per_unit} rounds")
    if np.any(a <= 0) or np.any(b <= 0):
        raise ValueError("round times must be positive to form ratios (a timer read 0: time more calls per block)")
    units = a.size // rounds_per_unit
    used = units * rounds_per_unit
    logs = np.log(b[:used] / a[:used]).reshape(units, rounds_per_unit).mean(axis=1)
    log_low, log_high = bootstrap_median_ci(logs, confidence, resamples, seed)
    median, low, high = (math.exp(v) for v in (float(np.median(logs)), log_low, log_high))
    return RatioEstimate(
        ratio=median,
        ci_low=min(low, median),
        ci_high=max(high, median),
        n=used,
        a_ms=float(np.median(a[:used])),
        b_ms=float(np.median(b[:used])),
    )


def minimum_detectable_effect(
    cv_or_round_spread: float, n_rounds: int, alpha: float = 0.05, power: float = 0.8
) -> float:
    """The smallest relative slowdown that ``n_rounds`` rounds detect reliably (0.03 = 3%).

    Two-sided two-sample normal approximation::

        MDE = (z_{1 - alpha/2} + z_{power}) * sqrt(2) * sigma_rel / sqrt(n)

    where ``sigma_rel`` (``cv_or_round_spread``) is the relative standard deviation of one round's
    value — e.g. the CV of the round medians — and sqrt(2) accounts for both sides (baseline and
    candidate) being noisy. With alpha=0.05 and power=0.8 the factor is about 2.80 * sqrt(2) = 3.96.
    """
    if cv_or_round_spread < 0:
        raise ValueError(f"spread must be non-negative, got {cv_or_round_spread}")
    if n_rounds < 1:
        raise ValueError(f"n_rounds must be at least 1, got {n_rounds}")
    if not 0.0 < alpha < 1.0 or not 0.0 < power < 1.0:
        raise ValueError(f"alpha and power must be within (0, 1), got alpha={alpha}, power={power}")
    z = NormalDist()
    factor = z.inv_cdf(1.0 - alpha / 2.0) + z.inv_cdf(power)
    return factor * math.sqrt(2.0) * cv_or_round_spread / math.sqrt(n_rounds)
