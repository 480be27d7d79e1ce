"""Plain-text tables for the terminal (pure: result data in, text out)."""

from __future__ import annotations

from typing import Any, Sequence

from aitune_ci.formatting import fmt_ms, fmt_pct
from aitune_ci.report.view import judged_against
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.status import BackendStatus, VerdictKind, presentation

__all__ = ["format_table", "format_tune_table", "format_verdict_table"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Align columns; indexes in ``right`` are right-aligned (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _row(r: BackendResult, eager_ms: float | None) -> list[str]:
    lat = r.latency
    speedup = f"{eager_ms / lat.median_ms:.2f}x" if lat and eager_ms and lat.median_ms > 0 else "-"
    ci = f"[{fmt_ms(lat.ci_low_ms)}, {fmt_ms(lat.ci_high_ms)}]" if lat else "-"
    if r.status in (BackendStatus.FAILED, BackendStatus.UNAVAILABLE):
        accuracy = (r.error or "").splitlines()[0][:70] if r.error else "-"
    else:
        accuracy = ("ok: " if r.accuracy and r.accuracy.passed else "FAIL: ") + (
            r.accuracy.summary() if r.accuracy else ""
        )
    build = f"{r.build_s:.1f}s" if r.build_s is not None else "-"
    best_tp = max(r.throughput_by_batch.items(), key=lambda kv: kv[1], default=None)
    tp = f"{best_tp[1]:.0f}/s @{best_tp[0]}" if best_tp else "-"
    return [
        ("* " if r.selected else "  ") + r.backend,
        r.status.upper(),
        fmt_ms(lat.median_ms if lat else None),
        ci,
        speedup,
        tp,
        build,
        accuracy,
    ]


def format_tune_table(result: TuneResult) -> str:
    """The demo's table: one row per backend, the winner starred, then the winner's reason."""
    headers = ["backend", "status", "median ms", "95% CI", "vs eager", "throughput", "build", "accuracy / reason"]
    parts = [f"{result.name} ({result.device}, strategy {result.strategy})"]
    modules = [""] + [m for m in dict.fromkeys(r.module for r in result.backends) if m]
    for module in modules:
        rows_of = [r for r in result.backends if r.module == module]
        eager = next((r for r in rows_of if r.backend == "eager"), None)
        eager_ms = eager.latency.median_ms if eager and eager.latency else None
        if module:
            parts.append(f"submodule {module} (chose {result.module_choice.get(module, '(none)')}):")
        parts.append(format_table(headers, [_row(r, eager_ms) for r in rows_of], right=(2, 4, 5, 6)))
    parts.append(f"winner: {result.winner or '(none)'} — {result.winner_reason}")
    return "\n".join(parts)


def format_verdict_table(verdicts: Sequence[Any]) -> str:
    """The ``pytest --aitune`` summary: one row per check, regressions first.

    Under it: each metric beyond latency that regressed or improved (metrics within their gates
    stay in the reports), then why any latency was not judged.
    """
    rows = []
    unjudged: dict[str, list[str]] = {}
    moved: list[str] = []  # metrics beyond latency that regressed or improved: one line each
    for v in sorted(verdicts, key=lambda v: (presentation(v.kind).severity, v.fixture, v.backend)):
        why = v.latency_note
        if why is not None:
            unjudged.setdefault(why, []).append(v.check_id)
        ci = f"[{fmt_pct(v.delta_ci[0])}, {fmt_pct(v.delta_ci[1])}]" if v.delta_ci else "-"
        kind = f"{v.kind}" + (f" ({', '.join(v.reasons)})" if v.reasons else "")
        if v.would_fail:
            kind += " warn-only: would fail"
        if v.acknowledged and v.kind is not VerdictKind.REGRESSED:
            kind += " (acknowledged)"
        moved.extend(f"{v.check_id}: {m.text()}" for m in v.metrics if m.moved)
        rows.append(
            [
                f"{v.fixture}[{v.backend}]",
                # the same work is not timed again: a "now" beside "identical" was an older, other reading
                f"{fmt_ms(v.baseline_median_ms)} → {'same work' if v.identical_to_base else fmt_ms(v.current_median_ms)}",
                "identical" if v.identical_to_base else "not judged" if why is not None else fmt_pct(v.delta),
                ci,
                f"±{v.mde * 100:.1f}%" if v.mde is not None else "-",
                judged_against(v),
                kind,
            ]
        )
    headers = ["check", "median ms (before → now)", "Δ", "95% CI of Δ", "MDE", "against", "verdict"]
    table = format_table(headers, rows, right=(2,))
    for line in moved[:_METRIC_LINES]:
        table += f"\n{line}"
    if len(moved) > _METRIC_LINES:
        more = len(moved) - _METRIC_LINES
        table += f"\n({more} more metric change{'s' if more != 1 else ''}: every one is in a report, --aitune-report run.html)"
    for why, checks in list(unjudged.items())[:_WHY_LINES]:
        shown = ", ".join(checks[:3]) + (f" and {len(checks) - 3} more" if len(checks) > 3 else "")
        table += f"\n{shown}: {why[0].upper()}{why[1:]}."
    if len(unjudged) > _WHY_LINES:
        more = len(unjudged) - _WHY_LINES
        table += f"\n({more} more reason{'s' if more != 1 else ''}: every one is in a report, --aitune-report run.html)"
    return table


#: Distinct "not judged" reasons printed under the table; the reports carry them all.
_WHY_LINES = 3
#: Metric changes (build time, memory, ...) printed under the table; the reports carry them all.
_METRIC_LINES = 10
