"""Build vs load of a ``.ait`` artifact per backend on this machine, and what inductor's cache bytes buy.

The model is tuned once here (cold inductor cache) and each backend saved. Every load then runs in a
fresh process with an empty ``TORCHINDUCTOR_CACHE_DIR`` (a CI runner with no cache), repeated, and
reports: load seconds (``ait.load``), first-call latency, and the steady-state median. The one-time
CPU ISA probe torch runs before its first C++ build (it compiles small test programs, several
seconds, cached in the inductor cache folder) is timed on its own and kept out of inductor's build
and load, so the ratio compares like with like; the report shows it separately. torch's AOTInductor
loader runs the probe too, only to word a warning; aitune-ci's aoti load skips it, so aoti's load is
measured with nothing taken out (on the lent H200 the probe had made a resnet50 package's load 46 s).

Inductor is a just-in-time backend, so it is measured three ways on the first call after load:
  pinned      the artifact's compile-cache bytes are loaded (``load_cache_artifacts``)
  unpinned    the bytes are skipped (an unpinned artifact's pickles are not trusted): a cold compile
  warm-dir    bytes skipped, but a persistent inductor cache folder from an earlier run

Run: ``.venv/bin/python bench/artifact_load.py`` (3.5 minutes on 2 CPU cores in December 2026);
``--model encoder`` for the transformer, ``--repeats N`` for more runs. Writes
``reports/artifact_load.json`` and ``reports/artifact_load.md``. On a GPU machine:
``python3 bench/artifact_load.py --device cuda --model resnet50 --backends eager,inductor
--out reports/h100/artifact_load`` (torchvision resnet50, random weights, batch 32); there the
cache entries hold compiled Triton kernels, so the question is how much of the first call is left.
"""

from __future__ import annotations

import os
import sys
import tempfile

if __name__ == "__main__" and "--child" not in sys.argv:
    # Builds start from a cold inductor cache too; set before torch is imported.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="aitune-bench-build-")

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

SCHEMA_VERSION = 1
GOAL = 20.0  # build / load, for the ahead-of-time backends
GOAL_BACKENDS = ("aoti", "onnxruntime")
# Inductor before aoti: aoti's build leaves torch._inductor.config.aot_inductor.metadata set, which
# changes the cache key of later inductor compiles in the same process (see tests/test_artifact_roundtrip.py).
BACKENDS = ("eager", "inductor", "torchao-int8dq", "onnxruntime", "aoti")
ROOT = Path(__file__).resolve().parent.parent
#: Imported (and timed) before the load: what any program running the backend imports.
LIBRARIES = {
    "onnxruntime": ("onnxruntime",),
    "torchao-int8dq": ("torchao.quantization",),
    "torchao-int8wo": ("torchao.quantization",),
    "aoti": ("torch._inductor", "torch._inductor.package"),
    "inductor": ("torch._inductor", "torch._inductor.codecache"),
}
#: ``--model`` -> (factory "module:attr", sample shape). The child rebuilds the model from the factory
#: (structure from code, weights from the artifact), as a user's program does.
MODELS = {
    "cnn": ("aitune_ci.examples.models:SmallCNN", (8, 3, 64, 64)),
    "encoder": ("aitune_ci.examples.models:SmallEncoder", None),
    "resnet50": ("torchvision.models:resnet50", (32, 3, 224, 224)),
}


def _factory(ref: str) -> Any:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# --- child: one load in a fresh process ------------------------------------------------------


def _events() -> dict[str, int]:
    from torch._dynamo.utils import compilation_time_metrics, counters

    flat = {f"{k}.{n}": v for k, c in counters.items() for n, v in c.items()}
    flat.update({k: len(v) for k, v in compilation_time_metrics.items()})
    return flat


