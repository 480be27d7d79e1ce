"""``aitune-ci compare`` for people and tools: terminal text, markdown, self-contained HTML and JSON.

The same conventions as the run report: markdown cells and numbers through ``report.markdown``'s
and ``formatting``'s helpers, and an HTML page that extends ``report.html.j2`` (one stylesheet, one
sort script, no network).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aitune_ci.compare import BackendComparison, Change, Comparison, Drift
from aitune_ci.formatting import fmt_db, fmt_ms, fmt_pct
from aitune_ci.report.markdown import _cell
from aitune_ci.report.terminal import format_table

__all__ = [
    "COMPARISON_SUFFIXES",
    "HOW_TO_READ",
    "comparison_suffix",
    "render_comparison",
    "render_comparison_html",
    "render_comparison_json",
    "render_comparison_markdown",
    "render_comparison_text",
]

#: How to read the three drifts: the markdown's and the page's explanation, and the command's help.
HOW_TO_READ = (
    "Eager drift is eager's median NEW / OLD: the framework or the machine got faster or slower for every "
    "backend alike. It compares two processes, so a process's own speed offset is part of it. "
    "Backend drift is each backend's time relative to eager, NEW over OLD: within one run the backends are "
    "timed in interleaved rounds, so what moved the whole process cancels, and a backend that only followed "
    "eager shows none. Compile-time drift is the build seconds NEW / OLD (one build per side, so no CI). "
    "A change whose 95% CI includes 0 is within noise; one beyond the noise but inside the threshold is "
    "under threshold; only the rest is slower or faster."
)

_CALL_CSS = {Drift.SLOWER: "bad", Drift.FASTER: "good"}
_CALL_ICON = {Drift.SLOWER: "🔴", Drift.FASTER: "🟢"}


# -- shared wording ---------------------------------------------------------------------------


def _pct(change: Change) -> str:
    return fmt_pct(change.delta)


def _ci_text(change: Change) -> str:
    if change.ci is None:
        return ""
    return f"{fmt_pct(change.ci[0] - 1)} … {fmt_pct(change.ci[1] - 1)}"


def _speedup(ratio: float | None) -> str:
    """A backend / eager time ratio as the reports' speed-up (``2.05×`` = twice as fast as eager)."""
    return "-" if ratio is None or ratio <= 0 or not math.isfinite(ratio) else f"{1 / ratio:.3g}×"


def _seconds(x: float | None) -> str:
    return "-" if x is None else f"{x:.3g}"


