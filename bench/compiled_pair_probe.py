"""Why a paired base/head check of the example's BERT encoder under inductor read less slowdown than eager.

On the lent H200, the example's slowdown PR (10 -> 12 encoder layers) read +16.5% on eager, eager-bf16
and torchao, but +4.4% (and +1.0% a day earlier) on inductor, while the two sides' own tunes read
2.965 -> 3.663 ms (+23.5%). This builds both sides in one process as relative mode does (``tune`` of
each spec, eager and inductor), then times each side alone, then paired (``measure_paired``, as
``check._pair``), then alone again, and records dynamo's counters and whether each side still
computes its own outputs while interleaved. Then it saves and loads each side's ``.ait`` as the
check's load timing does, and pairs them again. ``--base-from-cache`` builds as the PR check's
slowdown run did: the head's graph from scratch, the base's from a warm FX graph cache (on the H200
that pair read 0.910x, the base slower, against 1.18-1.20x here without the flag).

    PYTHONPATH=.:examples/gpu-repo python bench/compiled_pair_probe.py [--out DIR] [--base-from-cache]

Writes ``compiled_pair_probe[-base-from-cache].{json,md}`` into ``--out`` (default ``reports/<gpu>/``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch._dynamo.utils import counters

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))

from _gpu_folder import report_dir  # noqa: E402  (bench/, on sys.path as the script's folder)
from acme_models import text  # noqa: E402

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.check import _time_load  # noqa: E402
from aitune_ci.engine import tune  # noqa: E402
from aitune_ci.frame_stack import on_fresh_chunk  # noqa: E402
from aitune_ci.measure import MeasureConfig, measure_paired  # noqa: E402
from aitune_ci.spec import TuneSpec  # noqa: E402
from aitune_ci.store.artifact import save  # noqa: E402


def _spec(layers: int, device: str, small: bool) -> TuneSpec:
    text.ENCODER["num_hidden_layers"] = layers  # read when the model is built
    torch.manual_seed(0)
    model = text.text_classifier(small=small).eval()
    batch, seq = (2, 32) if small else (8, 128)
    ids = torch.randint(1000, 30000, (batch, seq))
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[:, seq - seq // 4 :] = 0
    return TuneSpec(
        model=model, samples=[{"input_ids": ids, "attention_mask": mask}], backends=["eager", "inductor"], device=device
    )


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _alone_ms(fn: Any, device: str, blocks: int = 7, calls: int = 40) -> float:
    """Median over blocks of the mean time per call, each block synchronized at both ends; run from
    a fresh frame-stack chunk as ``measure`` runs its loops (``aitune_ci.frame_stack``)."""
    return on_fresh_chunk(lambda: _alone_ms_here(fn, device, blocks, calls))


def _alone_ms_here(fn: Any, device: str, blocks: int, calls: int) -> float:
    with torch.inference_mode():
        for _ in range(10):
            fn()
        _sync(device)
        per_call = []
        for _ in range(blocks):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            _sync(device)
            per_call.append((time.perf_counter() - t0) * 1e3 / calls)
    return statistics.median(per_call)


def _sides(base: Any, head: Any, backend: str) -> tuple[Any, Any]:
    """The base's and the head's build of ``backend``, each bound to its own first sample."""
    (a_args, a_kwargs), (b_args, b_kwargs) = base.runtime.samples[0], head.runtime.samples[0]
    old, new = base.runtime.built[backend], head.runtime.built[backend]
    return (lambda: old(*a_args, **a_kwargs)), (lambda: new(*b_args, **b_kwargs))


def _three_pairs(fa: Any, fb: Any, device: str) -> list[dict[str, Any]]:
    """Three paired readings (``measure_paired``, 2 s each, as the check's pairs)."""
    pairs = []
    for _ in range(3):
        est = measure_paired(fa, fb, device, MeasureConfig(max_total_s=2.0))
        pairs.append(
            {"ratio": est.ratio, "ci": [est.ci_low, est.ci_high], "n": est.n, "a_ms": est.a_ms, "b_ms": est.b_ms}
        )
    return pairs


def _cells(pairs: list[dict[str, Any]]) -> tuple[str, str]:
    """The markdown cells of three paired readings: their ratios with CIs, and their sides in ms."""
    ratios = ", ".join(f"{p['ratio']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}]" for p in pairs)
    return ratios, ", ".join(f"{p['a_ms']:.3f} → {p['b_ms']:.3f}" for p in pairs)


def _flat_counters() -> dict[str, int]:
    return {f"{k}.{n}": v for k, c in counters.items() for n, v in c.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run. Default: cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized encoder (a smoke run)")
    parser.add_argument(
        "--base-from-cache",
        action="store_true",
        help="build the head from scratch first, then the base from a warm FX graph cache (as the PR check does)",
    )
    args = parser.parse_args()
    device = args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    out = Path(args.out or report_dir(device, cpu="cpu"))
    out.mkdir(parents=True, exist_ok=True)
    config = MeasureConfig(max_total_s=1.0)
    t0 = time.perf_counter()
    base_spec, head_spec = _spec(10, device, args.small), _spec(12, device, args.small)
    stem = "compiled_pair_probe" + ("-base-from-cache" if args.base_from_cache else "")
    builds: dict[str, Any] = {}
    if args.base_from_cache:
        # Empty compile caches of this run's own, so that the head's graph cannot come from an earlier run.
        fresh = tempfile.mkdtemp(prefix="pair-probe-caches-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ["TRITON_CACHE_DIR"] = f"{fresh}/inductor", f"{fresh}/triton"
        # As in the example's slowdown PR check: the nightly compiled the base's graph (here a
        # throwaway tune fills inductor's caches), then the head compiles a new graph from scratch
        # and the base rebuilds "like with like", which hits the FX graph cache.
        tune(_spec(10, device, args.small), measure_config=config)
        torch._dynamo.reset()
        before = _flat_counters()
        head = tune(head_spec, measure_config=config)
        mid = _flat_counters()
        base = tune(base_spec, measure_config=config)
        after = _flat_counters()
        builds = {
            side: {k: v - a.get(k, 0) for k, v in b.items() if "cache" in k and v != a.get(k, 0)}
            for side, a, b in (("head", before, mid), ("base", mid, after))
        }
    else:
        base = tune(base_spec, measure_config=config)
        head = tune(head_spec, measure_config=config)
    report: dict[str, Any] = {
        "schema_version": 1,
        "gpu": gpu,
        "torch": torch.__version__,
        "build_s": round(time.perf_counter() - t0, 1),
        "base_from_cache": args.base_from_cache,
        "cache_counters_per_build": builds,
        "tunes": {
            side: {row.backend: row.latency.median_ms for row in r.backends if row.latency is not None}
            for side, r in (("base", base), ("head", head))
        },
        "backends": {},
    }
    (a_args, a_kwargs), (b_args, b_kwargs) = base.runtime.samples[0], head.runtime.samples[0]
    with torch.inference_mode():
        ref_a = base.runtime.built["eager"](*a_args, **a_kwargs).float().clone()
        ref_b = head.runtime.built["eager"](*b_args, **b_kwargs).float().clone()
    for backend in ("eager", "inductor"):
        fa, fb = _sides(base, head, backend)
        row: dict[str, Any] = {"alone_before": {"a_ms": _alone_ms(fa, device), "b_ms": _alone_ms(fb, device)}}
        before = _flat_counters()
        pairs = _three_pairs(fa, fb, device)
        after = _flat_counters()
        with torch.inference_mode():
            row["max_abs_vs_own_eager"] = {
                "a": float((fa().float() - ref_a).abs().max()),
                "b": float((fb().float() - ref_b).abs().max()),
            }
        row["paired"] = pairs
        row["dynamo_counters_during_pairs"] = {
            k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)
        }
        row["alone_after"] = {"a_ms": _alone_ms(fa, device), "b_ms": _alone_ms(fb, device)}
        for key in ("alone_before", "alone_after"):
            row[key]["ratio"] = row[key]["b_ms"] / row[key]["a_ms"]
        report["backends"][backend] = row
        print(backend, json.dumps(row, indent=1), flush=True)
    # Stage 2, as the PR check goes on: each side's winner saved as an .ait and loaded once (check's
    # load timing: a load compiles again from the hot-loaded cache), head first, then pairs again.
    before = _flat_counters()
    report["load_timing"] = {}
    for side, result, spec in (("head", head, head_spec), ("base", base, base_spec)):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{side}.ait"
            pin = save(result, path, spec_hash="0" * 64).sha256
            load_s, first_ms = _time_load(path, spec, result, pin)
        report["load_timing"][side] = {"winner": result.winner, "load_s": load_s, "first_call_ms": first_ms}
    report["dynamo_counters_during_loads"] = {
        k: v - before.get(k, 0) for k, v in _flat_counters().items() if v != before.get(k, 0)
    }
    print("load timing", json.dumps(report["load_timing"]), report["dynamo_counters_during_loads"], flush=True)
    for backend in ("eager", "inductor"):
        fa2, fb2 = _sides(base, head, backend)
        after_loads = _three_pairs(fa2, fb2, device)
        report["backends"][backend]["paired_after_loads"] = after_loads
        report["backends"][backend]["alone_after_loads"] = {
            "a_ms": _alone_ms(fa2, device),
            "b_ms": _alone_ms(fb2, device),
        }
        print(
            backend,
            "after loads",
            json.dumps(after_loads),
            report["backends"][backend]["alone_after_loads"],
            flush=True,
        )
    report["graph_break_reasons"] = {k: v for k, v in counters.get("graph_break", {}).items()}
    atomic_write_text(out / f"{stem}.json", json.dumps(report, indent=2) + "\n")
    lines = [
        "# Paired base/head of the example's BERT encoder (10 -> 12 layers), one process",
        "",
        f"{gpu}, torch {torch.__version__}; `bench/compiled_pair_probe.py`"
        + (" --base-from-cache" if args.base_from_cache else "")
        + f". Tunes' own medians: {report['tunes']}",
        *([f"Compile-cache counters per build: {builds}", ""] if builds else []),
        "",
        "| backend | alone before: B/A | paired ratios (3 measurements) | paired sides a → b ms | alone after: B/A |",
        "|---|--:|---|---|--:|",
    ]
    for backend, row in report["backends"].items():
        ratios, sides = _cells(row["paired"])
        lines.append(
            f"| {backend} | {row['alone_before']['ratio']:.3f} | {ratios} | {sides} | {row['alone_after']['ratio']:.3f} |"
        )
    lines += [
        "",
        f"Then each side's winner saved and loaded once, as the check times loads: {report['load_timing']}; "
        f"dynamo counters that moved: {report['dynamo_counters_during_loads']}; graph breaks: "
        f"{report['graph_break_reasons'] or 'none'}",
        "",
        "| backend | paired after the loads (3 measurements) | sides a → b ms | alone after the loads: a, b ms |",
        "|---|---|---|---|",
    ]
    for backend, row in report["backends"].items():
        ratios, sides = _cells(row["paired_after_loads"])
        alone = row["alone_after_loads"]
        lines.append(f"| {backend} | {ratios} | {sides} | {alone['a_ms']:.3f}, {alone['b_ms']:.3f} |")
    atomic_write_text(out / f"{stem}.md", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
