"""A run JSON parsed into what every report shows: fixtures, backend rows, verdicts, counts, environment.

Pure: plain data in, frozen dataclasses out, so the HTML, markdown and benchmark exports agree on
what a run says and each is tested without rendering the others.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.verdict import Verdict, VerdictKind, summary_counts

__all__ = [
    "BackendRow",
    "FixtureView",
    "RunView",
    "SOFTWARE_FIELDS",
    "VERDICT_ORDER",
    "fmt_ms",
    "fmt_pct",
    "overall_verdict",
]

#: Most severe first: the order of rows in every report.
VERDICT_ORDER = ("REGRESSED", "FAILED", "IMPROVED", "NEW", "PASS", "SKIPPED")

#: Environment fields shown as "software", in this order, when present.
SOFTWARE_FIELDS = (
    "python",
    "torch",
    "cuda",
    "cudnn",
    "driver",
    "triton",
    "torchao",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "onnxscript",
    "tensorrt",
    "torch-tensorrt",
    "transformers",
    "numpy",
)
#: Environment fields shown as "hardware".
HARDWARE_FIELDS = (
    "hardware_key", "gpu", "gpu_memory_gb", "compute_capability", "cpu", "cpu_capability", "cpu_features", "cpu_count",
    "platform",
)  # fmt: skip


def _kind(v: Verdict) -> str:
    return v.kind.value if isinstance(v.kind, VerdictKind) else str(v.kind)


def fmt_ms(x: float | None) -> str:
    """``12.35 ms``-style number (no unit): 4 significant digits, ``-`` when unknown."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4g}" if x < 1000 else f"{x:,.0f}"


def fmt_pct(x: float | None) -> str:
    """``+4.2%`` for a relative change, ``-`` when unknown."""
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x * 100:+.1f}%"


def overall_verdict(verdicts: Sequence[Verdict]) -> str:
    """The run's one-word outcome: the most severe verdict that counts.

    A quarantined regression or a known failure does not fail the run, so it does not make the run
    REGRESSED/FAILED. ``NONE`` when there are no verdicts.
    """
    if not verdicts:
        return "NONE"
    failing = {_kind(v) for v in verdicts if v.fails}
    for kind in ("REGRESSED", "FAILED"):
        if kind in failing:
            return kind
    present = {_kind(v) for v in verdicts}
    for kind in ("IMPROVED", "NEW", "PASS", "SKIPPED"):
        if kind in present:
            return kind
    return "PASS"


@dataclass(frozen=True)
class BackendRow:
    """One backend of one fixture: its measured result and, when checked, its verdict."""

    fixture: str
    result: BackendResult | None
    verdict: Verdict | None
    eager_ms: float | None = None

    @property
    def backend(self) -> str:
        return self.result.backend if self.result is not None else self.verdict.backend  # type: ignore[union-attr]

    @property
    def module(self) -> str:
        return self.result.module if self.result is not None else ""

    @property
    def kind(self) -> str:
        """The verdict kind, or the result status (upper case) when this row was not checked."""
        if self.verdict is not None:
            return _kind(self.verdict)
        return self.result.status.upper() if self.result is not None else "-"

    @property
    def median_ms(self) -> float | None:
        if self.result is not None and self.result.latency is not None:
            return self.result.latency.median_ms
        return self.verdict.current_median_ms if self.verdict is not None else None

    @property
    def ci_ms(self) -> tuple[float, float] | None:
        lat = self.result.latency if self.result is not None else None
        return (lat.ci_low_ms, lat.ci_high_ms) if lat is not None else None

    @property
    def baseline_ms(self) -> float | None:
        return self.verdict.baseline_median_ms if self.verdict is not None else None

    @property
    def delta(self) -> float | None:
        return self.verdict.delta if self.verdict is not None else None

    @property
    def speedup(self) -> float | None:
        """Eager's median over this backend's (2.0 = twice as fast as eager)."""
        m = self.median_ms
        if m is None or m <= 0 or self.eager_ms is None:
            return None
        return self.eager_ms / m

    @property
    def throughput(self) -> dict[int, float]:
        """Items per second by batch size: the sweep when there was one, else the measured batch."""
        if self.result is None:
            return {}
        by_batch = dict(self.result.throughput_by_batch)
        lat = self.result.latency
        if lat is not None and lat.batch_size and lat.throughput and lat.batch_size not in by_batch:
            by_batch[lat.batch_size] = lat.throughput
        return dict(sorted(by_batch.items()))

    @property
    def error(self) -> str:
        """The error or unavailability reason, else the accuracy gate's failure reason ('' when fine)."""
        r = self.result
        if r is None:
            return ""
        if r.error:
            return r.error
        if r.status == "inaccurate" and r.accuracy is not None:
            return r.accuracy.reason or r.accuracy.summary()
        return ""

    @property
    def selected(self) -> bool:
        return bool(self.result is not None and self.result.selected)


