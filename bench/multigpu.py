"""One GPU against one pytest-xdist worker per GPU: wall time, which GPU ran what, same verdicts?

Runs the example suite (bench/multigpu_suite: resnet50, BERT-base, GPT-2 decode and a composite
model, four backends each) four times through ``pytest --aitune``, sharing one baseline folder:

  single-cold    no xdist, ``CUDA_VISIBLE_DEVICES=0``, empty compile cache A, ``--aitune-update``:
                 writes the baselines (and artifacts)
  parallel-cold  ``-n N``, empty compile cache B: compared with those baselines
  single-warm    as single-cold on the now warm cache A, without --aitune-update
  parallel-warm  as parallel-cold on the now warm cache B

Each pair compares like for like (both cold: what a CI runner without a kept cache pays; both
warm). single-cold also writes the baselines and artifacts, which parallel-cold does not, so the
cold ratio slightly favours the parallel run. Both parallel runs compare against baselines measured
on GPU 0 alone, so their workers on GPU 1 show that results from two identical GPUs compare
against one baseline.

Writes ``OUT/multigpu.{json,md}``, each run's JSON report and log. Without CUDA the suite falls back
to the bundled small CPU models (a smoke run of this program, not a measurement).

  python bench/multigpu.py --out reports/multigpu --workers 2
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aitune_ci.atomic import atomic_write_text  # noqa: E402

SCHEMA_VERSION = 1
SUITE = ROOT / "bench" / "multigpu_suite"


def _plugin_args() -> list[str]:
    """``-p aitune_ci.plugin`` where aitune-ci is on PYTHONPATH but not installed (no entry point)."""
    import importlib.metadata

    installed = any(ep.value.startswith("aitune_ci") for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "aitune_ci.plugin"]


def _pytest(name: str, extra: list[str], env: dict[str, str], work: Path, out: Path, measure_s: float,
            timeout: float) -> dict[str, Any]:
    """One ``pytest --aitune`` run of the suite; its wall time, exit code and JSON report."""
    report = work / f"{name}.json"
    cmd = [sys.executable, "-m", "pytest", str(SUITE), *_plugin_args(), "--aitune", "--aitune-dir", str(work / ".aitune"),
           "--aitune-report", str(report), "--aitune-measure-seconds", str(measure_s),
           "-p", "no:cacheprovider", "-o", "addopts=", "-v", "--durations=12", *extra]
    print(f"[multigpu] {name}: {' '.join(cmd[3:])}", flush=True)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        code, stdout = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, stdout = "timeout", (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    wall = time.perf_counter() - t0
    (out / f"{name}.log").write_text(stdout)
    run: dict[str, Any] = {"name": name, "args": extra, "exit_code": code, "wall_s": round(wall, 1),
                           "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES")}
    if report.exists():
        data = json.loads(report.read_text())
        shutil.copy(report, out / f"{name}.json")
        run["fixtures"] = {
            r["name"]: {
                "gpu_physical_index": r["environment"].get("gpu_physical_index"),
                "gpu_uuid": r["environment"].get("gpu_uuid"),
                "hardware_key": r["environment"].get("hardware_key"),
                "winner": r.get("winner"),
                "tune_s": r.get("tune_s"),
            }
            for r in data["results"]
        }
        run["verdicts"] = {f"{v['fixture']}[{v['backend']}]": v["kind"] for v in data["verdicts"]}
        run["messages"] = {f"{v['fixture']}[{v['backend']}]": v["message"] for v in data["verdicts"]}
    count = [line for line in stdout.splitlines() if line.startswith("aitune: ") and "report written" not in line]
    run["count_line"] = count[-1] if count else None
    print(f"[multigpu] {name}: exit {code}, {wall:.1f} s, {run['count_line']}", flush=True)
    return run


def compare(single: dict[str, Any], parallel: dict[str, Any], verdicts: bool = True) -> dict[str, Any]:
    """What differs between a one-GPU run and the merged multi-worker run (pure).

    ``verdicts=False`` where the one-GPU run wrote the baselines (its verdicts are all NEW).
    """
    sv, pv = single.get("verdicts", {}), parallel.get("verdicts", {})
    differing = {k: (sv.get(k), pv.get(k)) for k in sorted(set(sv) | set(pv)) if sv.get(k) != pv.get(k)}
    sf, pf = single.get("fixtures", {}), parallel.get("fixtures", {})
    winners = {k: (sf.get(k, {}).get("winner"), pf.get(k, {}).get("winner")) for k in sorted(set(sf) | set(pf))}
    gpus = sorted({str(f.get("gpu_physical_index")) for f in pf.values()})
    return {
        "single": single["name"],
        "parallel": parallel["name"],
        "verdicts_equal": (not differing and bool(sv)) if verdicts else None,
        "differing_verdicts": differing if verdicts else {},
        "winners": winners,
        "winners_equal": all(a == b for a, b in winners.values()),
        "parallel_gpus": gpus,
        "speedup": round(single["wall_s"] / parallel["wall_s"], 2) if parallel.get("wall_s") else None,
    }


def markdown(report: dict[str, Any]) -> str:
    runs = {r["name"]: r for r in report["runs"]}
    lines = [
        "# One GPU vs one pytest-xdist worker per GPU (bench/multigpu.py)",
        "",
        f"{report['created_at']} · {report['machine']} · torch {report['torch']} · suite `bench/multigpu_suite` "
        f"(4 fixtures × {report['backends']}), measure {report['measure_seconds']} s per backend",
        "",
        "| run | pytest | GPUs | wall s | exit | summary |",
        "|---|---|---|---:|---|---|",
    ]
    for r in report["runs"]:
        lines.append(f"| {r['name']} | `{' '.join(r['args']) or '(no xdist)'}` | {r.get('cuda_visible_devices') or 'all'} | "
                     f"{r['wall_s']} | {r['exit_code']} | {r.get('count_line') or ''} |")
    for cmp in report["comparisons"]:
        s, p = runs[cmp["single"]], runs[cmp["parallel"]]
        lines += ["", f"## {cmp['single']} vs {cmp['parallel']}", "",
                  f"`-n {report['workers']}` against one GPU: **{cmp['speedup']}×** ({s['wall_s']} s → {p['wall_s']} s).", "",
                  f"| fixture | {s['name']}: GPU, tune s | {p['name']}: GPU, tune s | winner {s['name']} | winner {p['name']} |",
                  "|---|---|---|---|---|"]
        for name in sorted(p.get("fixtures", {})):
            a, b = s.get("fixtures", {}).get(name, {}), p["fixtures"][name]
            lines.append(f"| {name} | {a.get('gpu_physical_index')}, {a.get('tune_s')} | {b.get('gpu_physical_index')}, "
                         f"{b.get('tune_s')} | {a.get('winner')} | {b.get('winner')} |")
        equal = ("n/a (the one-GPU run wrote the baselines)" if cmp["verdicts_equal"] is None
                 else f"**{cmp['verdicts_equal']}** ({len(s.get('verdicts', {}))} checks)")
        lines += ["", f"Verdicts equal: {equal}; winners equal: "
                      f"**{cmp['winners_equal']}**; GPUs used by {p['name']}: {', '.join(cmp['parallel_gpus'])}."]
        if cmp["differing_verdicts"]:
            lines += ["", f"| check | {s['name']} | {p['name']} | reasons ({s['name']} / {p['name']}) |", "|---|---|---|---|"]
            for key, (a, b) in cmp["differing_verdicts"].items():
                lines.append(f"| {key} | {a} | {b} | {s.get('messages', {}).get(key, '')[:220]} / "
                             f"{p.get('messages', {}).get(key, '')[:220]} |")
    uuids = {f.get("gpu_uuid") for r in report["runs"] for f in r.get("fixtures", {}).values()}
    keys = {f.get("hardware_key") for r in report["runs"] for f in r.get("fixtures", {}).values()}
    lines += ["", f"Hardware keys seen: {', '.join(sorted(map(str, keys)))}; GPU UUIDs seen: {len(uuids - {None})}.", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/multigpu"), help="Default: reports/multigpu")
    parser.add_argument("--workers", type=int, default=2, help="xdist workers, one per GPU. Default: 2")
    parser.add_argument("--measure-seconds", type=float, default=1.0, help="per backend. Default: 1.0")
    parser.add_argument("--timeout", type=float, default=300, help="per pytest run, seconds. Default: 300")
    args = parser.parse_args()

    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="aitune-multigpu-"))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("CUDA_VISIBLE_DEVICES", None)
    n = ["-n", str(args.workers)]
    cuda = torch.cuda.is_available()
    machine = (f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}" if cuda else f"CPU ({os.cpu_count()} cores)")
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "torch": torch.__version__,
        "workers": args.workers,
        "measure_seconds": args.measure_seconds,
        "backends": "eager, eager-bf16, cudagraphs, inductor" if cuda else "eager, eager-bf16 (CPU smoke)",
        "runs": [],
    }
    cache = {"single": str(work / "cache-single"), "parallel": str(work / "cache-parallel")}
    one_gpu = {"CUDA_VISIBLE_DEVICES": "0"} if cuda else {}
    plan = [
        ("single-cold", ["--aitune-update"], dict(env, TORCHINDUCTOR_CACHE_DIR=cache["single"], **one_gpu)),
        ("parallel-cold", n, dict(env, TORCHINDUCTOR_CACHE_DIR=cache["parallel"])),
        ("single-warm", [], dict(env, TORCHINDUCTOR_CACHE_DIR=cache["single"], **one_gpu)),
        ("parallel-warm", n, dict(env, TORCHINDUCTOR_CACHE_DIR=cache["parallel"])),
    ]
    for name, extra, run_env in plan:
        report["runs"].append(_pytest(name, extra, run_env, work, args.out, args.measure_seconds, args.timeout))
        atomic_write_text(args.out / "multigpu.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    runs = {r["name"]: r for r in report["runs"]}
    report["comparisons"] = [compare(runs["single-cold"], runs["parallel-cold"], verdicts=False),
                             compare(runs["single-warm"], runs["parallel-warm"])]
    atomic_write_text(args.out / "multigpu.json", json.dumps(report, indent=2, sort_keys=True) + "\n")
    atomic_write_text(args.out / "multigpu.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
