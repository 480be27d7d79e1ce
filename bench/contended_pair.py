"""Does a paired A/B stay centred while another process takes the CPU?

Two ONNX Runtime sessions of one unchanged model (as the committed artifact and this run's build
are, in stored mode) are timed with ``measure_paired`` as the plugin times them, quiet and beside a
spinning process (one core's worth, as a neighbouring CI job or a second pytest-xdist worker takes).
Each run takes a first reading and, while it says "regressed", up to two confirmations, pooled as
the plugin pools them. For each run it records:

* ``would_fail``: the verdict with the pair's contention left out (how the plugin judged before it
  read contention during pairs) is REGRESSED;
* ``verdict``: what ``compare_backend`` says now (a pair timed with no core idle is not judged).

``--plugin`` runs the whole plugin instead, as a user's check does: a user repo (the model below with
``modules=[...]``, backends eager, torchao-int8wo and onnxruntime, whose winner onnxruntime is timed
against its committed artifact) gets one ``--aitune-update``, then ``pytest --aitune`` runs, quiet and
beside the spinner. Per run: the A/B's first reading (the progress line), the contention read during
the pair, and the check's verdict.

Prints and writes ``reports/contended_pair.{json,md}`` (``contended_pair_plugin`` with ``--plugin``).

    python bench/contended_pair.py --runs 12 --measure-seconds 0.5 [--plugin]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _paired_common import ROOT, write_report
from torch import nn

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import get_backend
from aitune_ci.config import Policy
from aitune_ci.measure import MeasureConfig, measure_paired
from aitune_ci.result import BackendResult, LatencyStats
from aitune_ci.store.baseline import BackendBaseline, LatencySummary
from aitune_ci.verdict import compare_backend, pool_paired

SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


class Net(nn.Module):
    """The user repo's model from the trial that found this: a small conv backbone and an MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def _stats(median_ms: float) -> LatencyStats:
    return LatencyStats(
        median_ms=median_ms, mean_ms=median_ms, min_ms=median_ms, p90_ms=median_ms, p99_ms=median_ms,
        iqr_ms=0.0, ci_low_ms=median_ms, ci_high_ms=median_ms, cv=0.0, iterations=100, rounds=10,
        round_medians_ms=(median_ms,) * 10,
    )  # fmt: skip


def _judge(pooled: Any, confirmations: int, policy: Policy, *, ignore_contention: bool) -> Any:
    """``compare_backend`` on a pooled pair, as the plugin judges an artifact A/B (or as it did before
    it read contention during pairs, with ``ignore_contention``)."""
    est = replace(pooled, cpu_contention=None) if ignore_contention else pooled
    baseline = BackendBaseline(status="ok", latency=LatencySummary.from_stats(_stats(est.a_ms or 1.0)))
    current = BackendResult(backend="onnxruntime", status="ok", latency=_stats(est.b_ms or 1.0))
    return compare_backend("contended_pair", baseline, current, policy, paired=est, confirmations=confirmations)


def _one_run(a: Any, b: Any, x: torch.Tensor, config: MeasureConfig, policy: Policy) -> dict[str, Any]:
    """A first reading and, while it says regressed, its confirmations, pooled as the plugin pools them."""
    readings = [measure_paired(lambda: a(x), lambda: b(x), "cpu", config)]
    before = _judge(pool_paired(readings), 0, policy, ignore_contention=True)
    while before.needs_confirmation:
        readings.append(measure_paired(lambda: a(x), lambda: b(x), "cpu", config))
        before = _judge(pool_paired(readings), len(readings) - 1, policy, ignore_contention=True)
    now = _judge(pool_paired(readings), len(readings) - 1, policy, ignore_contention=False)
    return {
        "readings": [r.to_json() for r in readings],
        "pooled": pool_paired(readings).to_json(),
        "would_fail": str(before.kind) == "REGRESSED",
        "verdict": str(now.kind),
        "message": now.message,
    }


CONFTEST = """
import torch
from torch import nn

import aitune_ci as ait


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.backbone(x))


@ait.tune_fixture
def tune_net():
    torch.manual_seed(0)
    return ait.TuneSpec(model=Net().eval(), samples=[torch.randn(4, 3, 32, 32)],
                        backends=["eager", "torchao-int8wo", "onnxruntime"], modules=["backbone", "head"], device="cpu")
"""
_FIRST = re.compile(r"onnxruntime: paired A/B vs baseline artifact: ([\d.]+)x \[([\d.]+), ([\d.]+)\]")
_PAIR_BUSY = re.compile(r"other processes took ([\d.]+) CPU cores while the A/B pair was timed")


def _pytest(repo: Path, *args: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--aitune", *args]
    done = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=600, env=env)
    return done.returncode, done.stdout


def _plugin_runs(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {"quiet": [], "one core spinning": []}
    with tempfile.TemporaryDirectory() as work:
        repo = Path(work) / "repo"
        repo.mkdir()
        (repo / "conftest.py").write_text(CONFTEST)
        (repo / "pyproject.toml").write_text(
            f'[tool.pytest.ini_options]\naitune_measure_seconds = "{args.measure_seconds}"\n'
            f'aitune_cache_dir = "{Path(work) / "cache"}"\n'
        )
        code, out = _pytest(repo, "--aitune-update")
        if code != 0:
            raise SystemExit(f"the update failed:\n{out[-3000:]}")
        for i in range(args.runs):
            for condition in rows:
                spinner = None
                if condition != "quiet":
                    spinner = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=120)])
                    time.sleep(0.3)
                report = Path(work) / "run.json"
                report.unlink(missing_ok=True)  # a run that writes none must not be read as the last one's
                try:
                    code, out = _pytest(repo, f"--aitune-report={report}")  # '=': a path word can move pytest's rootdir
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                if code not in (0, 1):  # 1: a check failed, which is what this counts; anything else is broken
                    raise SystemExit(f"pytest --aitune exited {code}:\n{out[-3000:]}")
                verdicts = json.loads((Path(work) / "run.json").read_text())["verdicts"]
                (v,) = [v for v in verdicts if v["fixture"] == "tune_net" and v["backend"] == "onnxruntime"]
                first, busy = _FIRST.search(out), _PAIR_BUSY.search(v["message"])
                row = {
                    "exit_code": code,
                    "first_reading": [float(g) for g in first.groups()] if first else None,
                    "pair_contention": float(busy.group(1)) if busy else 0.0,
                    "verdict": v["kind"],
                    "confirmations": v.get("confirmations"),
                    "message": v["message"],
                }
                rows[condition].append(row)
                print(f"[{i + 1}/{args.runs}] {condition:17} first reading {row['first_reading']}, pair contention "
                      f"{row['pair_contention']}: {row['verdict']} (exit {code})", flush=True)  # fmt: skip
    return rows


