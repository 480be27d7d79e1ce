"""Verdict quality: how often does the latency verdict cry wolf, and how often does it catch a slowdown?

Goals: A/A false-alarm rate (the same model judged against its own baseline) at most 1%, and at
least 95% of injected 10% slowdowns caught.

Every comparison reproduces one CI run of the pytest plugin on this CPU: ``tune()`` builds and
measures a fresh copy of a small MLP (eager backend), ``judge_with_confirmations`` judges it
against the baseline and re-measures (``engine.remeasure``) while the slowdown is only suspected —
the very function the plugin's session calls — then ``apply_run_correction`` (Benjamini-Hochberg
over the fixture's checks; the identity for this one-backend fixture). Baselines are written the
plugin's way (``tune`` then ``Baseline.from_result``, as ``--aitune-update-new-only`` does); several
baselines are used so that the rates are not those of one lucky (or unlucky) baseline window.

Slowdowns are injected inside the model's ``forward``: a busy-wait (a spin, never a sleep) of
5%, 10% or 25% of the baseline's median; the slowdown really obtained is measured per baseline with
paired ABBA rounds (``measure_paired``) and reported next to the rates. Conditions are shuffled
within each baseline so that load changes on the machine hit all of them alike.

All comparisons run in one process, one after another: process-level effects a real CI run would
add (a new allocator state, ASLR, another CPU frequency or a different runner) are not sampled,
so the A/A rate here is a lower bound for CI across processes and machines.

Run: ``.venv/bin/python bench/verdict_quality.py`` (5 to 9 minutes on 2 shared CPU cores, depending on their load).
Writes ``reports/verdict_quality.json`` and ``reports/verdict_quality.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from statistics import median
from typing import Any

import torch

from aitune_ci.atomic import atomic_write_text
from aitune_ci.baseline import BackendBaseline, Baseline
from aitune_ci.config import Policy
from aitune_ci.engine import remeasure, tune
from aitune_ci.environment import environment_differences, environment_fingerprint
from aitune_ci.measure import MeasureConfig, measure_paired
from aitune_ci.result import LatencyStats
from aitune_ci.spec import TuneSpec
from aitune_ci.verdict import Verdict, VerdictKind, apply_run_correction, judge_with_confirmations

SCHEMA_VERSION = 1
FIXTURE = "tune_mlp"
BACKEND = "eager"
FALSE_ALARM_GOAL = 0.01  # A/A: at most 1% of comparisons flagged REGRESSED
DETECTION_GOAL = 0.95  # at least 95% of injected 10% slowdowns flagged REGRESSED
DETECTION_AT = 0.10
SLOWDOWNS = (0.05, 0.10, 0.25)
LAYERS = (256, 512, 512, 256)
BATCH = 32
_Z95 = 1.959963984540054


# -- pure statistics ---------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate: honest near 0 and 1, unlike the normal one."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def condition_name(slowdown: float) -> str:
    return "A/A" if slowdown == 0 else f"+{slowdown:.0%}"


def summarize_condition(slowdown: float, runs: Sequence[dict[str, Any]], realised: Sequence[float]) -> dict[str, Any]:
    """Counts, rate with its Wilson interval, and the typical delta/MDE of one condition's comparisons."""
    n = len(runs)
    flagged = sum(r["kind"] == "REGRESSED" for r in runs)
    low, high = wilson_interval(flagged, n)
    return {
        "name": condition_name(slowdown),
        "injected": slowdown,
        "realised_slowdown_median": median(realised) if realised else None,
        "realised_slowdown_per_baseline": list(realised),
        "comparisons": n,
        "regressed": flagged,
        "rate": flagged / n if n else None,
        "rate_ci95": [low, high],
        "improved": sum(r["kind"] == "IMPROVED" for r in runs),
        "suspected_first": sum(r["suspected"] for r in runs),
        "confirmations_total": sum(r["confirmations"] for r in runs),
        "median_delta": median(r["delta"] for r in runs) if n else None,
        "first_delta_quantiles": _quantiles([r["first_delta"] for r in runs]),
        "median_mde": median(r["mde"] for r in runs) if n else None,
        "median_threshold": median(r["threshold"] for r in runs) if n else None,
        "median_noise": median(r["noise"] for r in runs) if n else None,
    }


