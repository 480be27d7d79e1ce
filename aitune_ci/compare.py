"""Two runs from different environments side by side: which drift is the framework's, which a backend's.

``aitune-ci compare OLD.json NEW.json`` answers "what did the upgrade (torch, CUDA, driver, a
library) change?" fixture by fixture and backend by backend. A raw latency change mixes two
causes, so it is split:

* **eager drift**: eager's median NEW / OLD per fixture. The framework (or the machine) got
  faster or slower for everything. It compares two processes, so it carries each process's own
  speed offset too (``run_noise`` is added for it, and a run measured under CPU contention is not
  judged): it says the framework moved, never by how much a backend is to blame.
* **backend drift**: (backend / eager in NEW) over (backend / eager in OLD). Inside one run the
  backends of a fixture are timed in interleaved rounds, so the per-round ratio cancels whatever
  moved the whole process, and a backend that only followed eager shows no drift.
* **compile-time drift**: build seconds NEW / OLD per backend. One build per side, so there is no
  confidence interval: a larger threshold and an absolute floor stand in for one.

Each ratio carries a 95% CI; a ratio whose CI includes 1 is "within noise", one outside it but
within the threshold is "under threshold", and only the rest is "slower" or "faster". Accuracy
moves (SQNR, cosine), backends that now fail, appeared, disappeared or became unavailable, winner
changes and the environment differences are listed beside them.

Pure: run JSON (as ``store.runs.load_run`` returns it) in, frozen dataclasses out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from statistics import NormalDist
from typing import Any

from aitune_ci.config import check_id
from aitune_ci.cpu_load import CONTENDED_CORES
from aitune_ci.environment import CPU_SPEED_FIELDS, software_fields
from aitune_ci.errors import AituneCIError
from aitune_ci.formatting import fmt_pct, round_sig
from aitune_ci.report.view import HARDWARE_FIELDS
from aitune_ci.result import BackendResult, LatencyStats, TuneResult
from aitune_ci.stats import paired_ratio
from aitune_ci.status import BackendStatus

__all__ = [
    "COMPARISON_KIND",
    "COMPARISON_SCHEMA_VERSION",
    "BackendComparison",
    "Change",
    "Comparison",
    "CompareSettings",
    "Drift",
    "Event",
    "EventKind",
    "FixtureComparison",
    "NothingToCompare",
    "build_change",
    "compare_runs",
    "describe",
    "latency_change",
    "relative_change",
]

#: Version of the comparison JSON that ``aitune-ci compare --output x.json`` writes.
COMPARISON_SCHEMA_VERSION = 1
#: The ``kind`` of a comparison JSON, so it is never mistaken for (or read as) a run file.
COMPARISON_KIND = "aitune-ci-compare"

_Z = NormalDist().inv_cdf(0.975)
#: Fewer round medians than this cannot give a paired (per-round) ratio with a CI worth the name.
_MIN_PAIRED_ROUNDS = 3


class NothingToCompare(AituneCIError, ValueError):
    """The two runs share no fixture (or one holds none): there is nothing to put side by side."""


class Drift(str, Enum):
    """The call made on one NEW / OLD ratio."""

    SLOWER = "slower"
    FASTER = "faster"
    #: the 95% CI includes 1: no change can be told from the noise
    NOISE = "within noise"
    #: a change beyond the noise, but within the threshold
    SMALL = "under threshold"
    #: measured on both sides, but not comparable as measured (contention); the note says why
    NOT_JUDGED = "not judged"
    #: missing on a side, or measured at another batch size; the note says why
    NOT_COMPARED = "not compared"

    def __str__(self) -> str:
        return self.value

    @property
    def moved(self) -> bool:
        """Beyond both the noise and the threshold."""
        return self in (Drift.SLOWER, Drift.FASTER)


class EventKind(str, Enum):
    """A change of a backend's state or accuracy between the runs."""

    NOW_FAILING = "now failing"
    ACCURACY_DROP = "accuracy dropped"
    NOW_UNAVAILABLE = "now unavailable"
    DISAPPEARED = "disappeared"
    APPEARED = "appeared"
    NOW_AVAILABLE = "now available"
    NOW_WORKING = "now working"

    def __str__(self) -> str:
        return self.value

    @property
    def bad(self) -> bool:
        """A loss: the backend no longer gives what it gave before."""
        return self in (
            EventKind.NOW_FAILING,
            EventKind.ACCURACY_DROP,
            EventKind.NOW_UNAVAILABLE,
            EventKind.DISAPPEARED,
        )


