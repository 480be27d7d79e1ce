"""Where does the composite model's mixed choice lose time against its parts?

On the H100 the composite (resnet18 trunk + transformer head, ``bench/gpu_backends.py``) measured
backbone/inductor-reduce-overhead 0.687 ms + head/cudagraphs 0.463 ms, yet the mixed model with
both swapped in ran at 1.575 ms. This program tunes the composite with the three backends that
matter, then times each part and several hand-made compositions *on their own* (no interleaving),
and for each reports:

  gpu ms/call   CUDA-event time of back-to-back calls (what ``measure`` reports)
  cpu us/call   host time to issue one call, measured without synchronizing (launch overhead)

plus the same compositions called alternately with the whole-model reduce-overhead graph (as the
interleaved measurement rounds do), to see whether CUDA-graph trees pay for switching between
compiled functions.

Run on a GPU: ``python3 bench/mixed_overhead.py --out reports/h100`` (about a minute).
Writes ``mixed_overhead.{json,md}``. ``--device cpu`` is a smoke run of this script only (inductor
stands in for both CUDA-graph backends; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

SCHEMA_VERSION = 1


def _time(fn: Callable[[], Any], *, iters: int, blocks: int) -> dict[str, float]:
    """Median over blocks of (GPU ms per call, host us per call)."""
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(min(iters, 10)):
        fn()
    sync()
    gpu, cpu = [], []
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(blocks):
        sync()
        t0 = time.perf_counter()
        if cuda:
            start.record()
        for _ in range(iters):
            fn()
        if cuda:
            end.record()
        cpu.append((time.perf_counter() - t0) / iters * 1e6)
        sync()
        gpu.append(start.elapsed_time(end) / iters if cuda else cpu[-1] / 1e3)
    return {"gpu_ms": statistics.median(gpu), "cpu_us": statistics.median(cpu)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/h100"), help="Default: reports/h100")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="Default: cuda")
    parser.add_argument("--iters", type=int, default=100, help="calls per block. Default: 100")
    parser.add_argument("--blocks", type=int, default=7, help="Default: 7")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench/mixed_overhead.py needs a CUDA GPU", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dataclasses

    import gpu_backends

    from aitune_ci.engine import MIXED, tune
    from aitune_ci.measure import MeasureConfig
    from aitune_ci.store.baseline import backend_key

    started = time.perf_counter()
    torch._logging.set_logs(recompiles=True, perf_hints=True)  # recompiles and cudagraph skips, on stderr
    gpu_backends.DEVICE = args.device
    if args.device == "cuda":
        spec = gpu_backends.composite_spec(["eager", "cudagraphs", "inductor-reduce-overhead"])
    else:
        spec = gpu_backends.composite_spec(["eager", "inductor"])
        spec = dataclasses.replace(spec, samples=[torch.randn(1, 3, 64, 64)])
    result = tune(spec, measure_config=MeasureConfig(max_total_s=1.0, target_round_s=0.05), progress=None)
    rt = result.runtime
    built = dict(rt.built)
    if args.device == "cpu":  # stand-ins, so every code path runs
        for key in list(built):
            if key.endswith("inductor"):
                built[key.replace("inductor", "inductor-reduce-overhead")] = built[key]
                built[key.replace("inductor", "cudagraphs")] = built[key]
    model = rt.model
    (x,), _ = rt.samples[0]
    with torch.no_grad():
        tokens = model.backbone(x).flatten(2).transpose(1, 2).clone()  # clone keeps the transposed strides
        contiguous = tokens.contiguous()
    with torch.inference_mode():
        x_inference = x.clone()  # what the tune's forward hooks captured: an inference tensor

    def compose(backbone: Callable[..., Any], head: Callable[..., Any]) -> Callable[[], Any]:
        def run() -> Any:
            t = backbone(x).flatten(2).transpose(1, 2)
            return model.classifier(head(t).mean(1))

        return run

    whole_ro = built.get("inductor-reduce-overhead")  # a backend that failed to build: its rows say so
    bb_ro, bb_cg = built.get("backbone/inductor-reduce-overhead"), built.get("backbone/cudagraphs")
    head_cg, head_ro = built.get("head/cudagraphs"), built.get("head/inductor-reduce-overhead")
    variants: dict[str, Callable[[], Any]] = {
        "eager (whole)": lambda: model(x),
        "inductor-reduce-overhead (whole)": lambda: whole_ro(x),
        "cudagraphs (whole)": lambda: built.get("cudagraphs")(x),
        f"mixed as tuned {dict(result.module_choice)}": lambda: built[MIXED](x),
        "backbone/inductor-reduce-overhead alone": lambda: bb_ro(x),
        "backbone/inductor-reduce-overhead alone, inference-tensor input": lambda: bb_ro(x_inference),
        "backbone/cudagraphs alone": lambda: bb_cg(x),
        "head/cudagraphs alone": lambda: head_cg(tokens),
        "head/cudagraphs alone, contiguous input": lambda: head_cg(contiguous),
        "head/inductor-reduce-overhead alone": lambda: head_ro(tokens),
        "head eager alone": lambda: model.head(tokens),
        "compose backbone RO + head CG": compose(bb_ro, head_cg),
        "compose backbone RO + head RO": compose(bb_ro, head_ro),
        "compose backbone RO + head eager": compose(bb_ro, model.head),
        "compose backbone CG + head CG": compose(bb_cg, head_cg),
    }
    from torch._dynamo.utils import counters

    rows: dict[str, Any] = {}
    with torch.no_grad():
        for label, fn in variants.items():
            graphs_before = counters["stats"]["unique_graphs"]
            try:
                rows[label] = _time(fn, iters=args.iters, blocks=args.blocks)
            except Exception as exc:
                rows[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            rows[label]["graphs_compiled"] = counters["stats"]["unique_graphs"] - graphs_before
            print(label, rows[label], flush=True)
        # Alternating with another compiled function, as interleaved measurement rounds do.
        alternating: dict[str, Any] = {}
        for label in ("compose backbone RO + head CG", f"mixed as tuned {dict(result.module_choice)}"):
            fn = variants[label]

            def pair(fn: Callable[[], Any] = fn) -> None:
                fn()
                whole_ro(x)

            try:
                alternating[label] = _time(pair, iters=args.iters, blocks=args.blocks)
            except Exception as exc:
                alternating[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            print("alternating with whole RO:", label, alternating[label], flush=True)
        profile: dict[str, Any] = {}
        for label in ("inductor-reduce-overhead (whole)", f"mixed as tuned {dict(result.module_choice)}"):
            fn = variants[label]
            activities = [torch.profiler.ProfilerActivity.CPU]
            if args.device == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            try:
                with torch.profiler.profile(activities=activities) as prof:
                    for _ in range(20):
                        fn()
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
            except Exception as exc:
                table = f"{type(exc).__name__}: {exc}"[:300]
            profile[label] = table
            print(label, "\n", table, flush=True)

    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu smoke run",
        "torch": torch.__version__,
        "tuned": {backend_key(r.backend, r.module or ""): (r.latency.median_ms if r.latency else None)
                  for r in result.backends},
        "module_choice": dict(result.module_choice),
        "alone": rows,
        "alternating_with_whole_ro": alternating,
        "profile_20_calls": profile,
        "elapsed_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mixed_overhead.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Composite model: mixed choice vs its parts (bench/mixed_overhead.py)",
        "",
        f"{report['created_at']} · {report['gpu']} · torch {report['torch']}",
        "",
        f"Each row timed on its own: {args.blocks} blocks of {args.iters} back-to-back calls; median block.",
        "",
        "| variant | GPU ms/call | host µs/call | graphs compiled while timing |",
        "|---|---:|---:|---:|",
    ]
    for label, row in rows.items():
        if "error" in row:
            lines.append(f"| {label} | {row['error']} | | |")
        else:
            lines.append(f"| {label} | {row['gpu_ms']:.3f} | {row['cpu_us']:.0f} | {row['graphs_compiled']} |")
    lines += ["", "Alternating each call with the whole-model reduce-overhead graph (ms for the pair):", "",
              "| variant | GPU ms/pair | host µs/pair |", "|---|---:|---:|"]
    for label, row in alternating.items():
        if "error" in row:
            lines.append(f"| {label} | {row['error']} | |")
        else:
            lines.append(f"| {label} | {row['gpu_ms']:.3f} | {row['cpu_us']:.0f} |")
    lines += ["", f"Written in {report['elapsed_s']:.0f} s; profiler tables in mixed_overhead.json.", ""]
    (args.out / "mixed_overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