def _plugin_markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# The plugin's artifact A/B beside a busy neighbour (`bench/contended_pair.py --plugin`)",
        "",
        f"{payload['machine']}, torch {payload['torch']}, {payload['date']}, `{payload['args']}`. A user repo's "
        "unchanged model; each run is `pytest --aitune` after one `--aitune-update`. *Suspected*: the A/B's "
        "first reading is at least 5% slower with its CI above 1, which the plugin re-measures and, before it "
        "read contention during pairs, would have judged on.",
        "",
        "| condition | runs | first readings | suspected | pair contention (cores) | verdicts |",
        "|---|--:|---|--:|---|---|",
    ]
    for condition, runs in payload["rows"].items():
        firsts = [r["first_reading"] for r in runs if r["first_reading"]]
        suspected = sum(1 for ratio, low, _ in firsts if ratio >= 1.05 and low > 1.0)
        cores = [r["pair_contention"] for r in runs]
        kinds: dict[str, int] = {}
        for r in runs:
            label = r["verdict"] + (" (not judged)" if "not judged" in r["message"] else "")
            kinds[label] = kinds.get(label, 0) + 1
        span = f"{min(f[0] for f in firsts):.3f}-{max(f[0] for f in firsts):.3f}" if firsts else "-"
        lines.append(
            f"| {condition} | {len(runs)} | {span} | {suspected} | {min(cores):.2f}-{max(cores):.2f} | "
            + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=12, help="runs per condition (default 12)")
    parser.add_argument("--measure-seconds", type=float, default=0.5, help="budget of one reading (default 0.5)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--plugin", action="store_true", help="run the whole plugin in a user repo (see above)")
    args = parser.parse_args()
    if args.plugin:
        rows = _plugin_runs(args)
        command = f"--plugin --runs {args.runs} --measure-seconds {args.measure_seconds}"
        write_report(args.out, "contended_pair_plugin", command, {"rows": rows}, _plugin_markdown)
        return 0

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(4, 3, 32, 32)
    backend = get_backend("onnxruntime")
    policy, config = Policy(), MeasureConfig(max_total_s=args.measure_seconds)
    rows: dict[str, list[dict[str, Any]]] = {"quiet": [], "one core spinning": []}
    with tempfile.TemporaryDirectory() as work:
        ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=Path(work) / "a")
        ctx.workdir.mkdir()
        built = backend.build(model, [((x,), {})], ctx)
        for i in range(args.runs):
            for condition in rows:
                # Fresh sessions each run: where a session's memory lands is part of what a run meets.
                a = type(built)(built.path, built.signature, built.device)
                b = type(built)(built.path, built.signature, built.device)
                spinner = None
                if condition != "quiet":
                    spinner = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=60)])
                    time.sleep(0.3)
                try:
                    row = _one_run(a, b, x, config, policy)
                finally:
                    if spinner is not None:
                        spinner.kill()
                        spinner.wait()
                rows[condition].append(row)
                p = row["pooled"]
                print(
                    f"[{i + 1}/{args.runs}] {condition:17} {p['ratio']:.3f} [{p['ci_low']:.3f}, {p['ci_high']:.3f}] "
                    f"contention {p.get('cpu_contention')}, {len(row['readings'])} reading(s): "
                    f"would fail {row['would_fail']}, now {row['verdict']}",
                    flush=True,
                )
    write_report(
        args.out,
        "contended_pair",
        f"--runs {args.runs} --measure-seconds {args.measure_seconds}",
        {"rows": rows},
        _markdown,
    )
    return 0


def _markdown(payload: dict[str, Any]) -> str:
    lines = [
        "# A paired A/B beside a busy neighbour (`bench/contended_pair.py`)",
        "",
        f"{payload['machine']}, torch {payload['torch']}, {payload['date']}, `{payload['args']}`. Two ONNX Runtime "
        "sessions of one unchanged model, timed as the plugin times an artifact A/B (a first reading, up to two "
        "confirmations while it says regressed, pooled).",
        "",
        "| condition | runs | pooled ratio range | other processes' cores | failed before (contention not read) | verdict now |",
        "|---|--:|---|---|--:|---|",
    ]
    for condition, runs in payload["rows"].items():
        ratios = [r["pooled"]["ratio"] for r in runs]
        cores = [r["pooled"].get("cpu_contention") for r in runs]
        known = [c for c in cores if c is not None]
        verdicts: dict[str, int] = {}
        for r in runs:
            verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        lines.append(
            f"| {condition} | {len(runs)} | {min(ratios):.3f}-{max(ratios):.3f} | "
            + (f"{min(known):.2f}-{max(known):.2f}" if known else "unknown")
            + f" | {sum(r['would_fail'] for r in runs)} | "
            + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
            + " |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