def _sqnr(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else fmt_db(x)


def _cosine(x: float | None) -> str:
    return "-" if x is None else f"{x:.6f}"


def _arrow(old: str, new: str) -> str:
    return old if old == new else f"{old} → {new}"


def _status(row: BackendComparison) -> tuple[str, str]:
    return (row.old_status or "absent", row.new_status or "absent")


def _headline(c: Comparison) -> tuple[str, str, str]:
    """``(icon, css, words)`` of the comparison's outcome: backend drift first, then losses, then the rest."""
    if c.backend_drifts:
        n = len(c.backend_drifts)
        return "🔴", "bad", f"{n} backend{'s' if n != 1 else ''} slower relative to eager"
    losses = [r for r, e in c.events if e.kind.bad]
    if losses:
        n = len({r.check for r in losses})
        return "🔴", "bad", f"{n} backend{'s' if n != 1 else ''} lost ground (failing, less accurate or gone)"
    if c.eager_drifts or c.build_drifts or c.winner_changes or c.events:
        return "🟡", "new", "no backend drift; the environment moved other things"
    return "✅", "good", "no drift beyond noise and threshold"


def _thresholds(c: Comparison) -> str:
    s = c.settings
    return (
        f"threshold {s.threshold * 100:g}% (compile time {s.build_threshold * 100:g}% and "
        f"{s.min_build_change_s:g} s; SQNR drop {s.sqnr_drop_db:g} dB)"
    )


def _hardware_warning(c: Comparison) -> str | None:
    if not c.hardware_differs:
        return None
    old, new = c.old_environment.get("hardware_key"), c.new_environment.get("hardware_key")
    return (
        f"The runs come from different hardware ({old} in {c.old_label}, {new} in {c.new_label}): every latency "
        "and compile-time ratio includes the hardware change, not only the software's."
    )


def _env_value(x: Any) -> str:
    return "-" if x is None or x == "" else str(x)


# -- terminal ---------------------------------------------------------------------------------


def _call(row: BackendComparison) -> str:
    """The terminal's last column: every call that is not a plain 'nothing changed'."""
    parts = []
    if row.backend == "eager" and not row.module:
        parts.append(f"eager drift {row.latency.drift}")
    elif row.relative is not None and row.relative.drift is not Drift.NOT_COMPARED:
        parts.append(f"backend drift {row.relative.drift}")
    if row.build.drift.moved:
        parts.append(f"compile {row.build.drift}")
    parts.extend(f"{e.kind}: {e.text}" for e in row.events)
    return "; ".join(parts)


def render_comparison_text(c: Comparison) -> str:
    """The terminal table: one row per backend, then winners, notes and the summary line."""
    lines = [f"aitune-ci compare: {c.old_label} → {c.new_label}"]
    if (warning := _hardware_warning(c)) is not None:
        lines.append(f"WARNING: {warning}")
    if c.environment:
        diffs = ", ".join(f"{k} {_env_value(old)} → {_env_value(new)}" for k, old, new in c.environment)
        lines.append(f"environment: {diffs}")
    else:
        lines.append("environment: identical on every recorded hardware and software field")
    headers = [
        "check", "median ms", "Δ (95% CI)", "vs eager", "backend drift (95% CI)", "build s", "SQNR dB", "call",
    ]  # fmt: skip
    rows = []
    for r in c.rows:
        ci = _ci_text(r.latency)
        rel = r.relative
        rows.append(
            [
                r.check,
                _arrow(fmt_ms(r.latency.old), fmt_ms(r.latency.new)),
                _pct(r.latency) + (f" [{ci}]" if ci else ""),
                "-" if rel is None else _arrow(_speedup(rel.old), _speedup(rel.new)),
                "-" if rel is None else _pct(rel) + (f" [{_ci_text(rel)}]" if rel.ci else ""),
                _arrow(_seconds(r.build.old), _seconds(r.build.new)),
                _arrow(_sqnr(r.old_sqnr_db), _sqnr(r.new_sqnr_db)),
                _call(r)[:120],
            ]
        )
    lines += ["", format_table(headers, rows, right=(1, 2, 3, 4, 5, 6)), ""]
    for f in c.winner_changes:
        lines.append(f"winner changed: {f.name}: {f.old_winner or '(none)'} → {f.new_winner or '(none)'}")
    lines += _fixture_lists(c)
    for why, checks in _notes(c).items():
        shown = ", ".join(checks[:3]) + (f" and {len(checks) - 3} more" if len(checks) > 3 else "")
        lines.append(f"{shown}: {why}")
    lines.append(f"{_thresholds(c)}")
    lines.append(f"compare: {c.summary()}")
    return "\n".join(lines) + "\n"


def _fixture_lists(c: Comparison) -> list[str]:
    out = []
    if c.only_old:
        out.append(f"only in {c.old_label} (not compared): {', '.join(c.only_old)}")
    if c.only_new:
        out.append(f"only in {c.new_label} (not compared): {', '.join(c.only_new)}")
    for f in c.fixtures:
        if f.inputs_changed:
            out.append(
                f"{f.name}: the {' and '.join(f.inputs_changed)} differ between the runs, so the model changed too, "
                "not only the environment"
            )
    if c.spread:
        out.append(f"fixtures of one run ran in different environments (first fixture's shown): {', '.join(c.spread)}")
    return out


def _notes(c: Comparison) -> dict[str, list[str]]:
    """Why a ratio was not judged or not compared, with the checks it applies to (each reason once).

    A row whose state changed (now failing, gone...) says so in its own line; its missing latency is no news.
    """
    notes: dict[str, list[str]] = {}
    for r in c.rows:
        for what, change in (("latency", r.latency), ("backend drift", r.relative)):
            if change is None or not change.note or (r.events and change.drift is Drift.NOT_COMPARED):
                continue
            if change.drift in (Drift.NOT_JUDGED, Drift.NOT_COMPARED):
                notes.setdefault(f"{what} {change.drift}: {change.note}", []).append(r.check)
    return notes


# -- markdown ---------------------------------------------------------------------------------


def _md_call(change: Change) -> str:
    icon = _CALL_ICON.get(change.drift)
    return f"{icon} {change.drift}" if icon else str(change.drift)


def _md_table(header: str, rows: Sequence[str]) -> str:
    return header + "\n" + "\n".join(rows)


def _shown(change: Change) -> bool:
    """Whether a row stays unfolded: it moved, or it could not be judged (the reader must know)."""
    return change.drift.moved or change.drift is Drift.NOT_JUDGED


def _md_folded(
    title: str, header: str, rows: Sequence[tuple[bool, str]], nothing: str, quiet: Callable[[int], str]
) -> str:
    """A section: the rows to see in a table, the others folded in ``<details>`` (``quiet(n)`` names them)."""
    moved = [text for is_moved, text in rows if is_moved]
    rest = [text for is_moved, text in rows if not is_moved]
    parts = [f"### {title}"]
    parts.append(_md_table(header, moved) if moved else nothing)
    if rest:
        parts.append(f"<details><summary>{quiet(len(rest))}</summary>\n\n{_md_table(header, rest)}\n\n</details>")
    return "\n\n".join(parts)


def render_comparison_markdown(c: Comparison, *, title: str = "aitune-ci compare") -> str:
    """The comparison as GitHub markdown (a step summary, a PR comment or a file)."""
    icon, _, words = _headline(c)
    parts = [
        f"## {icon} {_cell(title, 200)}: {words}",
        f"**{_cell(c.old_label, 200)} → {_cell(c.new_label, 200)}** · {len(c.fixtures)} fixture"
        f"{'s' if len(c.fixtures) != 1 else ''} compared · {_thresholds(c)}\n\n{c.summary()}",
    ]
    if (warning := _hardware_warning(c)) is not None:
        parts.append(f"> [!WARNING]\n> {_cell(warning, 600)}")
    if c.environment:
        rows = [
            f"| {_cell(k, 60)} | {_cell(_env_value(old))} | {_cell(_env_value(new))} |" for k, old, new in c.environment
        ]
        parts.append(
            "### Environment differences\n\n"
            + _md_table(f"| field | {_cell(c.old_label, 80)} | {_cell(c.new_label, 80)} |\n|---|---|---|", rows)
        )
    else:
        parts.append("### Environment differences\n\nIdentical on every recorded hardware and software field.")

    header = "| fixture | old ms | new ms | Δ (95% CI) | call | note |\n|---|--:|--:|---|---|---|"
    rows_ = [
        (
            _shown(f.eager),
            f"| `{_cell(f.name, 80)}` | {fmt_ms(f.eager.old)} | {fmt_ms(f.eager.new)} | {_pct(f.eager)}"
            f"{f' ({_ci_text(f.eager)})' if f.eager.ci else ''} | {_md_call(f.eager)} | {_cell(f.eager.note)} |",
        )
        for f in c.fixtures
    ]
    parts.append(
        _md_folded(
            "Eager drift (the framework, every backend alike)",
            header,
            rows_,
            "No eager drift beyond noise and threshold.",
            lambda n: f"{n} fixture{'s' if n != 1 else ''} within noise or threshold",
        )
    )

    header = "| check | old vs eager | new vs eager | drift (95% CI) | call | note |\n|---|--:|--:|---|---|---|"
    rows_ = [
        (
            _shown(r.relative),
            f"| `{_cell(r.check, 120)}` | {_speedup(r.relative.old)} | {_speedup(r.relative.new)} | {_pct(r.relative)}"
            f"{f' ({_ci_text(r.relative)})' if r.relative.ci else ''} | {_md_call(r.relative)} | {_cell(r.relative.note)} |",
        )
        for r in c.rows
        if r.relative is not None
    ]
    parts.append(
        _md_folded(
            "Backend drift (relative to eager)",
            header,
            rows_,
            "No backend drifted relative to eager beyond noise and threshold.",
            lambda n: f"{n} backend{'s' if n != 1 else ''} within noise or threshold",
        )
    )

    header = "| check | old s | new s | Δ | call | note |\n|---|--:|--:|--:|---|---|"
    rows_ = [
        (
            r.build.drift.moved,
            f"| `{_cell(r.check, 120)}` | {_seconds(r.build.old)} | {_seconds(r.build.new)} | {_pct(r.build)} | "
            f"{_md_call(r.build)} | {_cell(r.build.note)} |",
        )
        for r in c.rows
    ]
    parts.append(
        _md_folded(
            "Compile-time drift",
            header,
            rows_,
            "No compile-time drift beyond the threshold.",
            lambda n: f"{n} backend{'s' if n != 1 else ''} without compile-time drift",
        )
    )

    header = "| check | status | SQNR dB | cosine | change |\n|---|---|--:|--:|---|"
    rows_ = [
        (
            bool(r.events),
            f"| `{_cell(r.check, 120)}` | {_arrow(*_status(r))} | {_arrow(_sqnr(r.old_sqnr_db), _sqnr(r.new_sqnr_db))} | "
            f"{_arrow(_cosine(r.old_cosine), _cosine(r.new_cosine))} | "
            f"{_cell('; '.join(f'{e.kind}: {e.text}' for e in r.events))} |",
        )
        for r in c.rows
    ]
    parts.append(
        _md_folded(
            "Accuracy and availability",
            header,
            rows_,
            f"No backend changed state, and no SQNR dropped by more than {c.settings.sqnr_drop_db:g} dB.",
            lambda n: f"{n} backend{'s' if n != 1 else ''} unchanged",
        )
    )

    if c.winner_changes:
        rows = [
            f"| `{_cell(f.name, 80)}` | {_cell(f.old_winner or '(none)', 60)} | {_cell(f.new_winner or '(none)', 60)} |"
            for f in c.winner_changes
        ]
        parts.append("### Winner changes\n\n" + _md_table("| fixture | old winner | new winner |\n|---|---|---|", rows))
    else:
        parts.append("### Winner changes\n\nThe same backend won every fixture.")
    extra = _fixture_lists(c)
    if extra:
        parts.append("\n".join(f"- {_cell(line, 2000)}" for line in extra))
    parts.append(f"<details><summary>How to read this</summary>\n\n{HOW_TO_READ}\n\n</details>")
    return "\n\n".join(parts) + "\n"


# -- HTML -------------------------------------------------------------------------------------


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _change_context(change: Change | None) -> dict[str, Any] | None:
    if change is None:
        return None
    return {
        "pct": _pct(change),
        "ci": _ci_text(change),
        "call": str(change.drift),
        "css": _CALL_CSS.get(change.drift, "dim"),
        "note": change.note,
        "sort": _num(change.delta),
    }


def render_comparison_html(c: Comparison, *, title: str = "aitune-ci compare") -> str:
    """The comparison as one self-contained page, in the run report's style."""
    from aitune_ci.report.html import _environment  # lazy: jinja2 loads only when a page is rendered

    _, css, words = _headline(c)
    rows = []
    for r in c.rows:
        rows.append(
            {
                "check": r.check,
                "eager": r.backend == "eager",
                "median": _arrow(fmt_ms(r.latency.old), fmt_ms(r.latency.new)),
                "latency": _change_context(r.latency),
                "speedup": _arrow(_speedup(r.relative.old), _speedup(r.relative.new)) if r.relative else "-",
                "relative": _change_context(r.relative),
                "build_s": _arrow(_seconds(r.build.old), _seconds(r.build.new)),
                "build": _change_context(r.build),
                "status": _arrow(*_status(r)),
                "sqnr": _arrow(_sqnr(r.old_sqnr_db), _sqnr(r.new_sqnr_db)),
                "cosine": _arrow(_cosine(r.old_cosine), _cosine(r.new_cosine)),
                "events": [{"kind": str(e.kind), "text": e.text, "bad": e.kind.bad} for e in r.events],
            }
        )
    fixtures = [
        {
            "name": f.name,
            "old_ms": fmt_ms(f.eager.old),
            "new_ms": fmt_ms(f.eager.new),
            "eager": _change_context(f.eager),
            "old_winner": f.old_winner or "(none)",
            "new_winner": f.new_winner or "(none)",
            "winner_changed": f.winner_changed,
        }
        for f in c.fixtures
    ]
    keys = list(dict.fromkeys([*c.old_environment, *c.new_environment]))
    differing = {k for k, _, _ in c.environment}
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            title=title,
            headline=words,
            headline_css=css,
            old_label=c.old_label,
            new_label=c.new_label,
            summary=c.summary(),
            thresholds=_thresholds(c),
            hardware_warning=_hardware_warning(c),
            differences=[(k, _env_value(old), _env_value(new)) for k, old, new in c.environment],
            environment=[
                (k, _env_value(c.old_environment.get(k)), _env_value(c.new_environment.get(k)), k in differing)
                for k in keys
            ],
            fixtures=fixtures,
            rows=rows,
            extra=_fixture_lists(c),
            how_to_read=HOW_TO_READ,
        )
    )