def child(job: dict[str, Any]) -> dict[str, Any]:
    """Import, (probe), load, first call, steady state; print one JSON line."""
    t0 = time.perf_counter()
    import torch
    from safetensors.torch import load_file

    import aitune_ci as ait
    import aitune_ci.store.artifact  # noqa: F401
    from aitune_ci.backends.registry import backend_names
    # The libraries a program using the backend imports anyway: timed apart from the load itself.
    backend_names()
    for module in LIBRARIES.get(job["name"], ()):
        importlib.import_module(module)
    import_s = time.perf_counter() - t0
    probe_s = None
    if job["probe"]:
        from torch._inductor.cpu_vec_isa import pick_vec_isa

        t0 = time.perf_counter()
        pick_vec_isa()
        probe_s = time.perf_counter() - t0
    inputs = {k: v.clone() for k, v in load_file(job["inputs"]).items()}  # clone: aligned, as any torch allocation
    device = job.get("device", "cpu")
    args = [inputs[f"args.{i}"].to(device) for i in range(len(inputs))]
    make_model = _factory(job["model_factory"])
    model = make_model()
    _sync(device)
    before = _events()
    t0 = time.perf_counter()
    loaded = ait.load(job["path"], model, expected_sha256=job["sha256"] if job["pinned"] else None)
    _sync(device)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        first_out = loaded(*args)
    _sync(device)
    first_s = time.perf_counter() - t0
    _save_leaves(first_out, job["output"])
    after = _events()
    times = []
    with torch.no_grad():
        for _ in range(5):
            loaded(*args)
        for _ in range(job["steady_iters"]):
            _sync(device)
            t = time.perf_counter_ns()
            loaded(*args)
            _sync(device)
            times.append((time.perf_counter_ns() - t) / 1e6)
    # Once per process costs (aoti's crash-safe loader probe, session setup) show as the gap to this.
    t0 = time.perf_counter()
    ait.load(job["path"], make_model(), expected_sha256=job["sha256"] if job["pinned"] else None)
    load_again_s = time.perf_counter() - t0
    events = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    return {
        "import_s": import_s,
        "probe_s": probe_s,
        "load_s": load_s,
        "load_again_s": load_again_s,
        "first_call_s": first_s,
        "steady_ms": statistics.median(times),
        "torch_threads": torch.get_num_threads(),
        "compile": {
            "graphs_traced": events.get("stats.unique_graphs", 0),
            "codegen": events.get("fx_codegen_and_compile", 0),
            "cpp_builds": events.get("compile_file", 0),
            "fxgraph_cache_hit": events.get("inductor.fxgraph_cache_hit", 0),
            "fxgraph_cache_miss": events.get("inductor.fxgraph_cache_miss", 0),
            "autograd_cache_hit": events.get("aot_autograd.autograd_cache_hit", 0),
            "exports": events.get("create_aot_dispatcher_function", 0),
            "triton_kernels_from_bundle": events.get("inductor.triton_bundler_read_and_emit_kernel", 0),
            "triton_kernels_compiled": events.get("inductor.async_compile_cache_miss", 0),
            "autotune_benchmarks": sum(v for k, v in events.items() if k.startswith("inductor.benchmarking.")),
        },
        "events": events,
    }


def _save_leaves(output: Any, path: str) -> None:
    """The output's tensors, flattened in pytree order, as ``leaf.N`` in a safetensors file."""
    import torch.utils._pytree as pytree
    from safetensors.torch import save_file

    leaves = [t for t in pytree.tree_leaves(output) if hasattr(t, "detach")]
    save_file({f"leaf.{i}": t.detach().float().cpu().contiguous() for i, t in enumerate(leaves)}, path)


def _max_abs_difference(path_a: str, path_b: str) -> float:
    """Largest |a - b| over every leaf; inf where the outputs' structures differ."""
    from safetensors.torch import load_file

    a, b = load_file(path_a), load_file(path_b)
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return float("inf")
    return _max_or_nan([(a[k] - b[k]).abs().max().item() for k in a])


def _max_or_nan(values: list[float]) -> float:
    """``max``, except that one NaN makes it NaN (Python's ``max`` keeps or drops it by position)."""
    return float("nan") if any(v != v for v in values) else max(values, default=0.0)