@dataclass(frozen=True)
class FixtureView:
    """One fixture: its tune result (None when only verdicts reached the run file) and its rows."""

    name: str
    result: TuneResult | None
    rows: tuple[BackendRow, ...]
    module_rows: tuple[BackendRow, ...] = ()

    @property
    def winner(self) -> str | None:
        return self.result.winner if self.result is not None else None

    @property
    def winner_row(self) -> BackendRow | None:
        return next((r for r in self.rows if r.backend == self.winner), None)

    @property
    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            if r.verdict is not None:
                out[r.kind] = out.get(r.kind, 0) + 1
        return out


@dataclass(frozen=True)
class RunView:
    """Everything a report shows about one run (see ``RunView.from_run``)."""

    fixtures: tuple[FixtureView, ...]
    verdicts: tuple[Verdict, ...]
    started: datetime | None
    environment: Mapping[str, Any]
    #: Environment fields on which this run's fixtures disagree (e.g. merged shards of two machines).
    environment_spread: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    #: ``{field: (baseline value, this run's value)}`` over every verdict that compared with a baseline.
    env_mismatch: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    baseline_environment: Mapping[str, Any] | None = None

    @classmethod
    def from_run(cls, run: Mapping[str, Any], baseline_environment: Mapping[str, Any] | None = None) -> RunView:
        """Parse a run JSON (``AituneSession.run_json()``, or ``merge_runs``' output).

        Raises:
            DataFileError: a result or verdict in ``run`` is malformed.
        """
        results = [TuneResult.from_json(r, source="run JSON") for r in run.get("results", ())]
        verdicts = [Verdict.from_json(v, source="run JSON") for v in run.get("verdicts", ())]
        by_check: dict[tuple[str, str], Verdict] = {(v.fixture, v.backend): v for v in verdicts}
        names: list[str] = []
        for name in [r.name for r in results] + [v.fixture for v in verdicts]:
            if name not in names:
                names.append(name)
        result_by_name = {r.name: r for r in results}
        fixtures = []
        for name in names:
            result = result_by_name.get(name)
            rows: list[BackendRow] = []
            module_rows: list[BackendRow] = []
            eager = result.reference if result is not None else None
            eager_ms = eager.latency.median_ms if eager is not None and eager.latency is not None else None
            seen: set[str] = set()
            for b in result.backends if result is not None else ():
                if b.module:
                    module_rows.append(BackendRow(name, b, None, None))
                    continue
                seen.add(b.backend)
                rows.append(BackendRow(name, b, by_check.get((name, b.backend)), eager_ms))
            for v in verdicts:  # a verdict whose result row is missing still shows
                if v.fixture == name and v.backend not in seen:
                    seen.add(v.backend)
                    rows.append(BackendRow(name, None, v, eager_ms))
            order = {k: i for i, k in enumerate(VERDICT_ORDER)}
            rows.sort(key=lambda r: (order.get(r.kind, len(order)), r.backend))
            fixtures.append(FixtureView(name, result, tuple(rows), tuple(module_rows)))

        environment: dict[str, Any] = dict(results[0].environment) if results else {}
        spread: dict[str, tuple[Any, ...]] = {}
        for key in sorted({k for r in results for k in r.environment}):
            values = tuple(dict.fromkeys(r.environment.get(key) for r in results))
            if len(values) > 1 and key in (*SOFTWARE_FIELDS, *HARDWARE_FIELDS):
                spread[key] = values
        mismatch: dict[str, tuple[Any, Any]] = {}
        for v in verdicts:
            for k, pair in v.env_mismatch.items():
                mismatch.setdefault(k, (pair[0], pair[1]))
        started = run.get("started")
        when = (
            datetime.fromtimestamp(float(started), tz=timezone.utc).replace(microsecond=0)
            if isinstance(started, (int, float)) and math.isfinite(started)
            else None
        )
        return cls(
            fixtures=tuple(fixtures),
            verdicts=tuple(verdicts),
            started=when,
            environment=environment,
            environment_spread=spread,
            env_mismatch=dict(sorted(mismatch.items())),
            baseline_environment=baseline_environment,
        )

    @property
    def counts(self) -> dict[str, int]:
        """Checks per outcome (``passed``, ``improved``, ``regressed``, ``failed``, ``new``, ``skipped``, ``quarantined``)."""
        return summary_counts(self.verdicts)

    @property
    def overall(self) -> str:
        return overall_verdict(self.verdicts)

    @property
    def failing(self) -> bool:
        """Whether this run fails CI (a regression or a new failure that is not quarantined)."""
        return any(v.fails for v in self.verdicts)

    @property
    def rows(self) -> list[BackendRow]:
        return [row for f in self.fixtures for row in f.rows]

    def software(self) -> list[tuple[str, Any]]:
        return [(k, self.environment[k]) for k in SOFTWARE_FIELDS if self.environment.get(k) not in (None, "")]

    def hardware(self) -> list[tuple[str, Any]]:
        return [(k, self.environment[k]) for k in HARDWARE_FIELDS if self.environment.get(k) not in (None, "")]

    def winners(self) -> dict[str, list[str]]:
        """Backend -> the fixtures it won (whole-model winners only)."""
        out: dict[str, list[str]] = {}
        for f in self.fixtures:
            if f.winner:
                out.setdefault(f.winner, []).append(f.name)
        return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0])))
