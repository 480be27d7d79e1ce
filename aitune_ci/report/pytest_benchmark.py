"""Export a run's latencies in pytest-benchmark's JSON format, so existing tools can read them.

``pytest-benchmark compare`` and github-action-benchmark's ``tool: 'pytest'`` read this file. Times
are in seconds there. One benchmark per measured (fixture, backend); ``group`` is the fixture.

aitune-ci keeps a distribution summary, not every sample, so some fields are derived, and
``extra_info["derived"]`` says which: ``rounds`` is the number of timed calls (``iterations`` 1),
``ops`` is ``1 / median`` (github-action-benchmark charts ``ops``, and a GPU run's mean is
dominated by its slowest calls), ``stddev`` is ``cv * mean``, ``max`` holds the p99, ``q1``/``q3``
are ``median -/+ iqr/2``, the Tukey whiskers are clipped to ``[min, max]``, and outlier counts are
not recorded (0).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from aitune_ci.report.view import RunView

__all__ = ["FORMAT_VERSION", "render_pytest_benchmark", "to_pytest_benchmark"]

#: The pytest-benchmark release whose JSON layout this export follows.
FORMAT_VERSION = "5.2.3"

_DERIVED = {
    "rounds": "number of timed calls (each round of pytest-benchmark = one call, iterations = 1)",
    "ops": "1 / median (the mean is dominated by the slowest calls)",
    "stddev": "cv * mean",
    "max": "p99 (aitune-ci does not keep the maximum)",
    "q1": "median - iqr / 2",
    "q3": "median + iqr / 2",
    "ld15iqr": "max(min, q1 - 1.5 iqr)",
    "hd15iqr": "min(max, q3 + 1.5 iqr)",
    "outliers": "not recorded (0;0)",
}


def _stats(lat: Any) -> dict[str, Any]:
    ms = 1e-3
    mean = lat.mean_ms * ms
    median = lat.median_ms * ms
    iqr = lat.iqr_ms * ms
    low = lat.min_ms * ms
    high = max(lat.p99_ms * ms, median)
    q1, q3 = max(low, median - iqr / 2), min(high, median + iqr / 2)
    rounds = max(int(lat.iterations), 1)
    return {
        "min": low,
        "max": high,
        "mean": mean,
        "stddev": (lat.cv * mean) if math.isfinite(lat.cv) else 0.0,
        "rounds": rounds,
        "median": median,
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": 0,
        "stddev_outliers": 0,
        "outliers": "0;0",
        "ld15iqr": max(low, q1 - 1.5 * iqr),
        "hd15iqr": min(high, q3 + 1.5 * iqr),
        "ops": 1.0 / median if median > 0 else 0.0,
        "total": mean * rounds,
        "iterations": 1,
    }


def _machine_info(env: Mapping[str, Any]) -> dict[str, Any]:
    system, _, machine = str(env.get("platform") or "").partition("-")
    return {
        "node": "",
        "processor": env.get("cpu") or "",
        "machine": machine,
        "python_compiler": "",
        "python_implementation": "CPython",
        "python_implementation_version": env.get("python") or "",
        "python_version": env.get("python") or "",
        "python_build": ["", ""],
        "release": "",
        "system": system,
        "cpu": {"brand_raw": env.get("cpu") or "", "count": env.get("cpu_count")},
        "aitune_environment": dict(env),
    }


def to_pytest_benchmark(
    run: Mapping[str, Any],
    *,
    commit: str | None = None,
    project: str = "",
    branch: str = "",
) -> dict[str, Any]:
    """The run as a pytest-benchmark JSON document (``benchmarks`` with ``stats`` in seconds).

    Args:
        run: a run JSON (``AituneSession.run_json()`` or ``merge_runs``' output).
        commit: the commit id for ``commit_info`` ("unknown" when None; ``write_report`` passes
            this checkout's).
        project, branch: for ``commit_info``.

    Only backends with a latency are exported; each carries its verdict, throughput and status in
    ``extra_info``.
    """
    view = RunView.from_run(run)
    benchmarks = []
    for fixture in view.fixtures:
        for row in fixture.rows:
            r = row.result
            if r is None or r.latency is None:
                continue
            lat = r.latency
            v = row.verdict
            benchmarks.append(
                {
                    "group": fixture.name,
                    "name": f"{fixture.name}[{r.backend}]",
                    "fullname": f"aitune::{fixture.name}[{r.backend}]",
                    "params": {"backend": r.backend, "batch_size": lat.batch_size},
                    "param": r.backend,
                    "extra_info": {
                        "status": r.status,
                        "precision": r.precision,
                        "verdict": row.kind if v is not None else None,
                        "baseline_median_s": v.baseline_median_ms * 1e-3 if v and v.baseline_median_ms else None,
                        "delta": v.delta if v is not None else None,
                        "ci_low_s": lat.ci_low_ms * 1e-3,
                        "ci_high_s": lat.ci_high_ms * 1e-3,
                        "p90_s": lat.p90_ms * 1e-3,
                        "batch_size": lat.batch_size,
                        "throughput_items_per_s": lat.throughput,
                        "winner": r.backend == fixture.winner,
                        "derived": _DERIVED,
                    },
                    "options": {
                        "disable_gc": False,
                        "timer": "torch.cuda.Event"
                        if view.environment.get("device_type") == "cuda"
                        else "perf_counter_ns",
                        "min_rounds": None,
                        "max_time": None,
                        "min_time": None,
                        "warmup": True,
                    },
                    "stats": _stats(lat),
                }
            )
    when = view.started or datetime.now(timezone.utc)
    return {
        "machine_info": _machine_info(view.environment),
        "commit_info": {
            "id": commit or "unknown",
            "time": None,
            "author_time": None,
            "dirty": False,
            "project": project,
            "branch": branch or "(unknown)",
        },
        "benchmarks": benchmarks,
        "datetime": when.isoformat(),
        "version": FORMAT_VERSION,
    }


def render_pytest_benchmark(run: Mapping[str, Any], **kw: Any) -> str:
    """``to_pytest_benchmark``'s document as the file's text (strict JSON, indented as pytest-benchmark does)."""
    return json.dumps(to_pytest_benchmark(run, **kw), indent=4, allow_nan=False) + "\n"
