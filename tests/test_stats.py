"""Statistics of latency samples: known answers, determinism, and the warm-up and pairing rules."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from aitune_ci.result import LatencyStats
from aitune_ci.stats import (
    RatioEstimate,
    bootstrap_median_ci,
    coefficient_of_variation,
    iqr,
    is_settled,
    log_spread,
    minimum_detectable_effect,
    paired_ratio,
    percentile,
    summarize,
)

ONE_TO_HUNDRED = list(range(1, 101))


def test_percentile_of_one_to_hundred_interpolates_linearly():
    assert percentile(ONE_TO_HUNDRED, 0) == 1.0
    assert percentile(ONE_TO_HUNDRED, 50) == pytest.approx(50.5)
    assert percentile(ONE_TO_HUNDRED, 90) == pytest.approx(90.1)
    assert percentile(ONE_TO_HUNDRED, 100) == 100.0


def test_percentile_outside_zero_to_hundred_is_rejected():
    with pytest.raises(ValueError, match="0..100"):
        percentile(ONE_TO_HUNDRED, 101)


def test_iqr_of_one_to_hundred_is_p75_minus_p25():
    assert iqr(ONE_TO_HUNDRED) == pytest.approx(75.25 - 25.75)


def test_cv_of_constant_samples_is_zero():
    assert coefficient_of_variation([3.0] * 50) == 0.0
    assert coefficient_of_variation([3.0]) == 0.0


def test_cv_is_sample_std_over_mean():
    assert coefficient_of_variation([1.0, 2.0, 3.0]) == pytest.approx(1.0 / 2.0)


def test_empty_or_nan_samples_raise_with_a_reason():
    with pytest.raises(ValueError, match="empty"):
        summarize([])
    with pytest.raises(ValueError, match="NaN"):
        iqr([1.0, float("nan")])


def test_bootstrap_ci_contains_true_median_of_large_normal_sample():
    samples = np.random.default_rng(1).normal(10.0, 1.0, size=5000)
    low, high = bootstrap_median_ci(samples)
    assert low < 10.0 < high
    assert high - low < 0.2  # about 2 * 1.96 * 1.25 / sqrt(5000) = 0.07


def test_bootstrap_ci_narrows_with_more_samples():
    rng = np.random.default_rng(2)
    small = bootstrap_median_ci(rng.normal(10.0, 1.0, size=100))
    large = bootstrap_median_ci(rng.normal(10.0, 1.0, size=10_000))
    assert (large[1] - large[0]) < (small[1] - small[0]) / 4  # width shrinks like 1/sqrt(n)


def test_bootstrap_ci_is_deterministic_for_a_seed_and_varies_across_seeds():
    samples = np.random.default_rng(3).exponential(size=301)
    assert bootstrap_median_ci(samples, seed=7) == bootstrap_median_ci(samples, seed=7)
    assert bootstrap_median_ci(samples, seed=7) != bootstrap_median_ci(samples, seed=8)


@pytest.mark.parametrize("n", [9, 10, 200])
def test_bootstrap_matches_naive_resampling(n):
    """The direct Beta sampling of resample medians has the law of brute-force resampling."""
    data = np.random.default_rng(4).exponential(size=n)
    resamples = 20_000
    naive = np.median(data[np.random.default_rng(5).integers(0, n, size=(resamples, n))], axis=1)
    naive_ci = tuple(np.quantile(naive, [0.025, 0.975]))
    fast_ci = bootstrap_median_ci(data, resamples=resamples, seed=6)
    spread = np.quantile(naive, 0.75) - np.quantile(naive, 0.25)
    assert fast_ci == pytest.approx(naive_ci, abs=0.15 * spread)


def test_bootstrap_ci_of_a_single_sample_is_that_sample():
    assert bootstrap_median_ci([4.2]) == (4.2, 4.2)


def test_summarize_fields_are_consistent():
    samples = np.random.default_rng(7).lognormal(0.0, 0.3, size=1000)
    s = summarize(samples, batch_size=8, peak_memory_bytes=123)
    assert isinstance(s, LatencyStats)
    assert s.min_ms <= s.median_ms <= s.p90_ms <= s.p99_ms
    assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms
    assert s.median_ms == pytest.approx(float(np.median(samples)))
    assert s.iterations == 1000 and s.rounds == 1
    assert s.throughput == pytest.approx(8 * 1000.0 / s.median_ms)
    assert LatencyStats.from_json(s.to_json()).iterations == 1000


def test_summarize_ci_widens_to_cover_drift_between_rounds():
    """Tight samples inside each round but rounds 10% apart: the CI must show the drift."""
    rng = np.random.default_rng(8)
    rounds = [base + rng.normal(0, 0.001, size=200) for base in (1.0, 1.1, 1.0, 1.1, 1.05)]
    pooled_only = summarize(np.concatenate(rounds))
    with_rounds = summarize(np.concatenate(rounds), round_medians_ms=[float(np.median(r)) for r in rounds])
    assert with_rounds.ci_high_ms - with_rounds.ci_low_ms > 2 * (pooled_only.ci_high_ms - pooled_only.ci_low_ms)
    assert with_rounds.rounds == 5


def _warmup_curve(n: int, noise: float = 0.0, seed: int = 0) -> list[float]:
    """Latency of a warming-up callable: 1 ms plus a decaying 4 ms excess, optional noise."""
    rng = np.random.default_rng(seed)
    return [1.0 + 4.0 * math.exp(-i / 8.0) + rng.normal(0, noise) for i in range(n)]


def test_settle_detection_rejects_decaying_start_and_accepts_plateau():
    curve = _warmup_curve(200, noise=0.005)
    assert not is_settled(curve[:20], window=5, tolerance=0.02)
    assert is_settled(curve[:120], window=5, tolerance=0.02)
    first = next(i for i in range(10, 200) if is_settled(curve[:i], window=5, tolerance=0.02))
    assert 25 < first < 80  # excess 4*exp(-i/8) falls under ~2% of 1 ms around i ~ 40


def test_settle_detection_ignores_a_single_outlier():
    times = [1.0] * 9 + [50.0]
    assert is_settled(times, window=5, tolerance=0.01)


def test_too_few_times_are_never_settled():
    assert not is_settled([1.0] * 9, window=5)


def test_paired_ratio_of_five_percent_slower_with_noise_is_about_1_05():
    rng = np.random.default_rng(9)
    a = 10.0 * (1.0 + rng.normal(0, 0.05, size=40))  # drift between rounds...
    b = 1.05 * a * (1.0 + rng.normal(0, 0.005, size=40))  # ...cancels in the paired ratio
    est = paired_ratio(a, b)
    assert isinstance(est, RatioEstimate)
    assert est.ratio == pytest.approx(1.05, abs=0.005)
    assert est.ci_low <= 1.05 <= est.ci_high
    assert est.n == 40
    assert est.change == pytest.approx(est.ratio - 1.0)


def test_paired_ratio_rejects_unpaired_rounds():
    with pytest.raises(ValueError, match="one to one"):
        paired_ratio([1.0, 2.0], [1.0])


def test_mde_shrinks_with_more_rounds():
    values = [minimum_detectable_effect(0.02, n) for n in (1, 4, 16, 64)]
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(2 * values[1])  # 1/sqrt(n)


def test_mde_matches_the_documented_formula():
    # (1.95996 + 0.84162) * sqrt(2) * 0.03 / sqrt(10)
    assert minimum_detectable_effect(0.03, 10) == pytest.approx(0.037589, rel=1e-4)
    assert minimum_detectable_effect(0.0, 10) == 0.0


def test_one_stalled_round_does_not_make_the_spread_explode():
    steady = [1.0, 1.01, 0.99, 1.005, 0.995, 1.0, 1.002]
    stalled = steady[:-1] + [10.0]
    assert log_spread(stalled) < 0.05  # the SD alone would be ~0.87
    assert log_spread(steady) == pytest.approx(statistics.stdev([math.log(v) for v in steady]))


def test_paired_ratio_of_rounds_alternating_a_position_effect_is_the_true_ratio():
    # ABBA / BAAB rounds under a position effect k: r*k, r/k, r*k, ... The median of logs gives r.
    r, k = 1.05, 1.2
    b = [r * k if i % 2 == 0 else r / k for i in range(10)]
    est = paired_ratio([1.0] * 10, b)
    assert est.ratio == pytest.approx(r, rel=1e-12)


def test_pairs_of_rounds_cancel_a_position_effect_that_single_rounds_do_not():
    # Three rounds, ABBA BAAB ABBA: the median over single rounds sits in the r*k mode; over
    # ABBA + BAAB pairs it is r, and the third round, which has no BAAB partner, is left out.
    r, k = 1.05, 1.02
    b = [r * k, r / k, r * k]
    assert paired_ratio([1.0] * 3, b).ratio == pytest.approx(r * k, rel=1e-12)
    est = paired_ratio([1.0] * 3, b, rounds_per_unit=2)
    assert est.ratio == pytest.approx(r, rel=1e-12)
    assert est.n == 2


def test_pairs_of_rounds_keep_noise_in_the_ci():
    rng = np.random.default_rng(3)
    k = np.where(np.arange(40) % 2 == 0, 1.01, 1 / 1.01)  # ABBA / BAAB position effect
    a = 10.0 * (1.0 + rng.normal(0, 0.05, size=40))
    b = 1.05 * k * a * (1.0 + rng.normal(0, 0.005, size=40))
    est = paired_ratio(a, b, rounds_per_unit=2)
    assert est.ci_low <= 1.05 <= est.ci_high
    assert est.half_width < 0.005


def test_paired_ratio_carries_each_sides_median_over_the_rounds_it_used():
    est = paired_ratio([2.0, 4.0, 3.0, 100.0, 1.0], [3.0, 5.0, 4.0, 1.0, 9.0], rounds_per_unit=2)
    assert est.n == 4  # the fifth round has no partner
    assert (est.a_ms, est.b_ms) == (3.5, 3.5)  # medians of [2, 4, 3, 100] and [3, 5, 4, 1]
    assert est.to_json()["a_ms"] == 3.5


def test_paired_ratio_refuses_units_it_cannot_form():
    with pytest.raises(ValueError, match="cannot form one unit of 2 rounds"):
        paired_ratio([1.0], [1.0], rounds_per_unit=2)
    with pytest.raises(ValueError, match="at least 1"):
        paired_ratio([1.0], [1.0], rounds_per_unit=0)


def test_paired_ratio_rejects_a_zero_round_time():
    with pytest.raises(ValueError, match="positive"):
        paired_ratio([1.0, 1.0], [1.0, 0.0])
