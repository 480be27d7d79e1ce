"""What makes the example's BERT encoder under inductor run ~20% slower for a while inside one process.

``bench/compiled_pair_probe.py`` found, on the lent H200, the base (10 layers) at 3.07 ms a call
right after the tunes and 2.51 ms later, with the head (12 layers) at ~3.0 ms throughout: in the
slow phase the two sides ran alike, so the PR check read +4.4% for a +20% slowdown. This builds
both sides as relative mode does (``tune``), then, for about a minute, times short blocks of each
side in turn and records beside every block what could explain a phase:

- wall time per call (synchronized at both ends), the host's time to enqueue the block, and the
  GPU's time between two events around it: host-bound blocks have host ≈ wall;
- the GPU's SM clock and power (NVML), the process's CPU time and threads, inductor's compile
  workers (child processes) and their CPU time, garbage collections, the load average.

The run is split into segments that each change one thing: as is; ``gc`` disabled; compile workers
shut down; as is again. Paired ratios (``measure_paired``, as ``check._pair``) open and close it.

    PYTHONPATH=.:examples/gpu-repo python bench/encoder_phase_probe.py [--out DIR] [--seconds S]

Writes ``encoder_phase_probe.{json,md}`` into ``--out`` (default ``reports/<gpu>/``);
``--device cpu --small`` is a smoke run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))
sys.path.insert(0, str(ROOT / "bench"))

from _gpu_folder import report_dir  # noqa: E402  (bench/, on sys.path as the script's folder)
from compiled_pair_probe import _spec  # noqa: E402

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.engine import tune  # noqa: E402
from aitune_ci.frame_stack import on_fresh_chunk  # noqa: E402
from aitune_ci.measure import MeasureConfig, measure_paired  # noqa: E402

SEGMENTS = ("as-is", "gc-off", "workers-off", "as-is-again")


class _Nvml:
    """SM clock (MHz) and power (W) of GPU 0, or Nones where NVML is missing."""

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nv, self._h = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            self._nv = None

    def read(self) -> dict[str, Any]:
        if self._nv is None:
            return {"sm_mhz": None, "power_w": None, "throttle": None}
        nv, h = self._nv, self._h
        return {
            "sm_mhz": nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
            "power_w": nv.nvmlDeviceGetPowerUsage(h) / 1e3,
            "throttle": int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h)),
        }


def _children_cpu_s() -> tuple[int, float]:
    """Live child processes of this one (inductor's compile workers and their pool) and their CPU seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    me, count, cpu = os.getpid(), 0, 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid
            count += 1
            cpu += (int(fields[11]) + int(fields[12])) / tick
    return count, cpu


def _cpu_of_this_thread() -> int | None:
    try:
        return int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _block(fn: Callable[[], Any], device: str, calls: int) -> dict[str, float]:
    """One block of ``calls`` calls: wall, host-enqueue and GPU-event milliseconds per call."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    host = time.perf_counter() - t0
    if cuda:
        end.record()
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    gpu = start.elapsed_time(end) / calls if cuda else None
    return {"wall_ms": wall * 1e3 / calls, "host_ms": host * 1e3 / calls, "gpu_ms": gpu}


def _paired(fa: Callable[[], Any], fb: Callable[[], Any], device: str) -> dict[str, Any]:
    est = measure_paired(fa, fb, device, MeasureConfig(max_total_s=2.0))
    return {"ratio": est.ratio, "ci": [est.ci_low, est.ci_high], "n": est.n, "a_ms": est.a_ms, "b_ms": est.b_ms}


def _shutdown_workers() -> str:
    try:
        from torch._inductor.async_compile import shutdown_compile_workers

        shutdown_compile_workers()
        return "shutdown_compile_workers() called"
    except Exception as exc:  # an older or newer torch may lack it
        return f"could not shut them down: {type(exc).__name__}: {exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run. Default: cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized encoder (a smoke run)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per segment (4 segments)")
    parser.add_argument("--calls", type=int, default=20, help="calls per block")
    args = parser.parse_args()
    device = args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    out = Path(args.out or report_dir(device, cpu="cpu"))
    out.mkdir(parents=True, exist_ok=True)
    nvml = _Nvml() if device == "cuda" else None
    config = MeasureConfig(max_total_s=2.0)  # as the PR check (--aitune-measure-seconds 2)
    t_start = time.perf_counter()
    base = tune(_spec(10, device, args.small), measure_config=config)
    head = tune(_spec(12, device, args.small), measure_config=config)
    built_s = time.perf_counter() - t_start
    (a_args, a_kwargs), (b_args, b_kwargs) = base.runtime.samples[0], head.runtime.samples[0]
    sides = {}
    for backend in ("inductor", "eager"):
        old, new = base.runtime.built[backend], head.runtime.built[backend]
        sides[(backend, "base")] = lambda old=old: old(*a_args, **a_kwargs)
        sides[(backend, "head")] = lambda new=new: new(*b_args, **b_kwargs)
    report: dict[str, Any] = {
        "schema_version": 1,
        "gpu": gpu,
        "torch": torch.__version__,
        "build_s": round(built_s, 1),
        "tunes": {
            side: {row.backend: row.latency.median_ms for row in r.backends if row.latency is not None}
            for side, r in (("base", base), ("head", head))
        },
        "cpus": len(os.sched_getaffinity(0)),
        "paired_first": {},
        "segments": {},
        "blocks": [],
    }
    with torch.inference_mode():
        report["paired_first"] = {
            b: _paired(sides[(b, "base")], sides[(b, "head")], device) for b in ("inductor", "eager")
        }
        print("paired first", json.dumps(report["paired_first"]), flush=True)
        for segment in SEGMENTS:
            note = ""
            if segment == "gc-off":
                gc.disable()
            elif segment == "workers-off":
                gc.enable()
                note = _shutdown_workers()
            elif segment == "as-is-again":
                gc.enable()
            report["segments"][segment] = note
            seg_t0 = time.perf_counter()
            while time.perf_counter() - seg_t0 < args.seconds:
                for (backend, side), fn in sides.items():
                    gc_before = sum(s["collections"] for s in gc.get_stats())
                    cpu_before = time.process_time()
                    kids_before = _children_cpu_s()
                    calls = args.calls if backend == "inductor" else max(args.calls // 2, 1)
                    # from a fresh frame-stack chunk, as measure times (aitune_ci.frame_stack)
                    timing = on_fresh_chunk(lambda fn=fn, calls=calls: _block(fn, device, calls))
                    kids_after = _children_cpu_s()
                    row = {
                        "t_s": round(time.perf_counter() - t_start, 3),
                        "segment": segment,
                        "backend": backend,
                        "side": side,
                        **timing,
                        "process_cpu_ms_per_call": (time.process_time() - cpu_before) * 1e3 / calls,
                        "gc_collections": sum(s["collections"] for s in gc.get_stats()) - gc_before,
                        "threads": threading.active_count(),
                        "os_threads": len(os.listdir("/proc/self/task")),
                        "children": kids_after[0],
                        "children_cpu_s": round(kids_after[1] - kids_before[1], 4),
                        "loadavg_1m": os.getloadavg()[0],
                        "on_cpu": _cpu_of_this_thread(),
                        **(nvml.read() if nvml is not None else {}),
                    }
                    report["blocks"].append(row)
            print(segment, note, len(report["blocks"]), "blocks so far", flush=True)
        report["paired_last"] = {
            b: _paired(sides[(b, "base")], sides[(b, "head")], device) for b in ("inductor", "eager")
        }
        print("paired last", json.dumps(report["paired_last"]), flush=True)
    gc.enable()
    atomic_write_text(out / "encoder_phase_probe.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "encoder_phase_probe.md", _markdown(report))
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, Any]) -> str:
    """Per segment and backend: medians of each side's blocks, the head/base ratio, and the context."""

    def med(rows: list[dict[str, Any]], key: str) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return statistics.median(values) if values else None

    def fmt(x: float | None, spec: str = ".3f") -> str:
        return "-" if x is None else format(x, spec)

    lines = [
        "# The encoder's in-process phases (`bench/encoder_phase_probe.py`)",
        "",
        f"{report['gpu']}, torch {report['torch']}, {report['cpus']} CPUs; built in {report['build_s']} s.",
        f"Tunes' medians (ms): {report['tunes']}",
        "",
        "Paired head/base (`measure_paired`, 2 s): "
        + "; ".join(
            f"{when} {b} {p['ratio']:.3f} [{p['ci'][0]:.3f}, {p['ci'][1]:.3f}] ({p['a_ms']:.3f} → {p['b_ms']:.3f} ms)"
            for when in ("paired_first", "paired_last")
            for b, p in report.get(when, {}).items()
        ),
        "",
        "| segment | backend | base wall / host / gpu ms | head wall / host / gpu ms | head/base wall | SM MHz | children | gc |",
        "|---|---|---|---|--:|--:|--:|--:|",
    ]
    for segment, note in report["segments"].items():
        for backend in ("inductor", "eager"):
            rows = {
                s: [
                    r
                    for r in report["blocks"]
                    if r["segment"] == segment and r["backend"] == backend and r["side"] == s
                ]
                for s in ("base", "head")
            }
            if not rows["base"]:
                continue
            both = rows["base"] + rows["head"]
            base_wall, head_wall = med(rows["base"], "wall_ms"), med(rows["head"], "wall_ms")
            cells = ["/".join(fmt(med(rows[s], k)) for k in ("wall_ms", "host_ms", "gpu_ms")) for s in ("base", "head")]
            lines.append(
                f"| {segment} | {backend} | {cells[0]} | {cells[1]} | {fmt(head_wall / base_wall)} | "
                f"{fmt(med(both, 'sm_mhz'), '.0f')} | {fmt(med(both, 'children'), '.0f')} | "
                f"{sum(r['gc_collections'] for r in both)} |"
            )
        if note:
            lines.append(f"| {segment}: {note} | | | | | | | |")
    lines += [
        "",
        "Timeline of the inductor blocks, 5 s bins:",
        "",
        "| t (s) | segment | base wall / host ms | head wall / host ms | head/base | SM MHz | children CPU s | process CPU ms/call |",
        "|--:|---|---|---|--:|--:|--:|--:|",
    ]
    inductor = [r for r in report["blocks"] if r["backend"] == "inductor"]
    for start in range(0, int(max((r["t_s"] for r in inductor), default=0)) + 1, 5):
        rows = [r for r in inductor if start <= r["t_s"] < start + 5]
        base = [r for r in rows if r["side"] == "base"]
        head = [r for r in rows if r["side"] == "head"]
        if not base or not head:
            continue
        bw, hw = med(base, "wall_ms"), med(head, "wall_ms")
        lines.append(
            f"| {start} | {rows[0]['segment']} | {fmt(bw)} / {fmt(med(base, 'host_ms'))} | "
            f"{fmt(hw)} / {fmt(med(head, 'host_ms'))} | {fmt(hw / bw)} | {fmt(med(rows, 'sm_mhz'), '.0f')} | "
            f"{fmt(sum(r['children_cpu_s'] for r in rows), '.2f')} | {fmt(med(rows, 'process_cpu_ms_per_call'))} |"
        )
    lines += [
        "",
        "Every block is in the JSON (`blocks`), with its time since start: a phase shows as a run of slow blocks.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
