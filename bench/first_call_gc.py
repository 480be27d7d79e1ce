"""How much of an artifact's first call, timed inside a PR check's process, is garbage collection of that process's heap.

A check times the winner's ``.ait`` load and first call in the process that tuned it (``check._time_load``),
and gates the first call at +50%. The example's BERT encoder read 0.65x to 1.40x between the two sides
of PRs that left its computation alone (``reports/h200/pr_check/``). This tunes what a PR check holds
by then (the image classifier, then the encoder's head and base, eager and inductor), saves the
encoder's inductor winner, and times its load and first call:

- in this process, the heap as it is, and the heap frozen (``aitune_ci.heap.frozen_heap``), in turns
  (ABBA), with the collector's time and full collections inside each first call (``gc.callbacks``);
- in fresh processes, each loading the artifact once: what a serving process pays.

    PYTHONPATH=.:examples/gpu-repo python bench/first_call_gc.py [--out DIR] [--rounds N] [--fresh K]

``--device cpu --small`` runs it here (CPU-sized models). Writes ``first_call_gc.{json,md}`` into
``--out`` (default ``reports/<gpu>/``, or ``reports/cpu-small/`` for the CPU run).
"""

from __future__ import annotations

import argparse
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

import torch  # noqa: E402

from aitune_ci.atomic import atomic_write_text  # noqa: E402
from aitune_ci.heap import frozen_heap  # noqa: E402
from aitune_ci.spec import TuneSpec  # noqa: E402
from aitune_ci.store.artifact import load, save  # noqa: E402

SCHEMA_VERSION = 1
MODES = ("as-is", "frozen")


class _GcClock:
    """The collector's time and full collections since :meth:`reset` (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.ms = 0.0
        self.full = 0
        self._t0 = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms += (time.perf_counter() - self._t0) * 1e3
            self.full += info["generation"] == 2

    def reset(self) -> None:
        self.ms, self.full = 0.0, 0


def _encoder_spec(layers: int, device: str, small: bool) -> TuneSpec:
    from acme_models import text

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


def _time_once(path: Path, spec: TuneSpec, sha: str, samples: Any, device: str, clock: _GcClock) -> dict[str, Any]:
    """One load and first call, as ``check._time_load`` times them, with the collector's share."""
    import copy

    model = copy.deepcopy(spec.model)
    args, kwargs = samples
    clock.reset()
    t0 = time.perf_counter()
    runner = load(path, model, expected_sha256=sha).runner
    load_s = time.perf_counter() - t0
    gc_load_ms = clock.ms
    clock.reset()
    t1 = time.perf_counter()
    with torch.inference_mode():
        runner(*args, **kwargs)
    if device == "cuda":
        torch.cuda.synchronize()
    first_ms = (time.perf_counter() - t1) * 1e3
    return {
        "load_s": round(load_s, 4),
        "first_call_ms": round(first_ms, 1),
        "gc_ms_in_load": round(gc_load_ms, 1),
        "gc_ms_in_first_call": round(clock.ms, 1),
        "full_collections_in_first_call": clock.full,
    }


