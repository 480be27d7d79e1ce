"""Charts for the HTML report, drawn with matplotlib as inline SVG that follows the page's colours.

Text, axes and grid are drawn in a sentinel colour that is replaced by ``currentColor``, so one SVG
reads in light and dark mode. The output is deterministic (no date metadata, fixed id salt per
chart) and carries no width/height, so it scales to a phone's width through its ``viewBox``.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from aitune_ci.status import PRESENTATION

__all__ = ["latency_chart", "throughput_chart", "trend_chart"]

_SERIES = ("#3e7bfa", "#e38a1c", "#30a46c", "#d6409f", "#8e4ec6", "#12a594", "#e5484d", "#978365", "#5b5bd6")
_INK = "#0b0c0d"  # sentinel: becomes currentColor


def _bar_colour(kind: Any) -> str:
    """A verdict kind's colour from the presentation table; an unchecked backend gets the first series colour."""
    return PRESENTATION[kind].colour if kind in PRESENTATION else _SERIES[0]


def _matplotlib() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_svg import FigureCanvasSVG
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - the [report] extra is installed in our environments
        raise ImportError("charts in the HTML report need matplotlib: pip install 'aitune-ci[report]'") from None
    return Figure, FigureCanvasSVG


_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 10,
    "text.color": _INK,
    "axes.edgecolor": _INK,
    "axes.labelcolor": _INK,
    "xtick.color": _INK,
    "ytick.color": _INK,
    "grid.color": _INK,
    "grid.alpha": 0.15,
    "axes.facecolor": "none",
    "figure.facecolor": "none",
    "savefig.facecolor": "none",
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _to_svg(fig: Any, canvas_cls: Any, salt: str, label: str) -> str:
    import matplotlib

    canvas_cls(fig)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    svg = svg.replace(_INK, "currentColor")
    # All inline SVGs share the page's id namespace: prefix every id and every reference to one.
    ids = set(re.findall(r'\sid="([^"]+)"', svg))

    def prefixed(match: re.Match[str]) -> str:
        name = match.group(2)
        return f"{match.group(1)}{salt}-{name}{match.group(3)}" if name in ids else match.group(0)

    svg = re.sub(r'(\sid=")([^"]+)(")', prefixed, svg)
    svg = re.sub(r"(url\(#)([^)]+)(\))", prefixed, svg)
    svg = re.sub(r'((?:xlink:)?href="#)([^"]+)(")', prefixed, svg)
    head_end = svg.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    head += f' class="chart" role="img" aria-label="{label}"'
    return head + svg[head_end:]


def _figure(width: float, height: float) -> tuple[Any, Any]:
    Figure, canvas_cls = _matplotlib()
    return Figure(figsize=(width, height), layout="constrained"), canvas_cls