@dataclass(frozen=True)
class CompareSettings:
    """The thresholds of a comparison.

    Attributes:
        threshold: relative latency change (eager drift and backend drift) that counts, 0.05 = 5%.
        build_threshold: relative build-time change that counts. A single build per side has no
            CI, and compile times vary with caches and load, hence the larger default.
        min_build_change_s: build-time changes smaller than this many seconds never count (a
            0.2 ms eager "build" that doubles is not compile-time drift).
        run_noise: relative offset one process's speed can have, added for each side of a
            latency change across the two runs (eager drift, a backend's own time): one process
            cannot see its own offset. The default, 10%, is what this project measured between
            fresh processes of unchanged code: speed modes 25-45% apart on an H200 (launch-bound
            eager) and on a 2-core CPU (a µs-scale MLP). Backend drift is a ratio inside each
            process, so the offset cancels there and this does not apply. Lower it only for
            a machine whose process-to-process spread you measured.
        sqnr_drop_db: an SQNR drop larger than this (dB) is an accuracy drop.
        sqnr_ceiling_db: SQNR above this is float rounding; moves above it are not drops.
    """

    threshold: float = 0.05
    build_threshold: float = 0.20
    min_build_change_s: float = 0.1
    run_noise: float = 0.10
    sqnr_drop_db: float = 3.0
    sqnr_ceiling_db: float = 80.0

    def __post_init__(self) -> None:
        for name, value in self.to_json().items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"CompareSettings.{name} must be a finite number >= 0, got {value!r}")

    def to_json(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Change:
    """NEW over OLD of one measure (ms, a ratio to eager, or seconds), its 95% CI and the call made.

    ``ratio``/``ci`` are None where the measure is missing on a side; ``ci`` is None too for a
    measure taken once per side (a build).
    """

    old: float | None
    new: float | None
    drift: Drift
    ratio: float | None = None
    ci: tuple[float, float] | None = None
    note: str = ""

    @property
    def delta(self) -> float | None:
        """The relative change, +0.08 = 8% more (slower / longer)."""
        return None if self.ratio is None else self.ratio - 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "old": _round(self.old),
            "new": _round(self.new),
            "ratio": _round(self.ratio),
            "ci": None if self.ci is None else [_round(self.ci[0]), _round(self.ci[1])],
            "drift": self.drift.value,
            "note": self.note,
        }


@dataclass(frozen=True)
class Event:
    """One change of state or accuracy, in words."""

    kind: EventKind
    text: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind.value, "text": self.text}


@dataclass(frozen=True)
class BackendComparison:
    """One backend of one fixture (or submodule) in both runs.

    Attributes:
        latency: the backend's median NEW / OLD, all causes together (for eager: the eager drift).
        relative: backend drift, its ratio to eager NEW / OLD (None for eager itself).
        build: build seconds NEW / OLD.
    """

    fixture: str
    backend: str
    module: str
    old_status: str | None
    new_status: str | None
    latency: Change
    relative: Change | None
    build: Change
    old_sqnr_db: float | None = None
    new_sqnr_db: float | None = None
    old_cosine: float | None = None
    new_cosine: float | None = None
    events: tuple[Event, ...] = ()

    @property
    def check(self) -> str:
        """``tune_resnet[inductor]``, or ``tune_resnet/backbone[inductor]`` for a submodule."""
        return check_id(f"{self.fixture}/{self.module}" if self.module else self.fixture, self.backend)

    @property
    def backend_drift(self) -> bool:
        """Slower relative to eager beyond the noise and the threshold (what ``--fail-on-drift`` fails on)."""
        return self.relative is not None and self.relative.drift is Drift.SLOWER

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "fixture": self.fixture,
            "backend": self.backend,
            "module": self.module,
            "old_status": self.old_status,
            "new_status": self.new_status,
            "latency": self.latency.to_json(),
            "backend_drift": None if self.relative is None else self.relative.to_json(),
            "build": self.build.to_json(),
            "accuracy": {
                "old_sqnr_db": _round(self.old_sqnr_db),
                "new_sqnr_db": _round(self.new_sqnr_db),
                "old_cosine": _round(self.old_cosine, 9),
                "new_cosine": _round(self.new_cosine, 9),
            },
            "events": [e.to_json() for e in self.events],
        }


