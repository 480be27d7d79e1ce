"""What GitHub shows for a run: the PR comment and step summary, as markdown.

The comment leads with the verdict, then a table of what changed (regressions and failures first,
then improvements and new checks), with unchanged checks folded in ``<details>``. The whole body
fits GitHub's 65,536-character limit: the least severe rows are left out first, long winner and
update-command lists are shortened, and a note counts what is missing and points at the full report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aitune_ci.formatting import fmt_ms, fmt_pct
from aitune_ci.report.view import BackendRow, RunView, judged_against
from aitune_ci.result import MIXED
from aitune_ci.status import NO_CHECKS, VerdictKind, VerdictMode, presentation
from aitune_ci.store.baseline import update_command
from aitune_ci.verdict import ACCURACY, LATENCY, NOW_FAILING, TASK_METRIC, Verdict, summary_counts
from aitune_ci.verdict.text import stopped_backend_fix

__all__ = ["DEFAULT_MARKER", "MAX_COMMENT_CHARS", "render_markdown", "severity_key"]

#: Hidden marker that lets the comment client find the report comment again.
DEFAULT_MARKER = "<!-- aitune-ci:report -->"
#: GitHub refuses a comment body longer than this.
MAX_COMMENT_CHARS = 65536
#: The smallest limit ``render_markdown`` accepts: room for the headline, the counts and a note.
_MIN_CHARS = 1000

_CELL_MAX = 160
_HEADER = "| check | verdict | baseline ms | now ms | Δ (95% CI) | note |\n|---|---|--:|--:|---|---|"


def _cell(text: str, limit: int = _CELL_MAX) -> str:
    """One table cell: a single line, pipes escaped, no raw HTML (a stray tag could leave ``<details>`` open)."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text.replace("|", "\\|").replace("<", "&lt;")


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
        if TASK_METRIC in v.reasons:
            parts.extend(n for n in v.notes if n.startswith("task metric"))
        parts.extend(m.text() for m in v.metrics if m.regressed)
    elif kind is VerdictKind.IMPROVED:
        parts.append(f"faster beyond threshold {fmt_pct(v.threshold)[1:]}")
    elif kind is VerdictKind.PASS:
        if (why := v.latency_note) is not None:
            parts.append(why)
        elif v.mde is not None:
            parts.append(f"within noise; smallest detectable slowdown {fmt_pct(v.mde)[1:]}")
    else:  # FAILED, SKIPPED, NEW: the first note says why
        parts.extend(v.notes[:1])
    if v.quarantined and kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        parts.append("quarantined")
    if v.would_fail:
        parts.append("warn-only: would fail")
    if v.acknowledged:
        parts.append(f"acknowledged: {v.acknowledged}")
    if row.task_metrics and kind in (VerdictKind.PASS, VerdictKind.IMPROVED, VerdictKind.NEW):
        parts.append(row.task_metrics)
    return "; ".join(parts)


def _row(row: BackendRow) -> str:
    v = row.verdict
    label = f"{row.look.icon} {row.kind}"
    if v is not None and v.reasons:
        label += f" ({', '.join(v.reasons)})"
    check = f"`{_cell(row.fixture, 80)}[{_cell(row.backend, 60)}]`"
    now = v.current_median_ms if v is not None and v.current_median_ms is not None else row.median_ms
    shown = "same work" if v is not None and v.identical_to_base else fmt_ms(now)
    return f"| {check} | {label} | {fmt_ms(row.baseline_ms)} | {shown} | {_delta(v)} | {_cell(_note(row))} |"


def _headline(view: RunView, title: str) -> str:
    """``## 🔴 aitune-ci: 2 regressions``: the run's outcome, counted when it fails."""
    overall, look = view.overall, view.overall_look
    if overall not in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        if unjudged := view.latency_unjudged:
            # A pass that could not look found nothing: no green tick over it.
            return (
                f"## ⚠️ {title}: {look.headline}, but latency not judged for {len(unjudged)} of "
                f"{len(view.verdicts)} checks"
            )
        return f"## {look.icon} {title}: {look.headline}"
    regressed, failed = (view.counts[presentation(k).count_label] for k in (VerdictKind.REGRESSED, VerdictKind.FAILED))
    n_bad = regressed + failed
    parts = []
    if n_bad:
        what = f"{n_bad} {'regression' if failed == 0 else 'regression or failure'}"
        parts.append(what + ("s" if n_bad != 1 else ""))
    if view.broken:
        parts.append(f"{len(view.broken)} broken fixture{'s' if len(view.broken) != 1 else ''}")
    if view.missing_shards:
        parts.append(f"{len(view.missing_shards)} missing shard{'s' if len(view.missing_shards) != 1 else ''}")
    what = ", ".join(parts)
    if not view.failing:
        what += " (warn-only: not failing)"
    return f"## {look.icon} {title}: {what}"


