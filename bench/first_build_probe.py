"""What the first compile in a process costs beyond its model, and whether a warm-up takes it out.

A relative PR check builds the head first and the base second in one process. On the H200 the
head's resnet50 inductor build read 9.3 s and the base's 2.8 s, both cache hits of the same graph,
and the check failed on build time. This probe builds the example's image classifier with the real
inductor backend in fresh processes sharing one private compile cache:

1. ``fill``: one build, cold (fills the cache);
2. ``plain``: two builds of fresh model instances, the first paying the process's setup;
3. ``warmed``: the engine's one-time set-up (``aitune_ci.engine.one_time_setup``) first, then two builds.

4. ``warmed-pool`` (with ``--with-pool``): as ``warmed``, then waits, untimed, until inductor's
   compile worker pool answers. A process compiles its Triton kernels in the main process, one by one,
   until that pool is ready (``AsyncCompile.use_process_pool``), so a first build that starts right
   after the warm-up may compile serially; whether that is the warmed first build's remaining 1.3x on
   the H200, and what the wait costs, is what this mode measures (the pool serves Triton only: on a
   CPU this mode does what ``warmed`` does).

``plain`` and ``warmed`` (and ``warmed-pool``) alternate ``--repeats`` times. If the warm-up takes the setup out, the
warmed first build costs what a second build costs.

``--backend aoti`` asks the same of AOTInductor, whose head build in a warm PR check took 50-64 s
against the base's 13-18 s (the same graph in the refactor check): 48 s of it was inductor's CPU ISA
probe, which the warm-up now runs (``aitune_ci.isa_probe``). ``--backend onnxruntime`` asks it of the
ONNX exporter, whose first export imports onnx and onnxscript (``prepare_process`` warms it).
``--profile`` records, per build, torch's own compile phase times (``compilation_time_metrics``)
and the functions cProfile saw take longest, to show where a first build's extra time goes; the
profiler's overhead is then inside both builds' times.

    PYTHONPATH=.:examples/gpu-repo python bench/first_build_probe.py [--backend aoti] [--profile]
        [--device cpu] [--small] [--out DIR]

Writes ``first_build_probe.{json,md}`` into ``--out`` (default ``reports/<gpu>/`` on CUDA, ``reports/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _gpu_folder import gpu_folder  # bench/, on sys.path as the script's folder

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1


def _phase_seconds() -> dict[str, float]:
    """torch's own compile phase timings so far in this process, summed per phase."""
    from torch._dynamo.utils import compilation_time_metrics

    return {k: float(sum(v)) for k, v in compilation_time_metrics.items()}


def _top_functions(profile: Any, limit: int = 20) -> list[dict[str, Any]]:
    """The functions cProfile saw spend the most time in themselves (waits on a compiler or a worker
    pool show as a lock's or a poll's own time); >= 0.2 s each."""
    import pstats

    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if own >= 0.2:
            short = "/".join(Path(filename).parts[-3:])
            rows.append({"function": f"{short}:{line}({name})", "calls": calls, "own_s": round(own, 2),
                         "cumulative_s": round(cumulative, 2)})  # fmt: skip
    return sorted(rows, key=lambda r: -r["own_s"])[:limit]


class _ChildProcesses:
    """The programs this process starts through ``subprocess.Popen`` during a build and waits for
    (``run``, ``check_output``, ``communicate``): name, first arguments, wall time from start to exit.
    Programs that inductor's compile workers start, or that are polled rather than waited for, are
    not seen."""

    def __init__(self) -> None:
        import subprocess as sp

        self.runs: list[dict[str, Any]] = []
        self._sp = sp
        self._init, self._wait = sp.Popen.__init__, sp.Popen.wait

    def __enter__(self) -> _ChildProcesses:
        tracer, init, wait = self, self._init, self._wait

        def traced_init(popen: Any, args: Any, *a: Any, **k: Any) -> None:
            popen._probe_t0 = time.perf_counter()
            argv = [args] if isinstance(args, (str, bytes, os.PathLike)) else list(args) or ["?"]
            popen._probe_argv = [
                Path(str(argv[0]).split()[0] if argv[0] else "?").name,
                *[str(x)[-60:] for x in argv[1:4]],
            ]
            init(popen, args, *a, **k)

        def traced_wait(popen: Any, *a: Any, **k: Any) -> Any:
            code = wait(popen, *a, **k)
            if getattr(popen, "_probe_t0", None) is not None:
                tracer.runs.append({"argv": popen._probe_argv, "s": round(time.perf_counter() - popen._probe_t0, 3)})
                popen._probe_t0 = None
            return code

        self._sp.Popen.__init__, self._sp.Popen.wait = traced_init, traced_wait  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sp.Popen.__init__, self._sp.Popen.wait = self._init, self._wait  # type: ignore[method-assign]

    def summary(self) -> dict[str, Any]:
        by_program: dict[str, list[float]] = {}
        for run in self.runs:
            by_program.setdefault(run["argv"][0], []).append(run["s"])
        return {
            "by_program": {k: {"count": len(v), "total_s": round(sum(v), 2)} for k, v in by_program.items()},
            "longest": sorted(self.runs, key=lambda r: -r["s"])[:8],
        }


