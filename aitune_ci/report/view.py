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

from aitune_ci.environment import software_fields
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.status import (
    NO_CHECKS,
    PRESENTATION,
    BackendStatus,
    Presentation,
    VerdictKind,
    VerdictMode,
    presentation,
)
from aitune_ci.verdict import Verdict, summary_counts

__all__ = [
    "NO_VERDICT",
    "BackendRow",
    "FixtureView",
    "RunView",
    "judged_against",
    "overall_verdict",
]

#: The overall verdict of a run without checks (step output ``verdict=NONE``).
NO_VERDICT = "NONE"

#: Environment fields shown as "hardware" (the "software" ones are ``environment.software_fields``).
HARDWARE_FIELDS = (
    "hardware_key", "gpu", "gpu_memory_gb", "compute_capability", "cpu", "cpu_capability", "cpu_features", "cpu_count",
    "platform",
)  # fmt: skip


def judged_against(v: Verdict) -> str:
    """What a check's latency was judged against, in a few words (every report shows it)."""
    if v.mode is VerdictMode.RELATIVE:
        how = ", paired" if v.paired else ", identical" if v.identical_to_base else ""
        return f"base {v.base_ref}{how}"
    return "baseline, paired A/B" if v.paired else "baseline, identical" if v.identical_to_base else "baseline"


def overall_verdict(verdicts: Sequence[Verdict]) -> VerdictKind | str:
    """The run's one-word outcome: the most severe verdict that counts (``NO_VERDICT`` when there are none).

    A quarantined regression or a known failure does not fail the run, so it does not make the run
    REGRESSED/FAILED; when nothing else is left, the run passed. A warn-only regression
    (``Verdict.would_fail``) does not fail the run but still makes it REGRESSED: it is what the run found.
    """
    if not verdicts:
        return NO_VERDICT
    forgiven = (VerdictKind.REGRESSED, VerdictKind.FAILED)
    counted = [v.kind for v in verdicts if v.fails or v.would_fail or v.kind not in forgiven]
    return min(counted, key=lambda kind: presentation(kind).severity) if counted else VerdictKind.PASS


