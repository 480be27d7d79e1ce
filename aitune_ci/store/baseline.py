"""Committed baselines: one diff-friendly JSON file per fixture per hardware key, written atomically.

Layout: ``<aitune-dir>/baselines/<hardware-key>/<fixture>.json``. Keys are sorted, floats keep 6
significant digits and non-finite floats are written as the strings ``"inf"``, ``"-inf"``, ``"nan"``
so that the file is strict JSON. Each backend keeps the distribution summary a verdict needs (the
median of every measurement round, not just a mean) and a short history of the between-round
spread seen in earlier runs, from which the verdict estimates between-run noise.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aitune_ci.atomic import atomic_write_text, ensure_gitignore, locked
from aitune_ci.errors import DataFileError
from aitune_ci.formatting import strict_number
from aitune_ci.result import AccuracyReport, BackendResult, LatencyStats, TuneResult
from aitune_ci.stats import log_spread
from aitune_ci.status import BackendStatus

__all__ = [
    "BASELINE_SCHEMA_VERSION",
    "NOISE_HISTORY_MAX",
    "AccuracySummary",
    "BackendBaseline",
    "BackendMetrics",
    "Baseline",
    "BaselineStore",
    "BaselineWork",
    "LatencySummary",
    "backend_key",
    "update_command",
]

BASELINE_SCHEMA_VERSION = 1

#: How many past runs' spreads a backend keeps: enough for a stable noise estimate, short enough
#: that a machine that became quieter (or noisier) shows within a couple of weeks of nightlies.
NOISE_HISTORY_MAX = 20

#: Errors are stored for the report, cut so that a traceback does not bloat the diff.
_ERROR_MAX_CHARS = 500

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


def update_command(fixture: str, *, new_only: bool = False) -> str:
    """The command that (re)writes the baseline of ``fixture`` (only if missing, with ``new_only``).

    ``--aitune-fixtures`` selects by exact name: ``-k tune_lin`` would also rewrite ``tune_lin_big``.
    """
    flag = "--aitune-update-new-only" if new_only else "--aitune-update"
    return f"pytest --aitune {flag} --aitune-fixtures {fixture}"


def backend_key(backend: str, module: str = "") -> str:
    """Key of a result row in ``Baseline.backends``: ``inductor``, or ``backbone/inductor`` for a submodule."""
    return f"{module}/{backend}" if module else backend


def _copy_fields(cls: type, source: object, **values: Any) -> Any:
    """A ``cls`` from the same-named attributes of ``source``; ``values`` give the rest or override."""
    return cls(**{f.name: getattr(source, f.name) for f in fields(cls) if f.name not in values}, **values)


@dataclass(frozen=True)
class LatencySummary:
    """The latency distribution summary kept in a baseline (milliseconds per call).

    ``round_medians_ms`` is what the verdict's variance estimate is built from: the spread of round
    medians shows window-to-window drift that one window's CI hides.
    """

    median_ms: float
    p90_ms: float
    ci_low_ms: float
    ci_high_ms: float
    cv: float
    iterations: int
    rounds: int
    round_medians_ms: tuple[float, ...] = ()
    batch_size: int | None = None
    cpu_contention: float | None = None

    @classmethod
    def from_stats(cls, stats: LatencyStats) -> LatencySummary:
        """The part of a run's ``LatencyStats`` that a later verdict compares against."""
        return _copy_fields(cls, stats, round_medians_ms=tuple(stats.round_medians_ms))

    @property
    def spread(self) -> float | None:
        """Relative spread between this run's rounds (see ``aitune_ci.stats.log_spread``)."""
        return log_spread(self.round_medians_ms)


@dataclass(frozen=True)
class AccuracySummary:
    """The accuracy gate's outcome and its worst leaf (lowest SQNR) against the eager reference."""

    passed: bool
    max_abs: float | None = None
    sqnr_db: float | None = None
    cosine: float | None = None
    rmse_ratio: float | None = None

    @classmethod
    def from_report(cls, report: AccuracyReport) -> AccuracySummary:
        """The gate's outcome with the metrics of its worst leaf."""
        worst = report.worst
        if worst is None:
            return cls(passed=report.passed)
        return _copy_fields(cls, worst, passed=report.passed)