def _child(
    mode: str, device_name: str, small: bool, builds: int, backend: str = "inductor", profile: bool = False
) -> dict[str, Any]:
    """One process: (warm-up,) then ``builds`` builds timed as the engine times them."""
    t_start = time.perf_counter()
    import torch

    sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))
    from acme_models.vision import image_classifier

    from aitune_ci.backends.base import BuildContext
    from aitune_ci.backends.inductor import compile_counters
    from aitune_ci.backends.registry import get_backend
    from aitune_ci.engine import one_time_setup

    device = torch.device(device_name)
    size, batch = (64, 4) if small else (224, 32)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    out: dict[str, Any] = {"mode": mode, "import_s": time.perf_counter() - t_start}
    if mode in ("warmed", "warmed-pool"):  # what the engine pays before a build is timed
        t0 = time.perf_counter()
        one_time_setup(get_backend(backend), device)
        out["warmup_s"] = time.perf_counter() - t0
    if mode == "warmed-pool" and device.type == "cuda":  # the pool serves Triton: a CPU build never starts it
        from torch._inductor.async_compile import AsyncCompile

        t0 = time.perf_counter()
        out["pool_ready_after_warmup"] = bool(AsyncCompile.use_process_pool())
        AsyncCompile.wait_pool_ready(timeout=120)  # returns at once where no pool was started
        out["pool_wait_s"] = time.perf_counter() - t0
    times, states, phases, profiles, children = [], [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        for i in range(builds):
            model = image_classifier(small=small).eval().to(device)
            ctx = BuildContext(device=device, dtype=torch.float32, workdir=Path(work) / str(i))
            ctx.workdir.mkdir()
            before, phases_before = compile_counters(), _phase_seconds()
            profiler = None
            if profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            t0 = time.perf_counter()
            with _ChildProcesses() as started:
                built = get_backend(backend).build(model, [((x,), {})], ctx)
                with torch.inference_mode():
                    built(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            children.append(started.summary())
            if profiler is not None:
                profiler.disable()
                profiles.append(_top_functions(profiler))
            after, phases_after = compile_counters(), _phase_seconds()
            states.append({k: after[k] - before[k] for k in after if after[k] != before[k]})
            phases.append({
                k: round(v - phases_before.get(k, 0.0), 2) for k, v in phases_after.items()
                if v - phases_before.get(k, 0.0) >= 0.05
            })  # fmt: skip
    out["build_s"] = times
    out["counters"] = states
    out["phases_s"] = phases
    out["child_processes"] = children
    if profile:
        out["top_functions"] = profiles
    return out


def _run(mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    builds = 1 if mode == "fill" else 2
    cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--builds", str(builds),
           "--backend", args.backend]  # fmt: skip
    if args.small:
        cmd.append("--small")
    if args.profile:
        cmd.append("--profile")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{mode}: {json.dumps(result)}", flush=True)
    return result


def _markdown(data: dict[str, Any]) -> str:
    lines = [
        "# The first compile in a process (`bench/first_build_probe.py`)",
        "",
        f"{data['machine']}, {data['model']}, the real {data.get('backend', 'inductor')} backend, one private "
        "compile cache filled "
        "by one cold build first. Each row is a fresh process; times are build + first call + sync, as the "
        "engine times a build.",
        "",
        "| process | warm-up s | pool wait s | first build s | second build s | first / second |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for run in data["runs"]:
        first, second = run["build_s"]
        warm = f"{run['warmup_s']:.2f}" if run.get("warmup_s") is not None else "-"
        pool = f"{run['pool_wait_s']:.2f}" if run.get("pool_wait_s") is not None else "-"
        lines.append(f"| {run['mode']} | {warm} | {pool} | {first:.2f} | {second:.2f} | {first / second:.2f} |")
    s = data["summary"]
    warmed, pooled = s.get("warmed_first_over_second"), s.get("warmed_pool_first_over_second")
    lines += [
        "",
        f"Median first / second build: without a warm-up {s['plain_first_over_second']:.2f}x"
        + (f", after the warm-up {warmed:.2f}x" if warmed is not None else "")
        + (f", after the warm-up and the pool {pooled:.2f}x" if pooled is not None else "")
        + f". Cold fill: {data['fill']['build_s'][0]:.1f} s.",
        "",
    ]
    for run in data["runs"]:
        if not run.get("phases_s"):
            continue
        lines += [f"## {run['mode']} process: torch's compile phases (s), first build / second build", ""]
        first, second = run["phases_s"]
        lines += ["| phase | first | second |", "|---|--:|--:|"]
        for key in sorted(set(first) | set(second), key=lambda k: -first.get(k, 0.0))[:20]:
            lines.append(f"| {key} | {first.get(key, 0.0):.2f} | {second.get(key, 0.0):.2f} |")
        for i, started in enumerate(run.get("child_processes", [])):
            programs = ", ".join(
                f"{name} x{v['count']} ({v['total_s']:.1f} s)" for name, v in started["by_program"].items()
            )
            lines += ["", f"Programs started by build {i + 1}: {programs or 'none'}"]
            lines += [f"- {r['s']:.2f} s: `{' '.join(r['argv'])}`" for r in started["longest"][:5]]
        for i, top in enumerate(run.get("top_functions", [])):
            lines += ["", f"Most time spent in the function itself, build {i + 1}:", ""]
            lines += [
                f"- {row['own_s']:.1f} s own ({row['cumulative_s']:.1f} s with callees), {row['calls']} calls: "
                f"`{row['function']}`"
                for row in top[:15]
            ]
        lines.append("")
        break  # one process's breakdown: the others are in the JSON
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized model (a smoke run)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--backend", default="inductor", choices=("inductor", "aoti", "onnxruntime"))
    parser.add_argument("--profile", action="store_true", help="compile phase times and cProfile's top functions")
    parser.add_argument(
        "--with-pool", action="store_true", help="also a warmed process that waits for inductor's compile workers"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--builds", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(_child(args.child, args.device, args.small, args.builds, args.backend, args.profile)), flush=True
        )
        return

    import torch

    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    machine = gpu or f"cpu {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    machine += f", torch {torch.__version__}, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{cache}/inductor", "TRITON_CACHE_DIR": f"{cache}/triton"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        fill = _run("fill", args, env)
        modes = ("plain", "warmed", *(("warmed-pool",) if args.with_pool else ()))
        runs = [_run(mode, args, env) for _ in range(args.repeats) for mode in modes]

    def ratio(mode: str) -> float | None:
        found = [r["build_s"][0] / r["build_s"][1] for r in runs if r["mode"] == mode]
        return statistics.median(found) if found else None

    data = {
        "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "backend": args.backend,
        "model": "the example's image classifier (ResNet-50" + (", CPU size)" if args.small else ", bs32 224x224)"),
        "fill": fill,
        "runs": runs,
        "summary": {
            "plain_first_over_second": ratio("plain"),
            "warmed_first_over_second": ratio("warmed"),
            "warmed_pool_first_over_second": ratio("warmed-pool"),
        },
    }
    out = Path(args.out) if args.out else ROOT / "reports" / gpu_folder(gpu) if gpu else ROOT / "reports"
    out.mkdir(parents=True, exist_ok=True)
    from aitune_ci.atomic import atomic_write_text

    name = "first_build_probe" if args.backend == "inductor" else f"first_build_probe_{args.backend}"
    atomic_write_text(out / f"{name}.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / f"{name}.md", _markdown(data))
    print(_markdown(data))


if __name__ == "__main__":
    main()
