"""Which way of pairing rounds reads a known slowdown right, in the same process?

``bench/verdict_trust.py`` compares round orders across separate bench runs, but each run
calibrates its injected slowdown in a process of its own (processes here fall into speed modes), so
the slowdown differs between runs. This one takes every reading in one process, against one
reference: model A (plain) against model B (the same model plus a host spin worth ``--slowdown``
of A's time, calibrated in this process). Per process:

* the truth: A and B in one long interleaved ``measure`` (``--truth-s`` seconds), ratio of medians;
* ``--measurements`` readings per round order, with the plugin's budget (``--measure-s``), the
  orders taking turns so that drift hits them alike; and an A/A reading per order (A against A).

Round orders (``bench/paired_slot_bias.py`` has the same three):

* ``abba-only``: ABBA every round, median over single rounds (shipped until 2026-12-03);
* ``alternating-per-round``: ABBA / BAAB, median over single rounds;
* ``balanced``: ABBA / BAAB, each pair's two ratios combined before the median (what ships);
* ``two-medians``: ABBA / BAAB, the geometric mean of the ABBA rounds' median and the BAAB rounds'
  median (its CI and stops are balanced's; only the point estimate differs).

Prints and writes ``reports/paired_estimators.{json,md}``.

    python bench/paired_estimators.py --processes 3 --measurements 6
    python bench/paired_estimators.py worker --model tiny        # one process, JSON out
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _paired_common import ORDERS as _SHARED_ORDERS
from _paired_common import ROOT, mlp_model, round_order, write_report

import aitune_ci.measure as measure_module
from aitune_ci.measure import MeasureConfig, measure, measure_paired

#: The shared orders, and a point estimate that differs from balanced's only after the rounds.
ORDERS = [*_SHARED_ORDERS, "two-medians"]
_PAIRED_RATIO = measure_module.paired_ratio


def _two_medians(a_rounds, b_rounds, **kwargs):
    """balanced's estimate with the point moved to sqrt(median(ABBA ratios) * median(BAAB ratios))."""
    est = _PAIRED_RATIO(a_rounds, b_rounds, **kwargs)
    logs = np.log(np.asarray(b_rounds[: est.n]) / np.asarray(a_rounds[: est.n]))
    ratio = math.exp((np.median(logs[0::2]) + np.median(logs[1::2])) / 2)
    return dataclasses.replace(est, ratio=ratio, ci_low=min(est.ci_low, ratio), ci_high=max(est.ci_high, ratio))


#: The two models of bench/verdict_trust.py's CPU suite: ~4 us and ~0.4 ms per call here.
MODELS = {"tiny": (4, 16), "mlp": (64, 256)}


def _model(name: str) -> torch.nn.Module:
    if name == "mlp":
        return mlp_model()
    torch.manual_seed(0)
    return torch.nn.Linear(16, 16).eval()


def _spun(model: torch.nn.Module, spin_s: float):
    def call(x: torch.Tensor) -> torch.Tensor:
        y = model(x)
        end = time.perf_counter() + spin_s
        while time.perf_counter() < end:
            pass
        return y

    return call


def _paired(order: str, fn_a, fn_b, config: MeasureConfig) -> float:
    measure_module.paired_ratio = _two_medians if order == "two-medians" else _PAIRED_RATIO  # type: ignore[assignment]
    try:
        with round_order("balanced" if order == "two-medians" else order):
            return measure_paired(fn_a, fn_b, "cpu", config).ratio
    finally:
        measure_module.paired_ratio = _PAIRED_RATIO  # type: ignore[assignment]