def _run_child(job: dict[str, Any], cache_dir: Path) -> dict[str, Any]:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir), TRITON_CACHE_DIR=str(cache_dir / "triton"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed for {job['name']}/{job['variant']}:\n{proc.stderr[-3000:]}")
    run = json.loads(proc.stdout.strip().splitlines()[-1])
    # The loaded artifact must compute what its build computed in the parent process.
    run["max_abs_vs_build"] = _max_abs_difference(job["output"], job["reference"])
    return run


# --- parent ----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "probe_s": _median([r["probe_s"] for r in runs]),
        "load_s": _median([r["load_s"] for r in runs]),
        "load_s_range": [min(r["load_s"] for r in runs), max(r["load_s"] for r in runs)],
        "load_again_s": _median([r["load_again_s"] for r in runs]),
        "first_call_s": _median([r["first_call_s"] for r in runs]),
        "first_call_s_range": [min(r["first_call_s"] for r in runs), max(r["first_call_s"] for r in runs)],
        "steady_ms": _median([r["steady_ms"] for r in runs]),
        "import_s": _median([r["import_s"] for r in runs]),
        "max_abs_vs_build": _max_or_nan([r["max_abs_vs_build"] for r in runs]),
        "compile": runs[-1]["compile"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=tuple(MODELS), default="cnn", help="Default: cnn")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="Default: cpu")
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process loads per variant. Default: 3")
    parser.add_argument("--backends", default=",".join(BACKENDS), help=f"Default: {','.join(BACKENDS)}")
    parser.add_argument("--steady-iters", type=int, default=50, help="timed calls after load. Default: 50")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "reports" / "artifact_load", help="Default: reports/artifact_load"
    )
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0

    import torch
    from safetensors.torch import save_file

    import aitune_ci as ait
    from aitune_ci.environment import environment_fingerprint
    from aitune_ci.examples.models import cnn_spec, encoder_spec
    from aitune_ci.measure import MeasureConfig

    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="aitune-bench-artifact-"))
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    t0 = time.perf_counter()
    pick_vec_isa()
    build_probe_s = time.perf_counter() - t0
    names = [n for n in args.backends.split(",") if n]
    factory, shape = MODELS[args.model]
    if args.model == "cnn":
        spec = cnn_spec(backends=names, device=args.device)
    elif args.model == "encoder":
        spec = encoder_spec(backends=names, device=args.device)
    else:
        torch.manual_seed(0)
        spec = ait.TuneSpec(
            model=_factory(factory)().eval(),
            samples=[torch.randn(*shape)],
            backends=names,
            strategy="min-latency",
            device=args.device,
            name=args.model,
        )
    config = MeasureConfig(max_total_s=2.0, max_rounds=10)
    result = ait.tune(spec, measure_config=config, progress=lambda m: print(f"[tune] {m}", file=sys.stderr))
    sample_args, _ = spec.normalized_samples[0]
    save_file({f"args.{i}": a.detach().cpu().contiguous() for i, a in enumerate(sample_args)}, str(work / "inputs.safetensors"))

    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        row = result.backend(name)
        if row is None or row.status != "ok":
            rows[name] = {"status": row.status if row else "missing", "error": row.error if row else None}
            continue
        with torch.no_grad():
            reference = result.runtime.built[name](*(a.to(args.device) for a in sample_args))
        _save_leaves(reference, str(work / f"reference-{name}.safetensors"))
        t0 = time.perf_counter()
        info = ait.save(result, work / f"{name}.ait", backend=name)
        rows[name] = {
            "status": "ok",
            "build_s": row.build_s,
            "save_s": time.perf_counter() - t0,
            "size_bytes": info.size_bytes,
            "tuned_steady_ms": row.latency.median_ms if row.latency else None,
            "_info": info,
        }

    def job(name: str, variant: str, pinned: bool) -> dict[str, Any]:
        info = rows[name]["_info"]
        return {
            "name": name,
            "variant": variant,
            "path": str(info.path),
            "sha256": info.sha256,
            "pinned": pinned,
            # aoti's load no longer runs the probe (aitune_ci.backends.aoti._load_package_here), so it is not
            # taken out of its load: a load that paid it again would show.
            "probe": name == "inductor" and args.device == "cpu",
            "model_factory": factory,
            "device": args.device,
            "inputs": str(work / "inputs.safetensors"),
            "output": str(work / f"output-{name}-{variant}.safetensors"),
            "reference": str(work / f"reference-{name}.safetensors"),
            "steady_iters": args.steady_iters,
        }

    def fresh_runs(name: str, variant: str, pinned: bool) -> list[dict[str, Any]]:
        runs = []
        for i in range(args.repeats):
            cache = work / f"cache-{name}-{variant}-{i}"
            print(f"[load] {name} {variant} run {i + 1}/{args.repeats}", file=sys.stderr)
            runs.append(_run_child(job(name, variant, pinned), cache))
            shutil.rmtree(cache, ignore_errors=True)
        return runs

    for name, row in rows.items():
        if row["status"] != "ok":
            continue
        row["load"] = _summary(fresh_runs(name, "pinned", True))
        row["speedup_build_over_load"] = row["build_s"] / row["load"]["load_s"]
        row["speedup_build_over_load_again"] = row["build_s"] / row["load"]["load_again_s"]
        row["speedup_build_over_load_and_first_call"] = row["build_s"] / (
            row["load"]["load_s"] + row["load"]["first_call_s"]
        )
    inductor: dict[str, Any] = {}
    if rows.get("inductor", {}).get("status") == "ok":
        inductor["pinned"] = rows["inductor"]["load"]
        inductor["unpinned"] = _summary(fresh_runs("inductor", "unpinned", False))
        warm = work / "cache-inductor-warm"
        _run_child(job("inductor", "warm-dir", False), warm)  # populates the persistent folder
        runs = []
        for i in range(args.repeats):
            print(f"[load] inductor warm-dir run {i + 1}/{args.repeats}", file=sys.stderr)
            runs.append(_run_child(job("inductor", "warm-dir", False), warm))
        inductor["warm-dir"] = _summary(runs)

    for row in rows.values():
        row.pop("_info", None)
    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "environment": environment_fingerprint(args.device),
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "load_average": [load_before, os.getloadavg()[0]],
        "model": {
            "name": spec.display_name,
            "class": type(spec.model).__name__,
            "factory": factory,
            "sample": spec.summary()["samples"][0],
        },
        "repeats": args.repeats,
        "build_isa_probe_s": build_probe_s,
        "goal": {"build_over_load": GOAL, "backends": list(GOAL_BACKENDS)},
        "backends": rows,
        "inductor_first_call": inductor,
        "elapsed_s": time.perf_counter() - started,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}g}"


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    sample = ", ".join(f"{s['dtype']}{s['shape']}" for s in report["model"]["sample"] if "shape" in s)
    cuda = report.get("device", "cpu") == "cuda"
    where = (
        f"{env.get('gpu_name') or env.get('gpu') or 'GPU'}"
        if cuda  # one CPU name has meant machines of different instruction sets here: say which
        else f"{env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('cpu_capability') or 'ISA unknown'})"
    )
    lines = [
        f"# Artifact load vs build, per backend ({'GPU' if cuda else 'CPU'})",
        "",
        f"{report['created_at']} · {where} · torch {env.get('torch')} · "
        f"torch threads {report['torch_threads']} · load avg {report['load_average'][0]:.2f} → "
        f"{report['load_average'][1]:.2f} · model {report['model']['name']} "
        f"({sample})",
        "",
        f"Each load: a fresh process, empty `TORCHINDUCTOR_CACHE_DIR`, the artifact pinned by its sha256 "
        f"(median of {report['repeats']} runs). Build = `ait.tune`'s build time for the backend (cold cache). "
        + (
            "Imports of torch, aitune-ci and the backend's library are shown apart. Load includes moving the "
            "weights to the GPU; first call includes CUDA/cuDNN initialisation (eager's first call shows how "
            "much)."
            if cuda
            else f"The one-time CPU ISA probe (torch compiles test programs before its first C++ build; "
            f"{report['build_isa_probe_s']:.1f} s here, cached in the inductor cache folder) is left out of "
            "inductor's build and load and shown as its own column (aoti's load does not run it); so are the "
            "imports of torch, aitune-ci and the backend's library (onnxruntime, torchao, inductor), which any "
            "program running that backend pays."
        ),
        "",
        "*max |Δ| vs build*: the largest difference between the loaded artifact's first output and the output "
        "of the build it was saved from (same input), over every run.",
        "",
        (
            "*Load again* is a second `ait.load` of the same file in that process."
            if cuda
            else f"Goal: build / load ≥ {report['goal']['build_over_load']:g}× for "
            f"{', '.join(report['goal']['backends'])} (judged on the first load in a fresh process). *Load again* "
            "is a second `ait.load` of the same file in that process: what is left once per-process costs are "
            "paid (for aoti, the backend's crash-safe probe where it runs: a child Python process that loads the "
            "package once, until one such probe has worked on this machine)."
        ),
        "",
        "| backend | build (s) | load (s) | build / load | load again (s) | build / load again | imports (s) | "
        "ISA probe (s) | first call (ms) | steady (ms) | first / steady | max \\|Δ\\| vs build | artifact | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, row in report["backends"].items():
        if row["status"] != "ok":
            lines.append(f"| {name} | {row['status']}: {row.get('error') or ''} |" + " |" * 12)
            continue
        load = row["load"]
        ratio = row["speedup_build_over_load"]
        goal = ""
        if name in report["goal"]["backends"]:
            goal = "✓" if ratio >= report["goal"]["build_over_load"] else "✗"
        lines.append(
            f"| {name} | {_f(row['build_s'])} | {_f(load['load_s'])} | {ratio:.0f}× | {_f(load['load_again_s'])} | "
            f"{row['speedup_build_over_load_again']:.0f}× | {_f(load['import_s'])} | "
            f"{_f(load['probe_s'])} | "
            f"{_f(load['first_call_s'] * 1e3)} | {_f(load['steady_ms'])} | "
            f"{load['first_call_s'] * 1e3 / load['steady_ms']:.0f}× | {_f(load.get('max_abs_vs_build'), 2)} | "
            f"{row['size_bytes'] / 2**20:.2f} MiB | {goal} |"
        )
    inductor = report["inductor_first_call"]
    if inductor:
        lines += [
            "",
            "## Inductor: what the saved compile-cache bytes buy on the first call",
            "",
            "Fresh process each time; ISA probe timed apart (it is paid once per cache folder, bytes or not).",
            "",
            "| first call after load | first call (s) | range (s) | ISA probe (s) | graphs traced | inductor codegen | "
            "C++ builds | Triton kernel loads / bundle files restored | autotune benchmarks | FX cache hit / miss |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        labels = {
            "pinned": "with the artifact's cache bytes (empty cache folder)",
            "unpinned": "without them: cold compile (empty cache folder)",
            "warm-dir": "without them, persistent cache folder from an earlier run",
        }
        for key, label in labels.items():
            s = inductor[key]
            c = s["compile"]
            lines.append(
                f"| {label} | {_f(s['first_call_s'])} | {_f(s['first_call_s_range'][0])}–{_f(s['first_call_s_range'][1])} | "
                f"{_f(s['probe_s'])} | {c['graphs_traced']} | {c['codegen']} | {c['cpp_builds']} | "
                f"{c.get('triton_kernels_compiled', '–')} / {c.get('triton_kernels_from_bundle', '–')} | "
                f"{c.get('autotune_benchmarks', '–')} | "
                f"{c['fxgraph_cache_hit']} / {c['fxgraph_cache_miss']} |"
            )
        pinned, cold, warm = (
            inductor["pinned"]["first_call_s"],
            inductor["unpinned"]["first_call_s"],
            inductor["warm-dir"]["first_call_s"],
        )
        steady_s = inductor["pinned"]["steady_ms"] / 1e3
        lines += [
            "",
            f"The bytes cut the first call from {cold:.2f} s (cold compile) to {pinned:.2f} s "
            f"({cold / pinned:.1f}×); the persistent cache folder gives {warm:.2f} s; steady state is "
            f"{steady_s * 1e3:.3g} ms.",
        ]
    if inductor and cuda:
        pc, uc = inductor["pinned"]["compile"], inductor["unpinned"]["compile"]
        lines += [
            "",
            "On the GPU the cache bytes carry the generated Triton kernels as compiled binaries (the Triton "
            f"bundle: {pc.get('triton_kernels_from_bundle', 0)} files restored) and the autotuning results. With "
            f"them the first call generated no code (codegen {pc.get('codegen', 0)}, FX cache hit) and ran "
            f"{pc.get('autotune_benchmarks', 0)} autotune benchmarks; a cold compile ran "
            f"{uc.get('autotune_benchmarks', 0)}. *Triton kernel loads* counts kernel modules loaded through "
            "`async_compile` (in-memory misses; with a warm cache they load from disk, they are not compiled). "
            f"The bytes get within {abs(pinned - warm):.2f} s of a persistent cache folder. What is left is dynamo "
            "tracing the Python, the AOTAutograd cache lookup, loading the kernels onto the device, and CUDA "
            "initialisation. What would do better: `aoti` (a `.pt2` with the kernels linked into one library: no tracing "
            "at all) where its loader works, or torch's precompile API "
            "(`torch.compile(...).aot_compile(...)` + `torch.compiler.load_compiled_function`), which also saves "
            "dynamo's output — pickle-based, so it needs the same sha256 pin as the compile cache.",
        ]
    elif inductor:
        lines += [
            "",
            "Inductor generates no code with the bytes (codegen 0, cache hit), but on a CPU the cache "
            "entry holds C++ *source*, so each kernel is still compiled by the C++ compiler once per cache folder, "
            "and dynamo still traces the Python. A persistent cache folder (which also holds the compiled "
            f"kernels and the ISA probe's test builds) gets it to {warm:.2f} s.",
            "",
            "What would do better: (1) for a no-compile load, choose `aoti` (a `.pt2` with the compiled library; "
            "its load is in the table above); (2) in CI, persist `TORCHINDUCTOR_CACHE_DIR` between runs (e.g. "
            "actions/cache keyed on the artifact's spec hash): it removes the C++ builds and most of the ISA "
            "probe (its test programs are still loaded); "
            "(3) torch's precompile API (`torch.compile(...).aot_compile(...)` + "
            "`torch.compiler.load_compiled_function`) saves dynamo's output with the compiled kernels, so "
            "neither tracing nor C++ builds remain — but it is pickle-based, so it would need the same pin rule "
            "as the compile cache; (4) `TORCHINDUCTOR_VEC_ISA_OK=1` skips the ISA probe where the ISA is known.",
        ]
    lines += ["", f"Written by `bench/artifact_load.py` in {report['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
