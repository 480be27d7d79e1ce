"""Verdict trust across processes: many separate ``pytest --aitune`` runs of one example suite.

For each condition (unchanged code, and the head slowed by a known fraction) and each verdict mode
(``stored``: against a baseline written by one "nightly" run; ``relative``: against the PR's base
commit built and timed in the same process with ``--aitune-against``), this starts N fresh pytest
processes and counts, per check, how often each verdict came out. A/A false alarms (REGRESSED on
unchanged code) and detections (REGRESSED under the slowdown) are given with Wilson 95% intervals,
with the MDE each check reported.

The suite is a real git repository made in a temporary folder. Its models run a known amount of
extra work per call when the committed ``slowdown.json`` says so: a host-side spin (eager on the
CPU and eager on the GPU, which is launch-bound) or a GPU ``torch.cuda._sleep`` kernel (CUDA-graph
backends, whose replay skips host code), calibrated from each model's own median measured once.

Usage:
    python bench/verdict_trust.py --device cpu --processes 20            # here (CPU)
    python bench/verdict_trust.py --device cuda --processes 10 --out DIR # on the GPU

Writes ``verdict_trust.json`` and ``verdict_trust.md`` into ``--out`` (default ``reports/``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

MODELS = r'''
"""Example suite models; the slowdown a commit injects is read from slowdown.json beside this file."""
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent
SLOWDOWN = json.loads((HERE / "slowdown.json").read_text()).get("fraction", 0.0)
CALIBRATION = json.loads((HERE / "calibration.json").read_text())


class Slowed(torch.nn.Module):
    """``inner``, then extra work worth ``SLOWDOWN`` of its calibrated time: a host spin or a GPU sleep."""

    def __init__(self, inner, fixture, how):
        super().__init__()
        self.inner = inner
        base_ms = CALIBRATION[fixture]["median_ms"]
        self.spin_s = SLOWDOWN * base_ms / 1e3 if how == "spin" else 0.0
        self.cycles = int(SLOWDOWN * base_ms * CALIBRATION["_gpu_cycles_per_ms"]) if how == "gpu-sleep" else 0

    def forward(self, x):
        y = self.inner(x)
        if self.spin_s:
            end = time.perf_counter() + self.spin_s
            while time.perf_counter() < end:
                pass
        if self.cycles:
            torch.cuda._sleep(self.cycles)
        return y


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))


def tiny():
    return torch.nn.Linear(16, 16)


def resnet50():
    import torchvision

    return torchvision.models.resnet50()


def encoder():
    layer = torch.nn.TransformerEncoderLayer(256, 4, 1024, batch_first=True)
    return torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
'''

CONFTEST = r'''
import os

import torch
import aitune_ci as ait
from models import Slowed

if os.environ.get("VERDICT_TRUST_ROUND_ORDER") == "abba-only":  # --modes relative-abba: the pre-2026-12-03 order
    import aitune_ci.measure as _measure

    _measure.paired_round_order = lambda round_index: _measure.ABBA
    _measure.ROUNDS_PER_PAIR = 1  # the median over single rounds, min_rounds rounds
'''

#: fixture -> (model factory, input shape, backend, how the slowdown is injected)
SUITES: dict[str, dict[str, tuple[str, tuple[int, ...], str, str]]] = {
    "cpu": {
        "tune_mlp": ("mlp", (64, 256), "eager", "spin"),
        "tune_tiny": ("tiny", (4, 16), "eager", "spin"),
    },
    "cuda": {
        "tune_resnet_eager": ("resnet50", (16, 3, 224, 224), "eager", "spin"),
        "tune_resnet_graphs": ("resnet50", (16, 3, 224, 224), "cudagraphs", "gpu-sleep"),
        "tune_encoder_eager": ("encoder", (8, 128, 256), "eager", "spin"),
    },
}

FIXTURE = '''

@ait.tune_fixture
def {name}():
    from models import {factory}
    model = Slowed({factory}().eval(), "{name}", "{how}")
    return ait.TuneSpec(model=model, samples=[torch.randn({shape})], backends=["{backend}"], device="{device}",
                        strategy="one-backend")
'''


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=bench@example.com", "-c", "user.name=bench", *args],
        cwd=repo, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def calibrate(repo: Path, device: str, suite: dict[str, tuple[str, tuple[int, ...], str, str]]) -> dict[str, Any]:
    """Each fixture's median time per call (its backend's way), and the GPU sleep rate, in this process."""
    import importlib.util

    import torch

    (repo / "calibration.json").write_text("{}")
    spec = importlib.util.spec_from_file_location("suite_models", repo / "models.py")
    assert spec is not None and spec.loader is not None
    models = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(models)

    out: dict[str, Any] = {"_gpu_cycles_per_ms": 0.0}
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1_000_000)
        start.record()
        torch.cuda._sleep(10_000_000)
        end.record()
        end.synchronize()
        out["_gpu_cycles_per_ms"] = 10_000_000 / start.elapsed_time(end)
    for name, (factory, shape, backend, _how) in suite.items():
        model = getattr(models, factory)().eval().to(device)
        x = torch.randn(*shape, device=device)
        call = model
        if backend == "cudagraphs":
            graph, static_x = torch.cuda.CUDAGraph(), x.clone()
            with torch.inference_mode():
                for _ in range(3):
                    model(static_x)
                torch.cuda.synchronize()
                with torch.cuda.graph(graph):
                    model(static_x)

            def call(_x: Any, graph: Any = graph) -> None:
                graph.replay()

        times = []
        with torch.inference_mode():
            for i in range(230):
                t0 = time.perf_counter()
                call(x)
                if device == "cuda":
                    torch.cuda.synchronize()
                if i >= 30:
                    times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        out[name] = {"median_ms": times[len(times) // 2]}
    return out


def make_repo(root: Path, device: str, fixtures: list[str] | None, measure_s: float) -> tuple[Path, str]:
    """The suite's git repo with its base commit (no slowdown); returns (repo, base sha)."""
    repo = root / "suite"
    repo.mkdir(parents=True)
    suite = {k: v for k, v in SUITES[device].items() if not fixtures or k in fixtures}
    (repo / "models.py").write_text(MODELS)
    (repo / "slowdown.json").write_text(json.dumps({"fraction": 0.0}))
    (repo / "calibration.json").write_text(json.dumps(calibrate(repo, device, suite), indent=1))
    conftest = CONFTEST
    for name, (factory, shape, backend, how) in suite.items():
        conftest += FIXTURE.format(name=name, factory=factory, shape=", ".join(map(str, shape)), backend=backend,
                                   how=how, device=device)  # fmt: skip
    (repo / "conftest.py").write_text(conftest)
    (repo / "pyproject.toml").write_text(f'[tool.pytest.ini_options]\naitune_measure_seconds = "{measure_s:g}"\n')
    (repo / ".gitignore").write_text(".aitune/\n__pycache__/\nrun-*.json\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    return repo, _git(repo, "rev-parse", "HEAD")


def set_head(repo: Path, base: str, fraction: float) -> None:
    """Reset to the base commit, then commit the head with ``fraction`` of slowdown (0: a no-op commit)."""
    _git(repo, "checkout", "-q", "--detach", base)
    (repo / "slowdown.json").write_text(json.dumps({"fraction": fraction}))
    _git(repo, "commit", "-qam", f"head: slowdown {fraction}", "--allow-empty")


def _plugin_args() -> tuple[list[str], dict[str, str]]:
    """``-p aitune_ci.plugin`` and this checkout on PYTHONPATH where aitune-ci is not installed (the GPU image)."""
    from importlib.metadata import entry_points

    env = dict(os.environ)
    if any(ep.name == "aitune" for ep in entry_points(group="pytest11")):
        return [], env
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    return ["-p", "aitune_ci.plugin"], env


def run_pytest(repo: Path, out: Path, *args: str, extra_env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    plugin, env = _plugin_args()
    env.update(extra_env or {})
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, "--aitune", "--aitune-report", str(out), *args]
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=900, env=env)
    wall = time.perf_counter() - t0
    if not out.is_file():
        raise RuntimeError(f"pytest wrote no report (rc {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    verdicts = json.loads(out.read_text())["verdicts"]
    out.unlink()
    return done.returncode, verdicts, wall


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["mode"], row["condition"], row["check"])].append(row)
    table = []
    for (mode, condition, check), items in sorted(groups.items()):
        kinds = Counter(r["kind"] for r in items)
        n, regressed, improved = len(items), kinds.get("REGRESSED", 0), kinds.get("IMPROVED", 0)
        deltas = sorted(r["delta"] for r in items if r["delta"] is not None)
        mdes = sorted(r["mde"] for r in items if r["mde"] is not None)
        # The honest-MDE test: on unchanged code, how often did the change exceed the MDE the check reported?
        beyond = sum(1 for r in items if r["delta"] is not None and r["mde"] is not None and abs(r["delta"]) > r["mde"])
        table.append({
            "mode": mode, "condition": condition, "check": check, "n": n, "kinds": dict(kinds),
            "regressed": regressed, "regressed_ci": wilson(regressed, n),
            "improved": improved, "improved_ci": wilson(improved, n),
            "median_delta": deltas[len(deltas) // 2] if deltas else None,
            "median_mde": mdes[len(mdes) // 2] if mdes else None,
            "paired": sum(1 for r in items if r["paired"]),
            "beyond_mde": beyond, "beyond_mde_ci": wilson(beyond, n),
            "max_abs_delta": max((abs(d) for d in deltas), default=None),
        })  # fmt: skip
    return table


def markdown(meta: dict[str, Any], table: list[dict[str, Any]]) -> str:
    lines = [
        f"# Verdict trust across processes ({meta['machine']})",
        "",
        f"{meta['processes']} fresh `pytest --aitune` processes per condition and mode, {meta['date']}; "
        f"measurement budget {meta['measure_seconds']} s per fixture; `bench/verdict_trust.py --device {meta['device']}`.",
        "A/A = unchanged code (a no-op commit). `slow10`/`slow5` = the head injects 10% / 5% of the model's "
        "calibrated time. REGRESSED on A/A is a false alarm; on a slowdown it is a detection. 95% Wilson intervals.",
        f"The stored baseline was written by {meta.get('nightlies', 1)} nightly `--aitune-update` run(s) on the base.",
        *(f"- part {i + 1}: {p['processes']} process(es) x conditions {p['conditions']} x modes {p['modes']}, "
          f"{p['nightlies']} nightly run(s), {p['date']}" for i, p in enumerate(meta.get("parts", []))),
        "",
        "`|Δ| > MDE` counts the runs whose change exceeded the smallest detectable slowdown the check itself "
        "reported: on unchanged code (A/A) it is the honest-MDE test (it should stay at or below 1%).",
        "",
        "| mode | condition | check | n | REGRESSED | IMPROVED | median Δ | max abs Δ | median MDE | abs Δ > MDE | paired |",
        "|---|---|---|--:|---|---|--:|--:|--:|---|--:|",
    ]
    for r in table:
        def pct(k: int, ci: tuple[float, float], n: int = r["n"]) -> str:
            return f"{k}/{n} [{ci[0] * 100:.0f}–{ci[1] * 100:.0f}%]"

        delta = "-" if r["median_delta"] is None else f"{r['median_delta'] * 100:+.1f}%"
        mde = "-" if r["median_mde"] is None else f"{r['median_mde'] * 100:.1f}%"
        worst = "-" if r.get("max_abs_delta") is None else f"{r['max_abs_delta'] * 100:.1f}%"
        beyond = pct(r["beyond_mde"], r["beyond_mde_ci"]) if "beyond_mde" in r else "-"
        lines.append(
            f"| {r['mode']} | {r['condition']} | `{r['check']}` | {r['n']} | {pct(r['regressed'], r['regressed_ci'])} "
            f"| {pct(r['improved'], r['improved_ci'])} | {delta} | {worst} | {mde} | {beyond} | {r['paired']}/{r['n']} |"
        )
    return "\n".join(lines) + "\n"


def machine(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"CPU: {model}, {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--processes", type=int, default=20)
    parser.add_argument("--conditions", default="aa,slow10,slow5")
    parser.add_argument("--modes", default="stored,relative",
                        help="stored, relative, relative-abba (relative with ABBA rounds only, paired rounds' old order)")
    parser.add_argument("--out", type=Path, default=Path("reports"))
    parser.add_argument("--name", default="verdict_trust")
    parser.add_argument("--fixtures", default="", help="comma-separated subset of the suite's fixtures")
    parser.add_argument("--measure-seconds", type=float, default=2.0, help="each fixture's measurement budget")
    parser.add_argument("--budget-s", type=float, default=math.inf, help="stop starting processes after this long")
    parser.add_argument("--nightlies", type=int, default=1,
                        help="--aitune-update runs on the base before the PR checks (3+ let the baseline measure "
                             "its own between-run noise)")  # fmt: skip
    parser.add_argument("--append", action="store_true",
                        help="add this run's rows to an existing OUT/NAME.json (a suite split over device calls)")
    args = parser.parse_args()
    fractions = {"aa": 0.0, "slow10": 0.10, "slow5": 0.05}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="verdict-trust-") as tmp:
        fixtures = [f for f in args.fixtures.split(",") if f]
        repo, base = make_repo(Path(tmp), args.device, fixtures, args.measure_seconds)
        for night in range(args.nightlies):  # the nightly baseline, on the base commit
            rc, _, wall = run_pytest(repo, repo / "run-nightly.json", "--aitune-update")
            print(f"nightly {night + 1}/{args.nightlies}: baseline written in {wall:.1f} s (rc {rc})", flush=True)
        meta = {
            "machine": machine(args.device), "device": args.device, "processes": args.processes,
            "date": time.strftime("%Y-%m-%d"), "measure_seconds": args.measure_seconds, "base": base,
            "calibration": json.loads((repo / "calibration.json").read_text()), "runs": [],
            "nightlies": args.nightlies, "parts": [],
        }  # fmt: skip
        previous = args.out / f"{args.name}.json"
        if args.append and previous.is_file():  # one table from several device calls: say how it was split
            old = json.loads(previous.read_text())
            rows.extend(old["rows"])
            meta["runs"] = old["meta"]["runs"]
            meta["parts"] = old["meta"].get("parts", [])
            meta["processes"] = f"{old['meta']['processes']} + {args.processes}"
        meta["parts"].append({"date": meta["date"], "processes": args.processes, "modes": args.modes,
                              "conditions": args.conditions, "nightlies": args.nightlies,
                              "calibration": meta["calibration"]})  # fmt: skip
        for i in range(args.processes):  # rounds over conditions and modes, so drift hits them all alike
            for condition in args.conditions.split(","):
                set_head(repo, base, fractions[condition])
                for mode in args.modes.split(","):
                    if time.perf_counter() - started > args.budget_s:
                        break
                    extra = ["--aitune-against", base] if mode.startswith("relative") else []
                    order = {"VERDICT_TRUST_ROUND_ORDER": "abba-only"} if mode == "relative-abba" else {}
                    rc, verdicts, wall = run_pytest(repo, repo / f"run-{i}.json", *extra, extra_env=order)
                    meta["runs"].append({"i": i, "condition": condition, "mode": mode, "rc": rc, "wall_s": wall})
                    for v in verdicts:
                        rows.append({
                            "i": i, "condition": condition, "mode": mode, "check": f"{v['fixture']}[{v['backend']}]",
                            "kind": v["kind"], "delta": v.get("delta"), "mde": v.get("mde"),
                            "threshold": v.get("threshold"), "noise": v.get("noise"),
                            "paired": bool(v.get("paired")), "verdict_mode": v.get("mode", "stored"),
                            # why a check has no latency delta ("latency not judged: ...", "... not compared: ...")
                            "latency_note": next((n for n in v.get("notes", ()) if n.startswith("latency not")), None),
                        })  # fmt: skip
                    kinds = ", ".join(f"{v['fixture']}[{v['backend']}] {v['kind']} {(v.get('delta') or 0) * 100:+.1f}%"
                                      for v in verdicts)  # fmt: skip
                    print(f"[{i + 1}/{args.processes}] {condition:6} {mode:8} {wall:5.1f} s rc {rc}: {kinds}", flush=True)
            table = summarize(rows)
            (args.out / f"{args.name}.json").write_text(json.dumps({"meta": meta, "summary": table, "rows": rows}, indent=1))
            (args.out / f"{args.name}.md").write_text(markdown(meta, table))
    print(markdown(meta, summarize(rows)))


if __name__ == "__main__":
    main()
