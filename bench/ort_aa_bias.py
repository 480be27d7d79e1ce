"""Is an A/A paired comparison of two identical onnxruntime builds centred on 1.00? (issue 15, item 3)

The plugin's paired A/B (``aitune_ci/check.py``) times the baseline's artifact, loaded from its
``.ait`` (A, a new ``OrtModule`` created after the tune), against this run's fresh build (B, the
``OrtModule`` the tune built, validated and measured interleaved with the other backends) with
``measure_paired(lambda: old(*a), lambda: new(*a))``: ABBA rounds, ratio = B/A, the median of the
per-round ratios with a bootstrap CI. Two identical builds must give a ratio whose CI contains
1.00, within ±1%.

Every (model, variant) runs in a fresh process (``worker``), so each process draws its own
sessions, threads and memory layout; ``--trials`` paired measurements are taken per process.
Variants and models are shuffled together in every repetition, so the machine's load (a shared
2-core box) hits all of them alike. The summary per (model, variant): the geometric mean of the
ratios with a 95% CI over processes (the unit that is independent), the share of trials whose own
CI contains 1.00, and the within- and between-process spread of log ratios.

Usage::

    .venv/bin/python bench/ort_aa_bias.py run --reps 6 --out reports/ort_aa_bias.json
    .venv/bin/python bench/ort_aa_bias.py run --variants baseline,swapped --models enc --reps 3
    .venv/bin/python bench/ort_aa_bias.py summary reports/ort_aa_bias.json
    .venv/bin/python bench/ort_aa_bias.py worker --variant baseline --model enc   # one process, JSON out

Nothing in the package is edited: option variants wrap ``onnxruntime.InferenceSession`` in the
worker process (the way ``OrtModule`` builds its session), measurement variants wrap
``aitune_ci.measure`` functions in that process.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import json
import math
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

# ---------------------------------------------------------------------------------------------
# variants


@dataclass(frozen=True)
class Variant:
    """One way of building and pairing the two sessions.

    flow: ``tune`` = the project's path (``ait`` engine tune with eager + onnxruntime, ``ait.save``,
        ``ait.load``); ``fresh`` = ``OnnxRuntimeBackend.build`` then ``save``/``load`` with no tune
        (B has run the sample once, A not at all).
    pair: which two callables are A (first argument) and B:
        ``old_new`` A = loaded artifact, B = fresh build (as check.py);
        ``new_old`` the same objects swapped;
        ``same`` B on both sides (one session: measure_paired's own bias);
        ``two_loads`` two loads of the same artifact;
        ``same_file`` A = a new OrtModule on B's own .onnx file (not the artifact's copy).
    options: SessionOptions attributes / config entries applied to every session of the process.
    per_session: more options for the 1st, 2nd, ... session created (B is created first, by the tune).
    warm_a_s: seconds of calls to A before pairing (equal warm-up with B's tune history).
    env: environment for the worker (OMP_NUM_THREADS ...); cpus: taskset list for the worker.
    global_pool: one ORT global intra-op pool shared by both sessions (``use_per_session_threads``).
    measure: ``project`` (measure_paired as it is) or a proposed fix of it.
    backend: ``onnxruntime`` (default) or another CPU backend for the cross-check.
    """

    name: str
    what: str
    flow: str = "tune"
    pair: str = "old_new"
    options: dict[str, Any] = field(default_factory=dict)
    per_session: tuple[dict[str, Any], ...] = ()
    warm_a_s: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    cpus: str | None = None
    global_pool: int | None = None
    measure: str = "project"
    backend: str = "onnxruntime"


VARIANTS = {
    v.name: v
    for v in [
        Variant("baseline", "project path: A = ait.load of the artifact, B = the tune's fresh build"),
        Variant("swapped", "same objects, A and B swapped in measure_paired", pair="new_old"),
        Variant("same_object", "B on both sides of measure_paired (one session)", pair="same"),
        Variant("two_loads", "two ait.load sessions of the artifact, created the same way", pair="two_loads"),
        Variant("same_file", "A = new OrtModule on B's own .onnx file", pair="same_file"),
        Variant("untouched", "no tune: B built (1 call), A loaded; equal history", flow="fresh"),
        Variant("warm_a", "A called for 3 s before pairing (B's tune history matched)", warm_a_s=3.0),
        Variant("arena_off", "enable_cpu_mem_arena=False on both", options={"enable_cpu_mem_arena": False}),
        Variant("mem_pattern_off", "enable_mem_pattern=False on both", options={"enable_mem_pattern": False}),
        Variant("threads1", "intra_op_num_threads=1 on both (no worker thread)", options={"intra_op_num_threads": 1}),
        Variant(
            "threads2",
            "intra_op_num_threads=2 set explicitly (ORT then does not pin its worker to a core)",
            options={"intra_op_num_threads": 2},
        ),
        Variant(
            "spin_on",
            "session.intra_op.allow_spinning=1 on both (the backend sets 0)",
            options={"session.intra_op.allow_spinning": "1"},
        ),
        Variant("global_pool", "one global ORT intra-op pool (2 threads) for both sessions", global_pool=2),
        Variant(
            "denormal_zero", "session.set_denormal_as_zero=1 on both", options={"session.set_denormal_as_zero": "1"}
        ),
        Variant("omp1", "OMP_NUM_THREADS=1 in the worker (the plugin tests' setting)", env={"OMP_NUM_THREADS": "1"}),
        Variant("pinned_cpu0", "worker process pinned to CPU 0 (an xdist worker's share)", cpus="0"),
        Variant("pinned_cpu1", "worker process pinned to CPU 1 (the other xdist worker's share)", cpus="1"),
        Variant(
            "pin_same",
            "2 threads, both sessions' worker pinned to CPU 1 explicitly (what ORT's default does here)",
            options={"intra_op_num_threads": 2, "session.intra_op_thread_affinities": "2"},
        ),
        Variant(
            "pin_apart",
            "2 threads, B's worker pinned to CPU 1 and A's to CPU 0: placement differs by session",
            options={"intra_op_num_threads": 2},
            per_session=({"session.intra_op_thread_affinities": "2"}, {"session.intra_op_thread_affinities": "1"}),
        ),
        Variant(
            "fix",
            "proposed fix: intra_op_num_threads=1, inter_op_num_threads=1 (no per-session worker thread)",
            options={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        ),
        Variant(
            "fix_swapped",
            "proposed fix, A and B swapped",
            pair="new_old",
            options={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        ),
        Variant(
            "fix_two_loads",
            "proposed fix, two loads of the artifact",
            pair="two_loads",
            options={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
        ),
        Variant("measure_bab", "fix of measure_paired: ABBA and BAAB alternate round by round", measure="alternate"),
        # cross-checks on the other CPU backends (relative mode pairs every backend; artifacts pair aoti)
        Variant("eager_aa", "eager vs eager: two copies of the model (relative mode's pairing)", backend="eager"),
        Variant("aoti_aa", "aoti: A = ait.load of the .pt2 artifact, B = the tune's fresh build", backend="aoti"),
    ]
}

DEFAULT_VARIANTS = [
    "baseline",
    "swapped",
    "same_object",
    "two_loads",
    "same_file",
    "untouched",
    "warm_a",
    "arena_off",
    "mem_pattern_off",
    "threads1",
    "threads2",
    "spin_on",
    "global_pool",
    "omp1",
    "pinned_cpu0",
    "pinned_cpu1",
]

# ---------------------------------------------------------------------------------------------
# models


def _models() -> dict[str, Callable[[], tuple[Any, list[Any]]]]:
    import torch

    class Net(torch.nn.Module):
        """tests/plugin/test_plugin_paired.py's model (EXTRA_MATMULS=0): Linear(256, 256) on 64 rows."""

        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(256, 256)
            self.register_buffer("eye", torch.eye(256))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    def net() -> tuple[Any, list[Any]]:
        torch.manual_seed(0)
        return Net().eval(), [torch.randn(64, 256)]

    def enc() -> tuple[Any, list[Any]]:
        # The demo's encoder (tune_composite on a CPU runner) at 1 x 16 tokens: ~0.24 ms in ORT here.
        from aitune_ci.examples.models import SmallEncoder

        torch.manual_seed(0)
        return SmallEncoder().eval(), [torch.randint(0, 1000, (1, 16))]

    return {"net": net, "enc": enc}


MODEL_WHAT = {
    "net": "tests/plugin/test_plugin_paired.py Net: Linear(256, 256), input 64x256 (~0.06 ms in ORT)",
    "enc": "aitune_ci.examples.models.SmallEncoder (2-layer transformer, d=128), input 1x16 ids (~0.24 ms in ORT)",
}

# ---------------------------------------------------------------------------------------------
# worker: one process, one (model, variant)


def _patch_sessions(
    options: dict[str, Any], global_pool: int | None, per_session: tuple[dict[str, Any], ...] = ()
) -> None:
    """Apply ``options`` (and ``per_session[i]`` to the i-th) to every InferenceSession this process creates."""
    import onnxruntime as ort

    if global_pool is not None:
        import onnxruntime.capi._pybind_state as C

        C.set_global_thread_pool_sizes(global_pool, 1)
    if not options and global_pool is None and not per_session:
        return
    real = ort.InferenceSession
    created = [0]

    def session(path: Any, sess_options: Any = None, *args: Any, **kwargs: Any) -> Any:
        so = sess_options if sess_options is not None else ort.SessionOptions()
        mine = dict(options)
        if created[0] < len(per_session):
            mine.update(per_session[created[0]])
        created[0] += 1
        for key, value in mine.items():
            if "." in key:
                so.add_session_config_entry(key, value)
            else:
                setattr(so, key, value)
        if global_pool is not None:
            so.use_per_session_threads = False
        return real(path, so, *args, **kwargs)

    ort.InferenceSession = session  # type: ignore[assignment]


def _thread_cpus() -> dict[str, str]:
    out = {}
    for task in sorted(glob.glob("/proc/self/task/*")):
        try:
            status = Path(task, "status").read_text()
        except OSError:
            continue
        line = next((ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list")), "")
        out[Path(task).name] = line.split()[-1] if line else "?"
    return out


def _sched_snapshot() -> dict[int, tuple[int, int]]:
    """Thread id -> (CPU it last ran on, ns it has run), from /proc (outside the timed calls)."""
    snap = {}
    for task in glob.glob("/proc/self/task/*"):
        try:
            stat = Path(task, "stat").read_text().rsplit(")", 1)[1].split()
            run_ns = int(Path(task, "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            continue
        snap[int(Path(task).name)] = (int(stat[36]), run_ns)
    return snap


def _placement(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """Where the main thread and the other threads that ran during a block were, at its end."""
    main = os.getpid()
    others = {
        tid: (cpu, round((ns - before[tid][1]) / 1e6, 2))
        for tid, (cpu, ns) in after.items()
        if tid != main and tid in before and ns - before[tid][1] > 200_000
    }
    main_cpu = after.get(main, (-1, 0))[0]
    return {
        "main_cpu": main_cpu,
        "others": {str(t): list(v) for t, v in others.items()},
        "worker_on_main_cpu": any(cpu == main_cpu for cpu, _ in others.values()),
    }


@contextlib.contextmanager
def _recording() -> Any:
    """Record every block measure_paired times and the per-round medians its estimate used."""
    import numpy as np

    import aitune_ci.measure as M

    blocks: list[tuple[str, float, int, dict[str, Any]]] = []
    rounds: dict[str, list[float]] = {}
    real_block, real_ratio = M._run_block, M.paired_ratio

    def run_block(name: str, fn: Any, timer: Any, iters: int) -> list[float]:
        before = _sched_snapshot()
        times = real_block(name, fn, timer, iters)
        after = _sched_snapshot()
        blocks.append((name, float(np.median(times)), iters, _placement(before, after)))
        return times

    def ratio(a: Any, b: Any, **kw: Any) -> Any:
        rounds["a"], rounds["b"] = list(a), list(b)
        return real_ratio(a, b, **kw)

    M._run_block, M.paired_ratio = run_block, ratio
    try:
        yield blocks, rounds
    finally:
        M._run_block, M.paired_ratio = real_block, real_ratio


def measure_paired_alternating(fn_a: Any, fn_b: Any, device: Any = "cpu", config: Any = None) -> Any:
    """The proposed measure_paired: rounds alternate ABBA and BAAB (see the report's diff)."""
    import aitune_ci.measure as M

    real = M.ABBA
    order_calls = {"n": 0}

    class _Alternating(tuple):
        # measure_paired iterates ABBA once per round; hand it ABBA, BAAB, ABBA, ...
        def __iter__(self) -> Any:  # type: ignore[override]
            order = ("a", "b", "b", "a") if order_calls["n"] % 2 == 0 else ("b", "a", "a", "b")
            order_calls["n"] += 1
            return iter(order)

    M.ABBA = _Alternating(real)  # type: ignore[assignment]
    try:
        return M.measure_paired(fn_a, fn_b, device, config)
    finally:
        M.ABBA = real


def worker(variant_name: str, model_name: str, pair_budget: float, tune_budget: float, trials: int) -> dict[str, Any]:
    v = VARIANTS[variant_name]
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(Path(tempfile.gettempdir()) / "ort_aa_bias_inductor"))
    sys.path.insert(0, str(ROOT))
    import logging

    logging.disable(logging.WARNING)
    _patch_sessions(v.options, v.global_pool, v.per_session)
    import torch

    import aitune_ci as ait
    from aitune_ci.backends.base import BuildContext
    from aitune_ci.backends.registry import get_backend
    from aitune_ci.engine import tune
    from aitune_ci.measure import MeasureConfig, measure_paired
    from aitune_ci.store.artifact import load, save

    t_start = time.perf_counter()
    model, samples = _models()[model_name]()
    x = samples[0]
    work = Path(tempfile.mkdtemp(prefix="ort_aa_bias-"))
    backend_name = v.backend
    extra: dict[str, Any] = {}
    if v.flow == "tune" or backend_name != "onnxruntime":
        backends = ["eager"] if backend_name == "eager" else ["eager", backend_name]
        spec = ait.TuneSpec(model=model, samples=[x], backends=backends, strategy="min-latency", device="cpu")
        res = tune(spec, measure_config=MeasureConfig(max_total_s=tune_budget), progress=lambda _m: None)
        extra["tune_ms"] = {r.backend: (r.latency.median_ms if r.latency else None) for r in res.backends}
        extra["tune_status"] = {r.backend: str(r.status) for r in res.backends}
        new = res.runtime.built[backend_name]
        args, kwargs = res.runtime.samples[0]
        if backend_name == "eager":
            # relative mode pairs the base's eager build with the head's: two copies of the model
            old = get_backend("eager").build(copy.deepcopy(model), [], None)  # type: ignore[arg-type]
        else:
            info = save(res, work / "m.ait", backend=backend_name)
            loaded = load(work / "m.ait", copy.deepcopy(model), expected_sha256=info.sha256)
            extra["_keep"] = loaded
            old = loaded.runner
            if v.pair == "two_loads":
                loaded2 = load(work / "m.ait", copy.deepcopy(model), expected_sha256=info.sha256)
                extra["_keep2"] = loaded2
                old2 = loaded2.runner
    else:  # fresh: the backend's own build and save/load, no tune
        be = get_backend("onnxruntime")
        ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=work / "build")
        ctx.workdir.mkdir()
        new = be.build(model, [((x,), {})], ctx)
        (work / "saved").mkdir()
        meta = be.save(new, work / "saved")
        old = be.load(model, work / "saved", meta, ctx)
        old2 = be.load(model, work / "saved", meta, ctx) if v.pair == "two_loads" else None
        args, kwargs = (x,), {}
    if v.pair == "same_file":
        from aitune_ci.backends.onnxruntime import OrtModule

        old = OrtModule(new.path, new.signature, torch.device("cpu"))
    with torch.inference_mode():
        old(*args, **kwargs)
        if v.warm_a_s:
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < v.warm_a_s:
                old(*args, **kwargs)
    fa, fb = {
        "old_new": (old, new),
        "new_old": (new, old),
        "same": (new, new),
        "two_loads": (old, old2 if v.pair == "two_loads" else old),
        "same_file": (old, new),
    }[v.pair]
    cfg = MeasureConfig(max_total_s=pair_budget)
    results = []
    for _ in range(trials):
        with _recording() as (blocks, rounds):
            if v.measure == "alternate":
                est = measure_paired_alternating(lambda: fa(*args, **kwargs), lambda: fb(*args, **kwargs), "cpu", cfg)
            else:
                est = measure_paired(lambda: fa(*args, **kwargs), lambda: fb(*args, **kwargs), "cpu", cfg)
        results.append(
            {
                "ratio": est.ratio,
                "ci_low": est.ci_low,
                "ci_high": est.ci_high,
                "n": est.n,
                "round_a_ms": [round(t, 5) for t in rounds.get("a", [])],
                "round_b_ms": [round(t, 5) for t in rounds.get("b", [])],
                "blocks": [[n, round(m, 5), it, where] for n, m, it, where in blocks],
            }
        )
    return {
        "variant": variant_name,
        "model": model_name,
        "pid": os.getpid(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "threads": _thread_cpus(),
        "torch_threads": torch.get_num_threads(),
        "trials": results,
        "seconds": time.perf_counter() - t_start,
        **{k: val for k, val in extra.items() if not k.startswith("_")},
    }


# ---------------------------------------------------------------------------------------------
# parent: repetitions of shuffled (model, variant) processes


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")]
        fams = [ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith(("cpu family", "model\t"))]
        info["cpu"] = names[0] if names else "?"
        info["cpu_family_model"] = fams[:2]
        info["logical_cpus"] = len(names)
    except OSError:
        pass
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch, onnxruntime as o; print(torch.__version__, "
            "torch.backends.cpu.get_cpu_capability(), torch.get_num_threads(), o.__version__)",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.split()
    if len(out) == 4:
        info.update(torch=out[0], torch_cpu_capability=out[1], torch_threads=int(out[2]), onnxruntime=out[3])
    with contextlib.suppress(OSError):
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    return info


_COMPETITOR = """
import numpy as np, onnxruntime as ort, torch, sys
class M(torch.nn.Module):
    def __init__(self):
        super().__init__(); self.lin = torch.nn.Linear(256, 256)
    def forward(self, x): return self.lin(x)
path = sys.argv[1]
torch.onnx.export(M().eval(), (torch.randn(64, 256),), path, dynamo=True, external_data=False, verbose=False)
o = ort.SessionOptions(); o.add_session_config_entry("session.intra_op.allow_spinning", "0")
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
x = {s.get_inputs()[0].name: np.random.randn(64, 256).astype(np.float32)}
import os
parent = os.getppid()
while os.getppid() == parent:  # ends with the bench, however the bench ends
    for _ in range(1000):
        s.run(None, x)
"""


def _start_competitor() -> subprocess.Popen[bytes]:
    """Another engineer's ORT test, as on the shared box: a default ORT session run in a loop
    (its worker, like every default session's here, is pinned to CPU 1; its main thread floats)."""
    path = Path(tempfile.mkdtemp(prefix="ort_aa_competitor-")) / "m.onnx"
    proc = subprocess.Popen(
        [sys.executable, "-c", _COMPETITOR, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(8)  # export and start
    return proc


def _run_one(variant: str, model: str, args: argparse.Namespace) -> dict[str, Any]:
    v = VARIANTS[variant]
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "worker",
        "--variant",
        variant,
        "--model",
        model,
        "--pair-budget",
        str(args.pair_budget),
        "--tune-budget",
        str(args.tune_budget),
        "--trials",
        str(args.trials),
    ]
    if v.cpus is not None:
        cmd = ["taskset", "-c", v.cpus, *cmd]
    env = {**os.environ, **v.env}
    load0 = Path("/proc/loadavg").read_text().split()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.timeout)
    line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("{")), None)
    if proc.returncode != 0 or line is None:
        return {"variant": variant, "model": model, "error": (proc.stderr or proc.stdout)[-2000:]}
    out = json.loads(line)
    out["loadavg_1min_before"] = float(load0)
    return out


def _label(run: dict[str, Any]) -> str:
    """The variant, marked when a competing ORT process ran alongside."""
    return run["variant"] + ("+comp" if run.get("competitor") else "")


def _summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in runs:
        if "error" not in r:
            groups.setdefault((r["model"], _label(r)), []).append(r)
    rows = []
    for (model, variant), procs in sorted(groups.items()):
        per_proc = [[math.log(t["ratio"]) for t in p["trials"]] for p in procs]
        trials = [t for p in procs for t in p["trials"]]
        logs = [x for xs in per_proc for x in xs]
        means = [statistics.fmean(xs) for xs in per_proc]
        gm = math.exp(statistics.fmean(means))
        if len(means) > 1:
            se = statistics.stdev(means) / math.sqrt(len(means))
            t = _t975(len(means) - 1)
            lo, hi = math.exp(statistics.fmean(means) - t * se), math.exp(statistics.fmean(means) + t * se)
        else:
            lo = hi = float("nan")
        within = [x - statistics.fmean(xs) for xs in per_proc for x in xs]
        rows.append(
            {
                "model": model,
                "variant": variant,
                "processes": len(procs),
                "trials": len(trials),
                "geomean_ratio": gm,
                "ci95_over_processes": [lo, hi],
                "median_ratio": statistics.median(math.exp(x) for x in logs),
                "min_ratio": math.exp(min(logs)),
                "max_ratio": math.exp(max(logs)),
                "share_ci_contains_1": sum(t["ci_low"] <= 1.0 <= t["ci_high"] for t in trials) / len(trials),
                "share_within_1pct": sum(abs(t["ratio"] - 1) <= 0.01 for t in trials) / len(trials),
                "share_ci_within_pm1pct_of_1": sum(
                    t["ci_low"] <= 1.0 <= t["ci_high"] and abs(t["ratio"] - 1) <= 0.01 for t in trials
                )
                / len(trials),
                "sd_log_within_process": statistics.pstdev(within) if len(within) > 1 else float("nan"),
                "sd_log_between_process_means": statistics.stdev(means) if len(means) > 1 else float("nan"),
                "process_geomeans": [round(math.exp(m), 4) for m in means],
                "median_a_ms": statistics.median(statistics.median(t["round_a_ms"]) for t in trials if t["round_a_ms"]),
                "median_b_ms": statistics.median(statistics.median(t["round_b_ms"]) for t in trials if t["round_b_ms"]),
            }
        )
    return rows


def _t975(df: int) -> float:
    table = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}
    return table.get(df, 2.0 + 2.6 / df)


def _block_positions(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median block time at each ABBA position relative to the round's mean: is a position slower?"""
    out: dict[tuple[str, str], list[list[float]]] = {}
    for r in runs:
        if "error" in r:
            continue
        for t in r["trials"]:
            b = t["blocks"]
            for i in range(0, len(b) - 3, 4):
                meds = [b[i + j][1] for j in range(4)]
                m = statistics.fmean(meds)
                out.setdefault((r["model"], _label(r)), []).append([x / m for x in meds])
    return [
        {
            "model": k[0],
            "variant": k[1],
            "rounds": len(v),
            "position_rel": [round(statistics.median(x[j] for x in v), 4) for j in range(4)],
        }
        for k, v in sorted(out.items())
    ]


def _placement_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, variant): how often a worker that ran in a block sat on the main thread's CPU,
    how much slower such blocks were, and whether trials whose A and B sides differed in that
    share are the ones whose ratio is off 1."""
    out: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in runs:
        if "error" in r:
            continue
        g = out.setdefault((r["model"], _label(r)), {"shared": [], "apart": [], "dev_same": [], "dev_diff": []})
        for t in r["trials"]:
            blocks = [b for b in t["blocks"] if len(b) > 3]
            if not blocks:
                continue
            med = statistics.median(b[1] for b in blocks)
            share = {"a": [], "b": []}
            for name, m, _it, where in blocks:
                (g["shared"] if where["worker_on_main_cpu"] else g["apart"]).append(m / med)
                share[name].append(1.0 if where["worker_on_main_cpu"] else 0.0)
            fa = statistics.fmean(share["a"]) if share["a"] else 0.0
            fb = statistics.fmean(share["b"]) if share["b"] else 0.0
            key = "dev_diff" if abs(fa - fb) >= 0.5 else "dev_same"
            g[key].append(abs(math.log(t["ratio"])))
    rows = []
    for (model, variant), g in sorted(out.items()):
        n = len(g["shared"]) + len(g["apart"])
        rows.append(
            {
                "model": model,
                "variant": variant,
                "blocks": n,
                "share_blocks_worker_on_main_cpu": len(g["shared"]) / n if n else float("nan"),
                "block_time_rel_when_shared": statistics.median(g["shared"]) if g["shared"] else None,
                "block_time_rel_when_apart": statistics.median(g["apart"]) if g["apart"] else None,
                "trials_sides_differ": len(g["dev_diff"]),
                "median_abs_log_ratio_sides_differ": statistics.median(g["dev_diff"]) if g["dev_diff"] else None,
                "trials_sides_alike": len(g["dev_same"]),
                "median_abs_log_ratio_sides_alike": statistics.median(g["dev_same"]) if g["dev_same"] else None,
            }
        )
    return rows


def _print_summary(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'model':5} {'variant':21} {'proc':>4} {'tri':>4} {'geomean':>8} {'95% CI (processes)':>19} "
        f"{'median':>7} {'min':>6} {'max':>6} {'CI∋1':>5} {'±1%':>5} {'sd_w':>6} {'sd_b':>6}"
    )
    for r in rows:
        lo, hi = r["ci95_over_processes"]
        print(
            f"{r['model']:5} {r['variant']:21} {r['processes']:4d} {r['trials']:4d} {r['geomean_ratio']:8.4f} "
            f"[{lo:7.4f},{hi:7.4f}] {r['median_ratio']:7.4f} {r['min_ratio']:6.3f} {r['max_ratio']:6.3f} "
            f"{r['share_ci_contains_1']:5.0%} {r['share_within_1pct']:5.0%} "
            f"{r['sd_log_within_process']:6.3f} {r['sd_log_between_process_means']:6.3f}"
        )


def run(args: argparse.Namespace) -> None:
    variants = args.variants.split(",") if args.variants else DEFAULT_VARIANTS
    models = args.models.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    out = Path(args.out) if args.out else None
    data: dict[str, Any] = {"runs": []}
    if out is not None and out.exists() and args.append:
        data = json.loads(out.read_text())
    data.setdefault("machine", _machine())
    data.setdefault("settings", []).append(
        {
            "pair_budget_s": args.pair_budget,
            "tune_budget_s": args.tune_budget,
            "trials_per_process": args.trials,
            "reps": args.reps,
            "variants": variants,
            "models": models,
            "seed": args.seed,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    competitor = _start_competitor() if args.competitor else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below stops the competitor
    try:
        _repetitions(args, variants, models, rng, data, out)
    finally:
        if competitor is not None:
            competitor.terminate()
            competitor.wait()
    data["summary"] = _summarize(data["runs"])
    data["block_positions"] = _block_positions(data["runs"])
    data["placement"] = _placement_summary(data["runs"])
    print(f"\n{time.perf_counter() - t0:.0f} s")
    _print_summary(data["summary"])
    if out is not None:
        out.write_text(json.dumps(data, indent=1))


def _repetitions(
    args: argparse.Namespace,
    variants: list[str],
    models: list[str],
    rng: random.Random,
    data: dict[str, Any],
    out: Path | None,
) -> None:
    for rep in range(args.reps):
        jobs = [(v, m) for v in variants for m in models]
        rng.shuffle(jobs)
        for v, m in jobs:
            r = _run_one(v, m, args)
            r["rep"] = rep
            r["pair_budget_s"] = args.pair_budget
            r["competitor"] = bool(args.competitor)
            data["runs"].append(r)
            if "error" in r:
                print(f"rep {rep} {m} {v}: ERROR {r['error'][-300:]}", flush=True)
            else:
                ratios = " ".join(f"{t['ratio']:.3f}[{t['ci_low']:.3f},{t['ci_high']:.3f}]" for t in r["trials"])
                print(
                    f"rep {rep} {m:3} {v:15} {ratios}  ({r['seconds']:.0f} s, load {r['loadavg_1min_before']})",
                    flush=True,
                )
            if out is not None:
                data["summary"] = _summarize(data["runs"])
                data["block_positions"] = _block_positions(data["runs"])
                data["placement"] = _placement_summary(data["runs"])
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(data, indent=1))


def merge(out: Path, files: list[str], competitor_files: list[str]) -> None:
    """Several run files in one: runs and settings concatenated, summaries recomputed.

    ``competitor_files`` are runs taken beside a competing ORT process started by hand (the same
    loop as ``--competitor``); their runs are marked so.
    """
    data: dict[str, Any] = {"runs": [], "settings": [], "sources": []}
    for name in [*files, *competitor_files]:
        part = json.loads(Path(name).read_text())
        data.setdefault("machine", part.get("machine"))
        for r in part["runs"]:
            if name in competitor_files:
                r["competitor"] = True
            r["source"] = Path(name).name
            data["runs"].append(r)
        data["settings"].extend({**s, "source": Path(name).name} for s in part.get("settings", []))
        data["sources"].append(Path(name).name)
    data["summary"] = _summarize(data["runs"])
    data["block_positions"] = _block_positions(data["runs"])
    data["placement"] = _placement_summary(data["runs"])
    for r in data["runs"]:  # compact blocks: [side, median ms, iterations, main CPU, [[worker CPU, ms ran]...]]
        for t in r.get("trials", []):
            t["blocks"] = [
                b[:3] + ([b[3]["main_cpu"], list(b[3]["others"].values())] if len(b) > 3 else []) for b in t["blocks"]
            ]
    out.write_text(json.dumps(data, separators=(",", ":")))
    _print_summary(data["summary"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker")
    w.add_argument("--variant", required=True)
    w.add_argument("--model", required=True)
    w.add_argument("--pair-budget", type=float, default=0.4)
    w.add_argument("--tune-budget", type=float, default=1.0)
    w.add_argument("--trials", type=int, default=3)
    r = sub.add_parser("run")
    r.add_argument("--variants", default="")
    r.add_argument("--models", default="net,enc")
    r.add_argument("--reps", type=int, default=4)
    r.add_argument("--trials", type=int, default=3, help="paired measurements per process")
    r.add_argument(
        "--pair-budget", type=float, default=0.4, help="max_total_s of each measure_paired (plugin test: 0.4)"
    )
    r.add_argument("--tune-budget", type=float, default=1.0, help="max_total_s of the tune's interleaved measurement")
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", default="")
    r.add_argument("--append", action="store_true", help="add to the runs already in --out")
    r.add_argument(
        "--competitor",
        action="store_true",
        help="run a competing ORT process (another engineer's test) for the whole run",
    )
    s = sub.add_parser("summary")
    s.add_argument("json")
    mg = sub.add_parser("merge")
    mg.add_argument("--out", required=True)
    mg.add_argument("--competitor-files", nargs="*", default=[])
    mg.add_argument("files", nargs="*")
    a = p.parse_args()
    if a.cmd == "worker":
        print(json.dumps(worker(a.variant, a.model, a.pair_budget, a.tune_budget, a.trials)))
    elif a.cmd == "run":
        run(a)
    elif a.cmd == "merge":
        merge(Path(a.out), a.files, a.competitor_files)
    else:
        data = json.loads(Path(a.json).read_text())
        _print_summary(data.get("summary") or _summarize(data["runs"]))
        for b in data.get("block_positions") or _block_positions(data["runs"]):
            print(b)
        for b in data.get("placement") or _placement_summary(data["runs"]):  # a merged file keeps these only
            print(b)


if __name__ == "__main__":
    main()
