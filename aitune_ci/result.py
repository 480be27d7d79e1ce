"""Results of a tune: plain frozen data with ``to_json()`` / ``from_json()`` beside each type."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, TypeVar

from aitune_ci.errors import DataFileError
from aitune_ci.formatting import fmt_db, round_sig
from aitune_ci.status import BackendStatus

#: The backend name of the model with each submodule's winner swapped in (``modules=[...]``).
MIXED = "mixed"

__all__ = [
    "AccuracyReport",
    "BackendResult",
    "BackendStatus",
    "LatencyStats",
    "LeafMetrics",
    "RESULT_SCHEMA_VERSION",
    "TaskMetricValue",
    "TuneResult",
]

RESULT_SCHEMA_VERSION = 1


def _round_optional(x: float | None, digits: int = 6) -> float | None:
    """``round_sig`` that passes None through; NaN and ±inf stay, written as JSON's ``NaN``/``Infinity`` tokens."""
    return None if x is None else round_sig(x, digits)


@functools.cache
def _float_fields(cls: type) -> frozenset[str]:
    """The fields declared as floats (or tuples of them): the ones ``to_json`` rounds."""
    return frozenset(f.name for f in fields(cls) if "float" in str(f.type))


_T = TypeVar("_T", bound="_FieldsJson")


class _FieldsJson:
    """``to_json``/``from_json`` of a dataclass of plain fields: float fields rounded, tuples as lists."""

    def to_json(self) -> dict[str, Any]:
        rounded = _float_fields(type(self))
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [_round_optional(x) for x in value] if f.name in rounded else list(value)
            elif f.name in rounded:
                value = _round_optional(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls: type[_T], data: Mapping[str, Any]) -> _T:
        kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        for f in fields(cls):
            if str(f.type).startswith("tuple"):
                kwargs[f.name] = tuple(kwargs.get(f.name, ()))
        return cls(**kwargs)


@dataclass(frozen=True)
class LatencyStats(_FieldsJson):
    """Latency of one backend at one batch size, in milliseconds per call.

    ``round_medians_ms`` holds the median of each interleaved round: their spread is the
    between-window noise that a single window's CI understates.
    """

    median_ms: float
    mean_ms: float
    min_ms: float
    p90_ms: float
    p99_ms: float
    iqr_ms: float
    ci_low_ms: float
    ci_high_ms: float
    cv: float
    iterations: int
    rounds: int
    batch_size: int | None = None
    round_medians_ms: tuple[float, ...] = ()
    peak_memory_bytes: int | None = None
    #: cores' worth of CPU other processes took while this was measured with no core idle
    #: (``aitune_ci.cpu_load``); None where it could not be read
    cpu_contention: float | None = None

    @property
    def throughput(self) -> float | None:
        """Items per second at ``batch_size`` (None when the batch size is unknown)."""
        if not self.batch_size or self.median_ms <= 0:
            return None
        return self.batch_size * 1000.0 / self.median_ms


@dataclass(frozen=True)
class LeafMetrics(_FieldsJson):
    """How one output leaf (worst over all samples) compares with the fp32 eager reference."""

    path: str
    shape: tuple[int, ...]
    max_abs: float
    max_rel: float
    mean_abs: float
    cosine: float
    sqnr_db: float
    rmse_ratio: float | None
    nan_count: int
    inf_count: int
    passed: bool
    reason: str = ""
    worst_sample: int = 0
    #: max over elements of |cand - ref| / (atol + rtol·|ref|): allclose holds when <= 1
    #: (None when no atol/rtol applied). Needed because allclose is elementwise.
    allclose_ratio: float | None = None


@dataclass(frozen=True)
class AccuracyReport:
    """Every leaf's metrics, the gate that was applied, and the overall pass/fail."""

    passed: bool
    precision: str
    gate: str
    leaves: tuple[LeafMetrics, ...] = ()
    reason: str = ""
    samples_checked: int = 0

    @property
    def worst(self) -> LeafMetrics | None:
        """The leaf with the lowest SQNR (the one to show in a one-line summary)."""
        return min(self.leaves, key=lambda m: m.sqnr_db) if self.leaves else None

    def summary(self) -> str:
        w = self.worst
        if w is None:
            return self.reason or ("ok" if self.passed else "failed")
        return f"max_abs {w.max_abs:.2e}, SQNR {fmt_db(w.sqnr_db)} dB, cos {w.cosine:.5f}"

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "precision": self.precision,
            "gate": self.gate,
            "reason": self.reason,
            "samples_checked": self.samples_checked,
            "leaves": [leaf.to_json() for leaf in self.leaves],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccuracyReport:
        return cls(
            passed=data["passed"],
            precision=data["precision"],
            gate=data.get("gate", ""),
            reason=data.get("reason", ""),
            samples_checked=data.get("samples_checked", 0),
            leaves=tuple(LeafMetrics.from_json(x) for x in data.get("leaves", ())),
        )


