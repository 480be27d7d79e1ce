"""What GitHub shows for a run: the PR comment and step summary, as markdown.

The comment leads with the verdict, then a table of what changed (regressions and failures first,
then improvements and new checks), with unchanged checks folded in ``<details>``. It always fits
GitHub's 65,536-character limit: rows are dropped from the end (unchanged first) with a note that
points at the full report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aitune_ci.report.view import BackendRow, RunView, fmt_ms, fmt_pct
from aitune_ci.store.baseline import update_command
from aitune_ci.verdict import ACCURACY, LATENCY, NOW_FAILING, Verdict

__all__ = ["DEFAULT_MARKER", "MAX_COMMENT_CHARS", "render_markdown"]

#: Hidden marker that lets the comment client find the report comment again.
DEFAULT_MARKER = "<!-- aitune-ci:report -->"
#: GitHub refuses a comment body longer than this.
MAX_COMMENT_CHARS = 65536

_ICONS = {"REGRESSED": "🔴", "FAILED": "❌", "IMPROVED": "🟢", "NEW": "🆕", "PASS": "✅", "SKIPPED": "⏭️", "NONE": "⚪"}
_HEADLINES = {
    "REGRESSED": "regression",
    "FAILED": "failing backend",
    "IMPROVED": "faster, nothing regressed",
    "NEW": "new checks, nothing regressed",
    "PASS": "no regressions",
    "SKIPPED": "every check skipped",
    "NONE": "no checks ran",
}
_CHANGED = ("REGRESSED", "FAILED", "IMPROVED", "NEW")
_CELL_MAX = 160
_HEADER = "| check | verdict | baseline ms | now ms | Δ (95% CI) | note |\n|---|---|--:|--:|---|---|"


def _cell(text: str, limit: int = _CELL_MAX) -> str:
    """One table cell: a single line, pipes escaped, at most ``limit`` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace("|", "\\|")


def _delta(v: Verdict | None) -> str:
    if v is None or v.delta is None:
        return "-"
    text = fmt_pct(v.delta)
    if v.delta_ci is not None:
        text += f" ({fmt_pct(v.delta_ci[0])} … {fmt_pct(v.delta_ci[1])})"
    return text


def _pvalue(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2g}"


def _note(row: BackendRow) -> str:
    """The one-line reason shown next to a check."""
    v = row.verdict
    if v is None:
        return row.error
    kind = row.kind
    parts: list[str] = []
    if kind == "REGRESSED":
        if LATENCY in v.reasons:
            text = f"slower beyond threshold {fmt_pct(v.threshold)[1:]}"
            text += f", q={_pvalue(v.q_value)}" if v.q_value is not None else ""
            text += " [paired A/B]" if v.paired else ""
            if v.confirmations:
                text += f", confirmed {v.confirmations}×"
            parts.append(text)
        if ACCURACY in v.reasons or NOW_FAILING in v.reasons:
            parts.extend(n for n in v.notes if "SQNR" in n or n.startswith("fails"))
    elif kind == "IMPROVED":
        parts.append(f"faster beyond threshold {fmt_pct(v.threshold)[1:]}")
    elif kind in ("FAILED", "SKIPPED", "NEW"):
        parts.extend(v.notes[:1])
    elif kind == "PASS" and v.mde is not None:
        parts.append(f"within noise; smallest detectable slowdown {fmt_pct(v.mde)[1:]}")
    if v.quarantined and kind in ("REGRESSED", "FAILED"):
        parts.append("quarantined")
    if v.acknowledged:
        parts.append(f"acknowledged: {v.acknowledged}")
    return "; ".join(parts)


def _row(row: BackendRow) -> str:
    v = row.verdict
    kind = row.kind
    label = f"{_ICONS.get(kind, '')} {kind}"
    if v is not None and v.reasons:
        label += f" ({', '.join(v.reasons)})"
    check = f"`{_cell(row.fixture, 80)}[{_cell(row.backend, 60)}]`"
    now = v.current_median_ms if v is not None and v.current_median_ms is not None else row.median_ms
    return f"| {check} | {label} | {fmt_ms(row.baseline_ms)} | {fmt_ms(now)} | {_delta(v)} | {_cell(_note(row))} |"


def _env_line(view: RunView) -> str:
    env = view.environment
    if not env:
        return ""
    parts = [f"`{env.get('hardware_key', '?')}`"]
    if env.get("gpu"):
        parts.append(str(env["gpu"]))
    for key, label in (("torch", "torch"), ("cuda", "CUDA"), ("driver", "driver"), ("python", "Python")):
        if env.get(key):
            parts.append(f"{label} {env[key]}")
    return "**Environment:** " + " · ".join(parts)


def _mismatch_lines(view: RunView) -> list[str]:
    lines = []
    if view.env_mismatch:
        diffs = ", ".join(f"{k} `{old}` → `{new}`" for k, (old, new) in view.env_mismatch.items())
        lines.append(
            f"> [!WARNING]\n> The environment differs from the baseline ({_cell(diffs, 600)}): "
            "a latency change may come from the environment, not from the code."
        )
    if view.environment_spread:
        spread = ", ".join(f"{k}: {', '.join(map(str, vals))}" for k, vals in view.environment_spread.items())
        lines.append(f"> [!NOTE]\n> This run's fixtures ran in different environments ({_cell(spread, 600)}).")
    return lines


