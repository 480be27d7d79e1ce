"""Drift in the history: where a latency series shifted to a new level, found by E-Divisive means.

A verdict compares one run with one baseline, so a backend that gets 1% slower every night never
fails. ``change_points`` finds where a series of nightly medians shifted (E-Divisive means with a
permutation test, as Apache Otava/hunter does), so a slow drift shows as change points even when no
single night crossed the threshold. Pure statistics on numbers and on ``read_history``'s frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["SERIES_KEYS", "change_points", "mark_change_points"]

#: The columns of a history frame that name one series (one line in a trend chart).
SERIES_KEYS = ("hardware_key", "fixture", "module", "backend")


def _split_statistics(x: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """E-Divisive means statistic Q(tau) for every admissible split tau of ``x`` (vectorized).

    ``Q(tau) = tau (n - tau) / n * (2 E|X - Y| - E|X - X'| - E|Y - Y'|)`` with X the points before
    tau and Y those from tau on (Matteson & James 2014, alpha = 1): large when the two sides have
    different distributions, whatever their shape.
    """
    n = len(x)
    d = np.abs(x[:, None] - x[None, :])
    s = np.zeros((n + 1, n + 1))
    s[1:, 1:] = d.cumsum(0).cumsum(1)
    tau = np.arange(min_size, n - min_size + 1)
    left = s[tau, tau]
    right = s[n, n] - s[tau, n] - s[n, tau] + s[tau, tau]
    between = s[tau, n] - s[tau, tau]
    m = n - tau
    q = tau * m / n * (2.0 * between / (tau * m) - left / (tau * (tau - 1.0)) - right / (m * (m - 1.0)))
    return tau, q


def change_points(
    series: Sequence[float] | np.ndarray,
    *,
    min_size: int = 4,
    min_effect: float = 0.02,
    alpha: float = 0.01,
    permutations: int = 199,
    seed: int = 0,
) -> list[int]:
    """Indexes where a series shifts to a new level: E-Divisive means with a permutation test.

    Binary segmentation: the split with the largest E-Divisive statistic is kept when a permutation
    test says a split that strong is unlikely by chance (``p <= alpha``) and the medians on either
    side differ by at least ``min_effect`` (relative); each side is then searched again. A slow
    drift is cut into steps, so it is flagged even when each night moved less than any threshold.
    Pure and deterministic for a ``seed``; NaN/inf values are ignored (indexes still refer to
    ``series``).

    Args:
        series: values in time order (e.g. nightly medians in ms).
        min_size: fewest points on each side of a change (>= 2).
        min_effect: smallest relative change of the median that counts (0.02 = 2%): below it a
            statistically clear shift of a very quiet series is not worth a mark.
        alpha: significance level of the permutation test.
        permutations: permutations per test; ``p >= 1 / (permutations + 1)``.
        seed: seed of the permutations.

    Returns:
        Sorted indexes ``i`` such that ``series[i]`` is the first point of a new level.
    """
    if min_size < 2:
        raise ValueError(f"min_size must be >= 2, got {min_size}")
    if permutations < 1 or not 0 < alpha < 1 or min_effect < 0:
        raise ValueError("permutations must be >= 1, alpha within (0, 1) and min_effect >= 0")
    values = np.asarray(series, dtype=float).ravel()
    index = np.flatnonzero(np.isfinite(values))
    x = values[index]
    rng = np.random.default_rng(seed)
    found: list[int] = []
    segments = [(0, len(x))]
    while segments:
        start, end = segments.pop()
        seg = x[start:end]
        if len(seg) < 2 * min_size:
            continue
        taus, q = _split_statistics(seg, min_size)
        best = int(np.argmax(q))
        tau, q_obs = int(taus[best]), float(q[best])
        before, after = float(np.median(seg[:tau])), float(np.median(seg[tau:]))
        scale = abs(before) if before != 0 else max(abs(after), 1e-300)
        if q_obs <= 0 or abs(after - before) / scale < min_effect:
            continue
        exceed = sum(
            float(np.max(_split_statistics(rng.permutation(seg), min_size)[1])) >= q_obs for _ in range(permutations)
        )
        if (1 + exceed) / (permutations + 1) > alpha:
            continue
        found.append(start + tau)
        segments.extend([(start, start + tau), (start + tau, end)])
    return sorted(int(index[i]) for i in found)


def mark_change_points(frame: pd.DataFrame, value: str = "median_ms", **kwargs: Any) -> pd.DataFrame:
    """A copy of a ``read_history`` frame with a boolean ``change_point`` column.

    Each series is one (hardware, fixture, module, backend), in date order, over its measured rows
    (failed or unavailable nights are not points). ``kwargs`` go to ``change_points``.
    """
    out = frame.copy()
    out["change_point"] = False
    measured = out[out[value].notna() & np.isfinite(out[value].astype(float))]
    for _, group in measured.sort_values("date", kind="stable").groupby(list(SERIES_KEYS), dropna=False, sort=False):
        for i in change_points(group[value].to_numpy(dtype=float), **kwargs):
            out.loc[group.index[i], "change_point"] = True
    return out