def worker(args: argparse.Namespace) -> dict[str, Any]:
    model = _model(args.model)
    x = torch.randn(*MODELS[args.model])
    with torch.inference_mode():
        calib = measure({"a": lambda: model(x)}, "cpu", MeasureConfig(max_total_s=2.0))["a"].median_ms
    slowed = _spun(model, args.slowdown * calib / 1e3)
    fn_a, fn_b = (lambda: model(x)), (lambda: slowed(x))
    with torch.inference_mode():
        long = measure(
            {"a": fn_a, "b": fn_b}, "cpu", MeasureConfig(max_total_s=args.truth_s, max_rounds=10_000, ci_target=1e-9)
        )
    truth = long["b"].median_ms / long["a"].median_ms
    config = MeasureConfig(max_total_s=args.measure_s)
    readings: dict[str, list[float]] = {o: [] for o in ORDERS}
    aa: dict[str, list[float]] = {o: [] for o in ORDERS}
    for _ in range(args.measurements):
        for order in ORDERS:
            readings[order].append(_paired(order, fn_a, fn_b, config))
            aa[order].append(_paired(order, fn_a, fn_a, config))
    return {"model": args.model, "calibrated_ms": calib, "truth": truth, "readings": readings, "aa": aa}


def _summary(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for model in sorted({w["model"] for w in workers}):
        ws = [w for w in workers if w["model"] == model]
        for order in ORDERS:
            errors = [math.log(r / w["truth"]) for w in ws for r in w["readings"][order]]
            aa = [math.log(r) for w in ws for r in w["aa"][order]]
            rows.append(
                {
                    "model": model,
                    "order": order,
                    "readings": len(errors),
                    "truth_pct": [round((w["truth"] - 1) * 100, 2) for w in ws],
                    "bias_pct": float(np.mean(errors) * 100),
                    "sd_pct": float(np.std(errors, ddof=1) * 100),
                    "worst_pct": float(errors[int(np.argmax(np.abs(errors)))] * 100),
                    "aa_mean_pct": float(np.mean(aa) * 100),
                    "aa_sd_pct": float(np.std(aa, ddof=1) * 100),
                }
            )
    return rows


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Paired round orders against a known slowdown, in the same process",
        "",
        f"Machine: {payload['machine']}; torch {payload['torch']}; {payload['date']}. "
        f"`python bench/paired_estimators.py {payload['args']}`. Error = reading / truth - 1, where "
        "truth is the ratio of medians of one long interleaved measurement in the same process. "
        "A/A = the model against itself.",
        "",
        "| model | round order | readings | truth per process | mean error | sd of error | worst | A/A mean | A/A sd |",
        "|---|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for r in payload["rows"]:
        truth = ", ".join(f"{t:+.1f}%" for t in r["truth_pct"])
        lines.append(
            f"| {r['model']} | {r['order']} | {r['readings']} | {truth} | {r['bias_pct']:+.2f}% | {r['sd_pct']:.2f}% | "
            f"{r['worst_pct']:+.2f}% | {r['aa_mean_pct']:+.2f}% | {r['aa_sd_pct']:.2f}% |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", nargs="?", default="run", choices=("run", "worker"))
    parser.add_argument("--model", default="tiny", choices=tuple(MODELS))
    parser.add_argument("--models", default="tiny,mlp")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--measurements", type=int, default=6)
    parser.add_argument("--slowdown", type=float, default=0.10)
    parser.add_argument("--measure-s", type=float, default=2.0, help="each reading's budget (the plugin's default)")
    parser.add_argument("--truth-s", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if args.what == "worker":
        print(json.dumps(worker(args)))
        return 0
    workers = []
    for i in range(args.processes):
        for model in args.models.split(","):
            t0 = time.perf_counter()
            cmd = [
                sys.executable,
                __file__,
                "worker",
                "--model",
                model,
                "--measurements",
                str(args.measurements),
                "--slowdown",
                str(args.slowdown),
                "--measure-s",
                str(args.measure_s),
                "--truth-s",
                str(args.truth_s),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            w = json.loads(out.strip().splitlines()[-1])
            workers.append(w)
            means = {o: f"{(np.exp(np.mean(np.log(v))) - 1) * 100:+.2f}%" for o, v in w["readings"].items()}
            print(
                f"[estimators] process {i + 1} {model}: truth {(w['truth'] - 1) * 100:+.2f}% readings {means} "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    args_text = f"--processes {args.processes} --measurements {args.measurements} --models {args.models}"
    write_report(args.out, "paired_estimators", args_text, {"workers": workers, "rows": _summary(workers)}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