@dataclass(frozen=True)
class FixtureComparison:
    """One fixture in both runs: its eager drift, its winners and every backend's comparison."""

    name: str
    eager: Change
    old_winner: str | None
    new_winner: str | None
    rows: tuple[BackendComparison, ...]
    old_module_choice: Mapping[str, str] = field(default_factory=dict)
    new_module_choice: Mapping[str, str] = field(default_factory=dict)
    #: which of the model's ``weights`` and ``samples`` digests differ: then more than the environment changed
    inputs_changed: tuple[str, ...] = ()

    @property
    def winner_changed(self) -> bool:
        return self.old_winner != self.new_winner or dict(self.old_module_choice) != dict(self.new_module_choice)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "eager_drift": self.eager.to_json(),
            "old_winner": self.old_winner,
            "new_winner": self.new_winner,
            "old_module_choice": dict(self.old_module_choice),
            "new_module_choice": dict(self.new_module_choice),
            "winner_changed": self.winner_changed,
            "inputs_changed": list(self.inputs_changed),
            "backends": [r.to_json() for r in self.rows],
        }


@dataclass(frozen=True)
class Comparison:
    """Everything ``aitune-ci compare`` reports; the renderers and the exit status read only this."""

    old_label: str
    new_label: str
    settings: CompareSettings
    fixtures: tuple[FixtureComparison, ...]
    #: ``(field, OLD value, NEW value)`` for every hardware or software field that differs
    environment: tuple[tuple[str, Any, Any], ...]
    old_environment: Mapping[str, Any]
    new_environment: Mapping[str, Any]
    only_old: tuple[str, ...] = ()
    only_new: tuple[str, ...] = ()
    #: fields on which one side's fixtures disagree among themselves (merged shards of two machines)
    spread: tuple[str, ...] = ()

    @property
    def hardware_differs(self) -> bool:
        """The runs come from different hardware: every latency ratio then mixes the hardware in."""
        return self.old_environment.get("hardware_key") != self.new_environment.get("hardware_key")

    @property
    def rows(self) -> list[BackendComparison]:
        return [r for f in self.fixtures for r in f.rows]

    @property
    def backend_drifts(self) -> list[BackendComparison]:
        """Backends slower relative to eager beyond noise and threshold: what ``--fail-on-drift`` fails on."""
        return [r for r in self.rows if r.backend_drift]

    @property
    def breakages(self) -> list[tuple[BackendComparison, Event]]:
        """Backends now failing or less accurate: an upgrade that breaks a backend is worse than drift."""
        return [(r, e) for r, e in self.events if e.kind in (EventKind.NOW_FAILING, EventKind.ACCURACY_DROP)]

    @property
    def eager_drifts(self) -> list[FixtureComparison]:
        return [f for f in self.fixtures if f.eager.drift.moved]

    @property
    def build_drifts(self) -> list[BackendComparison]:
        return [r for r in self.rows if r.build.drift.moved]

    @property
    def events(self) -> list[tuple[BackendComparison, Event]]:
        return [(r, e) for r in self.rows for e in r.events]

    @property
    def winner_changes(self) -> list[FixtureComparison]:
        return [f for f in self.fixtures if f.winner_changed]

    def summary(self) -> str:
        """One line: ``1 backend slower vs eager, 0 backends faster vs eager, 1 fixture with eager drift, ...``."""
        parts = [
            _count(len(self.backend_drifts), "backend slower vs eager", "backends slower vs eager"),
            _count(len([r for r in self.rows if r.relative is not None and r.relative.drift is Drift.FASTER]),
                   "backend faster vs eager", "backends faster vs eager"),
            _count(len(self.eager_drifts), "fixture with eager drift", "fixtures with eager drift"),
            _count(len(self.build_drifts), "compile-time drift", "compile-time drifts"),
            _count(len({r.check for r, e in self.events if e.kind.bad}), "backend lost ground", "backends lost ground"),
            _count(len(self.winner_changes), "winner change", "winner changes"),
        ]  # fmt: skip
        return ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": COMPARISON_SCHEMA_VERSION,
            "kind": COMPARISON_KIND,
            "old": self.old_label,
            "new": self.new_label,
            "settings": self.settings.to_json(),
            "hardware_differs": self.hardware_differs,
            "environment_differences": [{"field": k, "old": old, "new": new} for k, old, new in self.environment],
            "environment_spread": list(self.spread),
            "old_environment": dict(self.old_environment),
            "new_environment": dict(self.new_environment),
            "only_old": list(self.only_old),
            "only_new": list(self.only_new),
            "summary": self.summary(),
            "backend_drift": [r.check for r in self.backend_drifts],
            "fixtures": [f.to_json() for f in self.fixtures],
        }


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round_sig(float(x), digits)