def _stopped_working(view: RunView) -> list[Verdict]:
    """Checks failing CI because their backend stopped working (``now-failing``), most severe first."""
    return sorted(
        (v for v in view.verdicts if (v.fails or v.would_fail) and NOW_FAILING in v.reasons), key=severity_key
    )


def _unjudged_note(view: RunView) -> str:
    """`` Latency was not judged for 3 checks, so they found nothing: …`` (the first reason), or ""."""
    unjudged = view.latency_unjudged
    if not unjudged:
        return ""
    why = unjudged[0].latency_unjudged or ""
    return (
        f" Latency was not judged for {len(unjudged)} check{'s' if len(unjudged) != 1 else ''}, so "
        f"{'they' if len(unjudged) != 1 else 'it'} could not find a slowdown: {_cell(why, 300)}"
    )


def _broken_part(view: RunView) -> str:
    """The fixtures that failed before any verdict, each with why (cut to a line): the comment said
    "no regressions" over a run whose fixture could not even be checked. Shards that sent no results
    come first: none of their checks is in the report."""
    shards = ""
    if view.missing_shards:
        which = ", ".join(str(i) for i in view.missing_shards)
        shards = (
            f"### Missing shards: {which}\n\nNo results came from shard{'s' if len(view.missing_shards) != 1 else ''} "
            f"{which} of this split (its job failed, was cancelled, or uploaded nothing): none of its checks is in "
            "this report. Re-run the failed jobs."
        )
    if not view.broken:
        return shards
    lines = [
        f"- `{_cell(name, 80)}`: {_cell(why.splitlines()[0] if why else '', 300)}" for name, why in view.broken[:20]
    ]
    if len(view.broken) > 20:
        lines.append(f"- …and {len(view.broken) - 20} more: see the run's log")
    broken = "### Broken: no verdict for these fixtures\n\n" + "\n".join(lines)
    return "\n\n".join(p for p in (shards, broken) if p)


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
    parts = [f"`{_cell(env.get('hardware_key', '?'), 100)}`"]
    if env.get("gpu"):
        parts.append(_cell(env["gpu"], 100))
    for key, label in (("torch", "torch"), ("cuda", "CUDA"), ("driver", "driver"), ("python", "Python")):
        if env.get(key):
            parts.append(f"{label} {_cell(env[key], 100)}")
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


def severity_key(v: Verdict) -> tuple[Any, ...]:
    """Sort key for checks, most severe first: those that fail CI, then by kind, the largest slowdown first.

    The comment's rows and the annotations use it, so what is cut to fit a limit is the least severe.
    """
    slower = v.delta if v.kind is VerdictKind.REGRESSED and v.delta is not None and math.isfinite(v.delta) else 0.0
    return (not v.fails, presentation(v.kind).severity, -slower, v.fixture, v.backend)


def _winner_items(view: RunView) -> list[str]:
    """One ``fixture → **backend**`` entry per fixture that has a winner."""
    items = []
    for f in view.fixtures:
        if not f.winner:
            continue
        text = f"`{_cell(f.name, 80)}` → **{_cell(f.winner, 60)}**"
        row = f.winner_row
        if row is not None and row.speedup is not None and f.winner != "eager":
            text += f" ({row.speedup:.2f}× eager)"
        if f.result is not None and f.result.module_choice and f.winner == MIXED:
            # the parts' choices are recorded whether or not their mixture won; shown only when it did
            mixed = ", ".join(f"{m}={b}" for m, b in f.result.module_choice.items())
            text += f" (mixed: {_cell(mixed, 300)})"
        if change := view.winner_changes.get(f.name):
            text += f": {_cell(change, 300)}"
        items.append(text)
    return items


def _failing_regressions(view: RunView, relative: bool) -> list[Verdict]:
    """Regressions that fail CI (or would), most severe first, judged in relative mode or not."""
    return sorted(
        (
            v
            for v in view.verdicts
            if (v.fails or v.would_fail)
            and v.kind is VerdictKind.REGRESSED
            and NOW_FAILING not in v.reasons  # a backend that stopped working is fixed, not accepted
            and (v.mode is VerdictMode.RELATIVE) == relative
        ),
        key=severity_key,
    )


