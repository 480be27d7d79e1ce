"""Paired A/A with one built object in both slots: does the paired ratio favour a slot?

``measure_paired(f, f)`` times the same callable as A and as B, so every ratio away from 1 is the
measurement's own doing. Three ways to pair rounds, on the CPU backends that showed a slot preference:

* ``abba-only``: ABBA every round, median over single rounds (shipped until 2026-12-03);
* ``alternating-per-round``: ABBA / BAAB alternating, median over single rounds (tried, not shipped);
* ``balanced``: ABBA / BAAB alternating, each pair's two ratios combined before the median (shipped).

Prints and writes ``reports/paired_slot_bias.{json,md}``.

    python bench/paired_slot_bias.py --backends torchao-int8dq,onnxruntime,eager --measurements 20
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _paired_common import BATCH, MLP, ORDERS, ROOT, mlp_model, round_order, write_report

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import get_backend
from aitune_ci.measure import MeasureConfig, measure_paired


def _sign_test_p(successes: int, n: int) -> float:
    """Two-sided binomial test against 1/2: how surprising "B faster" this often is without a bias."""
    k = max(successes, n - successes)
    tail = sum(math.comb(n, i) for i in range(k, n + 1)) / 2**n
    return min(1.0, 2 * tail)


def run(backend_name: str, order: str, measurements: int) -> dict[str, Any]:
    backend = get_backend(backend_name)
    ok, reason = backend.available("cpu")
    if not ok:
        return {"backend": backend_name, "order": order, "unavailable": reason}
    x = torch.randn(BATCH, MLP[0])
    work = Path(tempfile.mkdtemp(prefix="slot-bias-"))
    built = backend.build(mlp_model(), [((x,), {})], BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=work))
    rows = []
    with round_order(order):
        for _ in range(measurements):
            est = measure_paired(lambda: built(x), lambda: built(x), "cpu", MeasureConfig(max_total_s=3.0))
            rows.append((est.ratio, est.ci_low, est.ci_high, est.n))
    r = np.array(rows)
    b_faster = int(np.sum(r[:, 0] < 1.0))
    return {
        "backend": backend_name,
        "order": order,
        "measurements": measurements,
        "ratio_mean": float(r[:, 0].mean()),
        "ratio_median": float(np.median(r[:, 0])),
        "ratio_sd": float(r[:, 0].std(ddof=1)),
        "b_faster": b_faster,
        "sign_test_p": _sign_test_p(b_faster, measurements),
        "ci_excludes_1": int(np.sum((r[:, 1] > 1.0) | (r[:, 2] < 1.0))),
        "rounds_median": float(np.median(r[:, 3])),
        "half_width_median": float(np.median((r[:, 2] - r[:, 1]) / 2)),
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# Paired A/A, one object in both slots: slot bias of the round order",
        "",
        f"Machine: {payload['machine']}; torch {payload['torch']}; {payload['date']}. "
        f"`python bench/paired_slot_bias.py {payload['args']}`. Each measurement is `measure_paired(f, f)` "
        "with the default config (3 s budget); a ratio < 1 reads B faster.",
        "",
        "| backend | round order | n | mean ratio | sd | B faster | sign test p | CI excludes 1 | median rounds |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in payload["rows"]:
        if "unavailable" in row:
            lines.append(f"| {row['backend']} | {row['order']} | unavailable: {row['unavailable']} ||||||||")
            continue
        lines.append(
            f"| {row['backend']} | {row['order']} | {row['measurements']} | {row['ratio_mean']:.4f} | "
            f"{row['ratio_sd']:.4f} | {row['b_faster']}/{row['measurements']} | {row['sign_test_p']:.3f} | "
            f"{row['ci_excludes_1']}/{row['measurements']} | {row['rounds_median']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="torchao-int8dq,onnxruntime,eager")
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--measurements", type=int, default=20)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    rows = []
    for name in [b for b in args.backends.split(",") if b]:
        for order in [o for o in args.orders.split(",") if o]:
            t0 = time.perf_counter()
            row = run(name, order, args.measurements)
            rows.append(row)
            print(f"[slot-bias] {name} {order}: {json.dumps(row)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    args_text = f"--backends {args.backends} --orders {args.orders} --measurements {args.measurements}"
    write_report(args.out, "paired_slot_bias", args_text, {"rows": rows}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
