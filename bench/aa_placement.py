"""How far apart do two copies of one model time, when nothing but their place in memory differs?

``tests/test_paired_aa_centring.py`` built one model twice and asked the paired ratio of the two
builds to sit within 1% of 1, until CI read two AOTInductor builds 1.2% apart, in both orders (so not
the pairing's slot bias). This separates the two effects of every A/A pair, measured in both orders
in one process:

* ``slot``   = sqrt(r_ab * r_ba): what the pairing itself adds (1.0 if unbiased);
* ``object`` = sqrt(r_ab / r_ba): how much slower the second copy really is.

Copies are either separate builds (what the test does) or, for AOTInductor, separate loads of one
package file: identical bytes, so any object difference there is placement (where the code and the
weights landed), not the build. Prints and writes ``reports/aa_placement.{json,md}``.

    python bench/aa_placement.py --backends aoti,inductor,eager --copies 6
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from _paired_common import BATCH, MLP, ROOT, mlp_model, write_report

from aitune_ci.backends.aoti import PACKAGE_FILE, _load_package_here
from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import get_backend
from aitune_ci.measure import MeasureConfig, measure_paired


def _copies(backend_name: str, kind: str, n: int, x: torch.Tensor) -> list[Callable[..., Any]]:
    backend = get_backend(backend_name)
    work = Path(tempfile.mkdtemp(prefix="aa-placement-"))
    ctx = lambda i: BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=_mkdir(work / str(i)))  # noqa: E731
    if kind == "builds":
        return [backend.build(mlp_model(), [((x,), {})], ctx(i)) for i in range(n)]
    first = backend.build(mlp_model(), [((x,), {})], ctx(0))  # kind == "loads": one package, n loads
    package = work / "0" / PACKAGE_FILE
    return [first] + [_load_package_here(package, torch.device("cpu")) for _ in range(n - 1)]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def run(backend_name: str, kind: str, copies: int) -> dict[str, Any]:
    ok, reason = get_backend(backend_name).available("cpu")
    if not ok:
        return {"backend": backend_name, "copies_are": kind, "unavailable": reason}
    x = torch.randn(BATCH, MLP[0])
    fns = _copies(backend_name, kind, copies, x)
    config = MeasureConfig(max_total_s=3.0)
    pairs = []
    first = fns[0]
    for other in fns[1:]:
        ab = measure_paired(lambda: first(x), lambda o=other: o(x), "cpu", config)
        ba = measure_paired(lambda o=other: o(x), lambda: first(x), "cpu", config)
        pairs.append(
            {
                "r_ab": ab.ratio,
                "r_ba": ba.ratio,
                "slot": math.sqrt(ab.ratio * ba.ratio),
                "object": math.sqrt(ab.ratio / ba.ratio),
                "both_orders_off_1pct": bool(min(abs(ab.ratio - 1), abs(1 / ba.ratio - 1)) > 0.01),
            }
        )
    objects = np.array([p["object"] for p in pairs])
    slots = np.array([p["slot"] for p in pairs])
    return {
        "backend": backend_name,
        "copies_are": kind,
        "pairs": pairs,
        "object_max_abs_pct": float(np.max(np.abs(objects - 1)) * 100),
        "object_sd_pct": float(np.std(np.log(objects), ddof=1) * 100) if len(objects) > 1 else 0.0,
        "slot_mean": float(np.exp(np.mean(np.log(slots)))),
        "both_orders_off_1pct": sum(p["both_orders_off_1pct"] for p in pairs),
    }


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# A/A copies of one model: the pairing's slot bias and the copies' own difference",
        "",
        f"Machine: {payload['machine']}; torch {payload['torch']}; {payload['date']}. "
        f"`python bench/aa_placement.py {payload['args']}`. Each copy after the first is measured "
        "against the first in both orders (`measure_paired`, 3 s budget each). "
        "`object` = sqrt(r_ab / r_ba) - 1 (second copy slower when > 0), `slot` = sqrt(r_ab * r_ba).",
        "",
        "| backend | copies are | pairs | object: each pair (%) | max abs object | sd | slot (geo. mean) | off >1% in both orders |",
        "|---|---|--:|---|--:|--:|--:|--:|",
    ]
    for row in payload["rows"]:
        if "unavailable" in row:
            lines.append(f"| {row['backend']} | {row['copies_are']} | unavailable: {row['unavailable']} ||||||")
            continue
        each = ", ".join(f"{(p['object'] - 1) * 100:+.2f}" for p in row["pairs"])
        lines.append(
            f"| {row['backend']} | {row['copies_are']} | {len(row['pairs'])} | {each} | "
            f"{row['object_max_abs_pct']:.2f}% | {row['object_sd_pct']:.2f}% | {row['slot_mean']:.4f} | "
            f"{row['both_orders_off_1pct']}/{len(row['pairs'])} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="aoti,inductor,eager")
    parser.add_argument("--copies", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    rows = []
    for name in [b for b in args.backends.split(",") if b]:
        for kind in ("builds", "loads") if name == "aoti" else ("builds",):
            t0 = time.perf_counter()
            row = run(name, kind, args.copies)
            rows.append(row)
            print(f"[aa-placement] {name} {kind}: {json.dumps(row)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    write_report(args.out, "aa_placement", f"--backends {args.backends} --copies {args.copies}", {"rows": rows}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