def _regressed_fixtures(view: RunView) -> list[str]:
    """Fixtures with a regression against a stored baseline that fails CI, most severe first: the
    ones an update command is shown for (an update accepts those)."""
    return list(dict.fromkeys(v.fixture for v in _failing_regressions(view, relative=False)))


def _regressed_against_the_base(view: RunView) -> list[str]:
    """The ``[tool.aitune.acknowledged]`` entry of each check with a regression against the PR's
    base that fails CI: an update of the baseline does not move the base, so an entry is what
    accepts it. A latency regression's entry is bounded by ``max_slowdown`` (``_max_slowdown``): an
    entry without one accepts every later slowdown of that check, as a new user found with one."""
    entries: dict[str, str] = {}
    for v in _failing_regressions(view, relative=True):
        bound = _max_slowdown(v) if LATENCY in v.reasons else None
        if v.acknowledged:
            # an entry exists and this exceeded it: a second line of the same key would break the TOML
            raise_to = f' to "{bound * 100:.0f}%"' if bound is not None else ""
            entries.setdefault(
                v.check_id, f"# {json.dumps(v.check_id)} is acknowledged already: raise its max_slowdown{raise_to}"
            )
            continue
        value = '"why this change is expected"'
        if bound is not None:
            value = f'{{ reason = "why this change is expected", max_slowdown = "{bound * 100:.0f}%" }}'
        entries.setdefault(v.check_id, f"{json.dumps(v.check_id)} = {value}")
    return list(entries.values())


def _max_slowdown(v: Verdict) -> float | None:
    """The measured slowdown's CI upper bound plus 5 points, rounded up to a multiple of 5%: what this
    change costs, with room for a later run's noise (a bound at the CI's top let a rerun of the same
    change fail on the +0.1% above it), and no more."""
    high = v.delta_ci[1] if v.delta_ci is not None else v.delta
    if high is None or not math.isfinite(high) or high <= 0:
        return None
    return math.ceil(round((high + 0.05) * 20, 6)) / 20