# -- the statistics ---------------------------------------------------------------------------


def _log_se(center: float, low: float, high: float) -> float | None:
    """The standard error of ``log(center)`` read from its 95% CI (widened to contain it)."""
    values = (center, low, high)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        return None
    return (math.log(max(high, center)) - math.log(min(low, center))) / (2.0 * _Z)


def _classify(d: float, se: float, threshold: float) -> Drift:
    """The call on log-ratio ``d`` of standard error ``se``: noise first, then the threshold."""
    if d - _Z * se <= 0.0 <= d + _Z * se:
        return Drift.NOISE
    if abs(d) <= math.log1p(threshold):
        return Drift.SMALL
    return Drift.SLOWER if d > 0 else Drift.FASTER


def _ci(d: float, se: float) -> tuple[float, float]:
    return math.exp(d - _Z * se), math.exp(d + _Z * se)


def _latency_se(lat: LatencyStats) -> float:
    se = _log_se(lat.median_ms, lat.ci_low_ms, lat.ci_high_ms)
    return se if se is not None else 0.0


def _missing(what: str, old: object, new: object, old_label: str, new_label: str) -> str:
    sides = [label for label, value in ((old_label, old), (new_label, new)) if value is None]
    return f"{what} not measured in {' and '.join(sides)}"


def latency_change(
    old: LatencyStats | None,
    new: LatencyStats | None,
    settings: CompareSettings,
    labels: tuple[str, str] = ("OLD", "NEW"),
) -> Change:
    """One backend's median NEW / OLD across two processes (eager's is the eager drift).

    Each side's SE comes from its median's CI; ``settings.run_noise`` is added per side, since a
    process's own speed offset cannot be seen from inside it. Under CPU contention the ratio is
    shown but not judged.
    """
    old_ms = old.median_ms if old is not None else None
    new_ms = new.median_ms if new is not None else None
    if old is None or new is None or not (old.median_ms > 0 and new.median_ms > 0):
        return Change(old_ms, new_ms, Drift.NOT_COMPARED, note=_missing("latency", old_ms, new_ms, *labels))
    if old.batch_size is not None and new.batch_size is not None and old.batch_size != new.batch_size:
        return Change(
            old_ms, new_ms, Drift.NOT_COMPARED, note=f"measured at batch size {old.batch_size} vs {new.batch_size}"
        )
    d = math.log(new.median_ms / old.median_ms)
    se = math.sqrt(_latency_se(old) ** 2 + _latency_se(new) ** 2 + 2 * settings.run_noise**2)
    busy = [
        f"{cores:.2f} CPU cores in {label}"
        for label, cores in zip(labels, (old.cpu_contention, new.cpu_contention), strict=True)
        if cores is not None and cores > CONTENDED_CORES
    ]
    if busy:
        note = (
            "other processes took " + " and ".join(busy) + " with no core idle while it was measured; "
            "compare runs from a quiet machine (backend drift cancels this)"
        )
        return Change(old_ms, new_ms, Drift.NOT_JUDGED, math.exp(d), _ci(d, se), note)
    return Change(old_ms, new_ms, _classify(d, se, settings.threshold), math.exp(d), _ci(d, se))


