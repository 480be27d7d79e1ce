"""How much of an artifact's first call, timed inside a PR check's process, is garbage collection of that process's heap.

A check times the winner's ``.ait`` load and first call in the process that tuned it (``check._time_load``),
and gates the first call at +50%. The example's BERT encoder read 0.65x to 1.40x between the two sides
of PRs that left its computation alone (``reports/h200/pr_check/``). Each mode below runs in a process
of its own that first tunes what a PR check holds by then (the image classifier, then the encoder's
head and base, eager and inductor), saves the encoder's inductor winner, then times its load and first
call ``--loads`` times in a row:

- ``as-is``: as the checks timed it before, the collector on and the heap as the tunes left it;
- ``gc-off``: the collector off for the load and the call (``aitune_ci.gc_pause.gc_paused``), as now;
- ``frozen``: the heap frozen instead (``gc.freeze()``), the first version of the fix.

One process per mode, because a mode changes the collector's counters for whatever follows it (a full
collection inside a frozen block resets the old generation's count to the unfrozen objects alone).
The collector's time and its collections inside each call are read from ``gc.callbacks``.

    PYTHONPATH=.:examples/gpu-repo python bench/first_call_gc.py [--out DIR] [--loads N] [--modes as-is,gc-off]

``--device cpu --small`` runs it here (CPU-sized models). Writes ``first_call_gc.{json,md}`` into
``--out`` (default ``reports/<gpu>/``, or ``reports/cpu-small/`` for the CPU run).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from _gpu_folder import report_dir  # noqa: E402  (bench/, on sys.path as the script's folder)
from compiled_pair_probe import _spec  # noqa: E402  (the example's encoder at a given depth, eager and inductor)

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.gc_pause import gc_paused  # noqa: E402
from aitune_ci.spec import TuneSpec  # noqa: E402
from aitune_ci.store.artifact import load, save  # noqa: E402

SCHEMA_VERSION = 2
MODES = ("as-is", "gc-off", "frozen")


class _GcClock:
    """The collector's time, collections, full collections and longest collection since :meth:`reset`."""

    def __init__(self) -> None:
        self.reset()
        self._t0 = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        took = (time.perf_counter() - self._t0) * 1e3
        self.ms += took
        self.count += 1
        self.full += info["generation"] == 2
        self.longest_ms = max(self.longest_ms, took)

    def reset(self) -> None:
        self.ms, self.count, self.full, self.longest_ms = 0.0, 0, 0, 0.0


@contextlib.contextmanager
def _frozen() -> Any:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


PAUSES = {"as-is": contextlib.nullcontext, "gc-off": gc_paused, "frozen": _frozen}


def _image_spec(device: str, small: bool) -> TuneSpec:
    from acme_models import image_classifier

    torch.manual_seed(0)
    size, batch = (64, 4) if small else (224, 32)
    return TuneSpec(
        model=image_classifier(small=small).eval(),
        samples=[torch.randn(batch, 3, size, size)],
        backends=["eager", "inductor"],
        device=device,
    )


def _time_once(path: Path, spec: TuneSpec, sha: str, samples: Any, mode: str, clock: _GcClock) -> dict[str, Any]:
    """One load and first call, as ``check._time_load`` times them (the copy outside the timed block)."""
    model = copy.deepcopy(spec.model)
    args, kwargs = samples
    with PAUSES[mode]():
        clock.reset()
        t0 = time.perf_counter()
        runner = load(path, model, expected_sha256=sha).runner
        load_s = time.perf_counter() - t0
        gc_load_ms = clock.ms
        clock.reset()
        t1 = time.perf_counter()
        with torch.inference_mode():
            runner(*args, **kwargs)
        if spec.device == "cuda":
            torch.cuda.synchronize()
        first_ms = (time.perf_counter() - t1) * 1e3
    return {
        "load_s": round(load_s, 4),
        "first_call_ms": round(first_ms, 1),
        "gc_ms_in_load": round(gc_load_ms, 1),
        "gc_ms_in_first_call": round(clock.ms, 1),
        "collections_in_first_call": clock.count,
        "full_collections_in_first_call": clock.full,
        "longest_collection_ms": round(clock.longest_ms, 1),
    }


