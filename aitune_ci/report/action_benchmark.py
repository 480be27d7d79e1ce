"""Export a run for github-action-benchmark's ``tool: customSmallerIsBetter``, which charts and alerts on any value.

That tool reads a JSON list of ``{"name", "unit", "value", "range"?, "extra"?}`` (``value`` a
number, the rest strings; benchmark-action/github-action-benchmark, ``src/extract.ts``). One entry
per measured (fixture, backend): ``value`` is the median latency in milliseconds, so a smaller
value is better and one unit serves every chart; ``range`` is half the width of the median's 95%
confidence interval; ``extra`` (the chart's tooltip) holds the interval, p90 and p99, the batch
and throughput, and the verdict.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aitune_ci.formatting import fmt_ms, fmt_pct
from aitune_ci.report.view import RunView

__all__ = ["UNIT", "render_action_benchmark", "to_action_benchmark"]

#: The unit of every ``value``: the median latency of one call.
UNIT = "ms"


def _extra(lat: Any, row: Any) -> str:
    lines = [
        f"95% CI of the median: {fmt_ms(lat.ci_low_ms)} to {fmt_ms(lat.ci_high_ms)} ms",
        f"p90 {fmt_ms(lat.p90_ms)} ms, p99 {fmt_ms(lat.p99_ms)} ms, {lat.iterations} timed calls",
    ]
    if lat.batch_size:
        throughput = f", {lat.throughput:,.0f} items/s" if lat.throughput and math.isfinite(lat.throughput) else ""
        lines.append(f"batch {lat.batch_size}{throughput}")
    v = row.verdict
    if v is not None:
        change = f" ({fmt_pct(v.delta)} vs baseline)" if v.delta is not None and math.isfinite(v.delta) else ""
        lines.append(f"verdict {row.kind}{change}")
    return "\n".join(lines)


def to_action_benchmark(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The run as github-action-benchmark's custom JSON: one entry per backend with a finite median latency.

    Args:
        run: a run JSON (``AituneSession.run_json()`` or ``merge_runs``' output).
    """
    view = RunView.from_run(run)
    entries = []
    for fixture in view.fixtures:
        for row in fixture.rows:
            lat = row.result.latency if row.result is not None else None
            if lat is None or not math.isfinite(lat.median_ms):
                continue
            entry: dict[str, Any] = {"name": f"{fixture.name}[{row.backend}]", "unit": UNIT, "value": lat.median_ms}
            if math.isfinite(lat.ci_low_ms) and math.isfinite(lat.ci_high_ms):
                entry["range"] = f"± {fmt_ms((lat.ci_high_ms - lat.ci_low_ms) / 2)}"
            entry["extra"] = _extra(lat, row)
            entries.append(entry)
    return entries


def render_action_benchmark(run: Mapping[str, Any], **kw: Any) -> str:
    """``to_action_benchmark``'s list as the file's text (strict JSON)."""
    if kw:
        raise TypeError(f"the github-action-benchmark export takes no options, got {sorted(kw)}")
    return json.dumps(to_action_benchmark(run), indent=2, allow_nan=False) + "\n"