def _vs_eager(backend: LatencyStats, eager: LatencyStats) -> tuple[float, float, bool]:
    """Backend / eager in one run: ``(ratio, SE of its log, paired)``.

    Paired when both hold the same number of round medians (timed in the same interleaved rounds):
    the median of the per-round ratios, so what moved the whole process cancels. Else the ratio of
    the medians, with both medians' SEs.
    """
    b, e = backend.round_medians_ms, eager.round_medians_ms
    if len(b) == len(e) >= _MIN_PAIRED_ROUNDS and min(b) > 0 and min(e) > 0:
        est = paired_ratio(e, b)
        se = _log_se(est.ratio, est.ci_low, est.ci_high)
        return est.ratio, se if se is not None else 0.0, True
    ratio = backend.median_ms / eager.median_ms
    return ratio, math.sqrt(_latency_se(backend) ** 2 + _latency_se(eager) ** 2), False


def relative_change(
    old: LatencyStats | None,
    old_eager: LatencyStats | None,
    new: LatencyStats | None,
    new_eager: LatencyStats | None,
    settings: CompareSettings,
    labels: tuple[str, str] = ("OLD", "NEW"),
) -> Change:
    """Backend drift: (backend / eager) NEW over OLD, each side's ratio taken within its own run."""
    sides = []
    for label, lat, eager in ((labels[0], old, old_eager), (labels[1], new, new_eager)):
        if lat is None or eager is None or not (lat.median_ms > 0 and eager.median_ms > 0):
            what = "this backend's latency" if lat is None or not lat.median_ms > 0 else "eager's latency"
            sides.append((label, None, what))
        else:
            sides.append((label, _vs_eager(lat, eager), ""))
    old_r, new_r = sides[0][1], sides[1][1]
    if old_r is None or new_r is None:
        missing = "; ".join(f"{what} not measured in {label}" for label, r, what in sides if r is None)
        return Change(old_r[0] if old_r else None, new_r[0] if new_r else None, Drift.NOT_COMPARED, note=missing)
    for label, lat, eager in ((labels[0], old, old_eager), (labels[1], new, new_eager)):
        assert lat is not None and eager is not None
        if lat.batch_size is not None and eager.batch_size is not None and lat.batch_size != eager.batch_size:
            return Change(
                old_r[0], new_r[0], Drift.NOT_COMPARED, note=f"in {label}, eager and this backend ran other batch sizes"
            )
    d = math.log(new_r[0] / old_r[0])
    se = math.sqrt(old_r[1] ** 2 + new_r[1] ** 2)
    note = "" if old_r[2] and new_r[2] else "rounds not paired in both runs: ratio of medians, wider CI"
    return Change(old_r[0], new_r[0], _classify(d, se, settings.threshold), math.exp(d), _ci(d, se), note)


def build_change(
    old_s: float | None,
    new_s: float | None,
    settings: CompareSettings,
    old_state: str | None = None,
    new_state: str | None = None,
) -> Change:
    """Compile-time drift: build seconds NEW / OLD. One build per side: no CI, so the threshold and
    an absolute floor (``min_build_change_s``) decide alone.

    Only builds that met the compile caches alike are compared (``BackendResult.build_cache``, as
    the verdicts' build-time gate does): a build loaded from the build cache against a fresh one
    read 0.686 -> 0.0528 s, counted as drift, in a new user's compare of two runs.
    """
    if old_s is None or new_s is None:
        return Change(old_s, new_s, Drift.NOT_COMPARED, note="build time not recorded on both sides")
    if "reused" in (old_state, new_state):
        side = "NEW" if new_state == "reused" else "OLD"
        return Change(old_s, new_s, Drift.NOT_COMPARED, note=f"{side} loaded an earlier build instead of building")
    if old_state is not None and new_state is not None and old_state != new_state:
        return Change(old_s, new_s, Drift.NOT_COMPARED, note=f"OLD built {old_state}, NEW {new_state} (compile cache)")
    ratio = new_s / old_s if old_s > 0 else None
    if abs(new_s - old_s) < settings.min_build_change_s:
        return Change(old_s, new_s, Drift.SMALL, ratio, note=f"changed by less than {settings.min_build_change_s:g} s")
    if ratio is not None and ratio > 0 and abs(math.log(ratio)) <= math.log1p(settings.build_threshold):
        return Change(old_s, new_s, Drift.SMALL, ratio, note="one build per side: no CI")
    return Change(
        old_s, new_s, Drift.SLOWER if new_s > old_s else Drift.FASTER, ratio, note="one build per side: no CI"
    )


# -- states and accuracy ----------------------------------------------------------------------