@dataclass(frozen=True)
class TaskMetricValue(_FieldsJson):
    """One task metric of one backend (``TuneSpec(metric=...)``), with the gate it was judged by.

    ``max_drop`` is the tolerated worsening against the baseline (None: the relative default of
    ``aitune_ci.task_metric_gates``); ``passed``/``reason`` are the absolute gate's outcome.
    """

    name: str
    value: float
    higher_is_better: bool = True
    minimum: float | None = None
    maximum: float | None = None
    max_drop: float | None = None
    passed: bool = True
    reason: str = ""


@dataclass(frozen=True)
class BackendResult:
    """Everything measured for one backend of one model (or one submodule)."""

    backend: str
    status: BackendStatus
    precision: str = "fp32"
    description: str = ""
    module: str = ""
    build_s: float | None = None
    latency: LatencyStats | None = None
    sweep: tuple[LatencyStats, ...] = ()
    accuracy: AccuracyReport | None = None
    error: str | None = None
    selected: bool = False
    selection_note: str = ""
    #: how the build met the compile caches: cold | warm | none | reused (``verdict.metrics.BUILD_STATES``)
    build_cache: str | None = None
    #: peak bytes one call allocates above what was allocated before it (``aitune_ci.peak_memory``)
    peak_memory_bytes: int | None = None
    #: the winner only: seconds to load its ``.ait`` artifact, and its first call after that load
    load_s: float | None = None
    first_call_ms: float | None = None
    #: the user's task metrics on this backend's outputs (``TuneSpec(metric=...)``)
    task_metrics: tuple[TaskMetricValue, ...] = ()
    #: why this backend's win is implausible and needs a human look (``aitune_ci.sanity``); never selected
    review: str | None = None
    #: where the build came from instead of being built: ``artifact`` (the committed ``.ait``) or
    #: ``cache`` (the runner's build cache, ``store.build_cache``); None when it was built
    reused: str | None = None

    def __post_init__(self) -> None:
        # A plain string (``status="ok"``) becomes its member; an unknown one is refused here.
        object.__setattr__(self, "status", BackendStatus(self.status))

    @property
    def usable(self) -> bool:
        """Built, accurate and measured: a candidate for selection."""
        return self.status is BackendStatus.OK and self.latency is not None

    @property
    def throughput_by_batch(self) -> dict[int, float]:
        return {s.batch_size: s.throughput for s in self.sweep if s.batch_size and s.throughput}

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "status": self.status.value,
            "precision": self.precision,
            "description": self.description,
            "module": self.module,
            "build_s": _round_optional(self.build_s, 4),
            "latency": self.latency.to_json() if self.latency else None,
            "sweep": [s.to_json() for s in self.sweep],
            "accuracy": self.accuracy.to_json() if self.accuracy else None,
            "error": self.error,
            "selected": self.selected,
            "selection_note": self.selection_note,
            "build_cache": self.build_cache,
            "peak_memory_bytes": self.peak_memory_bytes,
            "load_s": _round_optional(self.load_s, 4),
            "first_call_ms": _round_optional(self.first_call_ms),
            **({"task_metrics": [m.to_json() for m in self.task_metrics]} if self.task_metrics else {}),
            **({"review": self.review} if self.review else {}),
            **({"reused": self.reused} if self.reused else {}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BackendResult:
        return cls(
            backend=data["backend"],
            status=BackendStatus(data["status"]),
            precision=data.get("precision", "fp32"),
            description=data.get("description", ""),
            module=data.get("module", ""),
            build_s=data.get("build_s"),
            latency=LatencyStats.from_json(data["latency"]) if data.get("latency") else None,
            sweep=tuple(LatencyStats.from_json(s) for s in data.get("sweep", ())),
            accuracy=AccuracyReport.from_json(data["accuracy"]) if data.get("accuracy") else None,
            error=data.get("error"),
            selected=data.get("selected", False),
            selection_note=data.get("selection_note", ""),
            build_cache=data.get("build_cache"),
            peak_memory_bytes=data.get("peak_memory_bytes"),
            load_s=data.get("load_s"),
            first_call_ms=data.get("first_call_ms"),
            task_metrics=tuple(TaskMetricValue.from_json(m) for m in data.get("task_metrics", ())),
            review=data.get("review"),
            reused=data.get("reused"),
        )


@dataclass(frozen=True)
class TuneResult:
    """The outcome of tuning one spec: every backend's result, the winner, and the environment.

    For module-level tuning, ``backends`` holds one row per (module, backend) with ``module`` set,
    plus whole-model rows with ``module == ""``; ``module_choice`` maps module -> winning backend.
    """

    name: str
    strategy: str
    device: str
    backends: tuple[BackendResult, ...]
    winner: str | None
    winner_reason: str
    environment: Mapping[str, Any]
    spec: Mapping[str, Any] = field(default_factory=dict)
    batch_axis: int | None = None
    dynamic_axes: Mapping[str, Any] = field(default_factory=dict)
    module_choice: Mapping[str, str] = field(default_factory=dict)
    #: GPU clocks/temperature/power/throttling per measurement block (empty on CPU)
    gpu_health: Mapping[str, Any] = field(default_factory=dict)
    #: digests of the weights' and the samples' values (``digests.inputs_fingerprint``)
    inputs: Mapping[str, str] = field(default_factory=dict)
    tune_s: float = 0.0
    created_at: str = ""
    #: not tuned in this run: the runner's earlier result of the same work (``store.result_cache``),
    #: tuned at ``created_at``
    result_reused: bool = False
    schema_version: int = RESULT_SCHEMA_VERSION
    #: In-process objects (built callables, the model, samples) for ``ait.save`` and paired
    #: comparisons; never serialized, absent on a result read from JSON.
    runtime: Any = field(default=None, compare=False, repr=False)

    def backend(self, name: str, module: str = "") -> BackendResult | None:
        """The result row of backend ``name`` (for ``module``, whole model by default)."""
        for b in self.backends:
            if b.backend == name and b.module == module:
                return b
        return None

    @property
    def reference(self) -> BackendResult | None:
        return self.backend("eager")

    def with_backends(self, backends: tuple[BackendResult, ...]) -> TuneResult:
        return replace(self, backends=backends)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "name": self.name,
            "strategy": self.strategy,
            "device": self.device,
            "winner": self.winner,
            "winner_reason": self.winner_reason,
            "module_choice": dict(self.module_choice),
            "gpu_health": dict(self.gpu_health),
            "inputs": dict(self.inputs),
            "batch_axis": self.batch_axis,
            "dynamic_axes": dict(self.dynamic_axes),
            "tune_s": _round_optional(self.tune_s, 4),
            "created_at": self.created_at,
            **({"result_reused": True} if self.result_reused else {}),
            "environment": dict(self.environment),
            "spec": dict(self.spec),
            "backends": [b.to_json() for b in self.backends],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "<result>") -> TuneResult:
        """Parse a result; an unknown schema or a malformed file raises DataFileError naming ``source``."""
        fix = "re-run the tune (`pytest --aitune` or `aitune-ci demo`) to regenerate it"
        if not isinstance(data, Mapping):
            raise DataFileError(source, f"expected a JSON object, found {type(data).__name__}", fix)
        version = data.get("schema_version")
        if version != RESULT_SCHEMA_VERSION:
            raise DataFileError(
                source, f"unknown result schema_version {version!r} (this aitune-ci reads {RESULT_SCHEMA_VERSION})", fix
            )
        try:
            return cls(
                name=data["name"],
                strategy=data["strategy"],
                device=data["device"],
                backends=tuple(BackendResult.from_json(b) for b in data["backends"]),
                winner=data.get("winner"),
                winner_reason=data.get("winner_reason", ""),
                environment=data.get("environment", {}),
                spec=data.get("spec", {}),
                batch_axis=data.get("batch_axis"),
                dynamic_axes=data.get("dynamic_axes", {}),
                module_choice=data.get("module_choice", {}),
                gpu_health=data.get("gpu_health", {}),
                inputs=data.get("inputs", {}),
                tune_s=data.get("tune_s", 0.0),
                created_at=data.get("created_at", ""),
                result_reused=bool(data.get("result_reused", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFileError(source, f"malformed result ({type(exc).__name__}: {exc})", fix) from None
