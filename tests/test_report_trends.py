"""The change-point detector that marks drift in the history (E-Divisive means, permutation test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aitune_ci.report.trends import change_points, mark_change_points
from aitune_ci.store.history import read_history

DATA = Path(__file__).parent / "data"


def _noise(n: int, seed: int, level: float = 100.0, sd: float = 0.01) -> np.ndarray:
    return level * (1 + sd * np.random.default_rng(seed).standard_normal(n))


def test_a_step_is_found_where_it_happens() -> None:
    series = np.concatenate([_noise(20, 1), _noise(15, 2, level=108.0)])
    assert change_points(series) == [20]


def test_stationary_noise_has_no_change_points() -> None:
    for seed in range(8):
        assert change_points(_noise(40, seed, sd=0.03)) == [], seed


def test_slow_drift_is_flagged_though_no_night_crossed_the_threshold() -> None:
    nights = 1.0 + 0.006 * np.arange(40)  # +0.6% a night, +23% over 40 nights
    series = 100 * nights * (1 + 0.005 * np.random.default_rng(3).standard_normal(40))
    night_to_night = np.abs(np.diff(series) / series[:-1])
    assert night_to_night.max() < 0.05, "no single night moved by the usual 5% threshold"
    points = change_points(series)
    assert points, "the drift must be marked"
    assert all(5 <= p <= 35 for p in points)


def test_shift_below_min_effect_is_ignored_even_when_significant() -> None:
    series = np.concatenate([_noise(30, 4, sd=0.001), _noise(30, 5, level=101.0, sd=0.001)])  # +1%, very quiet
    assert change_points(series, min_effect=0.02) == []
    assert change_points(series, min_effect=0.005) == [30]


def test_missing_values_are_skipped_and_indexes_refer_to_the_input() -> None:
    series = np.concatenate([_noise(20, 6), _noise(20, 7, level=110.0)])
    with_gaps = np.insert(series, [5, 25], np.nan)
    assert change_points(with_gaps) == [21]


def test_detector_is_deterministic_for_a_seed_and_validates_arguments() -> None:
    series = np.concatenate([_noise(12, 8), _noise(12, 9, level=104.0)])
    assert change_points(series, seed=5) == change_points(series, seed=5)
    assert change_points([1.0, 2.0, 3.0]) == []  # too short to split
    with pytest.raises(ValueError, match="min_size"):
        change_points(series, min_size=1)
    with pytest.raises(ValueError, match="alpha"):
        change_points(series, alpha=0)


def test_real_gpu_history_marks_the_cudagraphs_drift() -> None:
    """tests/data/report_history.jsonl: the CNN widened by 16 channels per run on an H100; cudagraphs
    (launch overhead removed) went from 0.12 to 0.36 ms, eager and inductor stayed launch-bound."""
    frame = mark_change_points(read_history(DATA / "report_history.jsonl"))
    marked = frame[frame["change_point"]]
    assert "cudagraphs" in set(marked["backend"])
    cuda = frame[frame["backend"] == "cudagraphs"].reset_index(drop=True)
    first = int(cuda.index[cuda["change_point"]][0])
    assert cuda["median_ms"][first:].median() > 1.3 * cuda["median_ms"][:first].median()