def _sqnr(r: BackendResult | None) -> float | None:
    worst = r.accuracy.worst if r is not None and r.accuracy is not None else None
    return worst.sqnr_db if worst is not None else None


def _cosine(r: BackendResult | None) -> float | None:
    if r is None or r.accuracy is None or not r.accuracy.leaves:
        return None
    return min(leaf.cosine for leaf in r.accuracy.leaves)


def _why(r: BackendResult) -> str:
    if r.error:
        return r.error.strip().splitlines()[0] if r.error.strip() else r.status.value
    if r.accuracy is not None and not r.accuracy.passed:
        return r.accuracy.reason or r.accuracy.summary()
    return r.status.value


def _events(
    old: BackendResult | None, new: BackendResult | None, settings: CompareSettings, labels: tuple[str, str]
) -> tuple[Event, ...]:
    """What changed about a backend's state and accuracy, worst first."""
    if old is None and new is not None:
        return (Event(EventKind.APPEARED, f"only in {labels[1]} ({new.status.value})"),)
    if new is None and old is not None:
        return (Event(EventKind.DISAPPEARED, f"only in {labels[0]} ({old.status.value})"),)
    assert old is not None and new is not None
    events = []
    was, now = old.status, new.status
    if now is BackendStatus.UNAVAILABLE and was is not BackendStatus.UNAVAILABLE:
        events.append(Event(EventKind.NOW_UNAVAILABLE, _why(new)))
    elif was is BackendStatus.UNAVAILABLE and now is not BackendStatus.UNAVAILABLE:
        events.append(Event(EventKind.NOW_AVAILABLE, now.value))
    elif now.broken and not was.broken:
        events.append(Event(EventKind.NOW_FAILING, f"{now.value}: {_why(new)}"))
    elif was.broken and not now.broken:
        events.append(Event(EventKind.NOW_WORKING, f"was {was.value}: {_why(old)}"))
    old_db, new_db = _sqnr(old), _sqnr(new)
    if old_db is not None and new_db is not None and not (math.isnan(old_db) or math.isnan(new_db)):
        ceiling = settings.sqnr_ceiling_db
        drop = min(old_db, ceiling) - min(new_db, ceiling)
        if drop > settings.sqnr_drop_db:
            events.append(
                Event(
                    EventKind.ACCURACY_DROP,
                    f"SQNR {_db(old_db)} → {_db(new_db)} dB (limit {settings.sqnr_drop_db:g} dB)",
                )
            )
    return tuple(events)


def _db(x: float) -> str:
    return "inf" if x == math.inf else f"{x:.1f}"


# -- the comparison ---------------------------------------------------------------------------


def _results(run: Mapping[str, Any], label: str) -> dict[str, TuneResult]:
    return {r.name: r for r in (TuneResult.from_json(x, source=label) for x in run.get("results", ()))}


def _keys(result: TuneResult) -> list[tuple[str, str]]:
    """``(module, backend)`` of every row, in the run's order."""
    return list(dict.fromkeys((b.module, b.backend) for b in result.backends))


def _latency(r: BackendResult | None) -> LatencyStats | None:
    return r.latency if r is not None and r.latency is not None and r.status.ran else None


