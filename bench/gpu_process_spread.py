"""Root-cause the process-to-process latency spread of one model on one GPU (issue 15, part 2).

Standalone: imports torch, torchvision, the standard library and (optionally) pynvml only.
It never changes a GPU setting: clocks are only read.

What it does
  Phase 1  K fresh child processes per variant, variants interleaved round-robin (so drift over
           the run hits every variant alike), resnet50 bs16 eager. Every child records:
             - eager latency per call with CUDA events (GPU time) AND the host time to launch
               the same forward (perf_counter around the call, no sync inside),
             - the same model captured in a CUDA graph (torch.cuda.CUDAGraph) and replayed,
             - a torch.profiler trace of one eager forward: kernel names (hashed into a
               fingerprint: do slow processes run other kernels?), GPU busy time (sum of
               kernel durations) and the span first-kernel-start..last-kernel-end,
             - a host micro-benchmark: per-launch cost of a tiny CUDA op and a pure Python loop,
             - SM/memory clocks, throttle reasons, temperature and power before/after the window,
             - the CPU cores its main thread ran on, context switches, GC runs, allocator state.
           Variants: base (30 warm-up calls, like the probe), pin1 (every child pinned to the
           same core), pinrr (child i pinned to a different core each), bench
           (cudnn.benchmark=True), determ (cudnn.deterministic=True), warm400, settle (warm up
           until the running median settles), expseg (PYTORCH_CUDA_ALLOC_CONF=
           expandable_segments:True), prealloc (8 GiB allocated and freed before the model).
  Phase 2  Long-lived workers taking turns (like probe_process_persist.py), for base and for the
           variant with the smallest phase-1 spread: does a process keep its offset for life,
           in eager and in graph replay?
  Phase 3  If time is left: a BERT-like encoder (nn.TransformerEncoder, 4 layers, d=256,
           bs8 seq128), variants base / pin1 / warm400.
Children are pre-spawned one ahead: the next child imports torch while the current one warms
up, and the current one starts its timed window only after the next is idle (import done).

Output (under --out): process_spread.json (every child record, per-variant summaries, variance
decomposition), process_spread.md (tables + auto findings). The summary files are rewritten
after every child, so a run cut short still leaves them.

  PYTHONUNBUFFERED=1 python3 bench/gpu_process_spread.py --out $OUT --budget-s 520 | tee $OUT/run.log
  python bench/gpu_process_spread.py --device cpu --dry-run --out /tmp/ps   # logic check, no GPU
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time

SCHEMA = 1

# ----------------------------------------------------------------------------------------------
# variants
# ----------------------------------------------------------------------------------------------
RESNET_VARIANTS = {
    "base": {},
    "pin1": {"pin": "one"},
    "pinrr": {"pin": "rr"},
    "bench": {"bench": True},
    "determ": {"determ": True},
    "warm400": {"warm": "400"},
    "settle": {"warm": "settle"},
    "expseg": {"alloc_conf": "expandable_segments:True"},
    "prealloc": {"prealloc_gib": 8},
}
BERT_VARIANTS = {"base": {}, "pin1": {"pin": "one"}, "warm400": {"warm": "400"}}


def base_cfg(model, variant, overrides, args):
    cfg = {"model": model, "variant": variant, "warm": "30", "bench": False, "determ": False,
           "prealloc_gib": 0, "pin": None, "alloc_conf": None, "timed_calls": args.timed_calls,
           "device": args.device, "mode": "single", "window": args.persist_window,
           "dry_run": args.dry_run}
    cfg.update(overrides)
    if args.dry_run and cfg["prealloc_gib"]:
        cfg["prealloc_gib"] = 0.01
    return cfg


# ----------------------------------------------------------------------------------------------
# child side
# ----------------------------------------------------------------------------------------------
def _proc_stat_cpu(tid=None):
    """CPU the thread last ran on (field 39 of /proc/.../stat)."""
    try:
        path = f"/proc/self/task/{tid}/stat" if tid else "/proc/self/stat"
        with open(path) as f:
            s = f.read()
        rest = s[s.rfind(")") + 2:].split()
        return int(rest[36])  # field 39 overall; fields after comm start at 3
    except Exception:
        return -1


def _ctx_switches():
    out = {}
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/status") as f:
            for line in f:
                if "ctxt_switches" in line:
                    k, v = line.split(":")
                    out[k.strip()] = int(v)
    except Exception:
        pass
    return out


def _cpu_mhz(cpu):
    try:
        with open("/proc/cpuinfo") as f:
            cur = None
            for line in f:
                if line.startswith("processor"):
                    cur = int(line.split(":")[1])
                elif line.startswith("cpu MHz") and cur == cpu:
                    return float(line.split(":")[1])
    except Exception:
        pass
    return None


class Nvml:
    def __init__(self):
        self.h = None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception as exc:  # no pynvml or no GPU
            self.err = repr(exc)

    def snap(self):
        if self.h is None:
            return None
        nv, h, d = self.nv, self.h, {}
        for key, fn in (
            ("sm_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            ("mem_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("temp_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: round(nv.nvmlDeviceGetPowerUsage(h) / 1000, 1)),
            ("util_gpu", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
            ("procs", lambda: len(nv.nvmlDeviceGetComputeRunningProcesses(h))),
        ):
            try:
                d[key] = fn()
            except Exception:
                d[key] = None
        reasons = None
        for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
            try:
                reasons = getattr(nv, name)(h)
                break
            except Exception:
                continue
        d["throttle_reasons"] = reasons
        return d

    def static(self):
        if self.h is None:
            return {"nvml": getattr(self, "err", "none")}
        nv, h, d = self.nv, self.h, {}
        for key, fn in (
            ("name", lambda: nv.nvmlDeviceGetName(h)),
            ("driver", lambda: nv.nvmlSystemGetDriverVersion()),
            ("max_sm_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
            ("max_mem_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("app_sm_mhz", lambda: nv.nvmlDeviceGetApplicationsClock(h, nv.NVML_CLOCK_SM)),
            ("persistence", lambda: nv.nvmlDeviceGetPersistenceMode(h)),
            ("power_limit_w", lambda: nv.nvmlDeviceGetPowerManagementLimit(h) / 1000),
        ):
            try:
                v = fn()
                d[key] = v.decode() if isinstance(v, bytes) else v
            except Exception:
                d[key] = None
        return d


def _pct(vals, q):
    s = sorted(vals)
    return s[min(len(s) - 1, int(q * len(s)))]


def _r(v, n=4):
    return None if v is None else round(v, n)


def build_model(cfg, torch, dev):
    name = cfg["model"]
    torch.manual_seed(0)
    if name == "resnet50":
        try:
            import torchvision
            m = torchvision.models.resnet50()
            bs, shape = (2, (3, 64, 64)) if cfg["dry_run"] else (16, (3, 224, 224))
        except ImportError:
            if not cfg["dry_run"]:
                raise
            m = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
            bs, shape = 2, (3, 32, 32)
        x = torch.randn(bs, *shape, device=dev)
    elif name == "bert":
        d, layers, bs, seq = (64, 2, 2, 16) if cfg["dry_run"] else (256, 4, 8, 128)
        layer = torch.nn.TransformerEncoderLayer(d_model=d, nhead=4, dim_feedforward=4 * d, batch_first=True,
                                                 dropout=0.1)
        m = torch.nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False)
        x = torch.randn(bs, seq, d, device=dev)
    else:
        raise ValueError(name)
    return m.eval().to(dev), x


class Timer:
    """CUDA events on a GPU, perf_counter + synchronize-free on CPU."""

    def __init__(self, torch, dev):
        self.torch, self.cuda = torch, dev == "cuda"

    def time_call(self, fn):
        """Returns (gpu_ms, host_launch_ms) for one call; queue is drained before and after."""
        pc = time.perf_counter
        if self.cuda:
            s = self.torch.cuda.Event(enable_timing=True)
            e = self.torch.cuda.Event(enable_timing=True)
            s.record()
            t0 = pc()
            fn()
            t1 = pc()
            e.record()
            e.synchronize()
            return s.elapsed_time(e), (t1 - t0) * 1e3
        t0 = pc()
        fn()
        t1 = pc()
        return (t1 - t0) * 1e3, (t1 - t0) * 1e3


def window(timer, fn, n, sample_cpu_every=25):
    gpu, host, cpus = [], [], []
    tid = threading.get_native_id()
    for i in range(n):
        g, h = timer.time_call(fn)
        gpu.append(g)
        host.append(h)
        if i % sample_cpu_every == 0:
            cpus.append(_proc_stat_cpu(tid))
    cpus.append(_proc_stat_cpu(tid))
    return gpu, host, cpus


def host_microbench(torch, dev):
    """Per-launch host cost of a tiny op (dispatcher + driver launch) and a pure Python loop."""
    small = torch.zeros(64, device=dev)
    best_launch = float("inf")
    for _ in range(5):
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(500):
            small.add_(1.0)
        t1 = time.perf_counter()
        best_launch = min(best_launch, (t1 - t0) / 500 * 1e6)
    if dev == "cuda":
        torch.cuda.synchronize()
    best_py = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        acc = 0
        for i in range(100000):
            acc += i
        t1 = time.perf_counter()
        best_py = min(best_py, (t1 - t0) / 100000 * 1e9)
    return {"tiny_launch_us": round(best_launch, 3), "py_loop_ns": round(best_py, 3)}


def warmup(cfg, timer, fn):
    """30 / 400 calls, or until the running median settles. Returns info dict."""
    w = cfg["warm"]
    if w != "settle":
        n = int(w)
        for _ in range(n):
            fn()
        timer.torch.cuda.synchronize() if timer.cuda else None
        return {"warm_calls": n}
    win, meds, calls, cap = 20, [], 0, (200 if cfg["dry_run"] else 1500)
    while calls < cap:
        g, _, _ = window(timer, fn, win, sample_cpu_every=10 ** 9)
        calls += win
        meds.append(statistics.median(g))
        if calls >= 60 and len(meds) >= 4:
            last = meds[-4:]
            if max(last) / min(last) <= 1.03:
                break
    return {"warm_calls": calls, "settle_window_medians": [round(v, 4) for v in meds],
            "settled": calls < cap}


def try_graph(torch, m, x, timer, n):
    if not timer.cuda:
        return {"graph_error": "cpu"}, None
    try:
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                m(x)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            y = m(x)  # noqa: F841  (kept alive with the graph)
        for _ in range(10):
            g.replay()
        torch.cuda.synchronize()
        gpu, host, _ = window(timer, g.replay, n)
        return {"graph_med_ms": _r(statistics.median(gpu)), "graph_p10_ms": _r(_pct(gpu, 0.1)),
                "graph_p90_ms": _r(_pct(gpu, 0.9)), "graph_host_med_ms": _r(statistics.median(host))}, (g, y)
    except Exception as exc:
        return {"graph_error": repr(exc)[:300]}, None


def try_profile(torch, m, x, dev):
    if dev != "cuda":
        return {"prof_error": "cpu"}
    try:
        from torch.profiler import ProfilerActivity, profile
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            m(x)
            torch.cuda.synchronize()
        kern = []
        for e in prof.events():
            if e.device_type == torch.autograd.DeviceType.CUDA:
                kern.append((e.time_range.start, e.time_range.end, e.name))
        kern.sort()
        names = [k[2] for k in kern]
        busy = sum(k[1] - k[0] for k in kern)
        span = (kern[-1][1] - kern[0][0]) if kern else 0.0
        convish = sorted({n for n in names if any(t in n.lower() for t in
                                                  ("conv", "fprop", "xmma", "implicit", "gemm", "winograd", "fft"))})
        return {"prof_n_kernels": len(names),
                "prof_fingerprint": hashlib.sha1("\n".join(names).encode()).hexdigest()[:12],
                "prof_conv_fingerprint": hashlib.sha1("\n".join(convish).encode()).hexdigest()[:12],
                "prof_busy_ms": round(busy / 1e3, 4), "prof_span_ms": round(span / 1e3, 4),
                "prof_idle_ms": round((span - busy) / 1e3, 4),
                "prof_unique_kernels": sorted(set(names))}
    except Exception as exc:
        return {"prof_error": repr(exc)[:300]}


def child_main(cfg):
    t_start = time.time()
    # pin first, before torch starts threads (they inherit the mask)
    if cfg["pin"] is not None:
        os.sched_setaffinity(0, set(cfg["pin"]))
    import gc

    import torch
    if cfg["model"] == "resnet50":
        try:
            import torchvision  # noqa: F401  (import cost paid before "go")
        except ImportError:
            pass
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    t_go = time.time()
    dev = cfg["device"]
    rec = {"kind": "child", "model": cfg["model"], "variant": cfg["variant"], "pid": os.getpid(),
           "cfg": {k: cfg[k] for k in ("warm", "bench", "determ", "prealloc_gib", "pin", "alloc_conf")},
           "affinity": sorted(os.sched_getaffinity(0)), "env_alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    torch.backends.cudnn.benchmark = bool(cfg["bench"])
    torch.backends.cudnn.deterministic = bool(cfg["determ"])
    nv = Nvml()
    if dev == "cuda":
        torch.cuda.init()
        torch.zeros(1, device=dev)
    if cfg["prealloc_gib"]:
        blk = torch.empty(int(cfg["prealloc_gib"] * 2 ** 30), dtype=torch.uint8, device=dev)
        del blk
    m, x = build_model(cfg, torch, dev)
    timer = Timer(torch, dev)
    rec["versions"] = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
                       "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                       "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
                       "threads": torch.get_num_threads()}
    with torch.inference_mode():
        fwd = lambda: m(x)  # noqa: E731
        t_w = time.time()
        rec.update(warmup(cfg, timer, fwd))
        rec["warm_s"] = round(time.time() - t_w, 3)
        if cfg["mode"] == "persist":
            return persist_loop(cfg, torch, m, x, timer, nv, rec, fwd)
        # wait until the parent says the next child is idle (imported), then time
        print("WARM", flush=True)
        if sys.stdin.readline().strip() != "time":
            return
        rec["host_before"] = host_microbench(torch, dev)
        rec["clock_before"] = nv.snap()
        cs0, gc0 = _ctx_switches(), [s["collections"] for s in gc.get_stats()]
        gpu, host, cpus = window(timer, fwd, cfg["timed_calls"])
        cs1, gc1 = _ctx_switches(), [s["collections"] for s in gc.get_stats()]
        rec["clock_after"] = nv.snap()
        rec["ctx_switches"] = {k: cs1.get(k, 0) - cs0.get(k, 0) for k in cs1}
        rec["gc_runs"] = [b - a for a, b in zip(gc0, gc1, strict=False)]
        rec["cpus_seen"] = sorted(set(cpus))
        rec["cpu_migrations"] = sum(1 for a, b in zip(cpus, cpus[1:], strict=False) if a != b)
        rec["cpu_mhz"] = _cpu_mhz(cpus[-1])
        tail = [g - h for g, h in zip(gpu, host, strict=False)]
        rec.update({"eager_med_ms": _r(statistics.median(gpu)), "eager_p10_ms": _r(_pct(gpu, 0.1)),
                    "eager_p90_ms": _r(_pct(gpu, 0.9)), "eager_min_ms": _r(min(gpu)),
                    "host_med_ms": _r(statistics.median(host)), "host_p10_ms": _r(_pct(host, 0.1)),
                    "host_p90_ms": _r(_pct(host, 0.9)), "tail_med_ms": _r(statistics.median(tail)),
                    "host_gpu_corr_in_window": _r(_corr(host, gpu), 3)})
        ginfo, _keep = try_graph(torch, m, x, timer, cfg["timed_calls"])
        rec.update(ginfo)
        rec.update(try_profile(torch, m, x, dev))
        rec["host_after"] = host_microbench(torch, dev)
        if dev == "cuda":
            rec["mem_reserved_mib"] = round(torch.cuda.memory_reserved() / 2 ** 20, 1)
            rec["mem_allocated_mib"] = round(torch.cuda.memory_allocated() / 2 ** 20, 1)
            st = torch.cuda.memory_stats()
            rec["mem_segments"] = st.get("segment.all.current")
            rec["x_ptr_mod_2m"] = x.data_ptr() % (2 ** 21)
    rec["t_setup_s"] = round(t_w - t_go, 3)
    rec["t_total_s"] = round(time.time() - t_start, 3)
    print("RESULT " + json.dumps(rec), flush=True)


def persist_loop(cfg, torch, m, x, timer, nv, rec, fwd):
    _g = try_graph(torch, m, x, timer, 5)
    rec["graph_ok"] = _g[1] is not None
    print("SETUP " + json.dumps(rec), flush=True)
    tid = threading.get_native_id()
    while True:
        cmd = sys.stdin.readline().strip()
        if cmd != "round":
            break
        c0 = nv.snap()
        gpu, host, cpus = window(timer, fwd, cfg["window"])
        r = {"eager_med_ms": _r(statistics.median(gpu)), "host_med_ms": _r(statistics.median(host)),
             "cpu": _proc_stat_cpu(tid), "sm_mhz": (c0 or {}).get("sm_mhz")}
        if _g[1] is not None:
            gg, _, _ = window(timer, _g[1][0].replay, cfg["window"])
            r["graph_med_ms"] = _r(statistics.median(gg))
        print("ROUND " + json.dumps(r), flush=True)


# ----------------------------------------------------------------------------------------------
# parent side
# ----------------------------------------------------------------------------------------------
def _corr(a, b):
    if len(a) < 3:
        return None
    ma, mb = statistics.mean(a), statistics.mean(b)
    va = sum((v - ma) ** 2 for v in a)
    vb = sum((v - mb) ** 2 for v in b)
    if va == 0 or vb == 0:
        return None
    return sum((p - ma) * (q - mb) for p, q in zip(a, b, strict=False)) / math.sqrt(va * vb)


def stats(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None
    mean = statistics.mean(vals)
    return {"n": len(vals), "min": _r(min(vals)), "median": _r(statistics.median(vals)), "max": _r(max(vals)),
            "spread_pct": round(100 * (max(vals) / min(vals) - 1), 1) if min(vals) > 0 else None,
            "cv_pct": round(100 * statistics.pstdev(vals) / mean, 1) if mean else None}


class Child:
    def __init__(self, cfg, script):
        env = dict(os.environ)
        if cfg.get("alloc_conf"):
            env["PYTORCH_CUDA_ALLOC_CONF"] = cfg["alloc_conf"]
        else:
            env.pop("PYTORCH_CUDA_ALLOC_CONF", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.err = tempfile.TemporaryFile(mode="w+")
        self.cfg = cfg
        self.p = subprocess.Popen([sys.executable, script, "--child", json.dumps(cfg)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.err, text=True, env=env)
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def expect(self, prefix, timeout):
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                raise TimeoutError(f"no {prefix} within {timeout}s")
            try:
                line = self.q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"child exited before {prefix}: {self.stderr_tail()}")
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def send(self, s):
        self.p.stdin.write(s + "\n")
        self.p.stdin.flush()

    def stderr_tail(self):
        try:
            self.err.seek(0)
            return self.err.read()[-600:]
        except Exception:
            return ""

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
        try:
            self.p.wait(timeout=10)
        except Exception:
            pass


class Run:
    def __init__(self, args):
        self.args = args
        self.t0 = time.time()
        self.script = os.path.abspath(__file__)
        self.records, self.persist, self.errors = [], [], []
        self.ncpu = len(os.sched_getaffinity(0))
        self.cores = sorted(os.sched_getaffinity(0))
        self.rr = 0
        os.makedirs(args.out, exist_ok=True)
        self.meta = {"schema": SCHEMA, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv,
                     "python": sys.version.split()[0], "ncpu_allowed": self.ncpu, "gpu": Nvml().static(),
                     "host": os.uname().nodename, "kernel": os.uname().release}
        try:
            with open("/proc/cpuinfo") as f:
                self.meta["cpu_model"] = next((ln.split(":")[1].strip() for ln in f if ln.startswith("model name")),
                                              None)
        except Exception:
            pass

    def elapsed(self):
        return time.time() - self.t0

    def log(self, msg):
        print(f"[{self.elapsed():7.1f}s] {msg}", flush=True)

    def resolve_pin(self, cfg):
        if cfg["pin"] == "one":
            cfg["pin"] = [self.cores[min(3, len(self.cores) - 1)]]
        elif cfg["pin"] == "rr":
            cand = self.cores[1:] or self.cores
            step = next(k for k in (7, 5, 3, 1) if math.gcd(k, len(cand)) == 1)
            cfg["pin"] = [cand[(self.rr * step) % len(cand)]]  # a different core each time
            self.rr += 1
        return cfg

    # -- phase 1 / 3: fresh processes, pipelined one ahead --------------------------------------
    def fresh_phase(self, model, variants, deadline, kmax):
        counts = {v: 0 for v in variants}
        names = list(variants)
        plan = []
        for rnd in range(kmax):
            rot = rnd % len(names)
            plan += [(names[(i + rot) % len(names)], rnd) for i in range(len(names))]
        est = None
        nxt = None
        for idx, (vname, _rnd) in enumerate(plan):
            if est is not None and self.elapsed() + est > deadline:
                self.log(f"{model}: phase deadline reached after {idx} children")
                break
            t_child = time.time()
            cur = nxt if nxt is not None else Child(self.resolve_pin(base_cfg(model, vname, variants[vname], self.args)),
                                                    self.script)
            nxt = None
            try:
                if not getattr(cur, "ready_seen", False):
                    cur.expect("READY", 120)
                cur.send("go")
                # spawn the next while this one initialises CUDA / builds / warms up
                if idx + 1 < len(plan) and (est is None or self.elapsed() + 2 * est <= deadline):
                    nv_name = plan[idx + 1][0]
                    nxt = Child(self.resolve_pin(base_cfg(model, nv_name, variants[nv_name], self.args)), self.script)
                cur.expect("WARM", 240)
                if nxt is not None:
                    try:
                        nxt.expect("READY", 120)
                        nxt.ready_seen = True
                    except Exception as exc:
                        self.errors.append({"model": model, "variant": plan[idx + 1][0], "error": repr(exc)[:600]})
                        nxt.kill()
                        nxt = None
                cur.send("time")
                rec = json.loads(cur.expect("RESULT", 240))
                rec["order"] = idx
                rec["t_parent_s"] = round(self.elapsed(), 1)
                self.records.append(rec)
                counts[vname] += 1
                self.log(f"{model:8s} {vname:9s} #{counts[vname]} eager {rec.get('eager_med_ms')} ms "
                         f"host {rec.get('host_med_ms')} graph {rec.get('graph_med_ms')} busy {rec.get('prof_busy_ms')} "
                         f"fp {rec.get('prof_fingerprint')} cpus {rec.get('cpus_seen')} "
                         f"sm {(rec.get('clock_before') or {}).get('sm_mhz')}/{(rec.get('clock_after') or {}).get('sm_mhz')}"
                         f" launch {rec['host_before']['tiny_launch_us']}us")
            except Exception as exc:
                self.errors.append({"model": model, "variant": vname, "error": repr(exc)[:300],
                                    "stderr": cur.stderr_tail()})
                self.log(f"{model} {vname}: ERROR {exc!r}"[:400])
            finally:
                cur.kill()
            dt = time.time() - t_child
            est = dt if est is None else 0.7 * est + 0.3 * dt
            self.write()
        if nxt is not None:
            nxt.kill()
        return counts

    # -- phase 2: long-lived workers taking turns -------------------------------------------------
    def persist_phase(self, model, label, overrides, workers, rounds, deadline):
        ws = []
        res = {"model": model, "label": label, "overrides": overrides, "workers": workers}
        try:
            for _ in range(workers):
                ov = dict(overrides)
                cfg = self.resolve_pin(base_cfg(model, label, ov, self.args))
                cfg["mode"] = "persist"
                ws.append(Child(cfg, self.script))
            for w in ws:
                w.expect("READY", 120)
            setups = []
            for w in ws:  # one at a time: nobody warms up while another does
                w.send("go")
                setups.append(json.loads(w.expect("SETUP", 240)))
            res["setup"] = [{k: s.get(k) for k in ("pid", "affinity", "warm_calls", "graph_ok")} for s in setups]
            per = [[] for _ in ws]
            t_r = None
            for r in range(rounds):
                if t_r is not None and self.elapsed() + t_r > deadline:
                    break
                t1 = time.time()
                order = range(len(ws)) if r % 2 == 0 else reversed(range(len(ws)))
                for i in order:
                    ws[i].send("round")
                    per[i].append(json.loads(ws[i].expect("ROUND", 60)))
                t_r = time.time() - t1
            res["rounds_done"] = len(per[0])
            res["per_worker"] = per
            res["summary"] = persist_summary(per)
            self.log(f"persist {model} {label}: {json.dumps(res['summary'])}")
        except Exception as exc:
            res["error"] = repr(exc)[:300]
            res["stderr"] = ws[-1].stderr_tail() if ws else ""
            self.log(f"persist {model} {label}: ERROR {exc!r}"[:400])
        finally:
            for w in ws:
                try:
                    w.send("stop")
                except Exception:
                    pass
                w.kill()
        self.persist.append(res)
        self.write()
        return res

    # -- output ---------------------------------------------------------------------------------
    def summarize(self):
        out = {}
        for rec in self.records:
            out.setdefault(rec["model"], {}).setdefault(rec["variant"], []).append(rec)
        summ = {}
        for model, byv in out.items():
            summ[model] = {}
            for v, recs in byv.items():
                s = {k: stats([r.get(f) for r in recs]) for k, f in (
                    ("eager", "eager_med_ms"), ("host_launch", "host_med_ms"), ("graph", "graph_med_ms"),
                    ("prof_busy", "prof_busy_ms"), ("prof_span", "prof_span_ms"),
                    ("tiny_launch_us", None), ("eager_p90_over_p10", None))}
                s["tiny_launch_us"] = stats([r["host_before"]["tiny_launch_us"] for r in recs if "host_before" in r])
                s["eager_p90_over_p10"] = stats([r["eager_p90_ms"] / r["eager_p10_ms"] for r in recs
                                                 if r.get("eager_p10_ms")])
                s["overhead_eager_minus_graph"] = stats([r["eager_med_ms"] - r["graph_med_ms"] for r in recs
                                                         if r.get("graph_med_ms") is not None])
                fps = [r.get("prof_fingerprint") for r in recs if r.get("prof_fingerprint")]
                s["kernel_fingerprints"] = {f: fps.count(f) for f in sorted(set(fps))}
                cfp = [r.get("prof_conv_fingerprint") for r in recs if r.get("prof_conv_fingerprint")]
                s["conv_fingerprints"] = {f: cfp.count(f) for f in sorted(set(cfp))}
                s["sm_mhz_seen"] = sorted({c.get("sm_mhz") for r in recs for c in (r.get("clock_before"), r.get("clock_after"))
                                           if c and c.get("sm_mhz") is not None})
                s["throttle_reasons_seen"] = sorted({c.get("throttle_reasons") for r in recs
                                                     for c in (r.get("clock_before"), r.get("clock_after"))
                                                     if c and c.get("throttle_reasons") is not None})
                s["cpus_seen"] = [r.get("cpus_seen") for r in recs]
                s["corr_eager_vs_host"] = _r(_corr([r["eager_med_ms"] for r in recs], [r["host_med_ms"] for r in recs]), 3)
                s["corr_eager_vs_tiny_launch"] = _r(_corr([r["eager_med_ms"] for r in recs],
                                                          [r["host_before"]["tiny_launch_us"] for r in recs]), 3)
                s["decomposition"] = decompose(recs)
                summ[model][v] = s
            summ[model]["_decomposition"] = decompose([r for recs in byv.values() for r in recs])
        return summ

    def write(self):
        summ = self.summarize()
        doc = {"meta": self.meta, "elapsed_s": round(self.elapsed(), 1), "summary": summ,
               "persist": self.persist, "errors": self.errors, "children": self.records}
        tmp = os.path.join(self.args.out, ".process_spread.json.tmp")
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        os.replace(tmp, os.path.join(self.args.out, "process_spread.json"))
        with open(os.path.join(self.args.out, "process_spread.md"), "w") as f:
            f.write(markdown(doc))


def persist_summary(per):
    out = {}
    for key in ("eager_med_ms", "graph_med_ms", "host_med_ms"):
        series = [[r[key] for r in w if r.get(key) is not None] for w in per]
        if not all(series) or not series:
            continue
        meds = [statistics.median(s) for s in series]
        allv = [v for s in series for v in s]
        total = statistics.pvariance(allv)
        between = statistics.pvariance([statistics.mean(s) for s in series])
        out[key] = {"per_worker_median": [round(v, 4) for v in meds],
                    "worker_spread_pct": round(100 * (max(meds) / min(meds) - 1), 1),
                    "round_cv_pct": [round(100 * statistics.pstdev(s) / statistics.mean(s), 1) for s in series],
                    "share_var_between_workers": round(between / total, 3) if total else None}
    out["cpus"] = [sorted({r["cpu"] for r in w}) for w in per]
    return out


def decompose(recs):
    """eager = graph (GPU execution) + overhead (launch gaps). Share of across-process variance."""
    rows = [r for r in recs if r.get("graph_med_ms") is not None and r.get("eager_med_ms") is not None]
    if len(rows) < 3:
        return None
    e = [r["eager_med_ms"] for r in rows]
    g = [r["graph_med_ms"] for r in rows]
    o = [a - b for a, b in zip(e, g, strict=False)]
    h = [r["host_med_ms"] for r in rows]
    ve = statistics.pvariance(e)
    if ve == 0:
        return None
    me, mg, mo = statistics.mean(e), statistics.mean(g), statistics.mean(o)
    cov = sum((a - mg) * (b - mo) for a, b in zip(g, o, strict=False)) / len(rows)
    d = {"n": len(rows), "var_eager": _r(ve, 6),
         "share_gpu_exec": round((statistics.pvariance(g) + cov) / ve, 3),
         "share_launch_overhead": round((statistics.pvariance(o) + cov) / ve, 3),
         "corr_eager_host": _r(_corr(e, h), 3), "corr_eager_graph": _r(_corr(e, g), 3),
         "r2_eager_on_host": _r((_corr(e, h) or 0) ** 2, 3),
         "mean_eager_ms": _r(me), "mean_graph_ms": _r(mg), "mean_overhead_ms": _r(mo)}
    tl = [r["host_before"]["tiny_launch_us"] for r in rows if "host_before" in r]
    if len(tl) == len(rows):
        d["corr_eager_tiny_launch"] = _r(_corr(e, tl), 3)
    busy = [r.get("prof_busy_ms") for r in rows]
    if all(b is not None for b in busy):
        d["corr_eager_prof_busy"] = _r(_corr(e, busy), 3)
        d["mean_prof_busy_ms"] = _r(statistics.mean(busy))
    return d


def _fmt(s, key="median"):
    return "-" if not s else f"{s[key]}"


def markdown(doc):
    L = ["# Process-to-process spread on the GPU: decomposition (bench/gpu_process_spread.py)", ""]
    m = doc["meta"]
    g = m.get("gpu", {})
    L.append(f"GPU {g.get('name')} driver {g.get('driver')} max SM {g.get('max_sm_mhz')} MHz; "
             f"{m.get('ncpu_allowed')} CPUs ({m.get('cpu_model')}); kernel {m.get('kernel')}; "
             f"started {m.get('started')}; elapsed {doc['elapsed_s']} s. Every row = fresh processes; "
             "numbers are the medians of each process's timed window (ms).")
    L.append("")
    for model, byv in doc["summary"].items():
        L.append(f"## {model}: fresh processes")
        L.append("")
        L.append("| variant | n | eager min / med / max | spread | CV | host-launch med (spread) | graph min / med / max "
                 "| graph spread | profiler busy med (spread) | p90/p10 in window (med) | kernel fingerprints "
                 "| launch-overhead share of var | tiny-launch us med (spread) | SM MHz seen |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for v, s in byv.items():
            if v.startswith("_"):
                continue
            e, h, gr, b = s["eager"], s["host_launch"], s["graph"], s["prof_busy"]
            L.append(
                f"| {v} | {e['n'] if e else 0} | {_fmt(e, 'min')} / {_fmt(e)} / {_fmt(e, 'max')} | "
                f"{e['spread_pct'] if e else '-'}% | {e['cv_pct'] if e else '-'}% | "
                f"{_fmt(h)} ({h['spread_pct'] if h else '-'}%) | {_fmt(gr, 'min')} / {_fmt(gr)} / {_fmt(gr, 'max')} | "
                f"{gr['spread_pct'] if gr else '-'}% | {_fmt(b)} ({b['spread_pct'] if b else '-'}%) | "
                f"{_fmt(s['eager_p90_over_p10'])} | {len(s['kernel_fingerprints'])} | "
                f"{(s.get('decomposition') or {}).get('share_launch_overhead', '-')} | "
                f"{_fmt(s['tiny_launch_us'])} ({s['tiny_launch_us']['spread_pct'] if s['tiny_launch_us'] else '-'}%) | "
                f"{s['sm_mhz_seen']} |")
        d = byv.get("_decomposition")
        if d:
            L.append("")
            L.append(f"Variance decomposition over all {d['n']} {model} processes (eager = graph replay + launch "
                     f"overhead): GPU execution share {d['share_gpu_exec']}, launch-overhead share "
                     f"{d['share_launch_overhead']}; corr(eager, host launch time) {d['corr_eager_host']}, "
                     f"corr(eager, graph) {d['corr_eager_graph']}, corr(eager, tiny-op launch cost) "
                     f"{d.get('corr_eager_tiny_launch')}, corr(eager, profiler busy) {d.get('corr_eager_prof_busy')}. "
                     f"Means: eager {d['mean_eager_ms']} ms, graph {d['mean_graph_ms']} ms, "
                     f"profiler GPU busy {d.get('mean_prof_busy_ms')} ms.")
        L.append("")
    if doc["persist"]:
        L.append("## Long-lived processes taking turns")
        L.append("")
        L.append("| model | config | workers x rounds | metric | per-worker median ms | spread between workers | "
                 "round CV in a worker | share of variance between workers |")
        L.append("|---|---|---|---|---|---|---|---|")
        for p in doc["persist"]:
            if "summary" not in p:
                L.append(f"| {p['model']} | {p['label']} | - | error | {p.get('error')} | | | |")
                continue
            for key, s in p["summary"].items():
                if key == "cpus":
                    continue
                L.append(f"| {p['model']} | {p['label']} | {p['workers']} x {p['rounds_done']} | {key} | "
                         f"{', '.join(str(v) for v in s['per_worker_median'])} | {s['worker_spread_pct']}% | "
                         f"{', '.join(str(v) for v in s['round_cv_pct'])}% | {s['share_var_between_workers']} |")
        L.append("")
    if doc["errors"]:
        L.append(f"Errors: {len(doc['errors'])} (see JSON `errors`).")
        L.append("")
    L.append("## Automatic findings (computed from the numbers above)")
    L.append("")
    L.extend(auto_findings(doc))
    return "\n".join(L) + "\n"


def auto_findings(doc):
    out = []
    for model, byv in doc["summary"].items():
        base = byv.get("base", {}).get("eager")
        if not base:
            continue
        parts = [f"**{model}**: base eager spread {base['spread_pct']}% (CV {base['cv_pct']}%)."]
        for v, s in byv.items():
            if v in ("base",) or v.startswith("_") or not s.get("eager"):
                continue
            parts.append(f"{v}: {s['eager']['spread_pct']}%")
        gs = [s["graph"]["spread_pct"] for v, s in byv.items() if not v.startswith("_") and s.get("graph")]
        if gs:
            parts.append(f"| graph-replay spread per variant: {min(gs)}-{max(gs)}%")
        d = byv.get("_decomposition")
        if d:
            parts.append(f"| {round(100 * d['share_launch_overhead'])}% of the across-process variance of eager "
                         f"latency sits in the launch overhead (eager minus graph), {round(100 * d['share_gpu_exec'])}% "
                         f"in GPU execution; R^2 of eager on host launch time {d['r2_eager_on_host']}.")
        fp = {v: len(s["kernel_fingerprints"]) for v, s in byv.items() if not v.startswith("_")}
        parts.append(f"| distinct kernel-sequence fingerprints per variant: {fp}")
        out.append(" ".join(parts))
        out.append("")
    for p in doc["persist"]:
        s = p.get("summary", {})
        if "eager_med_ms" in s:
            t = (f"Persist {p['model']} {p['label']}: eager spread between workers "
                 f"{s['eager_med_ms']['worker_spread_pct']}% (between-worker variance share "
                 f"{s['eager_med_ms']['share_var_between_workers']})")
            if "graph_med_ms" in s:
                t += (f", graph {s['graph_med_ms']['worker_spread_pct']}% "
                      f"(share {s['graph_med_ms']['share_var_between_workers']})")
            if "host_med_ms" in s:
                t += f", host launch {s['host_med_ms']['worker_spread_pct']}%"
            out.append(t + ".")
            out.append("")
    return out


def parent_main(args):
    run = Run(args)
    B = args.budget_s
    run.log(f"meta {json.dumps(run.meta)}")
    variants = {k: v for k, v in RESNET_VARIANTS.items() if k in args.variants.split(",")}
    persist_est = 0 if args.no_persist else (24 if args.dry_run else 110)
    bert_est = 0 if "bert" not in args.models.split(",") else (15 if args.dry_run else 60)
    d1 = max(B * 0.35, B - persist_est - bert_est - 20)
    run.log(f"phase 1 resnet50, deadline {d1:.0f}s, variants {list(variants)}")
    run.fresh_phase("resnet50", variants, d1, args.k)
    summ = run.summarize().get("resnet50", {})
    if not args.no_persist:
        # best = smallest eager spread among the variants with >= 3 processes (base excluded)
        cand = [(s["eager"]["spread_pct"], v) for v, s in summ.items()
                if not v.startswith("_") and v != "base" and s.get("eager") and s["eager"]["n"] >= 3]
        best = min(cand)[1] if cand else "pin1"
        rem = B - bert_est - 15
        share = (rem - run.elapsed()) / 2
        run.log(f"phase 2 persist: base and best={best} (phase-1 spreads {sorted(cand)})")
        run.persist_phase("resnet50", "base", {}, args.persist_workers, args.persist_rounds,
                          run.elapsed() + share)
        ov = dict(RESNET_VARIANTS.get(best, {}))
        if ov.get("pin") == "rr":
            ov = dict(ov)  # each long-lived worker on its own core
        run.persist_phase("resnet50", best, ov, args.persist_workers, args.persist_rounds, rem)
    if "bert" in args.models.split(",") and run.elapsed() < B - 30:
        run.log("phase 3 bert")
        run.fresh_phase("bert", BERT_VARIANTS, B - 10, args.k)
    run.write()
    run.log("done")
    print(open(os.path.join(args.out, "process_spread.md")).read(), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=os.environ.get("OUT", "reports/tmp/process_spread"))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--dry-run", action="store_true", help="tiny models / budgets, for a logic check")
    ap.add_argument("--budget-s", type=float, default=520.0, help="wall-clock budget for the whole run")
    ap.add_argument("--k", type=int, default=6, help="max fresh processes per variant")
    ap.add_argument("--timed-calls", type=int, default=200)
    ap.add_argument("--variants", default=",".join(RESNET_VARIANTS))
    ap.add_argument("--models", default="resnet50,bert")
    ap.add_argument("--persist-workers", type=int, default=4)
    ap.add_argument("--persist-rounds", type=int, default=16)
    ap.add_argument("--persist-window", type=int, default=40)
    ap.add_argument("--no-persist", action="store_true")
    args = ap.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return
    if args.dry_run:
        args.timed_calls = min(args.timed_calls, 20)
        args.persist_window = min(args.persist_window, 5)
    parent_main(args)


if __name__ == "__main__":
    main()
