"""Collection cost of ``pytest --aitune`` for 1, 10 and 50 tune fixtures, with and without a plan.

Generates a user repo (one conftest, N fixtures, each a real small torch model: a 4-layer MLP of
about 0.8 M parameters) and collects it in fresh processes:

  none       no plan anywhere: every fixture is called at collection (what every run did before
             plans; now only the first run), and its plan cached
  cache      the plan cached by the run before (``.aitune/plans/``)
  decorator  ``@ait.tune_fixture(backends=["eager"])``: the declaration is the plan

Each fixture appends a line to ``built.log`` when called, so "models built at collection" is
counted, not inferred. A probe plugin in each collecting process records the in-process collection
time (``pytest_collection`` to ``pytest_collection_finish``; the root conftest, which imports
torch, is loaded before that, so the time from process start is recorded too) and the peak RSS
(``ru_maxrss``) at the end of collection. Single process: ``pytest --aitune --collect-only -q``.
Under pytest-xdist (``-n 2``; xdist skips itself under ``--collect-only``) the run deselects every
aitune item (``-m "not aitune"``), so each worker collects everything and runs nothing.

Run: ``.venv/bin/python bench/collection_scale.py`` (a few minutes on 2 CPU cores). Writes
``reports/collection_scale.json`` and ``reports/collection_scale.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 10, 50)
VARIANTS = ("none", "cache", "decorator")
#: The issue's goal: collection per worker for 50 fixtures, seconds.
GOAL_S = 2.0

_PROBE = '''
"""Records this process's collection time, peak RSS and what was built (bench/collection_scale.py)."""
import json, os, resource, time
from pathlib import Path

_START = {}


def _process_start() -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/self/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return time.time() - (uptime - start)


def pytest_collection(session):
    _START["t"] = time.perf_counter()


