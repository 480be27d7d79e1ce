"""Verdict quality: how often does the latency verdict cry wolf, and how often does it catch a slowdown?

Goals: A/A false-alarm rate (the same model judged against its own baseline) at most 1%, and at
least 95% of injected 10% slowdowns caught.

Two modes, i.e. the plugin's two ways to judge latency, run side by side:

* ``medians`` — every comparison reproduces one CI run of the pytest plugin without a usable
  baseline artifact: ``tune()`` builds and measures a fresh copy of a small MLP (eager backend),
  ``judge_with_confirmations`` judges its median against the baseline's and re-measures
  (``engine.remeasure``, pooled) while the slowdown is only suspected — the very function the
  plugin's session calls — then ``apply_run_correction`` (Benjamini-Hochberg over the fixture's
  checks; the identity for this one-backend fixture).
* ``paired`` — the plugin's path when the baseline's ``.ait`` holds a compiled payload
  (``AituneSession._paired_with_baseline_artifact``): A = the baseline's callable and B = the
  current one, both fresh copies, timed interleaved in this process by ``measure_paired`` (ABBA
  rounds) with the tune's ``MeasureConfig``; ``judge_with_confirmations(..., paired=,
  remeasure_paired=)`` judges the ratio and its CI and re-measures the pair while suspected, then
  ``apply_run_correction``. The plugin pairs only AOT payloads (aoti, onnxruntime, TensorRT); here
  both sides are eager modules because the injected busy-wait cannot be exported into an AOT
  payload — what is measured is the decision procedure under this machine's noise. The current
  row (status, accuracy, the median shown in the message) comes from one ``tune()`` per baseline
  and condition; with ``paired=`` the latency verdict rests on the ratio alone.

Baselines are written the plugin's way (``tune`` then ``Baseline.from_result``, as
``--aitune-update-new-only`` does); several baselines are used so that the rates are not those of
one lucky (or unlucky) baseline window. Both modes judge against the same baselines.

Slowdowns are injected inside the model's ``forward``: a busy-wait (a spin, never a sleep) of
5%, 10% or 25% of the baseline's median; the slowdown really obtained is measured per baseline with
paired ABBA rounds (``measure_paired``, a longer budget) and reported next to the rates. Runs of
both modes and all conditions are shuffled together within each baseline, so that load changes on
the machine hit all of them alike.

All comparisons run in one process, one after another: process-level effects a real CI run would
add (a new allocator state, ASLR, another CPU frequency or a different runner) are not sampled,
so the A/A rate here is a lower bound for CI across processes and machines.

Run: ``.venv/bin/python bench/verdict_quality.py`` (about 15 to 20 minutes on 2 shared CPU cores,
depending on their load; ``--modes medians`` or ``--modes paired`` runs one mode).
Writes ``reports/verdict_quality.json`` and ``reports/verdict_quality.md``; exits 1 when a goal of
a mode that ran is not met.
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
from aitune_ci.config import Policy
from aitune_ci.engine import remeasure, tune
from aitune_ci.environment import environment_differences, environment_fingerprint
from aitune_ci.measure import MeasureConfig, measure_paired
from aitune_ci.result import LatencyStats, TuneResult
from aitune_ci.spec import TuneSpec
from aitune_ci.stats import RatioEstimate
from aitune_ci.store.baseline import BackendBaseline, Baseline
from aitune_ci.verdict import Verdict, VerdictKind, apply_run_correction, judge_with_confirmations

SCHEMA_VERSION = 2  # 2: a "mode" on every condition and run; goals per mode
FIXTURE = "tune_mlp"
BACKEND = "eager"
FALSE_ALARM_GOAL = 0.01  # A/A: at most 1% of comparisons flagged REGRESSED
DETECTION_GOAL = 0.95  # at least 95% of injected 10% slowdowns flagged REGRESSED
DETECTION_AT = 0.10
SLOWDOWNS = (0.05, 0.10, 0.25)
MODES = ("medians", "paired")
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


def summarize_condition(
    mode: str, slowdown: float, runs: Sequence[dict[str, Any]], realised: Sequence[float]
) -> dict[str, Any]:
    """Counts, rate with its Wilson interval, and the typical delta/MDE of one (mode, condition)."""
    n = len(runs)
    flagged = sum(r["kind"] == "REGRESSED" for r in runs)

    def typical(key: str) -> float | None:  # a run with no latency test (not judged: contention) has none
        values = [r[key] for r in runs if r[key] is not None]
        return median(values) if values else None

    low, high = wilson_interval(flagged, n)
    return {
        "mode": mode,
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
        # Every measurement is judged (the first, then each confirmation); all but the last of a run
        # were flagged (that is why it was re-measured), and the last was flagged when it regressed.
        "judgements": sum(1 + r["confirmations"] for r in runs),
        "judgements_flagged": sum(r["confirmations"] + (r["kind"] == "REGRESSED") for r in runs),
        "median_delta": typical("delta"),
        "first_delta_quantiles": _quantiles([r["first_delta"] for r in runs if r["first_delta"] is not None]),
        "not_judged": sum(r["delta"] is None for r in runs),
        "median_mde": typical("mde"),
        "median_threshold": typical("threshold"),
        "median_noise": typical("noise"),
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
    """Both goals for the conditions of one mode."""
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


def medians_ci_run(
    baseline: Baseline, delay_ms: float, policy: Policy, config: MeasureConfig
) -> tuple[Verdict, Verdict, list[LatencyStats]]:
    """One CI run of the fixture against ``baseline`` by medians: tune, judge with confirmations, BH.

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


