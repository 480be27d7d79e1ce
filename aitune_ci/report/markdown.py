"""What GitHub shows for a run: the PR comment and step summary, as markdown.

The comment leads with the verdict, then a table of what changed (regressions and failures first,
then improvements and new checks), with unchanged checks folded in ``<details>``. It always fits
GitHub's 65,536-character limit: rows are dropped from the end (unchanged first) with a note that
points at the full report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aitune_ci.formatting import fmt_ms, fmt_pct
from aitune_ci.report.view import BackendRow, RunView, judged_against
from aitune_ci.status import NO_CHECKS, VerdictKind, VerdictMode, presentation
from aitune_ci.store.baseline import update_command
from aitune_ci.verdict import ACCURACY, LATENCY, NOW_FAILING, Verdict

__all__ = ["DEFAULT_MARKER", "MAX_COMMENT_CHARS", "render_markdown"]

#: Hidden marker that lets the comment client find the report comment again.
DEFAULT_MARKER = "<!-- aitune-ci:report -->"
#: GitHub refuses a comment body longer than this.
MAX_COMMENT_CHARS = 65536

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
    kind = v.kind
    parts: list[str] = []
    if kind is VerdictKind.REGRESSED:
        if LATENCY in v.reasons:
            text = f"slower beyond threshold {fmt_pct(v.threshold)[1:]}"
            text += f", q={_pvalue(v.q_value)}" if v.q_value is not None else ""
            text += f" [{judged_against(v)}]" if v.paired or v.mode is VerdictMode.RELATIVE else ""
            if v.confirmations:
                text += f", confirmed {v.confirmations}×"
            parts.append(text)
        if ACCURACY in v.reasons or NOW_FAILING in v.reasons:
            parts.extend(n for n in v.notes if "SQNR" in n or n.startswith("fails"))
    elif kind is VerdictKind.IMPROVED:
        parts.append(f"faster beyond threshold {fmt_pct(v.threshold)[1:]}")
    elif kind is VerdictKind.PASS:
        if v.mde is not None:
            parts.append(f"within noise; smallest detectable slowdown {fmt_pct(v.mde)[1:]}")
    else:  # FAILED, SKIPPED, NEW: the first note says why
        parts.extend(v.notes[:1])
    if v.quarantined and kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        parts.append("quarantined")
    if v.acknowledged:
        parts.append(f"acknowledged: {v.acknowledged}")
    return "; ".join(parts)


def _row(row: BackendRow) -> str:
    v = row.verdict
    label = f"{row.look.icon} {row.kind}"
    if v is not None and v.reasons:
        label += f" ({', '.join(v.reasons)})"
    check = f"`{_cell(row.fixture, 80)}[{_cell(row.backend, 60)}]`"
    now = v.current_median_ms if v is not None and v.current_median_ms is not None else row.median_ms
    return f"| {check} | {label} | {fmt_ms(row.baseline_ms)} | {fmt_ms(now)} | {_delta(v)} | {_cell(_note(row))} |"


def _headline(view: RunView, title: str) -> str:
    """``## 🔴 aitune-ci: 2 regressions``: the run's outcome, counted when it fails."""
    overall, look = view.overall, view.overall_look
    if overall not in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        return f"## {look.icon} {title}: {look.headline}"
    regressed, failed = (view.counts[presentation(k).count_label] for k in (VerdictKind.REGRESSED, VerdictKind.FAILED))
    n_bad = regressed + failed
    what = f"{n_bad} {'regression' if failed == 0 else 'regression or failure'}"
    what += "s" if n_bad != 1 else ""
    return f"## {look.icon} {title}: {what}"