def latency_chart(
    rows: Sequence[Mapping[str, Any]],
    title: str,
    salt: str,
) -> str:
    """Median latency per backend with its CI as whiskers, and the baseline median as a marker.

    Args:
        rows: ``{"backend", "median_ms", "ci_low_ms", "ci_high_ms", "baseline_ms", "kind"}`` each;
            rows without a median are left out.
        title: chart title (also the SVG's accessible label).
        salt: unique per chart in one page (SVG ids must not collide).
    """
    import matplotlib

    rows = [r for r in rows if r.get("median_ms") is not None and math.isfinite(r["median_ms"])]
    with matplotlib.rc_context(_RC):
        fig, canvas_cls = _figure(5.6, 0.45 * max(len(rows), 1) + 1.0)
        ax = fig.add_subplot()
        if not rows:
            ax.text(0.5, 0.5, "no backend was measured", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            return _to_svg(fig, canvas_cls, salt, title)
        ys = list(range(len(rows)))[::-1]
        medians = [r["median_ms"] for r in rows]
        lows = [max(0.0, r["median_ms"] - (r.get("ci_low_ms") or r["median_ms"])) for r in rows]
        highs = [max(0.0, (r.get("ci_high_ms") or r["median_ms"]) - r["median_ms"]) for r in rows]
        colors = [_bar_colour(r.get("kind")) for r in rows]
        ax.barh(ys, medians, color=colors, alpha=0.85, height=0.6, label="median (now)")
        ax.errorbar(medians, ys, xerr=[lows, highs], fmt="none", ecolor=_INK, elinewidth=1, capsize=3, label="95% CI")
        base = [(y, r["baseline_ms"]) for y, r in zip(ys, rows, strict=True) if r.get("baseline_ms") is not None]
        if base:
            ax.scatter(
                [b for _, b in base],
                [y for y, _ in base],
                marker="D",
                s=28,
                facecolors="none",
                edgecolors=_INK,
                linewidths=1.2,
                zorder=3,
                label="baseline median",
            )
        values = medians + [b for _, b in base] + [m + h for m, h in zip(medians, highs, strict=True)]
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 30:
            ax.set_xscale("log")
        ax.set_yticks(ys, [r["backend"] for r in rows])
        ax.set_xlabel("latency per call (ms), lower is better")
        ax.grid(axis="x")
        ax.legend(loc="lower left", fontsize=8, ncols=3, bbox_to_anchor=(0.0, 1.0), borderaxespad=0.2)
        return _to_svg(fig, canvas_cls, salt, title)


def throughput_chart(series: Mapping[str, Mapping[int, float]], title: str, salt: str) -> str:
    """Items per second against batch size, one line per backend (only backends with 2+ sizes matter most)."""
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, canvas_cls = _figure(5.6, 3.2)
        ax = fig.add_subplot()
        batches: set[int] = set()
        for i, (name, points) in enumerate(series.items()):
            xs = sorted(points)
            batches.update(xs)
            ax.plot(xs, [points[x] for x in xs], marker="o", markersize=4, color=_SERIES[i % len(_SERIES)], label=name)
        if len(batches) > 1 and max(batches) / max(min(batches), 1) >= 4:
            ax.set_xscale("log", base=2)
        if batches:
            ax.set_xticks(sorted(batches), [str(b) for b in sorted(batches)])
        ax.set_xlabel("batch size")
        ax.set_ylabel("items / s, higher is better")
        ax.grid(True)
        ax.legend(fontsize=8, ncols=2)
        return _to_svg(fig, canvas_cls, salt, title)


def trend_chart(series: Mapping[str, Mapping[str, Sequence[Any]]], title: str, salt: str) -> str:
    """Median latency over the history, one line per backend, with CI bands and change points marked.

    Args:
        series: backend -> ``{"date": [...datetime], "median_ms": [...], "ci_low_ms": [...],
            "ci_high_ms": [...], "change_point": [...bool]}`` (equal lengths, sorted by date).
    """
    import matplotlib

    with matplotlib.rc_context(_RC):
        fig, canvas_cls = _figure(5.6, 3.2)
        ax = fig.add_subplot()
        marked = False
        for i, (name, s) in enumerate(series.items()):
            color = _SERIES[i % len(_SERIES)]
            dates, med = list(s["date"]), [float(x) for x in s["median_ms"]]
            ax.plot(dates, med, marker="o", markersize=3, linewidth=1.2, color=color, label=name)
            low, high = s.get("ci_low_ms"), s.get("ci_high_ms")
            if low is not None and high is not None and len(dates) > 1:
                ax.fill_between(
                    dates, [float(x) for x in low], [float(x) for x in high], color=color, alpha=0.15, linewidth=0
                )
            for d, m, cp in zip(dates, med, s.get("change_point", [False] * len(dates)), strict=True):
                if cp:
                    ax.axvline(d, color=color, linestyle="--", linewidth=0.8, alpha=0.7)
                    ax.scatter(
                        [d], [m], marker="v", s=50, color="#e5484d", zorder=4, label=None if marked else "change point"
                    )
                    marked = True
        ax.set_ylabel("median latency (ms)")
        ax.grid(True)
        fig.autofmt_xdate()
        ax.legend(fontsize=8, ncols=2)
        return _to_svg(fig, canvas_cls, salt, title)