def _fixture(old: TuneResult, new: TuneResult, settings: CompareSettings, labels: tuple[str, str]) -> FixtureComparison:
    rows = []
    eager_drift: Change | None = None
    # whole model first, then each submodule; eager first within each (a stable sort keeps the run's order)
    keys = sorted(dict.fromkeys(_keys(old) + _keys(new)), key=lambda k: (k[0] != "", k[0], k[1] != "eager"))
    for module, backend in keys:
        o, n = old.backend(backend, module), new.backend(backend, module)
        o_eager, n_eager = _latency(old.backend("eager", module)), _latency(new.backend("eager", module))
        latency = latency_change(_latency(o), _latency(n), settings, labels)
        relative = (
            None
            if backend == "eager"
            else relative_change(_latency(o), o_eager, _latency(n), n_eager, settings, labels)
        )
        if backend == "eager" and module == "":
            eager_drift = latency
        rows.append(
            BackendComparison(
                fixture=old.name,
                backend=backend,
                module=module,
                old_status=o.status.value if o is not None else None,
                new_status=n.status.value if n is not None else None,
                latency=latency,
                relative=relative,
                build=build_change(
                    o.build_s if o else None,
                    n.build_s if n else None,
                    settings,
                    o.build_cache if o else None,
                    n.build_cache if n else None,
                ),
                old_sqnr_db=_sqnr(o),
                new_sqnr_db=_sqnr(n),
                old_cosine=_cosine(o),
                new_cosine=_cosine(n),
                events=_events(o, n, settings, labels),
            )
        )
    if eager_drift is None:
        eager_drift = Change(None, None, Drift.NOT_COMPARED, note="no eager backend in either run")
    return FixtureComparison(
        name=old.name,
        eager=eager_drift,
        old_winner=old.winner,
        new_winner=new.winner,
        rows=tuple(rows),
        old_module_choice=dict(old.module_choice),
        new_module_choice=dict(new.module_choice),
        inputs_changed=tuple(
            k
            for k in ("weights", "samples")
            if old.inputs.get(k) and new.inputs.get(k) and old.inputs[k] != new.inputs[k]
        ),
    )


def _environment_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Every hardware and software field either side records, in the order reports show them."""
    ordered = ["device_type", *HARDWARE_FIELDS, *CPU_SPEED_FIELDS]
    ordered += [k for k in software_fields({**old, **new})]
    return list(dict.fromkeys(k for k in ordered if k in old or k in new))


def _spread(results: Sequence[TuneResult], fields: Sequence[str]) -> set[str]:
    return {k for k in fields if len({repr(r.environment.get(k)) for r in results}) > 1}


def compare_runs(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    settings: CompareSettings | None = None,
    *,
    old_label: str = "OLD",
    new_label: str = "NEW",
) -> Comparison:
    """Compare two run JSONs fixture by fixture and backend by backend.

    Args:
        old, new: run JSONs (``store.runs.load_run``'s output), e.g. before and after an upgrade.
        settings: thresholds; default ``CompareSettings()``.
        old_label, new_label: how the two runs are named in notes and errors (their file names).

    Raises:
        NothingToCompare: a run holds no results, or the two share no fixture.
        DataFileError: a result in either run is malformed.
    """
    settings = settings or CompareSettings()
    labels = (old_label, new_label)
    old_results, new_results = _results(old, old_label), _results(new, new_label)
    for label, results in ((old_label, old_results), (new_label, new_results)):
        if not results:
            raise NothingToCompare(
                f"{label} holds no tune results: re-run `pytest --aitune --aitune-report {label}` on a repo with "
                "tune fixtures (did any tune_* fixture run?)"
            )
    common = [name for name in old_results if name in new_results]
    if not common:
        raise NothingToCompare(
            f"{old_label} and {new_label} have no fixture in common ({old_label}: {', '.join(sorted(old_results))}; "
            f"{new_label}: {', '.join(sorted(new_results))}): compare two runs of the same tune fixtures"
        )
    fixtures = tuple(_fixture(old_results[n], new_results[n], settings, labels) for n in common)
    old_env = dict(old_results[common[0]].environment)
    new_env = dict(new_results[common[0]].environment)
    fields = _environment_fields(old_env, new_env)
    differences = tuple((k, old_env.get(k), new_env.get(k)) for k in fields if old_env.get(k) != new_env.get(k))
    spread = _spread([old_results[n] for n in common], fields) | _spread([new_results[n] for n in common], fields)
    return Comparison(
        old_label=old_label,
        new_label=new_label,
        settings=settings,
        fixtures=fixtures,
        environment=differences,
        old_environment=old_env,
        new_environment=new_env,
        only_old=tuple(n for n in old_results if n not in new_results),
        only_new=tuple(n for n in new_results if n not in old_results),
        spread=tuple(k for k in fields if k in spread),
    )


def describe(change: Change) -> str:
    """``+12.3% (95% CI +8.1% … +16.6%), slower``: one ratio in words, for notes and tables."""
    if change.ratio is None:
        return str(change.drift) + (f": {change.note}" if change.note else "")
    text = fmt_pct(change.delta)
    if change.ci is not None:
        text += f" (95% CI {fmt_pct(change.ci[0] - 1)} … {fmt_pct(change.ci[1] - 1)})"
    return f"{text}, {change.drift}"