def _run_mode(args: argparse.Namespace) -> int:
    """One mode's process: the tunes a PR check holds by the encoder's load timing, then ``--loads`` loads."""
    from aitune_ci.engine import tune
    from aitune_ci.measure import MeasureConfig

    device, mode = args.device, args.mode
    clock = _GcClock()
    config = MeasureConfig(max_total_s=2.0)  # as the PR check (--aitune-measure-seconds 2)
    t_start = time.perf_counter()
    kept = [tune(_image_spec(device, args.small), measure_config=config)]
    kept.append(tune(_spec(12, device, args.small), measure_config=config))  # a deeper head
    spec = _spec(10, device, args.small)
    base = tune(spec, measure_config=config)
    kept.append(base)
    tuned_s = time.perf_counter() - t_start
    path = Path(tempfile.mkdtemp(prefix="aitune-first-call-gc-")) / "tune_text_encoder.ait"
    sha = save(replace(base, winner="inductor"), path).sha256
    heap = len(gc.get_objects())
    rows = []
    for i in range(args.loads):
        row = _time_once(path, spec, sha, base.runtime.samples[0], mode, clock)
        row.update(mode=mode, load=i, heap_objects=len(gc.get_objects()))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("MODE " + json.dumps({"mode": mode, "tuned_s": round(tuned_s, 1), "heap_objects": heap, "rows": rows}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run. Default: cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized models")
    parser.add_argument("--loads", type=int, default=6, help="loads timed in each mode's process")
    parser.add_argument("--modes", default=",".join(MODES), help=f"which, comma-separated. Default: {','.join(MODES)}")
    parser.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        return _run_mode(args)
    device = args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    out = Path(args.out) if args.out else report_dir(device, cpu="cpu-small")
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples" / "gpu-repo")])}
    wanted = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(wanted) - set(MODES))
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: choose from {', '.join(MODES)}")
    modes = []
    for mode in wanted:
        cmd = [sys.executable, __file__, "--mode", mode, "--device", device, "--loads", str(args.loads)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd + (["--small"] if args.small else []), capture_output=True, text=True, env=env)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("MODE ")), None)
        if line is None:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"the {mode} process failed (rc {done.returncode})")
        modes.append(json.loads(line[len("MODE ") :]))
        print(f"{mode}: {time.perf_counter() - t0:.0f} s", flush=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpus": len(os.sched_getaffinity(0)),
        "small": args.small,
        "modes": modes,
    }
    atomic_write_text(out / "first_call_gc.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "first_call_gc.md", _markdown(report))
    print(_markdown(report))
    return 0


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# An artifact's first call inside a PR check's process, and its garbage collection (`bench/first_call_gc.py`)",
        "",
        f"{report['gpu']}, torch {report['torch']}, Python {report['python']}, {report['cpus']} CPUs"
        f"{' (CPU-sized models)' if report['small'] else ''}. Each row is a process of its own: it tuned the "
        "image classifier and the encoder's head and base, then loaded the encoder's inductor artifact "
        "(10 layers) and called it once, several times in a row.",
        "",
        "| mode | tuned s | heap objects | loads | first call median ms | range ms | collector ms in first call, median (max) "
        "| full collections | longest collection ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for m in report["modes"]:
        rows = m["rows"]
        first = [r["first_call_ms"] for r in rows]
        gc_ms = [r["gc_ms_in_first_call"] for r in rows]
        lines.append(
            f"| {m['mode']} | {m['tuned_s']} | {m['heap_objects']} | {len(rows)} | {statistics.median(first):.0f} | "
            f"{min(first):.0f}-{max(first):.0f} | {statistics.median(gc_ms):.0f} ({max(gc_ms):.0f}) | "
            f"{sum(r['full_collections_in_first_call'] for r in rows)} | "
            f"{max(r['longest_collection_ms'] for r in rows):.0f} |"
        )
    lines += ["", "Every load, in order, is in the JSON (`modes[].rows`)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
