"""The HTML report: one self-contained file (inline CSS, JS and SVG charts; nothing fetched), readable
on a phone and in dark mode, with sortable tables.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aitune_ci.caught_warnings import by_package, warnings_from_json
from aitune_ci.formatting import fmt_ms, fmt_pct
from aitune_ci.report import charts
from aitune_ci.report.trends import mark_change_points
from aitune_ci.report.view import BackendRow, FixtureView, RunView, judged_against
from aitune_ci.result import MIXED
from aitune_ci.status import BackendStatus
from aitune_ci.store.history import environment_changes

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["render_html"]

_TEMPLATES = Path(__file__).with_name("templates")


@lru_cache(maxsize=1)
def _environment() -> Any:
    import jinja2  # lazy: the [report] extra's jinja2 loads only when a page is rendered

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["ms"] = fmt_ms
    env.filters["pct"] = fmt_pct
    return env


def _num(x: float | None) -> str:
    """A sort key for ``data-v`` (empty when unknown, so it sorts after numbers)."""
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _bytes(n: int | None) -> str:
    if not n:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "-"  # pragma: no cover


def _si(x: float) -> str:
    """``73k``-style short number for compact lists."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _sqnr(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return "∞" if math.isinf(x) and x > 0 else f"{x:.1f}"


def _accuracy(row: BackendRow) -> dict[str, Any]:
    acc = row.result.accuracy if row.result is not None else None
    if acc is None:
        return {"text": "-", "passed": None, "gate": "", "leaves": [], "sqnr": None}
    worst = acc.worst
    leaves = [
        {
            "path": leaf.path or "output",
            "shape": "×".join(map(str, leaf.shape)) or "scalar",
            "max_abs": f"{leaf.max_abs:.3g}",
            "max_rel": f"{leaf.max_rel:.3g}",
            "cosine": f"{leaf.cosine:.6f}",
            "sqnr": _sqnr(leaf.sqnr_db),
            "rmse_ratio": "-" if leaf.rmse_ratio is None else f"{leaf.rmse_ratio:.3g}",
            "nan_inf": f"{leaf.nan_count}/{leaf.inf_count}",
            "passed": leaf.passed,
            "reason": leaf.reason,
        }
        for leaf in acc.leaves
    ]
    text = (
        f"SQNR {_sqnr(worst.sqnr_db)} dB" if worst is not None else (acc.reason or ("ok" if acc.passed else "failed"))
    )
    if row.task_metrics:
        text += f" · {row.task_metrics}"
    return {
        "text": text,
        "passed": acc.passed,
        "gate": acc.gate,
        "precision": acc.precision,
        "reason": acc.reason,
        "leaves": leaves,
        "sqnr": worst.sqnr_db if worst is not None else None,
    }


def _compared_note(row: BackendRow) -> str:
    """When the verdict compared a pooled re-measurement, say so: it differs from the first measurement."""
    v, m = row.verdict, row.median_ms
    if v is None or v.current_median_ms is None or m is None or m <= 0:
        return ""
    if abs(v.current_median_ms / m - 1) < 0.005:
        return ""
    return f"compared {fmt_ms(v.current_median_ms)}" + (f" (pooled ×{v.confirmations + 1})" if v.confirmations else "")


def _row_context(row: BackendRow, fixture: FixtureView) -> dict[str, Any]:
    r, v = row.result, row.verdict
    lat = r.latency if r is not None else None
    ci = row.ci_ms
    tp = row.throughput
    best_tp = max(tp.values()) if tp else None
    # one call's allocator peak (gated) where recorded; else the warm-up probe of older results
    memory = r.peak_memory_bytes if r is not None and r.peak_memory_bytes is not None else None
    if memory is None and lat is not None:
        memory = lat.peak_memory_bytes
    return {
        "backend": row.backend,
        "winner": row.backend == fixture.winner,
        "kind": row.kind,
        "css": row.look.css,
        "reasons": (", ".join(v.reasons) + (" · warn-only: would fail" if v.would_fail else ""))
        if v is not None
        else "",
        "metrics": "; ".join(m.text() for m in v.metrics) if v is not None else "",
        "status": r.status if r is not None else "-",
        "error_css": "sub" if r is not None and r.status == BackendStatus.UNAVAILABLE else "err",
        "precision": r.precision if r is not None else "",
        "description": r.description if r is not None else "",
        "median": row.median_ms,
        "ci": f"{fmt_ms(ci[0])} – {fmt_ms(ci[1])}" if ci else "-",
        "baseline": row.baseline_ms,
        "delta": row.delta,
        "delta_ci": f"{fmt_pct(v.delta_ci[0])} … {fmt_pct(v.delta_ci[1])}" if v is not None and v.delta_ci else "-",
        "q": f"{v.q_value:.2g}" if v is not None and v.q_value is not None else "-",
        "compared_note": _compared_note(row),
        "pq": (
            f"{v.p_value:.2g} / {v.q_value:.2g}"
            if v is not None and v.p_value is not None and v.q_value is not None
            else "-"
        ),
        "p_sort": _num(v.q_value if v is not None else None),
        "threshold": fmt_pct(v.threshold)[1:] if v is not None and v.threshold is not None else "-",
        "mde": fmt_pct(v.mde)[1:] if v is not None and v.mde is not None else "-",
        "against": judged_against(v) if v is not None else "",
        "speedup": row.speedup,
        "throughput": tp,
        "best_throughput": max(tp.items(), key=lambda kv: kv[1]) if tp else None,
        "throughput_compact": " · ".join(f"{_si(t)}@{b}" for b, t in tp.items()),
        "throughput_sort": _num(best_tp),
        "build": r.build_s if r is not None else None,
        "memory": _bytes(memory),
        "memory_sort": _num(float(memory) if memory else None),
        "accuracy": _accuracy(row),
        "error": row.error,
        "message": v.message if v is not None else "",
        "selection_note": r.selection_note if r is not None else "",
        "p90": lat.p90_ms if lat is not None else None,
        "rounds": lat.rounds if lat is not None else None,
        "iterations": lat.iterations if lat is not None else None,
        "cv": lat.cv if lat is not None else None,
        "num": _num,
    }