# -- JSON and the choice of format --------------------------------------------------------------


def render_comparison_json(c: Comparison) -> str:
    """The comparison as JSON (``schema_version``, ``kind: aitune-ci-compare``), keys sorted."""
    return json.dumps(c.to_json(), indent=2, sort_keys=True) + "\n"


def _markdown(c: Comparison, title: str) -> str:
    return render_comparison_markdown(c, title=title)


def _html(c: Comparison, title: str) -> str:
    return render_comparison_html(c, title=title)


def _json(c: Comparison, title: str) -> str:
    return render_comparison_json(c)


#: Output suffix -> renderer (``--output x.md|x.html|x.json``).
COMPARISON_SUFFIXES: dict[str, Callable[[Comparison, str], str]] = {
    ".md": _markdown,
    ".markdown": _markdown,
    ".html": _html,
    ".htm": _html,
    ".json": _json,
}


def comparison_suffix(path: str | os.PathLike[str]) -> str:
    """The format of an output path (``.md``, ``.html``, ``.json``...).

    Raises:
        ValueError: any other suffix (the message lists those that work).
    """
    suffix = Path(path).suffix.lower()
    if suffix not in COMPARISON_SUFFIXES:
        raise ValueError(
            f"cannot tell the format of {os.fspath(path)!r}: end it in .md (markdown), .html (a self-contained "
            "page) or .json"
        )
    return suffix


def render_comparison(c: Comparison, path_or_suffix: str, *, title: str = "aitune-ci compare") -> str:
    """Render ``c`` in the format of a path's suffix (or the suffix itself, e.g. ``".md"``)."""
    suffix = path_or_suffix if path_or_suffix.startswith(".") else comparison_suffix(path_or_suffix)
    return COMPARISON_SUFFIXES[comparison_suffix("x" + suffix)](c, title)