def sample_input() -> torch.Tensor:
    """A fixed input for the paired measurements (same shape as ``make_spec``'s sample)."""
    torch.manual_seed(1)
    return torch.randn(BATCH, LAYERS[0])


def paired_ci_run(
    baseline: Baseline, current: TuneResult, delay_ms: float, policy: Policy, config: MeasureConfig
) -> tuple[Verdict, Verdict, list[RatioEstimate]]:
    """One CI run against ``baseline``'s artifact, as ``AituneSession._paired_with_baseline_artifact`` does.

    A is a fresh copy of the baseline model (the plugin loads the ``.ait`` into a fresh copy of the
    spec's model), B a fresh copy of the current one (eager's build is the module itself); they are
    timed interleaved by ``measure_paired`` with the tune's ``MeasureConfig``, and every confirmation
    measures the pair again. ``current`` (a ``tune()`` of the current model) supplies the row's
    status, accuracy and environment; the latency verdict rests on the ratio. Returns the first verdict, the final one, and every ratio measured.
    """
    old, new, x = make_model(), make_model(delay_ms), sample_input()
    measured: list[RatioEstimate] = []

    def pair() -> RatioEstimate:
        measured.append(measure_paired(lambda: old(x), lambda: new(x), "cpu", config))
        return measured[-1]

    row = current.backend(BACKEND)
    assert row is not None, "the current tune must have an eager row"
    env_diff = environment_differences(dict(baseline.environment), dict(current.environment))
    first: list[Verdict] = []
    final = judge_with_confirmations(
        FIXTURE,
        baseline.backend(BACKEND),
        row,
        policy,
        None,  # the paired branch never re-measures medians
        env_diff=env_diff,
        on_suspect=lambda verdict, _measured: first.append(verdict) if not first else None,
        paired=pair(),
        remeasure_paired=pair,
    )
    (final,) = apply_run_correction([final])
    return (first[0] if first else final), final, measured


def realised_slowdown(delay_ms: float, config: MeasureConfig) -> float:
    """Slowdown really obtained by the busy-wait: paired ABBA ratio slowed / plain, minus one."""
    plain, slowed, x = make_model(), make_model(delay_ms), sample_input()
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


def _signed(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.1f}%"


