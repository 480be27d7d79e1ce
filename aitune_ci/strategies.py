"""Choosing the winner among measured backends (pure: works on BackendResult rows only).

Every strategy only considers *usable* backends (built, accurate, measured): a backend that fails
accuracy is never selected, nor one flagged for review (``aitune_ci.sanity``). Each row gets a note
saying why it was or was not chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from aitune_ci.result import BackendResult
from aitune_ci.status import BackendStatus

__all__ = ["Selection", "select", "sweep_batch_sizes", "SWEEP_MIN_GAIN", "FIRST_WINS_MIN_SPEEDUP"]

#: The batch sweep stops once doubling the batch buys less than this much throughput.
SWEEP_MIN_GAIN = 0.05
#: first-wins takes the first backend that is at least this much faster than eager.
FIRST_WINS_MIN_SPEEDUP = 0.01


@dataclass(frozen=True)
class Selection:
    """The chosen backend (None when none was usable), why, and every row with its selection note."""

    winner: str | None
    reason: str
    rows: tuple[BackendResult, ...]


def _best_throughput(row: BackendResult) -> float:
    """Items per second at the best batch size measured (calls per second when the batch is unknown)."""
    values = [v for v in row.throughput_by_batch.values() if v]
    if values:
        return max(values)
    if row.latency and row.latency.throughput:
        return row.latency.throughput
    return 1000.0 / row.latency.median_ms if row.latency and row.latency.median_ms > 0 else 0.0


def _eligible(row: BackendResult) -> bool:
    """Usable, and not flagged for review (an implausible win waits for a human: ``aitune_ci.sanity``)."""
    return row.usable and not row.review


def _why_not(row: BackendResult) -> str:
    """The note of a row that could not compete (not usable, or flagged for review)."""
    if row.review and row.usable:
        return f"not selected: flagged for review ({row.review.split('; ')[0]})"
    if row.status is BackendStatus.UNAVAILABLE:
        return f"not selected: unavailable ({row.error or 'no reason given'})"
    if row.status is BackendStatus.FAILED:
        return "not selected: failed"
    if row.status is BackendStatus.INACCURATE:
        summary = row.error or (row.accuracy.reason if row.accuracy and row.accuracy.reason else "accuracy gate failed")
        return f"not selected: inaccurate ({summary})"
    return "not selected: not measured"


def select(rows: Sequence[BackendResult], strategy: str, order: Sequence[str] | None = None) -> Selection:
    """Pick the winner by ``strategy``; ``order`` is the user's backend list (for first-wins)."""
    usable = [r for r in rows if _eligible(r)]
    eager = next((r for r in usable if r.backend == "eager"), None)
    notes: dict[str, str] = {r.backend: _why_not(r) for r in rows if not _eligible(r)}
    winner: BackendResult | None = None
    reason = ""

    if not usable:
        reason = "no backend was usable (every one failed, was inaccurate, or unavailable)"
    elif strategy == "min-latency":
        winner = min(usable, key=lambda r: r.latency.median_ms)  # type: ignore[union-attr]
        reason = f"lowest median latency ({winner.latency.median_ms:.4g} ms)"  # type: ignore[union-attr]
        for r in usable:
            if r is not winner:
                ratio = r.latency.median_ms / winner.latency.median_ms  # type: ignore[union-attr]
                notes[r.backend] = f"not selected: {ratio:.2f}x the winner's latency"
    elif strategy == "max-throughput":
        winner = max(usable, key=_best_throughput)
        best = _best_throughput(winner)
        reason = f"highest throughput ({best:.4g} items/s)"
        for r in usable:
            if r is not winner:
                notes[r.backend] = f"not selected: {_best_throughput(r) / best:.2f}x the winner's throughput"
    elif strategy == "first-wins":
        names = [n for n in (order or [r.backend for r in rows]) if n != "eager"]
        by_name = {r.backend: r for r in usable}
        if eager is None:
            reason = "first-wins needs eager as the reference, and eager was not usable"
        for name in names if eager is not None else []:
            r = by_name.get(name)
            if r is None:
                continue
            speedup = eager.latency.median_ms / r.latency.median_ms - 1  # type: ignore[union-attr]
            if speedup >= FIRST_WINS_MIN_SPEEDUP:
                winner = r
                reason = f"first backend in the list that is correct and {speedup:.1%} faster than eager"
                break
            notes[name] = f"not selected: only {speedup:+.1%} vs eager (needs +{FIRST_WINS_MIN_SPEEDUP:.0%})"
        if winner is None and eager is not None:
            winner = eager
            reason = "no listed backend was correct and at least 1% faster than eager; eager kept"
    elif strategy == "one-backend":
        names = [n for n in (order or []) if n != "eager"]
        target = names[0] if names else "eager"
        winner = next((r for r in usable if r.backend == target), None)
        reason = (
            f"one-backend: {target} as configured"
            if winner
            else f"one-backend: the configured backend {target!r} is not usable"
        )
    else:
        raise ValueError(f"unknown strategy {strategy!r}")

    out = []
    for r in rows:
        if winner is not None and r is winner:
            out.append(replace(r, selected=True, selection_note=f"selected: {reason}"))
        else:
            out.append(replace(r, selected=False, selection_note=notes.get(r.backend, "not selected")))
    return Selection(winner.backend if winner else None, reason, tuple(out))


def sweep_batch_sizes(base: int, cap: int) -> list[int]:
    """Powers of two from 1 up to ``cap``, plus the sample's own batch size (sorted, unique)."""
    sizes = {base}
    b = 1
    while b <= cap:
        sizes.add(b)
        b *= 2
    return sorted(s for s in sizes if 1 <= s <= max(cap, base))