def _summary_line(view: RunView, report_url: str | None) -> str:
    """``**7 passed, 1 improved** · run started … · [full HTML report](…)``."""
    count_text = ", ".join(f"{n} {label}" for n, label, _ in view.count_badges()) or NO_CHECKS.count_label
    summary = f"**{count_text}**"
    if view.started is not None:
        summary += f" · run started {view.started.strftime('%Y-%m-%d %H:%M UTC')}"
    if report_url:
        summary += f" · [full HTML report]({report_url})"
    return summary


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
    fixtures = sorted({v.fixture for v in view.verdicts if v.fails and v.kind is VerdictKind.REGRESSED})
    if not fixtures:
        return []
    commands = "\n".join(update_command(f) for f in fixtures)
    return [
        "If a regression is expected, accept it by updating the baseline (or acknowledge it in "
        f"`[tool.aitune.acknowledged]` of pyproject.toml):\n\n```\n{commands}\n```"
    ]


def _checked_rows(view: RunView) -> tuple[list[BackendRow], list[BackendRow]]:
    """The checked rows, most severe first: those whose kind counts as a change, and the unchanged rest."""
    rows = sorted(
        (r for r in view.rows if r.verdict is not None), key=lambda r: (r.look.severity, r.fixture, r.backend)
    )
    return [r for r in rows if r.look.changed], [r for r in rows if not r.look.changed]


def _unchanged_summary(rows: Sequence[BackendRow]) -> str:
    """``13 unchanged (7 passed, 6 skipped)``."""
    counts: dict[VerdictKind | str, int] = {}
    for r in rows:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    return f"{len(rows)} unchanged (" + ", ".join(f"{n} {presentation(k).count_label}" for k, n in counts.items()) + ")"


@dataclass(frozen=True)
class _Comment:
    """The parts of a comment; ``text(keep)`` lays it out with the first ``keep`` check rows."""

    head: Sequence[str]
    changed: Sequence[str]
    unchanged: Sequence[str]
    unchanged_summary: str
    tail: Sequence[str]
    report_url: str | None
    max_chars: int

    def text(self, keep: int) -> str:
        """The comment keeping the first ``keep`` rows (changed first, then unchanged), with a note on the rest."""
        changed = self.changed[:keep]
        unchanged = self.unchanged[: max(0, keep - len(self.changed))]
        omitted = len(self.changed) + len(self.unchanged) - len(changed) - len(unchanged)
        parts = list(self.head)
        if changed:
            parts.append("### What changed\n\n" + _HEADER + "\n" + "\n".join(changed))
        elif self.unchanged:
            parts.append("Nothing changed beyond the noise.")
        if unchanged:
            parts.append(
                f"<details><summary>{self.unchanged_summary}</summary>\n\n"
                + _HEADER
                + "\n"
                + "\n".join(unchanged)
                + "\n\n</details>"
            )
        if omitted:
            where = f"the [full report]({self.report_url})" if self.report_url else "the HTML report artifact"
            parts.append(
                f"_… {omitted:,} more check{'s' if omitted != 1 else ''} not shown: this comment is limited to "
                f"{self.max_chars:,} characters. See {where}._"
            )
        parts.extend(self.tail)
        return "\n\n".join(p for p in parts if p) + "\n"

    def fitted(self) -> str:
        """Every row when that fits ``max_chars``; else the most rows that fit, least severe dropped first."""
        total = len(self.changed) + len(self.unchanged)
        text = self.text(total)
        if len(text) <= self.max_chars:
            return text
        low, high = 0, total - 1  # the largest keep that fits (binary search: length grows with keep)
        while low < high:
            mid = (low + high + 1) // 2
            if len(self.text(mid)) <= self.max_chars:
                low = mid
            else:
                high = mid - 1
        text = self.text(low)
        if len(text) > self.max_chars:  # even the bare header is too long (huge environment text)
            note = "\n\n_… truncated to fit GitHub's comment limit; see the HTML report._\n"
            text = text[: max(0, self.max_chars - len(note))] + note
        return text


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
    changed, unchanged = _checked_rows(view)
    return _Comment(
        head=[marker, _headline(view, title), _summary_line(view, report_url), _env_line(view), *_mismatch_lines(view)],
        changed=[_row(r) for r in changed],
        unchanged=[_row(r) for r in unchanged],
        unchanged_summary=_unchanged_summary(unchanged),
        tail=[_winners_line(view), *_fix_lines(view)],
        report_url=report_url,
        max_chars=max_chars,
    ).fitted()
