"""A large run JSON built from the real run in tests/data/: many fixtures, many of them regressed.

The two fixtures of ``report_run.json`` (each with its real results and verdicts) are copied under
new names; in the first ``regressed`` copies the inductor check regresses in latency, each by a
different amount, as the verdict engine writes it (kind, reasons, delta, CI, message).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"


def large_run(fixtures: int = 700, regressed: int = 234) -> dict[str, Any]:
    """A run of ``fixtures`` fixtures (7 checks each) with ``regressed`` failing latency regressions."""
    run = load_run(DATA / "report_run.json")
    big: dict[str, Any] = {k: v for k, v in run.items() if k not in ("results", "verdicts")}
    big["results"], big["verdicts"] = [], []
    for i in range(fixtures):
        source = run["results"][i % len(run["results"])]
        name = f"tune_model_family_{i:03d}_{source['name'].removeprefix('tune_')}"
        big["results"].append({**copy.deepcopy(source), "name": name})
        for v in run["verdicts"]:
            if v["fixture"] != source["name"]:
                continue
            v = {**copy.deepcopy(v), "fixture": name}
            if i < regressed and v["backend"] == "inductor":
                delta = round(0.06 + 0.001 * ((i * 37) % regressed), 4)  # distinct, not in name order
                now = round(v["baseline_median_ms"] * (1 + delta), 4)
                v.update(kind="REGRESSED", reasons=["latency"], delta=delta, delta_ci=[delta / 2, delta * 1.5])
                v.update(current_median_ms=now, p_value=0.001, q_value=0.004, threshold=0.05)
                v["message"] = f"{name}[inductor]: REGRESSED (latency). {now} ms vs baseline: +{delta:.1%} slower."
            big["verdicts"].append(v)
    return big