def _winners_line(view: RunView) -> str:
    parts = []
    for f in view.fixtures:
        if not f.winner:
            continue
        text = f"`{_cell(f.name, 80)}` → **{_cell(f.winner, 60)}**"
        row = f.winner_row
        if row is not None and row.speedup is not None and f.winner != "eager":
            text += f" ({row.speedup:.2f}× eager)"
        if f.result is not None and f.result.module_choice:
            text += " (mixed: " + ", ".join(f"{m}={b}" for m, b in f.result.module_choice.items()) + ")"
        parts.append(text)
    return ("**Winners:** " + " · ".join(parts)) if parts else ""


def _fix_lines(view: RunView) -> list[str]:
    fixtures = sorted({v.fixture for v in view.verdicts if v.fails and v.kind == "REGRESSED"})
    if not fixtures:
        return []
    commands = "\n".join(update_command(f) for f in fixtures)
    return [
        "If a regression is expected, accept it by updating the baseline (or acknowledge it in "
        f"`[tool.aitune.acknowledged]` of pyproject.toml):\n\n```\n{commands}\n```"
    ]


def _assemble(
    head: Sequence[str],
    changed: Sequence[str],
    unchanged: Sequence[str],
    unchanged_summary: str,
    tail: Sequence[str],
    omitted: int,
    total_unchanged: int,
    report_url: str | None,
    max_chars: int,
) -> str:
    parts = list(head)
    if changed:
        parts.append("### What changed\n\n" + _HEADER + "\n" + "\n".join(changed))
    elif total_unchanged:
        parts.append("Nothing changed beyond the noise.")
    if unchanged:
        parts.append(
            f"<details><summary>{unchanged_summary}</summary>\n\n"
            + _HEADER
            + "\n"
            + "\n".join(unchanged)
            + "\n\n</details>"
        )
    if omitted:
        where = f"the [full report]({report_url})" if report_url else "the HTML report artifact"
        parts.append(
            f"_… {omitted:,} more check{'s' if omitted != 1 else ''} not shown: this comment is limited to "
            f"{max_chars:,} characters. See {where}._"
        )
    parts.extend(tail)
    return "\n\n".join(p for p in parts if p) + "\n"


def render_markdown(
    run: Mapping[str, Any],
    *,
    report_url: str | None = None,
    max_chars: int = MAX_COMMENT_CHARS,
    marker: str = DEFAULT_MARKER,
    title: str = "aitune-ci",
) -> str:
    """The PR comment and step summary of a run, at most ``max_chars`` characters.

    Args:
        run: a run JSON (``AituneSession.run_json()`` or ``merge_runs``' output).
        report_url: link to the HTML report (e.g. the workflow run's artifact), shown when given.
        max_chars: the limit; rows are dropped (unchanged first, then the least severe changes)
            with a note saying how many, until the text fits.
        marker: hidden marker that lets ``upsert_comment`` find this comment again.
        title: shown in the headline.
    """
    view = RunView.from_run(run)
    overall = view.overall
    counts = view.counts
    n_bad = counts["regressed"] + counts["failed"]
    if overall in ("REGRESSED", "FAILED"):
        what = f"{n_bad} {'regression' if counts['failed'] == 0 else 'regression or failure'}"
        what += "s" if n_bad != 1 else ""
        headline = f"## {_ICONS[overall]} {title}: {what}"
    else:
        headline = f"## {_ICONS.get(overall, '')} {title}: {_HEADLINES.get(overall, overall.lower())}"
    count_text = ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no checks"
    summary = f"**{count_text}**"
    if view.started is not None:
        summary += f" · run started {view.started.strftime('%Y-%m-%d %H:%M UTC')}"
    if report_url:
        summary += f" · [full HTML report]({report_url})"
    head = [marker, headline, summary, _env_line(view), *_mismatch_lines(view)]

    rows = view.rows
    rank = {k: i for i, k in enumerate(_CHANGED)}
    changed_rows = sorted(
        (r for r in rows if r.verdict is not None and r.kind in _CHANGED),
        key=lambda r: (rank[r.kind], r.fixture, r.backend),
    )
    unchanged_rows = sorted(
        (r for r in rows if r.verdict is not None and r.kind not in _CHANGED),
        key=lambda r: (r.kind != "PASS", r.fixture, r.backend),
    )
    changed = [_row(r) for r in changed_rows]
    unchanged = [_row(r) for r in unchanged_rows]
    kinds = {k: sum(1 for r in unchanged_rows if r.kind == k) for k in ("PASS", "SKIPPED")}
    unchanged_summary = (
        f"{len(unchanged)} unchanged ("
        + ", ".join(f"{n} {'passed' if k == 'PASS' else 'skipped'}" for k, n in kinds.items() if n)
        + ")"
    )
    tail = [_winners_line(view), *_fix_lines(view)]

    def build(keep: int) -> str:
        """The comment keeping the first ``keep`` rows (changed first, then unchanged)."""
        kept_changed = changed[:keep]
        kept_unchanged = unchanged[: max(0, keep - len(changed))]
        omitted = len(changed) + len(unchanged) - len(kept_changed) - len(kept_unchanged)
        return _assemble(
            head, kept_changed, kept_unchanged, unchanged_summary, tail, omitted, len(unchanged), report_url, max_chars
        )

    total = len(changed) + len(unchanged)
    text = build(total)
    if len(text) <= max_chars:
        return text
    low, high = 0, total - 1  # the largest keep that fits (binary search: length grows with keep)
    while low < high:
        mid = (low + high + 1) // 2
        if len(build(mid)) <= max_chars:
            low = mid
        else:
            high = mid - 1
    text = build(low)
    if len(text) > max_chars:  # even the bare header is too long (huge environment text)
        note = "\n\n_… truncated to fit GitHub's comment limit; see the HTML report._\n"
        text = text[: max(0, max_chars - len(note))] + note
    return text