def table(report: dict[str, Any]) -> str:
    lines = [
        "| mode | condition | realised slowdown | REGRESSED / comparisons | rate (95% Wilson CI) | median measured delta"
        " | median MDE | suspected first | confirmations | judgements flagged | median threshold | not judged |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in report["conditions"]:
        realised = "—" if c["injected"] == 0 else _signed(c["realised_slowdown_median"])
        lines.append(
            f"| {c['mode']} | {c['name']} | {realised} | {c['regressed']} / {c['comparisons']} | {_pct(c['rate'])} "
            f"({_pct(c['rate_ci95'][0])}–{_pct(c['rate_ci95'][1])}) | {_signed(c['median_delta'])} | "
            f"{_pct(c['median_mde'])} | {c['suspected_first']} | {c['confirmations_total']} | "
            f"{c['judgements_flagged']} / {c['judgements']} | {_pct(c['median_threshold'])} | {c.get('not_judged', 0)} |"
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


def _goal_lines(mode: str, goals: dict[str, Any]) -> list[str]:
    fa, det = goals["false_alarm"], goals["detection_at_10pct"]

    def mark(g: dict[str, Any]) -> str:
        return ("met" if g["met"] else "NOT met") + (
            " (and shown at 95%)" if g["shown_at_95pct"] else " (not shown at 95% confidence)"
        )

    return [
        f"- {mode}: false-alarm goal ≤ {FALSE_ALARM_GOAL:.0%}: measured {_pct(fa['measured'], 2)} "
        f"(95% CI {_pct(fa['ci95'][0], 2)}–{_pct(fa['ci95'][1], 2)}) — {mark(fa)}; "
        f"detection goal ≥ {DETECTION_GOAL:.0%} at +{DETECTION_AT:.0%}: measured {_pct(det['measured'], 2)} "
        f"(95% CI {_pct(det['ci95'][0], 2)}–{_pct(det['ci95'][1], 2)}) — {mark(det)}."
    ]


def _paired_compounding(report: dict[str, Any]) -> list[str]:
    """How often one paired judgement flags at +10%, beside the final rate (confirmations pool their evidence)."""
    by = {(c["mode"], c["injected"]): c for c in report["conditions"]}
    c = by.get(("paired", DETECTION_AT))
    if not c or not c["judgements"]:
        return []
    q = c["judgements_flagged"] / c["judgements"]
    return [
        f"- paired: a suspect is re-measured and each new ratio is pooled with the earlier ones (inverse-variance "
        f"in log space, `pool_paired`), so a confirmation adds evidence. At +{DETECTION_AT:.0%} a single judgement "
        f"flagged {_pct(q)} of the time ({c['judgements_flagged']}/{c['judgements']}); final rate {_pct(c['rate'])}."
    ]


def markdown(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    mc, pol = cfg["measure_config"], cfg["policy"]
    load = report["load_avg"]
    modes = cfg["modes"]
    seconds = ", ".join(f"{mode} {report['mode_seconds'][mode]:.0f} s" for mode in modes)
    lines = [
        "# Verdict quality: false alarms (A/A) and detection of injected slowdowns",
        "",
        f"{report['created_at']} · {m.get('cpu')} ({m.get('cpu_count')} cores, shared with other engineers' "
        f"test runs) · torch {m.get('torch')} · torch threads {cfg['torch_threads']} · load avg "
        f"{load['start'][0]:.2f} → {load['end'][0]:.2f} (max {load['max_1min']:.2f}){_cpu_text(report['cpu'])}",
        "",
        f"Model: eager MLP {'-'.join(map(str, LAYERS))}, batch {BATCH}, ~{report['model_median_ms']:.3f} ms per call. "
        f"{cfg['baselines']} baselines × ({cfg['aa_per_baseline']} A/A + {cfg['slow_per_baseline']} per slowdown) "
        f"CI runs per mode, runs of {' and '.join(modes)} mode and all conditions shuffled together within each "
        "baseline; both modes judge against the same baselines.",
        "",
        "- **medians** (the plugin without a usable baseline artifact): `tune()` of a fresh model copy, "
        "`judge_with_confirmations` on the two medians (re-measure while suspected, pooled), `apply_run_correction`.",
        "- **paired** (the plugin when the baseline's `.ait` holds a compiled payload, "
        "`AituneSession._paired_with_baseline_artifact`): fresh copies of the baseline model (A) and the current one "
        "(B) timed interleaved by `measure_paired` (ABBA rounds, the tune's `MeasureConfig`), "
        "`judge_with_confirmations(paired=, remeasure_paired=)` on the ratio and its CI (each confirmation measures "
        "the pair again and is pooled with the earlier ratios), `apply_run_correction`. Both sides are eager modules standing in for an AOT payload (the "
        "busy-wait cannot be exported): the decision procedure is what is measured.",
        "",
        f"Every measurement, re-measurement and paired measurement: `MeasureConfig(max_total_s={mc['max_total_s']}, "
        f"warmup_max_s={mc['warmup_max_s']}, min_rounds={mc['min_rounds']}, target_round_s={mc['target_round_s']}, "
        f"ci_target={mc['ci_target']})`. Policy: defaults (threshold {pol['threshold']:.0%}, alpha {pol['alpha']}, "
        f"noise_k {pol['noise_k']}, noise_floor {pol['noise_floor']}, max_confirmations {pol['max_confirmations']}).",
        "",
        table(report),
        "",
        *(line for mode in modes for line in _goal_lines(mode, report["goals"][mode])),
        *_paired_compounding(report),
        "",
        "Per baseline: its median and round spread, then REGRESSED counts per mode and condition "
        f"({cfg['aa_per_baseline']} A/A, {cfg['slow_per_baseline']} per slowdown):",
        "",
        *(
            f"- #{b['index']}: {b['median_ms']:.4f} ms, round spread {_pct(b['spread'], 2)} — "
            + "; ".join(
                f"{mode}: " + ", ".join(f"{name} {n}" for name, n in b["regressed"][mode].items()) for mode in modes
            )
            for b in report["baselines"]
        ),
        "",
        "Realised slowdown: median over the baselines of a paired ABBA measurement (longer budget), slowed / plain "
        "model. Suspected first = first measurement flagged, sent to confirmation; REGRESSED counts final verdicts "
        "only; judgements flagged counts every judged measurement (first and confirmations) that flagged a regression. Measured delta and MDE are the final verdict's: for medians pooled over confirmations, for paired the "
        "paired ratio pooled over confirmations − 1 and the MDE of its CI. All runs share one process: between-process and "
        "between-machine noise of real CI is not sampled, so the A/A rates are lower bounds. Not judged = comparisons "
        "measured while other processes took the CPU (no latency test, so not REGRESSED either).",
        "",
        f"Written by `bench/verdict_quality.py` in {report['duration_s']:.0f} s (time in CI runs: {seconds}).",
        "",
    ]
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------


def _run_record(
    mode: str, baseline: int, slowdown: float, first: Verdict, final: Verdict, measured: Sequence[Any], seconds: float
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "mode": mode,
        "baseline": baseline,  # 1-based, as baselines[].index
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
        "seconds": seconds,
    }
    if mode == "paired":
        record["ratios"] = [[_sig(e.ratio), _sig(e.ci_low), _sig(e.ci_high), e.n] for e in measured]
    else:
        record["round_medians_ms"] = [[_sig(x) for x in m.round_medians_ms] for m in measured]
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default="reports", metavar="DIR", help="Default: reports")
    parser.add_argument(
        "--modes",
        type=lambda text: [m.strip() for m in text.split(",") if m.strip()],
        default=list(MODES),
        metavar="MODE[,MODE]",
        help="medians, paired or both. Default: medians,paired",
    )
    parser.add_argument("--baselines", type=int, default=5, metavar="N", help="Default: 5")
    parser.add_argument(
        "--aa-runs", type=int, default=40, metavar="N", help="A/A runs per baseline and mode. Default: 40"
    )
    parser.add_argument(
        "--slow-runs", type=int, default=20, metavar="N", help="runs per baseline, mode and slowdown. Default: 20"
    )
    parser.add_argument(
        "--measure-s", type=float, default=0.4, metavar="S", help="max_total_s of each measurement. Default: 0.4"
    )
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="order of runs. Default: 0")
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="measure nothing: recompute the summaries from the runs in DIR/verdict_quality.json and rewrite both "
        "reports (after a change to the report format). Default: off",
    )
    args = parser.parse_args(argv)
    if args.rerender:
        return rerender(args.out_dir.rstrip("/"))
    unknown = [m for m in args.modes if m not in MODES]
    if unknown or not args.modes:
        parser.error(f"--modes takes {' and/or '.join(MODES)}, got {','.join(args.modes) or 'nothing'}")
    modes = [m for m in MODES if m in args.modes]

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
    conditions_all = (0.0, *SLOWDOWNS)

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
        # The paired verdict takes status and accuracy from the current tune's row: one tune per condition.
        currents = (
            {
                s: dataclasses.replace(
                    tune(make_spec(delays.get(s, 0.0)), measure_config=config, progress=None), runtime=None
                )
                for s in conditions_all
            }
            if "paired" in modes
            else {}
        )
        schedule = [
            (mode, s)
            for mode in modes
            for s in conditions_all
            for _ in range(args.aa_runs if s == 0.0 else args.slow_runs)
        ]
        rng.shuffle(schedule)
        for mode, slowdown in schedule:
            t0 = time.perf_counter()
            delay = delays.get(slowdown, 0.0)
            if mode == "paired":
                first, final, measured = paired_ci_run(baseline, currents[slowdown], delay, policy, config)
            else:
                first, final, measured = medians_ci_run(baseline, delay, policy, config)
            runs.append(_run_record(mode, b + 1, slowdown, first, final, measured, time.perf_counter() - t0))
            if final.kind is VerdictKind.REGRESSED and slowdown == 0.0:
                print(f"  false alarm ({mode}): {final.message}", flush=True)
        mine = [r for r in runs if r["baseline"] == b + 1]
        baselines.append(
            {
                "index": b + 1,
                "median_ms": base_ms,
                "spread": entry.latency.spread,
                "round_medians_ms": list(entry.latency.round_medians_ms),
                "delays_ms": {condition_name(s): d for s, d in delays.items()},
                "regressed": {
                    mode: {
                        condition_name(s): sum(
                            r["kind"] == "REGRESSED" for r in mine if r["mode"] == mode and r["injected"] == s
                        )
                        for s in conditions_all
                    }
                    for mode in modes
                },
            }
        )
        load_samples.append(os.getloadavg()[0])
        print(
            f"  {len(mine)} runs in {sum(r['seconds'] for r in mine):.0f} s, REGRESSED: "
            + "; ".join(
                f"{mode} "
                + ", ".join(
                    f"{condition_name(s)} {baselines[-1]['regressed'][mode][condition_name(s)]}"
                    f"/{sum(r['mode'] == mode and r['injected'] == s for r in mine)}"
                    for s in conditions_all
                )
                for mode in modes
            )
            + f"; load {load_samples[-1]:.2f}",
            flush=True,
        )

    conditions = [
        summarize_condition(mode, s, [r for r in runs if r["mode"] == mode and r["injected"] == s], realised.get(s, []))
        for mode in modes
        for s in conditions_all
    ]
    wall = time.time() - started
    report = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.fromtimestamp(started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(wall, 1),
        "mode_seconds": {mode: round(sum(r["seconds"] for r in runs if r["mode"] == mode), 1) for mode in modes},
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
            "modes": modes,
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
        "goals": {mode: goal_verdicts([c for c in conditions if c["mode"] == mode]) for mode in modes},
        "conditions": conditions,
        "baselines": baselines,
        "runs": [{k: (_sig(v) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
    }
    return write_reports(report, args.out_dir.rstrip("/"))


def write_reports(report: dict[str, Any], out: str) -> int:
    """Write the JSON and markdown reports; 0 when every goal of every mode that ran is met, else 1."""
    atomic_write_text(f"{out}/verdict_quality.json", report_json(report))
    md = markdown(report)
    atomic_write_text(f"{out}/verdict_quality.md", md)
    print()
    print(md)
    met = all(g["false_alarm"]["met"] and g["detection_at_10pct"]["met"] for g in report["goals"].values())
    return 0 if met else 1


def rerender(out: str) -> int:
    """Recompute conditions and goals from the stored runs (same schema), then rewrite both reports."""
    with open(f"{out}/verdict_quality.json", encoding="utf-8") as f:
        report = json.load(f)
    if report.get("schema_version") != SCHEMA_VERSION:
        raise SystemExit(
            f"{out}/verdict_quality.json has schema_version {report.get('schema_version')}, "
            f"this bench writes {SCHEMA_VERSION}: run the bench again instead of --rerender"
        )
    modes, runs = report["config"]["modes"], report["runs"]
    realised = {c["injected"]: c["realised_slowdown_per_baseline"] for c in report["conditions"]}
    report["conditions"] = [
        summarize_condition(mode, s, [r for r in runs if r["mode"] == mode and r["injected"] == s], realised.get(s, []))
        for mode in modes
        for s in (0.0, *SLOWDOWNS)
    ]
    report["goals"] = {mode: goal_verdicts([c for c in report["conditions"] if c["mode"] == mode]) for mode in modes}
    return write_reports(report, out)


if __name__ == "__main__":
    sys.exit(main())
