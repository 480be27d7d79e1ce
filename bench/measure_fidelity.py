"""Does the engine's median agree with a plain hand-written timing loop? (goal: within 2%).

For each fixed callable, a hand loop (``perf_counter_ns`` around every call) and
:func:`aitune_ci.measure.measure` take turns in one process — hand, engine, hand, engine, … — so
machine drift hits both alike; the result is the median of the per-repetition ratios
engine / hand with its bootstrap CI. Writes ``reports/measure_fidelity.json`` and ``.md``.

Run: ``.venv/bin/python bench/measure_fidelity.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aitune_ci.environment import environment_fingerprint
from aitune_ci.measure import MeasureConfig, measure
from aitune_ci.stats import paired_ratio

SCHEMA_VERSION = 1
GOAL = 0.02  # |engine / hand - 1| at most 2%


def busy_wait(microseconds: float) -> Callable[[], None]:
    """Spin (never sleep) for a fixed time: a callable whose true latency is known."""
    ns = int(microseconds * 1000)

    def spin() -> None:
        end = time.perf_counter_ns() + ns
        while time.perf_counter_ns() < end:
            pass

    return spin


def mlp_forward(d_in: int, d_hidden: int, batch: int) -> Callable[[], Any]:
    """A small torch MLP forward on CPU, inputs bound, as the engine receives a backend call."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(d_in, d_hidden), torch.nn.ReLU(), torch.nn.Linear(d_hidden, d_in)
    ).eval()
    x = torch.randn(batch, d_in)
    return lambda: model(x)


def hand_loop_median_ms(fn: Callable[[], Any], warmup_s: float, measure_s: float) -> tuple[float, int]:
    """The reference: warm up for a while, then time each call with perf_counter_ns; plain median."""
    with torch.inference_mode():  # the engine times under inference_mode too: same callable cost
        end = time.perf_counter() + warmup_s
        while time.perf_counter() < end:
            fn()
        times: list[int] = []
        end = time.perf_counter() + measure_s
        while time.perf_counter() < end:
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
    return float(np.median(times)) * 1e-6, len(times)


def run_case(name: str, fn: Callable[[], Any], repetitions: int, config: MeasureConfig, hand_s: float) -> dict:
    reps = []
    for rep in range(repetitions):
        hand_ms, hand_n = hand_loop_median_ms(fn, warmup_s=0.2, measure_s=hand_s)
        stats = measure({name: fn}, "cpu", config)[name]
        reps.append(
            {
                "hand_median_ms": hand_ms,
                "hand_iterations": hand_n,
                "engine_median_ms": stats.median_ms,
                "engine_ci_ms": [stats.ci_low_ms, stats.ci_high_ms],
                "engine_iterations": stats.iterations,
                "engine_rounds": stats.rounds,
                "ratio": stats.median_ms / hand_ms,
            }
        )
        print(f"  {name} rep {rep + 1}: hand {hand_ms:.4f} ms, engine {stats.median_ms:.4f} ms", flush=True)
    est = paired_ratio([r["hand_median_ms"] for r in reps], [r["engine_median_ms"] for r in reps])
    return {
        "name": name,
        "hand_median_ms": float(np.median([r["hand_median_ms"] for r in reps])),
        "engine_median_ms": float(np.median([r["engine_median_ms"] for r in reps])),
        "ratio": est.ratio,
        "ratio_ci": [est.ci_low, est.ci_high],
        "ratio_range": [min(r["ratio"] for r in reps), max(r["ratio"] for r in reps)],
        "within_goal": abs(est.ratio - 1.0) <= GOAL,
        "repetitions": reps,
    }


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Measurement fidelity: engine median vs hand-written perf_counter_ns loop",
        "",
        f"{report['created_at']} · {m.get('cpu')} ({m.get('cpu_count')} cores) · torch {m.get('torch')} · "
        f"torch threads {report['settings']['torch_threads']} · load avg {report['load_avg_start'][0]:.2f} "
        f"→ {report['load_avg_end'][0]:.2f}",
        "",
        f"Goal: engine / hand within ±{GOAL:.0%}. Ratio = median of {report['settings']['repetitions']} "
        "alternating repetitions (hand, engine, …), 95% bootstrap CI.",
        "",
        "| callable | hand median (ms) | engine median (ms) | engine / hand | 95% CI | per-rep range | goal |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for c in report["cases"]:
        lines.append(
            f"| {c['name']} | {c['hand_median_ms']:.4f} | {c['engine_median_ms']:.4f} | {c['ratio']:.4f} | "
            f"{c['ratio_ci'][0]:.4f}–{c['ratio_ci'][1]:.4f} | {c['ratio_range'][0]:.4f}–{c['ratio_range'][1]:.4f} | "
            f"{'✓' if c['within_goal'] else '✗'} |"
        )
    lines += ["", f"Written by `bench/measure_fidelity.py` in {report['duration_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("reports"), metavar="DIR", help="Default: reports")
    parser.add_argument("--repetitions", type=int, default=5, metavar="N", help="Default: 5")
    parser.add_argument("--hand-s", type=float, default=1.0, metavar="S", help="hand loop seconds. Default: 1.0")
    parser.add_argument("--engine-s", type=float, default=1.0, metavar="S", help="engine max_total_s. Default: 1.0")
    args = parser.parse_args(argv)

    # One intra-op thread: on a small shared machine, thread hand-offs add noise to both sides.
    torch.set_num_threads(1)
    config = MeasureConfig(max_total_s=args.engine_s)
    cases = {
        "busy-wait 200us": busy_wait(200),
        "mlp 256-512-256 b32": mlp_forward(256, 512, 32),
        "mlp 16-32-16 b4 (us-scale)": mlp_forward(16, 32, 4),
    }
    started = time.time()
    load_start = os.getloadavg()
    results = []
    for name, fn in cases.items():
        print(f"{name}:", flush=True)
        results.append(run_case(name, fn, args.repetitions, config, args.hand_s))
    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "goal_rel": GOAL,
        "load_avg_start": list(load_start),
        "load_avg_end": list(os.getloadavg()),
        "settings": {
            "repetitions": args.repetitions,
            "hand_loop_s": args.hand_s,
            "torch_threads": torch.get_num_threads(),
            "measure_config": dict(config.__dict__),
        },
        "machine": environment_fingerprint("cpu"),
        "cases": results,
    }
    _write_atomic(args.out_dir / "measure_fidelity.json", json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    _write_atomic(args.out_dir / "measure_fidelity.md", md)
    print()
    print(md)
    return 0 if all(c["within_goal"] for c in results) else 1


if __name__ == "__main__":
    sys.exit(main())
