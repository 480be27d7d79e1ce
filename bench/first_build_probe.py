"""What the first compile in a process costs beyond its model, and whether a warm-up takes it out.

A relative PR check builds the head first and the base second in one process. On the H200 the
head's resnet50 inductor build read 9.3 s and the base's 2.8 s, both cache hits of the same graph,
and the check failed on build time. This probe builds the example's image classifier with the real
inductor backend in fresh processes sharing one private compile cache:

1. ``fill``: one build, cold (fills the cache);
2. ``plain``: two builds of fresh model instances, the first paying the process's setup;
3. ``warmed``: ``aitune_ci.compile_warmup.warm_compiler`` first, then two builds.

``plain`` and ``warmed`` alternate ``--repeats`` times. If the warm-up takes the setup out, the
warmed first build costs what a second build costs.

    PYTHONPATH=.:examples/gpu-repo python bench/first_build_probe.py [--device cpu] [--small] [--out DIR]

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

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 1


def _child(mode: str, device_name: str, small: bool, builds: int) -> dict[str, Any]:
    """One process: (warm-up,) then ``builds`` inductor builds timed as the engine times them."""
    t_start = time.perf_counter()
    import torch

    sys.path.insert(0, str(ROOT / "examples" / "gpu-repo"))
    from acme_models.vision import image_classifier

    from aitune_ci.backends.base import BuildContext
    from aitune_ci.backends.inductor import InductorBackend, compile_counters
    from aitune_ci.compile_warmup import warm_compiler

    device = torch.device(device_name)
    size, batch = (64, 4) if small else (224, 32)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, size, size, device=device)
    out: dict[str, Any] = {"mode": mode, "import_s": time.perf_counter() - t_start}
    if mode == "warmed":
        out["warmup_s"] = warm_compiler(device)
    times, states = [], []
    with tempfile.TemporaryDirectory() as work:
        for i in range(builds):
            model = image_classifier(small=small).eval().to(device)
            ctx = BuildContext(device=device, dtype=torch.float32, workdir=Path(work) / str(i))
            ctx.workdir.mkdir()
            before = compile_counters()
            t0 = time.perf_counter()
            built = InductorBackend().build(model, [((x,), {})], ctx)
            with torch.inference_mode():
                built(x)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            after = compile_counters()
            states.append({k: after[k] - before[k] for k in after if after[k] != before[k]})
    out["build_s"] = times
    out["counters"] = states
    return out


def _run(mode: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    builds = 1 if mode == "fill" else 2
    cmd = [sys.executable, __file__, "--child", mode, "--device", args.device, "--builds", str(builds)]
    if args.small:
        cmd.append("--small")
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
        f"{data['machine']}, {data['model']}, the real inductor backend, one private compile cache filled "
        "by one cold build first. Each row is a fresh process; times are build + first call + sync, as the "
        "engine times a build.",
        "",
        "| process | warm-up s | first build s | second build s | first / second |",
        "|---|--:|--:|--:|--:|",
    ]
    for run in data["runs"]:
        first, second = run["build_s"]
        warm = f"{run['warmup_s']:.2f}" if run.get("warmup_s") is not None else "-"
        lines.append(f"| {run['mode']} | {warm} | {first:.2f} | {second:.2f} | {first / second:.2f} |")
    s = data["summary"]
    lines += [
        "",
        f"Median first / second build: without a warm-up {s['plain_first_over_second']:.2f}x, "
        f"after the warm-up {s['warmed_first_over_second']:.2f}x. Cold fill: {data['fill']['build_s'][0]:.1f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="CPU-sized model (a smoke run)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--builds", type=int, default=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.device, args.small, args.builds)), flush=True)
        return

    import torch

    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    machine = gpu or f"cpu {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    machine += f", torch {torch.__version__}, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": f"{cache}/inductor", "TRITON_CACHE_DIR": f"{cache}/triton"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        fill = _run("fill", args, env)
        runs = [_run(mode, args, env) for _ in range(args.repeats) for mode in ("plain", "warmed")]

    def ratio(mode: str) -> float:
        return statistics.median(r["build_s"][0] / r["build_s"][1] for r in runs if r["mode"] == mode)

    data = {
        "schema_version": SCHEMA_VERSION,
        "machine": machine,
        "model": "the example's image classifier (ResNet-50" + (", CPU size)" if args.small else ", bs32 224x224)"),
        "fill": fill,
        "runs": runs,
        "summary": {"plain_first_over_second": ratio("plain"), "warmed_first_over_second": ratio("warmed")},
    }
    slug = (gpu or "").replace("NVIDIA ", "").lower().replace(" ", "-")
    out = Path(args.out) if args.out else ROOT / "reports" / slug if gpu else ROOT / "reports"
    out.mkdir(parents=True, exist_ok=True)
    from aitune_ci.atomic import atomic_write_text

    atomic_write_text(out / "first_build_probe.json", json.dumps(data, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out / "first_build_probe.md", _markdown(data))
    print(_markdown(data))


if __name__ == "__main__":
    main()