@dataclass(frozen=True)
class BackendMetrics:
    """The gated metrics beyond latency of one backend (``aitune_ci.verdict.metrics``); None: not measured.

    ``throughput_by_batch`` maps each batch size of the sweep to items per second.
    """

    build_s: float | None = None
    build_cache: str | None = None
    load_s: float | None = None
    first_call_ms: float | None = None
    peak_memory_bytes: int | None = None
    throughput_by_batch: Mapping[int, float] = field(default_factory=dict)

    @classmethod
    def from_result(cls, row: BackendResult) -> BackendMetrics:
        return cls(
            build_s=row.build_s,
            build_cache=row.build_cache,
            load_s=row.load_s,
            first_call_ms=row.first_call_ms,
            peak_memory_bytes=row.peak_memory_bytes,
            throughput_by_batch=dict(sorted(row.throughput_by_batch.items())),
        )

    def to_dict(self) -> dict[str, Any]:
        """Only the recorded values: a backend that measured none writes no ``metrics`` key."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "throughput_by_batch"}
        out = {k: v for k, v in out.items() if v is not None}
        if self.throughput_by_batch:
            out["throughput_by_batch"] = {str(b): v for b, v in sorted(self.throughput_by_batch.items())}
        return out


@dataclass(frozen=True)
class BackendBaseline:
    """What one backend did when the baseline was written, plus its noise history.

    Attributes:
        noise_history: the between-round relative spread (``stats.log_spread``) of recent runs, oldest
            first, at most ``NOISE_HISTORY_MAX``; the verdict uses it as the between-run noise so
            that one quiet run does not produce false confidence.
        run_medians_ms: the medians of recent updates measured on the same weights and samples,
            oldest first, at most ``NOISE_HISTORY_MAX``: separate processes timing the same thing,
            so their spread *is* the between-run noise a stored-baseline verdict must clear (a
            process's offset is invisible inside the process). Restarts when the inputs change.
        metrics: the gated metrics beyond latency (``BackendMetrics``); empty in baselines written
            before they were recorded, which still load.
    """

    status: BackendStatus
    precision: str = "fp32"
    latency: LatencySummary | None = None
    accuracy: AccuracySummary | None = None
    error: str | None = None
    noise_history: tuple[float, ...] = ()
    run_medians_ms: tuple[float, ...] = ()
    metrics: BackendMetrics = field(default_factory=BackendMetrics)
    #: the task metrics' values (``TuneSpec(metric=...)``) by name; empty in older baselines, which still load
    task_metrics: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # A plain string (``status="ok"``) becomes its member, so ``is`` comparisons hold everywhere.
        object.__setattr__(self, "status", BackendStatus(self.status))

    @classmethod
    def from_result(
        cls, row: BackendResult, previous: BackendBaseline | None = None, *, same_inputs: bool = True
    ) -> BackendBaseline:
        """Summarize ``row``, appending its round spread and median to ``previous``'s histories.

        ``same_inputs=False`` (the weights or samples changed) restarts the run medians: another
        model's medians say nothing about this one's noise.
        """
        history = list(previous.noise_history) if previous is not None else []
        medians = list(previous.run_medians_ms) if previous is not None and same_inputs else []
        latency = LatencySummary.from_stats(row.latency) if row.latency is not None else None
        if row.status == BackendStatus.OK and latency is not None:
            if latency.spread is not None:
                history.append(latency.spread)
            medians.append(latency.median_ms)
        error = row.error
        if error is not None and len(error) > _ERROR_MAX_CHARS:
            error = error[: _ERROR_MAX_CHARS - 3] + "..."
        return cls(
            status=row.status,
            precision=row.precision,
            latency=latency,
            accuracy=AccuracySummary.from_report(row.accuracy) if row.accuracy is not None else None,
            error=error,
            noise_history=tuple(history[-NOISE_HISTORY_MAX:]),
            run_medians_ms=tuple(medians[-NOISE_HISTORY_MAX:]),
            metrics=BackendMetrics.from_result(row),
            task_metrics={m.name: m.value for m in row.task_metrics},
        )

    @property
    def worked(self) -> bool:
        """Built, accurate and measured when the baseline was written."""
        return self.status is BackendStatus.OK


@dataclass(frozen=True)
class BaselineWork:
    """The work the latest update of a baseline tuned: its work key and the result rows it wrote.

    A later check whose own work key (``store.artifact.hashing.work_key``: code, weights, samples,
    options, environment) equals ``key`` and that checks only ``backends`` does the very work whose
    figures the baseline holds, so timing it against them could only measure noise (``check``).
    The rows' names matter because an update deselected with ``-k`` keeps the same key yet rewrites
    only the rows it tuned, and one on a machine where a backend is unavailable keeps that row's
    figures from elsewhere; the others hold another update's figures.

    The file records a digest of all of it as written, the record's key and rows included (``sha256``):
    a file edited by hand or merged since no longer holds what that work measured, so its record is
    read as not ``intact`` and answers for nothing, and it is not written again.
    """

    key: str
    backends: tuple[str, ...]
    intact: bool = True

    def covers(self, key: str, backends: Collection[str]) -> bool:
        """Whether ``backends`` tuned as the work ``key`` names are all rows this update wrote, as written."""
        return self.intact and key == self.key and set(backends) <= set(self.backends)


@dataclass(frozen=True)
class Baseline:
    """The committed baseline of one fixture on one hardware key."""

    fixture: str
    hardware_key: str
    environment: Mapping[str, Any]
    updated_at: str
    winner: str | None
    backends: Mapping[str, BackendBaseline]
    module_choice: Mapping[str, str] = field(default_factory=dict)
    artifact_sha256: str | None = None
    #: digests of the weights' and the samples' values the baseline was measured on
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: what the latest update tuned; None in baselines written before it was recorded, or when the
    #: update could not take its work key (task metrics, an unhashable spec)
    work: BaselineWork | None = None
    schema_version: int = BASELINE_SCHEMA_VERSION

    @classmethod
    def from_result(
        cls,
        result: TuneResult,
        previous: Baseline | None = None,
        *,
        artifact_sha256: str | None = None,
        updated_at: str | None = None,
        keep_unavailable: bool = True,
        declared: Collection[str] | None = None,
        work_key: str | None = None,
    ) -> Baseline:
        """The baseline to write after ``result``, merged into ``previous``.

        Backends absent from ``result`` (filtered out by ``--aitune-backends``) keep their previous
        entries; each backend's noise history is carried forward. With ``keep_unavailable``, a
        backend that is unavailable on this run keeps its previous entry, so updating on a machine
        without e.g. onnxruntime does not erase what another machine measured. ``declared`` (the
        backends the spec declares now) drops the entries of backends the spec no longer has:
        otherwise the baseline would plan their items, and skip them, on every later run.
        """
        hardware_key = result.environment.get("hardware_key")
        if not isinstance(hardware_key, str) or not hardware_key:
            raise ValueError(f"result {result.name!r} has no environment['hardware_key']; cannot place its baseline")
        backends: dict[str, BackendBaseline] = dict(previous.backends) if previous is not None else {}
        if declared is not None:
            kept = {*declared, "eager", "mixed"}
            backends = {key: b for key, b in backends.items() if key.rsplit("/", 1)[-1] in kept}
        same_inputs = previous is None or not previous.inputs_changed(result)
        written = []  # whole-model rows that hold this run's figures, or (kept, unavailable) none at all
        for row in result.backends:
            key = backend_key(row.backend, row.module)
            old = backends.get(key)
            if keep_unavailable and row.status == BackendStatus.UNAVAILABLE and old is not None:
                if not row.module and not old.worked:
                    written.append(row.backend)
                continue
            backends[key] = BackendBaseline.from_result(row, old, same_inputs=same_inputs)
            if not row.module:
                written.append(row.backend)
        return cls(
            fixture=result.name,
            hardware_key=hardware_key,
            environment=dict(result.environment),
            updated_at=updated_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            winner=result.winner,
            backends=dict(sorted(backends.items())),
            module_choice=dict(result.module_choice),
            artifact_sha256=artifact_sha256,
            inputs=dict(result.inputs),
            work=BaselineWork(work_key, tuple(sorted(set(written)))) if work_key else None,
        )

    def inputs_changed(self, result: TuneResult) -> list[str]:
        """Which of the weights and samples differ between this baseline and ``result`` (where both record them)."""
        return sorted(k for k, v in self.inputs.items() if k in result.inputs and result.inputs[k] != v)

    def backend(self, name: str, module: str = "") -> BackendBaseline | None:
        """The entry of backend ``name`` (of ``module``, whole model by default), or None."""
        return self.backends.get(backend_key(name, module))

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data: rounded floats, non-finite floats as strings."""
        backends = {}
        for name, b in self.backends.items():
            backends[name] = {
                "status": b.status.value,
                "precision": b.precision,
                "latency": _latency_dict(b.latency) if b.latency is not None else None,
                "accuracy": _fields_dict(b.accuracy) if b.accuracy is not None else None,
                "error": b.error,
                "noise_history": list(b.noise_history),
                **({"run_medians_ms": list(b.run_medians_ms)} if b.run_medians_ms else {}),
                **({"metrics": metrics} if (metrics := b.metrics.to_dict()) else {}),
                **({"task_metrics": dict(sorted(b.task_metrics.items()))} if b.task_metrics else {}),
            }
        out = _jsonable(
            {
                "schema_version": self.schema_version,
                "fixture": self.fixture,
                "hardware_key": self.hardware_key,
                "environment": dict(self.environment),
                "updated_at": self.updated_at,
                "winner": self.winner,
                "module_choice": dict(self.module_choice),
                "artifact_sha256": self.artifact_sha256,
                **({"inputs": dict(self.inputs)} if self.inputs else {}),
                "backends": backends,
            }
        )
        work = self.work
        if work is not None and work.intact:
            digest = _written_sha256(out, work.key, work.backends)
            out["work"] = {"key": work.key, "backends": list(work.backends), "sha256": digest}
        return out

    def to_json(self) -> str:
        """The file's text: sorted keys, 2-space indent, trailing newline (byte-stable)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any], path: object = "<baseline>") -> Baseline:
        """Parse a baseline (text or already-decoded JSON).

        Raises:
            DataFileError: corrupt or truncated JSON, a wrong type anywhere, or an unknown
                ``schema_version``; the message names ``path`` and the command that rewrites it.
        """
        fixture_hint = Path(str(path)).stem if str(path) != "<baseline>" else None
        if isinstance(data, (str, bytes)):
            try:
                data = json.loads(data)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise _not_json(path, fixture_hint, data, exc) from None
        reader = _Reader(path, fixture_hint)
        if not isinstance(data, Mapping):
            raise reader.error("", f"expected a JSON object, found {type(data).__name__}")
        version = data.get("schema_version")
        if version != BASELINE_SCHEMA_VERSION:
            fixture = data.get("fixture") if isinstance(data.get("fixture"), str) else fixture_hint
            newer = isinstance(version, int) and not isinstance(version, bool) and version > BASELINE_SCHEMA_VERSION
            problem = f"unknown baseline schema_version {version!r} (this aitune-ci reads {BASELINE_SCHEMA_VERSION})"
            raise _corrupt(path, fixture, problem, newer=newer)
        reader.fixture = data.get("fixture") if isinstance(data.get("fixture"), str) else fixture_hint
        backends_data = reader.get(data, "backends", dict)
        backends = {}
        for name, entry in backends_data.items():
            backends[name] = reader.backend(entry, f"backends.{name}")
        return cls(
            fixture=reader.get(data, "fixture", str),
            hardware_key=reader.get(data, "hardware_key", str),
            environment=reader.get(data, "environment", dict),
            updated_at=reader.get(data, "updated_at", str),
            winner=reader.get(data, "winner", str, optional=True),
            backends=backends,
            module_choice=reader.str_map(reader.get(data, "module_choice", dict, default={}), "module_choice"),
            artifact_sha256=reader.get(data, "artifact_sha256", str, optional=True),
            inputs=reader.str_map(reader.get(data, "inputs", dict, default={}), "inputs"),
            work=reader.work(reader.get(data, "work", dict, optional=True), data),
        )


def _corrupt(path: object, fixture: str | None, problem: str, *, newer: bool = False) -> DataFileError:
    command = update_command(fixture) if fixture else "pytest --aitune --aitune-update"
    fix = f"regenerate it with `{command}` (this rewrites the file; there is no need to delete it first)"
    if newer:
        fix = f"a newer aitune-ci wrote it: upgrade aitune-ci to read it, or {fix}"
    error = DataFileError(path, problem, fix)
    error.written_by_newer = newer
    return error


_CONFLICT = re.compile(r"^(<{7}|={7}|>{7})( |$)", re.MULTILINE)


def _not_json(path: object, fixture: str | None, text: str | bytes, exc: Exception) -> DataFileError:
    """Not JSON: a merge left its conflict markers in it (said so, with the fix that keeps a side's
    history), or the file was cut short."""
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    found = _CONFLICT.search(decoded)
    if found is None:
        return _corrupt(path, fixture, f"not valid JSON, the file may be truncated ({exc})")
    line = decoded.count("\n", 0, found.start()) + 1
    return DataFileError(
        path,
        f"git merge-conflict markers at line {line}, so it is not valid JSON",
        f"keep one side's file whole (`git checkout --ours {path}` or `--theirs`) rather than mixing the two; "
        f"or regenerate it with `{update_command(fixture) if fixture else 'pytest --aitune --aitune-update'}`, "
        "which starts its run history over",
    )


class _Reader:
    """Typed access to decoded JSON that turns every surprise into a DataFileError naming the field."""

    def __init__(self, path: object, fixture: str | None) -> None:
        self.path = path
        self.fixture = fixture

    def error(self, where: str, problem: str) -> DataFileError:
        return _corrupt(self.path, self.fixture, f"{where}: {problem}" if where else problem)

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        *,
        optional: bool = False,
        default: Any = ...,
        where: str = "",
    ) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in data:
            if default is not ...:
                return default
            if optional:
                return None
            raise self.error(name, "missing")
        value = data[key]
        if value is None and optional:
            return None
        if kind is float:
            return self.number(value, name)
        if kind is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise self.error(name, f"expected an integer, found {value!r}")
            return value
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.error(name, f"expected {_JSON_NAMES.get(expected, expected)}, found {value!r}"[:300])
        return value

    def number(self, value: Any, name: str) -> float:
        if isinstance(value, str) and value in _NONFINITE:
            return _NONFINITE[value]
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.error(name, f"expected a number, found {value!r}")
        return float(value)

    def work(self, value: Mapping[str, Any] | None, data: Mapping[str, Any]) -> BaselineWork | None:
        if value is None:
            return None
        key = self.get(value, "key", str, where="work")
        if not re.fullmatch(r"[0-9a-f]{64}", key):
            raise self.error("work.key", f"expected a sha256 hex digest, found {key!r}"[:300])
        names = self.get(value, "backends", list, where="work")
        if not all(isinstance(n, str) and n for n in names):
            raise self.error("work.backends", f"expected backend names, found {names!r}"[:300])
        # A digest that is missing (written by the first version of the record) or does not match
        # leaves the record, not the file, untrusted: the check then runs as without one.
        digest = value.get("sha256")
        written = _written_sha256(data, key, names)
        intact = written is not None and digest == written and all(n in data["backends"] for n in names)
        return BaselineWork(key, tuple(names), intact=intact)

    def str_map(self, value: Mapping[str, Any], where: str) -> dict[str, str]:
        for k, v in value.items():
            if not isinstance(v, str):
                raise self.error(f"{where}.{k}", f"expected a string, found {v!r}")
        return dict(value)

    def backend(self, entry: Any, where: str) -> BackendBaseline:
        if not isinstance(entry, Mapping):
            raise self.error(where, f"expected an object, found {entry!r}")
        status = self.get(entry, "status", str, where=where)
        try:
            status = BackendStatus(status)
        except ValueError:
            known = ", ".join(s.value for s in BackendStatus)
            raise self.error(f"{where}.status", f"expected one of {known}, found {status!r}") from None
        history = self.get(entry, "noise_history", list, default=[], where=where)
        medians = self.get(entry, "run_medians_ms", list, default=[], where=where)
        latency = self.get(entry, "latency", dict, optional=True, where=where)
        accuracy = self.get(entry, "accuracy", dict, optional=True, where=where)
        metrics = self.get(entry, "metrics", dict, default={}, where=where)
        task_metrics = self.get(entry, "task_metrics", dict, default={}, where=where)
        return BackendBaseline(
            status=status,
            precision=self.get(entry, "precision", str, where=where),
            latency=self.latency(latency, f"{where}.latency") if latency is not None else None,
            accuracy=self.accuracy(accuracy, f"{where}.accuracy") if accuracy is not None else None,
            error=self.get(entry, "error", str, optional=True, where=where),
            noise_history=tuple(self.number(x, f"{where}.noise_history") for x in history),
            run_medians_ms=tuple(self.number(x, f"{where}.run_medians_ms") for x in medians),
            metrics=self.metrics(metrics, f"{where}.metrics"),
            task_metrics={str(k): self.number(v, f"{where}.task_metrics.{k}") for k, v in task_metrics.items()},
        )

    def metrics(self, data: Mapping[str, Any], where: str) -> BackendMetrics:
        """The ``metrics`` object; absent in baselines written before the metrics were gated."""
        by_batch = self.get(data, "throughput_by_batch", dict, default={}, where=where)
        throughput = {}
        for batch, value in by_batch.items():
            if not str(batch).isdigit():
                raise self.error(f"{where}.throughput_by_batch", f"expected batch sizes as keys, found {batch!r}")
            throughput[int(batch)] = self.number(value, f"{where}.throughput_by_batch.{batch}")
        return BackendMetrics(
            build_s=self.get(data, "build_s", float, optional=True, where=where),
            build_cache=self.get(data, "build_cache", str, optional=True, where=where),
            load_s=self.get(data, "load_s", float, optional=True, where=where),
            first_call_ms=self.get(data, "first_call_ms", float, optional=True, where=where),
            peak_memory_bytes=self.get(data, "peak_memory_bytes", int, optional=True, where=where),
            throughput_by_batch=throughput,
        )

    def latency(self, data: Mapping[str, Any], where: str) -> LatencySummary:
        rounds = self.get(data, "round_medians_ms", list, default=[], where=where)
        summary = LatencySummary(
            median_ms=self.get(data, "median_ms", float, where=where),
            p90_ms=self.get(data, "p90_ms", float, where=where),
            ci_low_ms=self.get(data, "ci_low_ms", float, where=where),
            ci_high_ms=self.get(data, "ci_high_ms", float, where=where),
            cv=self.get(data, "cv", float, where=where),
            iterations=self.get(data, "iterations", int, where=where),
            rounds=self.get(data, "rounds", int, where=where),
            round_medians_ms=tuple(self.number(x, f"{where}.round_medians_ms") for x in rounds),
            batch_size=self.get(data, "batch_size", int, optional=True, where=where),
            cpu_contention=self.get(data, "cpu_contention", float, optional=True, where=where),
        )
        if not summary.median_ms > 0 or not math.isfinite(summary.median_ms):
            raise self.error(f"{where}.median_ms", f"expected a positive time, found {summary.median_ms!r}")
        return summary

    def accuracy(self, data: Mapping[str, Any], where: str) -> AccuracySummary:
        return AccuracySummary(
            passed=self.get(data, "passed", bool, where=where),
            max_abs=self.get(data, "max_abs", float, optional=True, where=where),
            sqnr_db=self.get(data, "sqnr_db", float, optional=True, where=where),
            cosine=self.get(data, "cosine", float, optional=True, where=where),
            rmse_ratio=self.get(data, "rmse_ratio", float, optional=True, where=where),
        )


_JSON_NAMES = {"str": "a string", "dict": "an object", "list": "an array", "bool": "true or false"}
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _written_sha256(data: Mapping[str, Any], key: str, names: Collection[str]) -> str | None:
    """The digest of a baseline file's JSON as written, with its work record's ``key`` and row ``names``
    (``BaselineWork``); None for JSON that cannot be hashed so (``NaN`` or a lone surrogate typed in)."""
    written = {**{k: v for k, v in data.items() if k != "work"}, "work": {"key": key, "backends": list(names)}}
    try:
        text = json.dumps(written, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()
    except (TypeError, ValueError, UnicodeError):
        return None


def _jsonable(value: Any) -> Any:
    """Recursively: floats rounded to 6 significant digits, tuples to lists, mapping keys to str."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return strict_number(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


def _fields_dict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _latency_dict(summary: LatencySummary) -> dict[str, Any]:
    out = _fields_dict(summary)
    out["round_medians_ms"] = list(summary.round_medians_ms)
    if out.get("cpu_contention") is None:
        out.pop("cpu_contention", None)  # not measured (or an older run): no key, as before
    return out


class BaselineStore:
    """Baseline files ``<root>/<hardware-key>/<fixture>.json``; ``root`` is ``<aitune-dir>/baselines``.

    Reads need no lock (writes are atomic replaces); writes take ``<file>.lock`` so that several
    pytest-xdist workers or CI jobs can update baselines at once. Only the named file is touched
    (plus a ``.gitignore`` for lock files in ``root``, created once if missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, hardware_key: str, fixture: str) -> Path:
        """Where the baseline of ``fixture`` on ``hardware_key`` lives (whether or not it exists)."""
        for what, name in (("hardware key", hardware_key), ("fixture", fixture)):
            if not _SAFE_NAME.match(name) or name in (".", ".."):
                raise ValueError(f"{what} {name!r} cannot be a file name: use letters, digits and _.+-")
        return self.root / hardware_key / f"{fixture}.json"

    def read(self, hardware_key: str, fixture: str) -> Baseline | None:
        """The baseline, or None when the file does not exist.

        Raises:
            DataFileError: the file is corrupt, truncated, of an unknown schema, or belongs to
                another fixture / hardware key than its path says.
        """
        path = self.path(hardware_key, fixture)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        baseline = Baseline.from_json(raw, path)
        for what, found, expected in (
            ("fixture", baseline.fixture, fixture),
            ("hardware_key", baseline.hardware_key, hardware_key),
        ):
            if found != expected:
                raise _corrupt(path, fixture, f"its {what} is {found!r} but its path says {expected!r} (copied file?)")
        return baseline

    def write(self, baseline: Baseline) -> Path:
        """Write ``baseline`` atomically under its file lock; no other file is touched."""
        path = self.path(baseline.hardware_key, baseline.fixture)
        ensure_gitignore(self.root)
        text = baseline.to_json()
        with locked(path):
            atomic_write_text(path, text)
        return path

    def update(
        self,
        hardware_key: str,
        fixture: str,
        make: Callable[[Baseline | None], Baseline],
    ) -> Baseline:
        """Read-modify-write under the file lock: ``make(previous)`` builds what is written.

        ``previous`` is None when the file is missing *or corrupt*: updating is the documented fix
        for a corrupt baseline, so it is replaced (only this call overwrites a corrupt file).
        """
        path = self.path(hardware_key, fixture)
        ensure_gitignore(self.root)
        with locked(path):
            try:
                previous = self.read(hardware_key, fixture)
            except DataFileError:
                previous = None
            baseline = make(previous)
            if (baseline.hardware_key, baseline.fixture) != (hardware_key, fixture):
                raise ValueError(
                    f"update of {fixture!r} on {hardware_key!r} produced a baseline for "
                    f"{baseline.fixture!r} on {baseline.hardware_key!r}"
                )
            atomic_write_text(path, baseline.to_json())
        return baseline

    def list_fixtures(self, hardware_key: str) -> list[str]:
        """Fixtures that have a baseline file on ``hardware_key``, sorted."""
        directory = self.root / hardware_key
        if not directory.is_dir():
            return []
        return sorted(p.stem for p in directory.glob("*.json") if not p.name.startswith("."))

    def list_hardware_keys(self) -> list[str]:
        """Hardware keys that have a baseline directory, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())