def _child(args: argparse.Namespace) -> int:
    """A fresh process: build the encoder's structure, load the artifact once, time it."""
    clock = _GcClock()
    spec = _encoder_spec(args.layers, args.device, args.small)
    samples = ((), {k: v.to(args.device) for k, v in spec.samples[0].items()})
    row = _time_once(Path(args.child), spec, args.sha, samples, args.device, clock)
    row["heap_objects"] = len(gc.get_objects())
    print("CHILD " + json.dumps(row), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=None)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke run. Default: cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized models")
    parser.add_argument("--rounds", type=int, default=4, help="ABBA rounds in this process (4 loads each)")
    parser.add_argument("--fresh", type=int, default=4, help="loads in fresh processes")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sha", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--layers", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    from aitune_ci.engine import tune
    from aitune_ci.measure import MeasureConfig

    device = args.device
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    default_out = ROOT / "reports" / ("cpu-small" if device == "cpu" else gpu.lower().replace("nvidia ", "").split()[0])
    out = Path(args.out) if args.out else default_out
    out.mkdir(parents=True, exist_ok=True)
    clock = _GcClock()
    config = MeasureConfig(max_total_s=2.0)  # as the PR check (--aitune-measure-seconds 2)
    t_start = time.perf_counter()
    # What a PR check's process holds when it times the encoder: the image classifier's tune, then
    # the encoder's head (12 layers, a deeper PR) and base (10 layers).
    kept = [tune(_image_spec(device, args.small), measure_config=config)]
    kept.append(tune(_encoder_spec(12, device, args.small), measure_config=config))
    spec = _encoder_spec(10, device, args.small)
    base = tune(spec, measure_config=config)
    kept.append(base)
    tuned_s = time.perf_counter() - t_start
    folder = Path(tempfile.mkdtemp(prefix="aitune-first-call-gc-"))
    path = folder / "tune_text_encoder.ait"
    sha = save(replace(base, winner="inductor"), path).sha256
    samples = base.runtime.samples[0]
    heap = len(gc.get_objects())
    print(f"tuned in {tuned_s:.1f} s; {heap} objects tracked by the collector", flush=True)
    rows: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for mode in MODES if r % 2 == 0 else MODES[::-1]:
            if mode == "frozen":
                with frozen_heap():
                    row = _time_once(path, spec, sha, samples, device, clock)
            else:
                row = _time_once(path, spec, sha, samples, device, clock)
            row.update(mode=mode, round=r, heap_objects=len(gc.get_objects()))
            rows.append(row)
            print(json.dumps(row), flush=True)
    fresh: list[dict[str, Any]] = []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "examples" / "gpu-repo")])}
    for _ in range(args.fresh):
        cmd = [sys.executable, __file__, "--child", str(path), "--sha", sha, "--device", device, "--layers", "10"]
        done = subprocess.run(cmd + (["--small"] if args.small else []), capture_output=True, text=True, env=env)
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("CHILD ")), None)
        if line is None:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            raise SystemExit(f"a fresh process failed (rc {done.returncode})")
        fresh.append(json.loads(line[len("CHILD ") :]))
        print("fresh", json.dumps(fresh[-1]), flush=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "gpu": gpu,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "cpus": len(os.sched_getaffinity(0)),
        "small": args.small,
        "tuned_s": round(tuned_s, 1),
        "heap_objects": heap,
        "in_process": rows,
        "fresh_processes": fresh,
    }
    atomic_write_text(out / "first_call_gc.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(out / "first_call_gc.md", _markdown(report))
    print(_markdown(report))
    return 0


def _summary(rows: list[dict[str, Any]]) -> str:
    first = [r["first_call_ms"] for r in rows]
    gc_ms = [r["gc_ms_in_first_call"] for r in rows]
    full = sum(r["full_collections_in_first_call"] for r in rows)
    return (
        f"{len(rows)} | {statistics.median(first):.0f} | {min(first):.0f}-{max(first):.0f} | "
        f"{statistics.median(gc_ms):.0f} | {max(gc_ms):.0f} | {full}"
    )


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        "# An artifact's first call inside a PR check's process, and its garbage collection (`bench/first_call_gc.py`)",
        "",
        f"{report['gpu']}, torch {report['torch']}, Python {report['python']}, {report['cpus']} CPUs"
        f"{' (CPU-sized models)' if report['small'] else ''}. The process tuned the image classifier and the "
        f"encoder's head and base in {report['tuned_s']} s and then held {report['heap_objects']} objects "
        "tracked by the collector. The encoder's inductor artifact (10 layers) was loaded and called once per row.",
        "",
        "| where | loads | first call median ms | range ms | GC median ms | GC max ms | full collections |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for mode in MODES:
        rows = [r for r in report["in_process"] if r["mode"] == mode]
        if rows:
            lines.append(f"| this process, heap {mode} | {_summary(rows)} |")
    if report["fresh_processes"]:
        lines.append(f"| a fresh process each | {_summary(report['fresh_processes'])} |")
    lines += ["", "Every load, in order, is in the JSON (`in_process`, `fresh_processes`)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
