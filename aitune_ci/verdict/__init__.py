"""Verdicts: is a (fixture, backend) check a pass, an improvement, a regression, new or skipped?

Pure functions on plain data (no torch, no files). ``model`` holds the record, ``latency`` the
statistics of the latency test (its docstring explains the math), ``judge`` the rules of one
check, ``text`` its message and ``counts`` the whole run's correction and counts.
"""

from __future__ import annotations

from aitune_ci.status import VerdictKind
from aitune_ci.verdict.counts import STRICT_NO_BASELINE, apply_run_correction, count_line, summary_counts
from aitune_ci.verdict.judge import (
    compare_backend,
    judge_with_confirmations,
    parts_change,
    require_baseline,
    winner_change,
)
from aitune_ci.verdict.latency import pool_latency, pool_paired
from aitune_ci.verdict.model import (
    ACCURACY,
    LATENCY,
    NOT_COMPARED,
    NOT_JUDGED,
    NOW_FAILING,
    TASK_METRIC,
    PairedRatio,
    RatioLike,
    Verdict,
)

__all__ = [
    "ACCURACY",
    "LATENCY",
    "NOT_COMPARED",
    "NOT_JUDGED",
    "NOW_FAILING",
    "PairedRatio",
    "RatioLike",
    "STRICT_NO_BASELINE",
    "TASK_METRIC",
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
    "parts_change",
    "winner_change",
]