def _trend(history: pd.DataFrame | None, fixture: str, salt: str) -> str | None:
    if history is None or history.empty:
        return None
    rows = history[(history["fixture"] == fixture) & (history["module"] == "") & history["median_ms"].notna()]
    if rows.empty:
        return None
    if "change_point" not in rows.columns:
        rows = mark_change_points(rows)
    series = {}
    for label, group in _series(rows):
        series[label] = {
            "date": [d.to_pydatetime() for d in group["date"]],
            "median_ms": group["median_ms"].tolist(),
            "ci_low_ms": group["ci_low_ms"].fillna(group["median_ms"]).tolist(),
            "ci_high_ms": group["ci_high_ms"].fillna(group["median_ms"]).tolist(),
            "change_point": group["change_point"].tolist(),
        }
    nights = rows["date"].nunique()
    return charts.trend_chart(series, f"{fixture}: median latency over {nights} runs", salt)


def _series(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One date-ordered series per hardware and backend, labelled by the backend (and the hardware,
    when the history holds more than one: a CPU run and a GPU run are not one series)."""
    several = rows["hardware_key"].nunique(dropna=False) > 1
    out = []
    for (hardware, backend), group in rows.sort_values("date").groupby(
        ["hardware_key", "backend"], sort=True, dropna=False
    ):
        out.append((f"{backend} on {hardware}" if several else str(backend), group))
    return out


def _change_point_notes(history: pd.DataFrame | None, fixture: str) -> list[str]:
    """One line per level shift, naming an environment change (torch, driver, CPU...) at or next to it."""
    if history is None or history.empty or "change_point" not in history.columns:
        return []
    notes = []
    rows = history[(history["fixture"] == fixture) & (history["module"] == "")]
    for backend, group in _series(rows):
        values, dates = group["median_ms"].tolist(), group["date"].tolist()
        envs = group["environment"].tolist() if "environment" in group.columns else [None] * len(values)
        for i, (is_cp, date) in enumerate(zip(group["change_point"].tolist(), dates, strict=True)):
            if is_cp and i > 0:
                before = [x for x in values[max(0, i - 5) : i] if x == x]
                after = [x for x in values[i : i + 5] if x == x]
                if before and after:
                    b, a = sorted(before)[len(before) // 2], sorted(after)[len(after) // 2]
                    note = f"{backend}: level shift {fmt_pct(a / b - 1)} from {date:%Y-%m-%d %H:%M} ({fmt_ms(b)} → {fmt_ms(a)} ms)"
                    notes.append(note + _environment_note(envs, dates, i))
    return notes


def _environment_note(envs: list[Any], dates: list[Any], i: int) -> str:
    """``; the environment changed then: torch 2.11 → 2.12`` for a shift at run ``i``, or ``""``.

    The detector can place a shift one run early or late, so the runs beside it are looked at too.
    """
    for j in (i, i - 1, i + 1):
        changed = environment_changes(envs[j - 1], envs[j]) if 0 < j < len(envs) else {}
        if changed:
            what = ", ".join(f"{k} {old} → {new}" for k, (old, new) in sorted(changed.items()))
            return f"; the environment changed {'then' if j == i else f'on {dates[j]:%Y-%m-%d %H:%M}'}: {what}"
    return ""


def _fixture_context(f: FixtureView, index: int, history: pd.DataFrame | None) -> dict[str, Any]:
    rows = [_row_context(r, f) for r in f.rows]
    chart_rows = [
        {
            "backend": r.backend + (" ★" if r.backend == f.winner else ""),
            "median_ms": r.median_ms,
            "ci_low_ms": r.ci_ms[0] if r.ci_ms else None,
            "ci_high_ms": r.ci_ms[1] if r.ci_ms else None,
            "baseline_ms": r.baseline_ms,
            "kind": r.kind,
        }
        for r in f.rows
    ]
    latency_svg = charts.latency_chart(chart_rows, f"{f.name}: latency per backend", f"lat{index}")
    sweeps = {r.backend: r.throughput for r in f.rows if r.throughput}
    throughput_svg = (
        charts.throughput_chart(sweeps, f"{f.name}: throughput by batch size", f"tp{index}")
        if any(len(s) > 1 for s in sweeps.values())
        else None
    )
    batch_sizes = sorted({b for s in sweeps.values() for b in s})
    result = f.result
    modules = []
    if result is not None and f.module_rows:
        for m in dict.fromkeys(r.module for r in f.module_rows):
            modules.append(
                {
                    "module": m,
                    "choice": result.module_choice.get(m),
                    "rows": [_row_context(r, f) for r in f.module_rows if r.module == m],
                }
            )
    return {
        "name": f.name,
        "anchor": f"fixture-{index}",
        "winner": f.winner,
        "winner_reason": result.winner_reason if result is not None else "",
        "strategy": result.strategy if result is not None else "-",
        "device": result.device if result is not None else "-",
        "tune_s": result.tune_s if result is not None else None,
        "batch_axis": result.batch_axis if result is not None else None,
        "created_at": result.created_at if result is not None else "",
        "model": (result.spec.get("model_class") if result is not None else None) or "",
        "kinds": f.kind_badges(),
        "rows": rows,
        "show_memory": any(r["memory"] != "-" for r in rows),
        "modules": modules,
        "latency_svg": latency_svg,
        "throughput_svg": throughput_svg,
        "batch_sizes": batch_sizes,
        "trend_svg": _trend(history, f.name, f"trend{index}"),
        "change_points": _change_point_notes(history, f.name),
    }


def render_html(
    run: Mapping[str, Any],
    *,
    history: pd.DataFrame | None = None,
    title: str = "aitune-ci report",
    report_url: str | None = None,
    baseline_environment: Mapping[str, Any] | None = None,
    commit: str | None = None,
) -> str:
    """The run as one self-contained HTML page.

    Args:
        run: a run JSON (``AituneSession.run_json()`` or ``merge_runs``' output).
        history: ``read_history``'s frame (optionally with ``change_point`` from ``mark_change_points``)
            for the trend charts; None leaves them out.
        title: page title.
        report_url: where this report is published (shown as a link).
        baseline_environment: the committed baselines' environment, shown beside this run's.
        commit: the commit measured, shown in the header.
    """
    view = RunView.from_run(run, baseline_environment=baseline_environment)
    if history is not None and not history.empty and "change_point" not in history.columns:
        history = mark_change_points(history)
    fixtures = [_fixture_context(f, i, history) for i, f in enumerate(view.fixtures)]
    compared = any(v.baseline_median_ms is not None for v in view.verdicts)
    winners = []
    for f in view.fixtures:
        row = f.winner_row
        winners.append(
            {
                "fixture": f.name,
                "anchor": next(x["anchor"] for x in fixtures if x["name"] == f.name),
                "winner": f.winner,
                "reason": f.result.winner_reason if f.result is not None else "",
                "speedup": row.speedup if row is not None else None,
                "median": row.median_ms if row is not None else None,
                # the parts' choices only when their mixture won: a whole-model winner runs no mixture
                "modules": dict(f.result.module_choice) if f.result is not None and f.winner == MIXED else {},
            }
        )
    baseline_env = []
    if baseline_environment:
        keys = [k for k, _ in view.hardware() + view.software()]
        baseline_env = [(k, baseline_environment.get(k), view.environment.get(k)) for k in keys]
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            title=title,
            view=view,
            overall=view.overall,
            overall_css=view.overall_look.css,
            count_badges=view.count_badges(),
            total=len(view.verdicts),
            started=view.started.strftime("%Y-%m-%d %H:%M UTC") if view.started else None,
            commit=commit,
            report_url=report_url,
            hardware=view.hardware(),
            software=view.software(),
            mismatch=[(k, old, new) for k, (old, new) in view.env_mismatch.items()],
            spread=[(k, ", ".join(map(str, vals))) for k, vals in view.environment_spread.items()],
            compared=compared,
            baseline_env=baseline_env,
            fixtures=fixtures,
            winners=winners,
            wins_by_backend=view.winners(),
            has_history=history is not None and not history.empty,
            **_warnings_context(run),
        )
    )


def _warnings_context(run: Mapping[str, Any]) -> dict[str, Any]:
    """The warnings caught while tuning, for a collapsed section at the page's end."""

    caught = warnings_from_json(run.get("warnings"))
    total = sum(w.count for w in caught)
    summary = f"{total:,} warning{'' if total == 1 else 's'} raised while tuning: {by_package(caught)}"
    return {"warnings": caught, "warnings_summary": summary}