def _fence(text: str) -> str:
    """A code fence longer than any backtick run in ``text``, so the text cannot close it early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _checked_rows(view: RunView) -> tuple[list[BackendRow], list[BackendRow]]:
    """The checked rows, most severe first: those whose kind counts as a change, and the unchanged rest."""
    rows = sorted((r for r in view.rows if r.verdict is not None), key=lambda r: severity_key(r.verdict))  # type: ignore[arg-type]
    return [r for r in rows if r.look.changed], [r for r in rows if not r.look.changed]


def _unchanged_summary(rows: Sequence[BackendRow]) -> str:
    """``13 unchanged (7 passed, 6 skipped)``; rows whose latency was not judged are counted apart
    (``, 2 with latency not judged (2 passed)``): nothing found them unchanged."""
    not_judged = [r.verdict is not None and r.verdict.latency_unjudged is not None for r in rows]
    unjudged = [r for r, no in zip(rows, not_judged, strict=True) if no]
    judged = [r for r, no in zip(rows, not_judged, strict=True) if not no]

    def counted(group: Sequence[BackendRow]) -> str:
        counts: dict[VerdictKind | str, int] = {}
        for r in group:
            counts[r.kind] = counts.get(r.kind, 0) + 1
        return "(" + ", ".join(f"{n} {presentation(k).count_label}" for k, n in counts.items()) + ")"

    parts = [f"{len(judged)} unchanged {counted(judged)}"] if judged else []
    if unjudged:
        parts.append(f"{len(unjudged)} with latency not judged {counted(unjudged)}")
    return ", ".join(parts)


def _most(n: int, fits: Callable[[int], bool]) -> int:
    """The largest ``k`` in ``0..n`` with ``fits(k)`` (binary search: text grows with ``k``); 0 when none fits."""
    if fits(n):
        return n
    low, high = 0, n - 1
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


_ACCEPT = (
    "If a regression is expected, accept it by updating the baseline (or acknowledge it in "
    "`[tool.aitune.acknowledged]` of pyproject.toml):"
)
_ACKNOWLEDGE = (
    "If a regression against the base is expected, acknowledge it in pyproject.toml, saying why (a "
    "baseline update does not change what the base measures). Add the lines to its "
    "`[tool.aitune.acknowledged]` table, or the table if there is none. `max_slowdown` is what was "
    "measured, with room for noise: it bounds what the entry accepts, against whatever base a later check has:"
)


@dataclass(frozen=True)
class _Comment:
    """The parts of a comment; ``text`` lays it out keeping the first rows, winners and update commands.

    Every part is laid out whole (a table, a ``<details>`` block, a code fence) or left out with a
    note that counts what is missing, so a cut never leaves markup open.
    """

    head: Sequence[str]
    short_head: Sequence[str]
    changed: Sequence[tuple[str, Verdict]]
    unchanged: Sequence[tuple[str, Verdict]]
    unchanged_summary: str
    winners: Sequence[str]
    fixes: Sequence[str]
    acknowledgements: Sequence[str]
    stopped: Sequence[Verdict]
    unjudged_note: str
    report_url: str | None
    max_chars: int

    def where(self) -> str:
        if self.report_url and len(self.report_url) <= 2000:
            return f"the [full report]({self.report_url})"
        return "the HTML report artifact of this workflow run"

    def text(self, rows: int, winners: int, fixes: int, *, short: bool = False) -> str:
        """The comment with the first ``rows`` checks (changed first), ``winners`` winners and ``fixes`` commands."""
        changed = self.changed[:rows]
        unchanged = self.unchanged[: max(0, rows - len(self.changed))]
        parts = list(self.short_head if short else self.head)
        if changed:
            parts.append("### What changed\n\n" + _HEADER + "\n" + "\n".join(row for row, _ in changed))
        elif not self.changed and self.unchanged:
            judged = " in the checks that were judged" if self.unjudged_note else ""
            parts.append(f"Nothing changed beyond the noise{judged}.{self.unjudged_note}")
        if unchanged:
            parts.append(
                f"<details><summary>{self.unchanged_summary}</summary>\n\n"
                + _HEADER
                + "\n"
                + "\n".join(row for row, _ in unchanged)
                + "\n\n</details>"
            )
        omitted = [v for _, v in self.changed[len(changed) :]] + [v for _, v in self.unchanged[len(unchanged) :]]
        if omitted:
            parts.append(self._omitted_note(omitted))
        parts.append(self._winners_line(winners))
        parts.extend(self._fix_parts(fixes))
        return "\n\n".join(p for p in parts if p) + "\n"

    def _omitted_note(self, omitted: Sequence[Verdict]) -> str:
        """``_…and 580 more checks not shown (180 regressed, 400 passed): … See the full report._``."""
        kinds = ", ".join(f"{n:,} {label}" for label, n in summary_counts(omitted).items() if n)
        return (
            f"_…and {len(omitted):,} more check{'s' if len(omitted) != 1 else ''} not shown ({kinds}): this comment "
            f"is limited to {self.max_chars:,} characters. The full table is in {self.where()}._"
        )

    def _winners_line(self, keep: int) -> str:
        if not self.winners:
            return ""
        shown, rest = self.winners[:keep], len(self.winners) - min(keep, len(self.winners))
        parts = list(shown)
        if rest:
            parts.append(f"…and {rest:,} more fixture{'s' if rest != 1 else ''}: see {self.where()}")
        return "**Winners:** " + " · ".join(parts)

    def _fix_parts(self, keep: int) -> list[str]:
        return self._stopped_parts(keep) + self._update_parts(keep) + self._acknowledge_parts(keep)

    def _stopped_parts(self, keep: int) -> list[str]:
        """What resolves a backend that stopped working: no acknowledgement or update accepts one."""
        if not self.stopped:
            return []
        shown, rest = self.stopped[:keep], len(self.stopped) - min(keep, len(self.stopped))
        lines = [f"- `{_cell(v.check_id, 140)}`: {_cell(stopped_backend_fix(v), 400)}" for v in shown]
        if rest:
            lines.append(f"- …and {rest:,} more (listed in {self.where()})")
        return [
            "A backend that stopped working (it no longer builds, runs or passes its accuracy gate) is fixed, "
            "not accepted:\n\n" + "\n".join(lines)
        ]

    def _acknowledge_parts(self, keep: int) -> list[str]:
        """A ``[tool.aitune.acknowledged]`` table of the first ``keep`` checks regressed against the base."""
        if not self.acknowledgements:
            return []
        shown, rest = self.acknowledgements[:keep], len(self.acknowledgements) - min(keep, len(self.acknowledgements))
        if not shown:
            return [
                f"{_ACKNOWLEDGE} `[tool.aitune.acknowledged]` takes one entry per check, for the {rest:,} checks "
                f"regressed against the base (listed in {self.where()})."
            ]
        table = "[tool.aitune.acknowledged]\n" + "\n".join(shown)
        fence = _fence(table)
        parts = [f"{_ACKNOWLEDGE}\n\n{fence}toml\n{table}\n{fence}"]
        if rest:
            parts.append(f"_…and {rest:,} more check{'s' if rest != 1 else ''} (listed in {self.where()})._")
        return parts

    def _update_parts(self, keep: int) -> list[str]:
        if not self.fixes:
            return []
        shown, rest = self.fixes[:keep], len(self.fixes) - min(keep, len(self.fixes))
        if not shown:
            return [
                f"{_ACCEPT} `{update_command('NAME[,NAME]')}` for the {rest:,} fixtures with a regression "
                f"(listed in {self.where()})."
            ]
        commands = "\n".join(update_command(f) for f in shown)
        fence = _fence(commands)
        parts = [f"{_ACCEPT}\n\n{fence}\n{commands}\n{fence}"]
        if rest:
            parts.append(
                f"_…and {rest:,} more fixture{'s' if rest != 1 else ''} with a regression (listed in "
                f"{self.where()}); `--aitune-fixtures` takes several names, comma-separated._"
            )
        return parts

    def fitted(self) -> str:
        """Everything when it fits ``max_chars``; else the most severe checks that fit, with what was cut counted.

        The winners and update commands are first capped to an eighth of the limit each, so the
        checks keep most of the room; when not even one check fits, they are dropped, then the
        environment lines. A body that still does not fit (a huge title or marker) raises.
        """
        total, n_winners = len(self.changed) + len(self.unchanged), len(self.winners)
        n_fixes = max(len(self.fixes), len(self.acknowledgements), len(self.stopped))
        text = self.text(total, n_winners, n_fixes)
        if len(text) <= self.max_chars:
            return text
        share = self.max_chars // 8
        winners = _most(n_winners, lambda k: len(self._winners_line(k)) <= share)
        fixes = _most(n_fixes, lambda k: len("\n\n".join(self._fix_parts(k))) <= share)
        stages = ((winners, fixes, False), (0, 0, False), (0, 0, True))
        for i, (w, f, short) in enumerate(stages):
            rows = _most(total, lambda k: len(self.text(k, w, f, short=short)) <= self.max_chars)  # noqa: B023
            text = self.text(rows, w, f, short=short)
            if len(text) <= self.max_chars and (rows > 0 or i == len(stages) - 1):
                return text
        raise ValueError(
            f"the comment does not fit in {self.max_chars:,} characters even without its table "
            f"({len(text):,} characters): shorten the title, the marker or the report URL, or raise max_chars"
        )


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
        max_chars: the limit on the whole body; when it is exceeded, the least severe checks are left
            out (unchanged first, regressions last) with a note counting them by kind, and long
            winner and update-command lists are shortened the same way.
        marker: hidden marker that lets ``upsert_comment`` find this comment again.
        title: shown in the headline.

    Raises:
        ValueError: ``max_chars`` is under 1,000, or the comment cannot fit it even without its table.
    """
    if max_chars < _MIN_CHARS:
        raise ValueError(
            f"max_chars must be at least {_MIN_CHARS:,} (GitHub allows {MAX_COMMENT_CHARS:,}), got {max_chars}"
        )
    view = RunView.from_run(run)
    changed, unchanged = _checked_rows(view)
    headline = _headline(view, _cell(title, 100))
    summary = _summary_line(view, report_url)
    return _Comment(
        head=[
            marker,
            headline,
            summary,
            _broken_part(view),
            _env_line(view),
            *_mismatch_lines(view),
            *(f"⚠️ `{_cell(name, 80)}`: {_cell(note, 600)}" for name, note in view.missing_artifacts.items()),
        ],
        short_head=[marker, headline, summary, _broken_part(view)],
        changed=[(_row(r), r.verdict) for r in changed],  # type: ignore[misc]
        unchanged=[(_row(r), r.verdict) for r in unchanged],  # type: ignore[misc]
        unchanged_summary=_unchanged_summary(unchanged),
        winners=_winner_items(view),
        fixes=_regressed_fixtures(view),
        acknowledgements=_regressed_against_the_base(view),
        stopped=_stopped_working(view),
        unjudged_note=_unjudged_note(view),
        report_url=report_url,
        max_chars=max_chars,
    ).fitted()
