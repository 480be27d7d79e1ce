"""Gates on the metrics beyond latency and accuracy: build time, load, first call, memory, throughput.

Pure functions on plain numbers. Each metric regresses only when it is worse by more than its
relative threshold *and* by more than its absolute floor (``config.MetricGate``), because each has
its own kind of noise:

- build time swings with compile caches and machine load: +50% and 5 s by default, and it is only
  compared between two cold builds or two warm ones (a warm build is a cache hit: minutes vs
  seconds says nothing about the code);
- artifact load time and the first call after loading run once each: +50% with floors of 1 s and
  250 ms;
- peak memory is near-deterministic for a given model, inputs and backend: +10% and 8 MiB;
- throughput at the tuned batch size mirrors latency: the latency threshold, widened to what the
  check's latency noise and the sweep's own round spread support, and not judged against a stored
  baseline whose latency could not be judged either.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from aitune_ci.config import METRICS, MetricGate
from aitune_ci.formatting import round_sig

__all__ = [
    "BUILD_STATES",
    "MetricCheck",
    "build_time_check",
    "judge_metric",
    "metric_reason",
    "throughput_check",
]

#: How a build met the compile caches (``BackendResult.build_cache``): ``cold`` generated code,
#: ``warm`` only hit caches, ``none`` touched no compile cache (eager, onnxruntime), ``reused``
#: loaded an earlier build (the committed artifact or the runner's build cache) instead of building.
BUILD_STATES = ("cold", "warm", "none", "reused")


def metric_reason(metric: str) -> str:
    """The verdict reason a regressed metric adds: ``build_time`` -> ``build-time``."""
    return metric.replace("_", "-")


@dataclass(frozen=True)
class MetricCheck:
    """One metric of one check compared with its baseline (or, in relative mode, the base).

    Attributes:
        before, after: the baseline's and this run's values in ``unit`` (None when not recorded).
        change: relative change ``after / before - 1`` (+0.3 = 30% more); None when not compared.
        threshold, floor: the gate applied (threshold already widened for noise, where it is).
        note: why it was not compared or not judged; empty when it was judged.
        batch_size: for throughput, the batch size it was compared at.
    """

    metric: str
    unit: str
    before: float | None = None
    after: float | None = None
    change: float | None = None
    threshold: float | None = None
    floor: float | None = None
    regressed: bool = False
    improved: bool = False
    note: str = ""
    batch_size: int | None = None

    @property
    def reason(self) -> str:
        return metric_reason(self.metric)

    @property
    def moved(self) -> bool:
        """Worth a line in the terminal table: it regressed or improved beyond its gate."""
        return self.regressed or self.improved

    def text(self) -> str:
        """``peak memory 40 MiB -> 52 MiB (+30.0%, limit +10% and 8 MiB)``, with why it was not judged if so."""
        label = self.metric.replace("_", " ")
        if self.before is None or self.after is None or self.change is None:
            return f"{label}: {self.note}" if self.note else f"{label}: not compared"
        at = f" at batch {self.batch_size}" if self.batch_size else ""
        text = f"{label}{at} {_fmt(self.before, self.unit)} -> {_fmt(self.after, self.unit)} ({self.change * 100:+.1f}%"
        if self.threshold is not None:
            limit = f"{'-' if METRICS[self.metric].higher_is_better else '+'}{self.threshold * 100:.0f}%"
            text += f", limit {limit}" + (f" and {_fmt(self.floor, self.unit)}" if self.floor else "")
        text += ")"
        return text + (f"; {self.note}" if self.note else "")

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("before", "after", "change", "threshold", "floor"):
            if out[name] is not None:
                out[name] = round_sig(out[name])
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MetricCheck:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _fmt(x: float | None, unit: str) -> str:
    """A value with its unit; memory below 1 MiB in KiB or bytes, seconds below 0.1 in ms (tiny models)."""
    if x is None:
        return "-"
    if unit == "MiB" and abs(x) < 1:
        size = x * 1024 * 1024
        return f"{size:.0f} B" if abs(size) < 1024 else f"{size / 1024:.3g} KiB"
    if unit == "s" and abs(x) < 0.1:
        return _fmt(x * 1000, "ms")
    return (f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}") + f" {unit}"


def judge_metric(
    metric: str,
    before: float | None,
    after: float | None,
    gate: MetricGate,
    *,
    note: str = "",
    batch_size: int | None = None,
) -> MetricCheck | None:
    """Compare ``after`` with ``before`` under ``gate``; None when this run did not measure it.

    Worse means larger, or smaller for a metric where higher is better (throughput). It regresses
    only when worse by more than ``gate.threshold`` relative *and* ``gate.floor`` absolute, and
    improves when better by as much. ``note`` (non-empty) says why it is shown but not judged.
    """
    info = METRICS[metric]
    base = MetricCheck(metric, info.unit, before, after, batch_size=batch_size)
    if after is None or not math.isfinite(after):
        return None
    if before is None or not math.isfinite(before):
        return _replace(base, note=note or "no baseline value yet (the next --aitune-update records it)")
    change = after / before - 1.0 if before > 0 else (0.0 if after == before else math.inf)
    threshold = gate.threshold if gate.threshold is not None else 0.0
    base = _replace(base, change=change, threshold=threshold, floor=gate.floor)
    if note:
        return _replace(base, note=note)
    if not gate.enabled:
        return _replace(base, note="gate off in [tool.aitune.metrics]")
    worse = (before - after) if info.higher_is_better else (after - before)
    worse_rel = worse / before if before > 0 else (math.inf if worse > 0 else 0.0)
    regressed = worse > gate.floor and worse_rel > threshold
    improved = -worse > gate.floor and -worse_rel > threshold
    return _replace(base, regressed=regressed, improved=improved)


def _replace(check: MetricCheck, **changes: Any) -> MetricCheck:
    return MetricCheck(**{**{f.name: getattr(check, f.name) for f in fields(check)}, **changes})


def build_time_check(
    before_s: float | None,
    before_state: str | None,
    after_s: float | None,
    after_state: str | None,
    gate: MetricGate,
    *,
    base_in_process: bool = False,
) -> MetricCheck | None:
    """Build time, judged only between builds that met the compile caches alike.

    A cold build generates code, a warm one loads it from a cache: comparing them measures the
    cache, not the code. A reused artifact was not built at all. A baseline written before the
    cache state was recorded cannot say which it was, so it is shown and not judged.

    ``base_in_process``: the baseline is a relative check's base, built in the same process right
    after the head. Two cold builds are then not alike: the base's generates code on caches the
    nightly filled for exactly its code and that the head's build just added to (kernels, autotune
    results, the C++ build), so it can only look faster. On the H200 a comment-only PR's resnet50
    AOTInductor build read 77.4 s for the head and 22.6 s for the base, both cold, and failed. Two
    warm builds stay comparable: both only load from caches, and the process's one-time compile
    setup is in neither (``aitune_ci.compile_warmup``). The nightly judges cold builds against
    the last nightly's, each built the same way.
    """
    note = ""
    if after_state == "reused":
        note = "not compared: this run loaded an earlier build (committed artifact or build cache)"
    elif before_state is None:
        note = "not judged: the baseline does not record whether its build was cold or warm"
    elif before_state == "reused":
        note = "not compared: the baseline's run loaded an earlier build instead of building"
    elif after_state != before_state:
        note = f"not compared: the baseline's build was {before_state} and this one {after_state} (compile cache)"
    elif base_in_process and after_state == "cold":
        note = (
            "not compared: both built cold in this process, the base second, on compile caches its own "
            "code and the head's build filled; the nightly judges cold build times"
        )
    return judge_metric("build_time", before_s, after_s, gate, note=note)


def throughput_check(
    before_by_batch: Mapping[int, float],
    after_by_batch: Mapping[int, float],
    latency_batch: int | None,
    gate: MetricGate,
    *,
    latency_threshold: float | None,
    latency_unjudged: str | None,
    round_spread: float | None = None,
    noise_k: float = 3.0,
) -> MetricCheck | None:
    """Throughput (items/s) at this run's tuned batch size (the sweep's best) against the baseline's.

    At the latency's own batch size throughput *is* latency, already judged: only a sweep that
    chose another batch size adds a gate. The threshold is the larger of the gate's, the latency
    test's effective threshold (its between-run noise) and ``noise_k`` times the sweep point's
    round spread; when the latency could not be judged (too few runs, contention, too noisy), the
    same noise makes throughput unjudgeable and it is shown only.
    """
    if not after_by_batch:
        return None
    batch = max(after_by_batch, key=lambda b: after_by_batch[b])
    if batch == latency_batch:
        return None
    before = before_by_batch.get(batch)
    note = ""
    if before is None and before_by_batch:
        note = f"not compared: the baseline's sweep did not measure batch {batch}"
    elif latency_unjudged:
        note = "not judged: the latency noise that kept latency from being judged applies to it too"
    widened = max(
        gate.threshold or 0.0,
        latency_threshold or 0.0,
        noise_k * round_spread if round_spread is not None else 0.0,
    )
    gate = MetricGate(widened, gate.floor, gate.enabled)
    return judge_metric("throughput", before, after_by_batch[batch], gate, note=note, batch_size=batch)