#: The badge of each count label (``quarantined`` checks read as the unchanged ones do).
_COUNT_PRESENTATION = {p.count_label: p for p in PRESENTATION.values()}


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
    def kind(self) -> VerdictKind | str:
        """The verdict kind, or the result status (upper case) when this row was not checked."""
        if self.verdict is not None:
            return self.verdict.kind
        return self.result.status.upper() if self.result is not None else "-"

    @property
    def look(self) -> Presentation:
        """How reports show this row: its verdict kind's row; unchecked, a failed backend looks FAILED, others dim."""
        return presentation(self.kind)

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
        if r.review:
            return f"flagged for review: {r.review}"
        if r.status == BackendStatus.INACCURATE and r.accuracy is not None:
            return r.accuracy.reason or r.accuracy.summary()
        return ""

    @property
    def selected(self) -> bool:
        return bool(self.result is not None and self.result.selected)

    @property
    def task_metrics(self) -> str:
        """``top1_agreement 0.998, psnr 41.2``: the task metrics (``TuneSpec(metric=...)``); '' when none."""
        if self.result is None:
            return ""
        return ", ".join(
            f"{m.name} {m.value:.4g}" + ("" if m.passed else " (FAILED its gate)") for m in self.result.task_metrics
        )


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

    def kind_badges(self) -> list[tuple[VerdictKind | str, int, Presentation]]:
        """``(kind, n, look)`` for each verdict kind among this fixture's checks, most severe first."""
        counts: dict[VerdictKind | str, int] = {}
        for r in self.rows:
            if r.verdict is not None:
                counts[r.kind] = counts.get(r.kind, 0) + 1
        return [(kind, n, presentation(kind)) for kind, n in counts.items()]


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
    #: ``(fixture, why)`` of each fixture that failed before any verdict (its fixture raised, its tune
    #: raised, its baseline or committed artifact is unusable): the run fails, whatever its verdicts say
    broken: tuple[tuple[str, str], ...] = ()
    #: Shards of a split (``--aitune-shard i/n``) that sent no results to a merge (``aitune-ci merge
    #: --allow-missing-shards``): their checks are not in the run, so it fails as a broken fixture does.
    missing_shards: tuple[int, ...] = ()
    #: ``{fixture: "winner changed: a -> b (…)"}`` against the baseline.
    winner_changes: Mapping[str, str] = field(default_factory=dict)
    #: ``{fixture: note}``: the artifact its baseline pins is not there, so nothing was timed against it.
    missing_artifacts: Mapping[str, str] = field(default_factory=dict)

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
            rows.sort(key=lambda r: (r.look.severity, r.backend))
            fixtures.append(FixtureView(name, result, tuple(rows), tuple(module_rows)))

        environment: dict[str, Any] = dict(results[0].environment) if results else {}
        spread: dict[str, tuple[Any, ...]] = {}
        for key in sorted({k for r in results for k in r.environment}):
            values = tuple(dict.fromkeys(r.environment.get(key) for r in results))
            if len(values) > 1 and (key in HARDWARE_FIELDS or key in software_fields({key: values})):
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
            broken=tuple((str(b["fixture"]), str(b["error"])) for b in run.get("broken", ())),
            missing_shards=tuple(int(i) for i in run.get("missing_shards", ())),
            winner_changes=dict(run.get("winner_changes", {})),
            missing_artifacts=dict(run.get("missing_artifacts", {})),
        )

    @property
    def counts(self) -> dict[str, int]:
        """Checks per outcome (``passed``, ``improved``, ``regressed``, ``failed``, ``new``, ``skipped``, ``quarantined``)."""
        return summary_counts(self.verdicts)

    @property
    def overall(self) -> VerdictKind | str:
        kind = overall_verdict(self.verdicts)
        if (self.broken or self.missing_shards) and kind is not VerdictKind.REGRESSED:
            return VerdictKind.FAILED  # a broken fixture or a lost shard fails the run as a failing backend does
        return kind

    @property
    def overall_look(self) -> Presentation:
        """How reports show the run's outcome: its overall kind's row, ``NO_CHECKS`` when there were none."""
        return presentation(self.overall)

    def count_badges(self) -> list[tuple[int, str, Presentation]]:
        """``(n, label, look)`` of every outcome with checks, in the order of ``counts``."""
        return [(n, label, _COUNT_PRESENTATION.get(label, NO_CHECKS)) for label, n in self.counts.items() if n]

    @property
    def failing(self) -> bool:
        """Whether this run fails CI (a regression or a new failure that is not quarantined, a broken
        fixture, or a shard that sent no results)."""
        return bool(self.broken or self.missing_shards) or any(v.fails for v in self.verdicts)

    @property
    def latency_unjudged(self) -> list[Verdict]:
        """The passes whose latency could have changed but was not judged (``Verdict.latency_unjudged``)."""
        return [v for v in self.verdicts if v.latency_unjudged is not None]

    @property
    def rows(self) -> list[BackendRow]:
        return [row for f in self.fixtures for row in f.rows]

    def software(self) -> list[tuple[str, Any]]:
        env = self.environment
        return [(k, env[k]) for k in software_fields(env) if env.get(k) not in (None, "")]

    def hardware(self) -> list[tuple[str, Any]]:
        return [(k, self.environment[k]) for k in HARDWARE_FIELDS if self.environment.get(k) not in (None, "")]

    def winners(self) -> dict[str, list[str]]:
        """Backend -> the fixtures it won (whole-model winners only)."""
        out: dict[str, list[str]] = {}
        for f in self.fixtures:
            if f.winner:
                out.setdefault(f.winner, []).append(f.name)
        return dict(sorted(out.items(), key=lambda kv: (-len(kv[1]), kv[0])))