def _quantiles(values: Sequence[float], qs: Sequence[int] = (5, 25, 50, 75, 95)) -> dict[str, float] | None:
    """Nearest-rank quantiles, keyed ``p5`` … ``p95`` (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return {f"p{q}": ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] for q in qs}


def _sig(x: float) -> float:
    return float(f"{x:.5g}")


def goal_verdicts(conditions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_injected = {c["injected"]: c for c in conditions}
    aa, det = by_injected[0.0], by_injected[DETECTION_AT]
    return {
        "false_alarm": {
            "goal_max": FALSE_ALARM_GOAL,
            "measured": aa["rate"],
            "ci95": aa["rate_ci95"],
            "met": aa["rate"] <= FALSE_ALARM_GOAL,
            "shown_at_95pct": aa["rate_ci95"][1] <= FALSE_ALARM_GOAL,
        },
        "detection_at_10pct": {
            "goal_min": DETECTION_GOAL,
            "measured": det["rate"],
            "ci95": det["rate_ci95"],
            "met": det["rate"] >= DETECTION_GOAL,
            "shown_at_95pct": det["rate_ci95"][0] >= DETECTION_GOAL,
        },
    }


# -- the model and the injected slowdown ---------------------------------------------------------


def spin_ns(ns: int) -> None:
    """Busy-wait: the CPU stays busy, as a slower kernel would keep it (a sleep would yield it)."""
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


class Slowed(torch.nn.Module):
    """``inner`` followed by a fixed busy-wait: a model whose forward is slower by a known time."""

    def __init__(self, inner: torch.nn.Module, delay_ms: float) -> None:
        super().__init__()
        self.inner = inner
        self.delay_ns = int(round(delay_ms * 1e6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.delay_ns:
            spin_ns(self.delay_ns)
        return out


def make_model(delay_ms: float = 0.0) -> torch.nn.Module:
    """A fresh copy of the same MLP (same seed, same weights, new memory) in ``Slowed``.

    The wrapper is there at every delay, 0 included, so that its own call overhead (about 1% of
    this model) is in the baseline too and only the busy-wait differs between conditions.
    """
    torch.manual_seed(0)
    layers: list[torch.nn.Module] = []
    for d_in, d_out in zip(LAYERS[:-1], LAYERS[1:], strict=True):
        layers += [torch.nn.Linear(d_in, d_out), torch.nn.ReLU()]
    mlp = torch.nn.Sequential(*layers[:-1]).eval()
    return Slowed(mlp, delay_ms).eval()


def make_spec(delay_ms: float = 0.0) -> TuneSpec:
    torch.manual_seed(1)
    return TuneSpec(
        model=make_model(delay_ms),
        samples=[torch.randn(BATCH, LAYERS[0])],
        backends=[BACKEND],
        strategy="min-latency",
        device="cpu",
        name=FIXTURE,
    )


# -- one CI run, as the plugin does it -----------------------------------------------------------


def write_baseline(config: MeasureConfig) -> Baseline:
    """``pytest --aitune --aitune-update-new-only``: tune once, summarize into a new baseline."""
    result = tune(make_spec(), measure_config=config, progress=None)
    return Baseline.from_result(result, None)


def ci_run(
    baseline: Baseline, delay_ms: float, policy: Policy, config: MeasureConfig
) -> tuple[Verdict, Verdict, list[LatencyStats]]:
    """One CI run of the fixture against ``baseline``: tune, judge with confirmations, BH.

    Returns the first (unconfirmed) verdict, the final one, and every measurement taken.
    """
    result = tune(make_spec(delay_ms), measure_config=config, progress=None)
    row = result.backend(BACKEND)
    base: BackendBaseline | None = baseline.backend(BACKEND)
    env_diff = environment_differences(dict(baseline.environment), dict(result.environment))
    first: list[Verdict] = []
    measured = [row.latency]

    def again() -> Any:
        measured.append(remeasure(result, BACKEND).latency)
        return measured[-1]

    final = judge_with_confirmations(
        FIXTURE,
        base,
        row,
        policy,
        again if BACKEND in result.runtime.built else None,
        env_diff=env_diff,
        on_suspect=lambda verdict, _measured: first.append(verdict) if not first else None,
    )
    (final,) = apply_run_correction([final])
    return (first[0] if first else final), final, measured


def realised_slowdown(delay_ms: float, config: MeasureConfig) -> float:
    """Slowdown really obtained by the busy-wait: paired ABBA ratio slowed / plain, minus one."""
    plain, slowed = make_model(), make_model(delay_ms)
    torch.manual_seed(1)
    x = torch.randn(BATCH, LAYERS[0])
    est = measure_paired(lambda: plain(x), lambda: slowed(x), "cpu", config)
    return est.ratio - 1.0


def cpu_ticks() -> dict[str, int]:
    """Machine-wide CPU time counters from ``/proc/stat`` (Linux; empty elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return {}
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    return dict(zip(names, values, strict=False))


def cpu_share(before: dict[str, int], after: dict[str, int]) -> dict[str, float] | None:
    """How busy the machine was between two ``cpu_ticks`` readings (shares of all CPU time)."""
    if not before or not after:
        return None
    delta = {k: after[k] - before[k] for k in before if k in after}
    total = sum(delta.values())
    if total <= 0:
        return None
    idle = delta.get("idle", 0) + delta.get("iowait", 0)
    return {"busy": 1 - idle / total, "steal": delta.get("steal", 0) / total}


# -- report ------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 1) -> str:
    return "n/a" if x is None else f"{x * 100:.{digits}f}%"


def table(report: dict[str, Any]) -> str:
    lines = [
        "| condition | realised slowdown | comparisons | REGRESSED | rate (95% Wilson CI) | suspected first |"
        " confirmations | median delta | median threshold | median MDE |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["conditions"]:
        realised = "—" if c["injected"] == 0 else f"{c['realised_slowdown_median'] * 100:+.1f}%"
        lines.append(
            f"| {c['name']} | {realised} | {c['comparisons']} | {c['regressed']} | {_pct(c['rate'])} "
            f"({_pct(c['rate_ci95'][0])}–{_pct(c['rate_ci95'][1])}) | {c['suspected_first']} | "
            f"{c['confirmations_total']} | {c['median_delta'] * 100:+.1f}% | {_pct(c['median_threshold'])} | "
            f"{_pct(c['median_mde'])} |"
        )
    return "\n".join(lines)


def report_json(report: dict[str, Any]) -> str:
    """The JSON report: indented, except one line per comparison run (keeps the file diff-friendly)."""
    head = json.dumps({k: v for k, v in report.items() if k != "runs"}, indent=2, allow_nan=False)
    runs = ",\n".join("    " + json.dumps(r, separators=(", ", ": "), allow_nan=False) for r in report["runs"])
    return head[:-2] + ',\n  "runs": [\n' + runs + "\n  ]\n}\n"


def _cpu_text(cpu: dict[str, Any]) -> str:
    machine = cpu.get("machine")
    text = f" · this bench used {cpu['this_process_share_of_one_core']:.0%} of one core"
    if machine:
        text += f", the machine was {machine['busy']:.0%} busy (steal {machine['steal']:.1%})"
    return text


def markdown(report: dict[str, Any]) -> str:
    m, cfg, goals = report["machine"], report["config"], report["goals"]
    mc, pol = cfg["measure_config"], cfg["policy"]
    load = report["load_avg"]
    fa, det = goals["false_alarm"], goals["detection_at_10pct"]

    def mark(g: dict[str, Any]) -> str:
        return ("met" if g["met"] else "NOT met") + (
            " (and shown at 95%)" if g["shown_at_95pct"] else " (not shown at 95% confidence)"
        )

    lines = [
        "# Verdict quality: false alarms (A/A) and detection of injected slowdowns",
        "",
        f"{report['created_at']} · {m.get('cpu')} ({m.get('cpu_count')} cores, shared with other engineers' "
        f"test runs) · torch {m.get('torch')} · torch threads {cfg['torch_threads']} · load avg "
        f"{load['start'][0]:.2f} → {load['end'][0]:.2f} (max {load['max_1min']:.2f}){_cpu_text(report['cpu'])}",
        "",
        f"Model: eager MLP {'-'.join(map(str, LAYERS))}, batch {BATCH}, ~{report['model_median_ms']:.3f} ms per call. "
        f"{cfg['baselines']} baselines × ({cfg['aa_per_baseline']} A/A + {cfg['slow_per_baseline']} per slowdown) "
        "CI runs, conditions shuffled within each baseline. Each run: `tune()` of a fresh model copy, "
        "`judge_with_confirmations` (the plugin's confirmation loop: re-measure while suspected, pooled), "
        "`apply_run_correction`.",
        "",
        f"Measurement per run and per re-measurement: `MeasureConfig(max_total_s={mc['max_total_s']}, "
        f"warmup_max_s={mc['warmup_max_s']}, min_rounds={mc['min_rounds']}, target_round_s={mc['target_round_s']})`. "
        f"Policy: defaults (threshold {pol['threshold']:.0%}, alpha {pol['alpha']}, noise_k {pol['noise_k']}, "
        f"noise_floor {pol['noise_floor']}, max_confirmations {pol['max_confirmations']}).",
        "",
        table(report),
        "",
        f"- False-alarm rate goal ≤ {FALSE_ALARM_GOAL:.0%}: measured {_pct(fa['measured'], 2)} "
        f"(95% CI {_pct(fa['ci95'][0], 2)}–{_pct(fa['ci95'][1], 2)}) — {mark(fa)}.",
        f"- Detection goal ≥ {DETECTION_GOAL:.0%} at +{DETECTION_AT:.0%}: measured {_pct(det['measured'], 2)} "
        f"(95% CI {_pct(det['ci95'][0], 2)}–{_pct(det['ci95'][1], 2)}) — {mark(det)}.",
        "",
        "Per baseline: its median and round spread, then REGRESSED counts per condition "
        f"({cfg['aa_per_baseline']} A/A, {cfg['slow_per_baseline']} per slowdown):",
        "",
        *(
            f"- #{b['index']}: {b['median_ms']:.4f} ms, round spread {_pct(b['spread'], 2)} — "
            + ", ".join(f"{name} {n}" for name, n in b["regressed"].items())
            for b in report["baselines"]
        ),
        "",
        "Realised slowdown: median over the baselines of a paired ABBA measurement, slowed / plain model. "
        "Suspected first = first measurement flagged, sent to confirmation; REGRESSED counts final verdicts only. "
        "Delta and MDE are the final verdict's (pooled over confirmations). All runs share one process: "
        "between-process and between-machine noise of real CI is not sampled, so the A/A rate is a lower bound.",
        "",
        f"Written by `bench/verdict_quality.py` in {report['duration_s']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="reports", metavar="DIR", help="Default: reports")
    parser.add_argument("--baselines", type=int, default=5, metavar="N", help="Default: 5")
    parser.add_argument("--aa-runs", type=int, default=60, metavar="N", help="A/A runs per baseline. Default: 60")
    parser.add_argument(
        "--slow-runs", type=int, default=20, metavar="N", help="runs per baseline per slowdown. Default: 20"
    )
    parser.add_argument(
        "--measure-s", type=float, default=0.4, metavar="S", help="max_total_s of each measurement. Default: 0.4"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="order of conditions. Default: 0")
    args = parser.parse_args(argv)

    # One intra-op thread: on a 2-core shared machine, thread hand-offs only add noise.
    torch.set_num_threads(1)
    config = MeasureConfig(max_total_s=args.measure_s, warmup_max_s=0.5)
    realised_config = MeasureConfig(max_total_s=1.5, warmup_max_s=0.5)
    policy = Policy()
    rng = random.Random(args.seed)
    started = time.time()
    load_start = os.getloadavg()
    load_samples = [load_start[0]]
    ticks_start, cpu_start = cpu_ticks(), time.process_time()

    runs: list[dict[str, Any]] = []
    realised: dict[float, list[float]] = {s: [] for s in SLOWDOWNS}
    baselines = []
    for b in range(args.baselines):
        baseline = write_baseline(config)
        entry = baseline.backend(BACKEND)
        assert entry is not None and entry.latency is not None, "the eager baseline must have a latency"
        base_ms = entry.latency.median_ms
        delays = {s: s * base_ms for s in SLOWDOWNS}
        for s in SLOWDOWNS:
            realised[s].append(realised_slowdown(delays[s], realised_config))
        print(
            f"baseline {b + 1}/{args.baselines}: {base_ms:.4f} ms (round spread {_pct(entry.latency.spread, 2)}); "
            "realised slowdowns " + ", ".join(f"{condition_name(s)} -> {realised[s][-1]:+.1%}" for s in SLOWDOWNS),
            flush=True,
        )
        schedule = [0.0] * args.aa_runs + [s for s in SLOWDOWNS for _ in range(args.slow_runs)]
        rng.shuffle(schedule)
        for slowdown in schedule:
            t0 = time.perf_counter()
            first, final, measured = ci_run(baseline, delays.get(slowdown, 0.0), policy, config)
            runs.append(
                {
                    "baseline": b + 1,  # 1-based, as baselines[].index
                    "injected": slowdown,
                    "kind": final.kind.value,
                    "suspected": bool(first.needs_confirmation),
                    "confirmations": final.confirmations,
                    "first_delta": first.delta,
                    "delta": final.delta,
                    "p": final.p_value,
                    "q": final.q_value,
                    "threshold": final.threshold,
                    "mde": final.mde,
                    "noise": final.noise,
                    "seconds": time.perf_counter() - t0,
                    "round_medians_ms": [[_sig(x) for x in m.round_medians_ms] for m in measured],
                }
            )
            if final.kind is VerdictKind.REGRESSED and slowdown == 0.0:
                print(f"  false alarm: {final.message}", flush=True)
        aa = [r for r in runs if r["baseline"] == b + 1 and r["injected"] == 0.0]
        baselines.append(
            {
                "index": b + 1,
                "median_ms": base_ms,
                "spread": entry.latency.spread,
                "round_medians_ms": list(entry.latency.round_medians_ms),
                "delays_ms": {condition_name(s): d for s, d in delays.items()},
                "aa_runs": len(aa),
                "aa_regressed": sum(r["kind"] == "REGRESSED" for r in aa),
                "aa_median_delta": median(r["delta"] for r in aa) if aa else None,
                "regressed": {
                    condition_name(s): sum(
                        r["kind"] == "REGRESSED" for r in runs if r["baseline"] == b + 1 and r["injected"] == s
                    )
                    for s in (0.0, *SLOWDOWNS)
                },
            }
        )
        load_samples.append(os.getloadavg()[0])
        done = [r for r in runs if r["baseline"] == b + 1]
        print(
            f"  {len(done)} runs in {sum(r['seconds'] for r in done):.0f} s: "
            + ", ".join(
                f"{condition_name(s)} {sum(r['kind'] == 'REGRESSED' for r in done if r['injected'] == s)}"
                f"/{sum(r['injected'] == s for r in done)}"
                for s in (0.0, *SLOWDOWNS)
            )
            + f" REGRESSED; load {load_samples[-1]:.2f}",
            flush=True,
        )

    conditions = [
        summarize_condition(s, [r for r in runs if r["injected"] == s], realised.get(s, [])) for s in (0.0, *SLOWDOWNS)
    ]
    wall = time.time() - started
    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(wall, 1),
        "machine": environment_fingerprint("cpu"),
        "load_avg": {
            "start": list(load_start),
            "end": list(os.getloadavg()),
            "samples_1min": load_samples,
            "max_1min": max(load_samples),
        },
        "cpu": {
            "machine": cpu_share(ticks_start, cpu_ticks()),
            "this_process_share_of_one_core": (time.process_time() - cpu_start) / wall,
        },
        "model_median_ms": median(b["median_ms"] for b in baselines),
        "config": {
            "model": {"kind": "mlp", "layers": list(LAYERS), "batch": BATCH, "backend": BACKEND},
            "torch_threads": torch.get_num_threads(),
            "measure_config": dataclasses.asdict(config),
            "realised_check_config": dataclasses.asdict(realised_config),
            "policy": dataclasses.asdict(policy),
            "baselines": args.baselines,
            "aa_per_baseline": args.aa_runs,
            "slow_per_baseline": args.slow_runs,
            "slowdowns": list(SLOWDOWNS),
            "seed": args.seed,
            "in_one_process": True,
        },
        "goals": goal_verdicts(conditions),
        "conditions": conditions,
        "baselines": baselines,
        "runs": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
    }
    out = args.out_dir.rstrip("/")
    atomic_write_text(f"{out}/verdict_quality.json", report_json(report))
    md = markdown(report)
    atomic_write_text(f"{out}/verdict_quality.md", md)
    print()
    print(md)
    goals = report["goals"]
    return 0 if goals["false_alarm"]["met"] and goals["detection_at_10pct"]["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