def pytest_collection_finish(session):
    done = time.perf_counter()
    worker = getattr(session.config, "workerinput", {}).get("workerid", "main")
    log = Path(session.config.rootpath) / "built.log"
    built = len(log.read_text().splitlines()) if log.exists() else 0
    record = {
        "worker": worker,
        "collect_s": done - _START["t"],
        "since_start_s": time.time() - _process_start(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "items": len(session.items),
        "built_so_far": built,
    }
    out = Path(session.config.rootpath) / f"probe-{os.getpid()}.json"
    out.write_text(json.dumps(record))
'''

_HEADER = """import os
from pathlib import Path

import torch
import aitune_ci as ait

LOG = Path(__file__).parent / "built.log"


def mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(256, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 64),
    ).eval()
"""

_FIXTURE = """

@ait.tune_fixture{declare}
def tune_m{i:02d}():
    with LOG.open("a") as f:
        f.write(f"tune_m{i:02d} {{os.getpid()}}\\n")
    return ait.TuneSpec(model=mlp({i}), samples=[torch.randn(8, 256)], backends=["eager"], device="cpu")
"""


def write_repo(path: Path, count: int, declared: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "pyproject.toml").write_text("[tool.pytest.ini_options]\n")
    declare = '(backends=["eager"])' if declared else ""
    (path / "conftest.py").write_text(_HEADER + "".join(_FIXTURE.format(i=i, declare=declare) for i in range(count)))
    (path / "aitune_bench_probe.py").write_text(_PROBE)


def collect(path: Path, workers: int) -> dict[str, Any]:
    """One collection in fresh processes; wall time, the probes' records, and models built."""
    for probe in path.glob("probe-*.json"):
        probe.unlink()
    (path / "built.log").unlink(missing_ok=True)
    args = [sys.executable, "-m", "pytest", "--aitune", "-p", "aitune_bench_probe", "-p", "no:cacheprovider", "-q"]
    args += ["-n", str(workers), "-m", "not aitune"] if workers > 1 else ["--collect-only"]
    env = {**os.environ, "PYTHONPATH": str(path), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    done = subprocess.run(args, cwd=path, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if done.returncode not in (0, 5):  # 5: every item deselected (the -n run)
        raise RuntimeError(f"pytest failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    probes = [json.loads(p.read_text()) for p in sorted(path.glob("probe-*.json"))]
    if len(probes) != workers:
        raise RuntimeError(f"expected {workers} collecting processes, found {len(probes)}:\n{done.stdout[-2000:]}")
    log = path / "built.log"
    return {
        "wall_s": wall,
        "processes": probes,
        "built_at_collection": len(log.read_text().splitlines()) if log.exists() else 0,
    }


def run_case(base: Path, count: int, variant: str, workers: int, repeats: int) -> dict[str, Any]:
    path = base / f"n{count}-{variant}-w{workers}"
    shutil.rmtree(path, ignore_errors=True)
    write_repo(path, count, declared=variant == "decorator")
    runs = []
    for _ in range(repeats):
        if variant == "none":
            shutil.rmtree(path / ".aitune", ignore_errors=True)  # no plan: the first run ever
        elif variant == "cache" and not (path / ".aitune" / "plans").is_dir():
            collect(path, 1)  # the earlier run that left the plan
        runs.append(collect(path, workers))
    per_process = [p for r in runs for p in r["processes"]]
    return {
        "fixtures": count,
        "plan": variant,
        "workers": workers,
        "repeats": repeats,
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "collect_s": statistics.median(p["collect_s"] for p in per_process),
        "collect_s_max": max(p["collect_s"] for p in per_process),
        "since_start_s": statistics.median(p["since_start_s"] for p in per_process),
        "peak_rss_mb": max(p["peak_rss_mb"] for p in per_process),
        "items_per_process": per_process[0]["items"],
        "built_at_collection": max(r["built_at_collection"] for r in runs),
        "runs": runs,
    }


def torch_import_s(repeats: int) -> float:
    """Median wall time of ``python -c "import torch"``: the floor under "from start" that no plan removes."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=300)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _machine() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        model = ""
    return f"this CPU: {model or platform.processor()} ({os.cpu_count()} cores visible)"


def _has_xdist() -> bool:
    try:
        import xdist  # noqa: F401
    except ImportError:
        return False
    return True


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Collection scale: `pytest --aitune` with 1, 10 and 50 tune fixtures",
        "",
        f"Machine: {report['machine']}; torch {report['torch']}; {report['date']}. "
        f"Produced by `bench/collection_scale.py` (median of {report['repeats']} runs per row). "
        f"For reference, `python -c 'import torch'` took {report['torch_import_s']:.2f} s here: the floor "
        "under *from start*, which no plan removes (the conftest imports torch).",
        "",
        "Each fixture is a 4-layer MLP (~0.8 M parameters). *plan*: `none` = no plan, every fixture called at "
        "collection (every run before plans; now the first run only); `cache` = the plan cached by the run "
        "before; `decorator` = `@ait.tune_fixture(backends=[...])`. *collect*: in-process, `pytest_collection` "
        "to `pytest_collection_finish` (worst process in brackets); *from start*: process start to the end "
        "of collection (includes importing torch in the conftest); *wall*: the whole command; *peak RSS*: the "
        "largest collecting process; *built*: models built at collection, all processes together.",
        "",
        "| fixtures | plan | workers | collect s | from start s | wall s | peak RSS MB | built |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['fixtures']} | {row['plan']} | {row['workers']} | {row['collect_s']:.2f} "
            f"({row['collect_s_max']:.2f}) | {row['since_start_s']:.2f} | {row['wall_s']:.2f} | "
            f"{row['peak_rss_mb']:.0f} | {row['built_at_collection']} |"
        )
    goal = report["goal"]
    lines += [
        "",
        f"Goal (issue 17): collection per worker for 50 fixtures <= {goal['seconds']:.0f} s and no model built at "
        f"collection. With a plan: worst collect {goal['worst_collect_s_with_plan']:.2f} s, worst from start "
        f"{goal['worst_since_start_s_with_plan']:.2f} s, models built {goal['built_with_plan']}: "
        f"**{'met' if goal['met'] else 'not met'}**.",
    ]
    if not report["xdist"]:
        lines.append("\npytest-xdist is not installed in this environment: no `-n 2` rows.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="fixture counts. Default: 1,10,50")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (median). Default: 3")
    parser.add_argument("--out", default=str(ROOT / "reports" / "collection_scale"), help="path without suffix")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    workers = [1, 2] if _has_xdist() else [1]
    import torch

    reference = torch_import_s(args.repeats)
    print(f"python -c 'import torch': {reference:.2f} s", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="aitune-collection-") as tmp:
        for count in sizes:
            for variant in VARIANTS:
                for n in workers:
                    row = run_case(Path(tmp), count, variant, n, args.repeats)
                    rows.append(row)
                    print(
                        f"{count:3d} fixtures  plan={variant:9s} workers={n}  collect {row['collect_s']:.2f} s  "
                        f"from start {row['since_start_s']:.2f} s  wall {row['wall_s']:.2f} s  "
                        f"rss {row['peak_rss_mb']:.0f} MB  built {row['built_at_collection']}",
                        flush=True,
                    )
    planned = [r for r in rows if r["plan"] != "none" and r["fixtures"] == max(sizes)]
    goal = {
        "seconds": GOAL_S,
        "worst_collect_s_with_plan": max(r["collect_s_max"] for r in planned),
        "worst_since_start_s_with_plan": max(r["since_start_s"] for r in planned),
        "built_with_plan": sum(r["built_at_collection"] for r in planned),
    }
    goal["met"] = goal["worst_collect_s_with_plan"] <= GOAL_S and goal["built_with_plan"] == 0
    report = {
        "schema_version": SCHEMA_VERSION,
        "machine": _machine(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeats": args.repeats,
        "torch_import_s": reference,
        "xdist": _has_xdist(),
        "goal": goal,
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from aitune_ci.atomic import atomic_write_text

    atomic_write_text(out.with_suffix(".json"), json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
