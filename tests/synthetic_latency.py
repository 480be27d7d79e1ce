"""Synthetic latency statistics for verdict tests: a steady measurement, scaled by a factor."""

from __future__ import annotations

from statistics import median

from aitune_ci.result import LatencyStats

# Seven rounds with ~2% spread between them: a typical steady GPU measurement.
ROUNDS = (10.0, 10.2, 9.8, 10.1, 9.9, 10.25, 9.75)


def stats(rounds: tuple[float, ...] = ROUNDS, factor: float = 1.0, batch_size: int | None = None) -> LatencyStats:
    r = tuple(x * factor for x in rounds)
    m = median(r)
    return LatencyStats(
        median_ms=m,
        mean_ms=sum(r) / len(r),
        min_ms=min(r),
        p90_ms=max(r),
        p99_ms=max(r),
        iqr_ms=0.02 * m,
        ci_low_ms=0.99 * m,
        ci_high_ms=1.01 * m,
        cv=0.01,
        iterations=20 * len(r),
        rounds=len(r),
        batch_size=batch_size,
        round_medians_ms=r,
    )
