"""Verdict policy from the repo's ``[tool.aitune]`` table: thresholds, acknowledged changes, quarantine.

Policy lives in ``pyproject.toml`` (reviewed in PRs, next to the baselines) and never in code::

    [tool.aitune]
    threshold = 0.05             # default latency tolerance: 5% slower still passes ("5%" too; a bare 5 is refused)
    alpha = 0.05                 # false-alarm rate controlled over the whole run (Benjamini-Hochberg)
    sqnr_drop_db = 3.0           # an SQNR drop larger than this is an accuracy regression
    max_confirmations = 2        # re-measurements of a suspected latency regression before it fails
    noise_k = 3.0                # effective threshold >= noise_k x measured between-run noise
    quarantine = ["tune_x[tensorrt]"]          # reported, never fails
    warn_only = ["tune_new_model"]             # regressions reported, never fail (or `true`: every check)
    max_plausible_speedup = 3.0  # faster than the best other backend by more, and less accurate: review

    [tool.aitune.thresholds]
    tune_resnet = 0.08                         # every backend of one fixture
    "tune_resnet[inductor]" = 0.10             # one (fixture, backend) check: wins over the above

    [tool.aitune.acknowledged]
    "tune_resnet[aoti]" = { reason = "expected 8% slower: fused attention off (#123)", max_slowdown = 0.10 }
    "tune_bert[torchao-int8wo]" = "new torchao quantizer, SQNR 2 dB lower"

    [tool.aitune.metrics.build_time]           # one table per metric beyond latency (``METRICS``)
    threshold = 1.0                            # this repo's default: a build may take twice as long
    floor = 10                                 # and any change under 10 s passes (unit: ``METRICS``)
    tune_resnet = 2.0                          # a number: that check's threshold
    "tune_resnet[aoti]" = { threshold = 0.5, floor = 30 }
    "tune_bert[onnxruntime]" = false           # off for one check (`enabled = false` for all)

    [tool.aitune.task_metrics]                 # gates of TuneSpec(metric=...) (aitune_ci.task_metric_gates)
    top1_agreement = { min = 0.99, max_drop = 0.005 }
    "tune_resnet[torchao-int8wo]:top1_agreement" = { min = 0.97 }

Threshold precedence for one check: ``thresholds["fixture[backend]"]`` > ``thresholds["fixture"]``
> the run's ``--aitune-threshold`` (``RepoConfig.with_default_threshold``) > ``threshold`` > 0.05.
A metric gate takes each field from the most specific place that sets it: the check's key, the
fixture's key, the metric table's own ``threshold``/``floor``/``enabled``, then ``METRICS``.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aitune_ci.errors import AituneCIError
from aitune_ci.hints import did_you_mean
from aitune_ci.task_metric_gates import parse_task_metric_gates

__all__ = ["METRICS", "Acknowledgement", "ConfigError", "MetricGate", "MetricInfo", "Policy", "RepoConfig", "check_id"]

_CHECK_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^\[\]\s]+\])?$")


class ConfigError(AituneCIError, ValueError):
    """``[tool.aitune]`` in pyproject.toml holds an unknown key or a value of the wrong type."""

    def __init__(self, path: object, key: str, problem: str) -> None:
        super().__init__(f"{path}: [tool.aitune] {key}: {problem}")
        self.path = path
        self.key = key
        self.problem = problem


def check_id(fixture: str, backend: str | None = None) -> str:
    """The id of one check, as pytest shows it and as config keys spell it: ``tune_resnet[inductor]``."""
    return fixture if backend is None else f"{fixture}[{backend}]"


@dataclass(frozen=True)
class Acknowledgement:
    """A change the team accepted on purpose, with the reason shown in every verdict it touches.

    Attributes:
        reason: why the change is expected (shown verbatim in the verdict).
        max_slowdown: the largest relative slowdown accepted (0.10 = 10%); beyond it the check
            regresses again. None accepts any slowdown. An acknowledgement also accepts an SQNR
            drop; it never hides a backend that now fails (quarantine that instead).
    """

    reason: str
    max_slowdown: float | None = None


@dataclass(frozen=True)
class MetricGate:
    """How one metric beyond latency is gated: it regresses only past *both* limits.

    Attributes:
        threshold: relative worsening tolerated (0.5 = 50% worse still passes); None means "the
            check's latency threshold" (throughput mirrors latency).
        floor: absolute worsening, in the metric's unit (``MetricInfo.unit``), that always passes:
            a 40 ms build that takes 80 ms is +100% and means nothing.
        enabled: False turns the gate off (the metric is still recorded and shown).
    """

    threshold: float | None = None
    floor: float = 0.0
    enabled: bool = True


@dataclass(frozen=True)
class MetricInfo:
    """What one gated metric is: its unit, which direction is worse, and its default gate."""

    unit: str
    higher_is_better: bool
    default: MetricGate
    #: one line for the README and ``--help``-style listings
    meaning: str


#: Every metric gated beside latency and accuracy, with defaults suited to its noise.
METRICS: dict[str, MetricInfo] = {
    "build_time": MetricInfo(
        "s", False, MetricGate(0.5, 5.0), "build (compile) time; only compared when both builds were cold or both warm"
    ),
    "load_time": MetricInfo("s", False, MetricGate(0.5, 1.0), "time to load the winner's .ait artifact"),
    "first_call": MetricInfo("ms", False, MetricGate(0.5, 250.0), "first call after loading the artifact"),
    "peak_memory": MetricInfo("MiB", False, MetricGate(0.10, 8.0), "peak memory one call allocates"),
    "throughput": MetricInfo("items/s", True, MetricGate(None, 0.0), "items per second at the tuned batch size"),
}


@dataclass(frozen=True)
class Policy:
    """How one (fixture, backend) check is judged.

    Attributes:
        threshold: relative slowdown tolerated (0.05 = 5%).
        alpha: false-alarm rate, controlled over all checks of the run (Benjamini-Hochberg).
        sqnr_drop_db: SQNR drop (dB) against the baseline that counts as an accuracy regression.
        max_confirmations: how many times a suspected latency regression is re-measured before it
            fails; 0 fails on the first measurement.
        noise_k: the effective threshold is at least ``noise_k`` times the between-run noise (see
            ``aitune_ci.verdict.latency`` for why 3).
        noise_floor: the smallest between-run noise (relative) assumed when history shows less:
            one run cannot prove a machine steadier than this.
        sqnr_ceiling_db: SQNR above this is float rounding; drops above it are not regressions.
        acknowledged: an accepted change for this check, or None.
        quarantined: report this check but never fail it.
        metrics: the gate of every metric in ``METRICS`` for this check; read it through ``gate``,
            which resolves a threshold of None (throughput's default) to ``threshold``.
        warn_only: a regression is reported (and says it would fail) but does not fail; a backend
            that fails to build, run or stay accurate still fails.
        max_plausible_speedup: a backend more than this many times faster than the best other one
            and less accurate is flagged for review (``aitune_ci.sanity``); ``inf`` turns it off.
    """

    threshold: float = 0.05
    alpha: float = 0.05
    sqnr_drop_db: float = 3.0
    max_confirmations: int = 2
    noise_k: float = 3.0
    noise_floor: float = 0.005
    sqnr_ceiling_db: float = 80.0
    acknowledged: Acknowledgement | None = None
    quarantined: bool = False
    metrics: Mapping[str, MetricGate] = field(default_factory=lambda: {k: m.default for k, m in METRICS.items()})
    warn_only: bool = False
    max_plausible_speedup: float = 3.0

    def gate(self, metric: str) -> MetricGate:
        """The gate of ``metric``, its threshold resolved (None: this check's latency threshold)."""
        gate = self.metrics.get(metric, METRICS[metric].default)
        return gate if gate.threshold is not None else replace(gate, threshold=self.threshold)

    def __post_init__(self) -> None:
        for name in ("threshold", "sqnr_drop_db", "noise_k", "noise_floor", "sqnr_ceiling_db"):
            value = getattr(self, name)
            if not _is_number(value) or value < 0 or not math.isfinite(value):
                raise ValueError(f"Policy.{name} must be a finite number >= 0, got {value!r}")
        if not _is_number(self.alpha) or not 0.0 < self.alpha < 1.0:
            raise ValueError(f"Policy.alpha must be within (0, 1), got {self.alpha!r}")
        if not isinstance(self.max_confirmations, int) or isinstance(self.max_confirmations, bool):
            raise ValueError(f"Policy.max_confirmations must be an integer, got {self.max_confirmations!r}")
        if self.max_confirmations < 0:
            raise ValueError(f"Policy.max_confirmations must be >= 0, got {self.max_confirmations!r}")
        if not _is_number(self.max_plausible_speedup) or not self.max_plausible_speedup > 1:
            raise ValueError(f"Policy.max_plausible_speedup must be a number > 1, got {self.max_plausible_speedup!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Scalar keys of [tool.aitune] (each is the Policy field of that name) -> what a valid value is.
_SCALARS: dict[str, str] = {
    "threshold": 'a fraction below 1 such as 0.05, or a percentage such as "5%"',
    "alpha": "a number within (0, 1), e.g. 0.05",
    "sqnr_drop_db": "a number of dB >= 0, e.g. 3.0",
    "max_confirmations": "an integer >= 0, e.g. 2",
    "noise_k": "a number >= 0, e.g. 3.0",
    "noise_floor": "a number >= 0, e.g. 0.005",
    "sqnr_ceiling_db": "a number of dB >= 0, e.g. 80",
    "max_plausible_speedup": "a number > 1, e.g. 3.0 (inf turns the check off)",
}
_TABLES = ("thresholds", "acknowledged", "quarantine", "metrics", "warn_only", "task_metrics")


@dataclass(frozen=True)
class RepoConfig:
    """The parsed ``[tool.aitune]`` table; ``policy_for`` gives the policy of one check."""

    defaults: Policy = field(default_factory=Policy)
    thresholds: Mapping[str, float] = field(default_factory=dict)
    acknowledged: Mapping[str, Acknowledgement] = field(default_factory=dict)
    quarantine: frozenset[str] = frozenset()
    #: metric -> check key (fixture or ``fixture[backend]``; ``""`` for the metric's own default) -> gate fields set
    metric_overrides: Mapping[str, Mapping[str, Mapping[str, Any]]] = field(default_factory=dict)
    #: checks (or fixtures) whose regressions do not fail; ``warn_only_all``: every check
    warn_only: frozenset[str] = frozenset()
    warn_only_all: bool = False
    #: ``[tool.aitune.task_metrics]``: "metric", "fixture:metric" or "fixture[backend]:metric" -> TaskMetricGate
    task_metrics: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"

    @classmethod
    def load(cls, pyproject_path: str | Path) -> RepoConfig:
        """Read ``[tool.aitune]`` from ``pyproject_path``; a missing file or table gives the defaults.

        Raises:
            ConfigError: invalid TOML, an unknown key, or a value of the wrong type (the message
                names the file and the key).
        """
        path = Path(pyproject_path)
        if not path.is_file():
            return cls(source=str(path))
        tomllib = _tomllib()
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(path, "(file)", f"not valid TOML ({exc})") from None
        table = data.get("tool", {}).get("aitune", {}) if isinstance(data.get("tool"), dict) else {}
        return cls.from_table(table, source=path)

    @classmethod
    def from_table(cls, table: Any, source: object = "pyproject.toml") -> RepoConfig:
        """Validate a ``[tool.aitune]`` table already parsed from TOML (see ``load``)."""
        if not isinstance(table, dict):
            raise ConfigError(source, "(table)", f"expected a table, found {type(table).__name__}")
        unknown = sorted(set(table) - set(_SCALARS) - set(_TABLES))
        if unknown:
            known = sorted([*_SCALARS, *_TABLES])
            each = "; ".join(
                f"{key}{hint}" if (hint := did_you_mean(key, known, quote=str)) else key for key in unknown
            )  # every unknown key in one run, each with its closest known one
            raise ConfigError(
                source,
                unknown[0],
                f"unknown key{'s' if len(unknown) > 1 else ''} ({each}); the known keys are: " + ", ".join(known),
            )
        table = dict(table)
        if "threshold" in table:
            table["threshold"] = _latency_threshold(table["threshold"], source, "threshold")
        kwargs = {key: table[key] for key in _SCALARS if key in table}
        for key, value in kwargs.items():
            try:
                Policy(**{key: value})
            except ValueError:
                raise ConfigError(source, key, f"expected {_SCALARS[key]}, found {value!r}") from None
        defaults = Policy(**kwargs)
        warn_all, warn_checks = _parse_warn_only(table.get("warn_only", False), source)
        return cls(
            defaults=defaults,
            thresholds=_parse_thresholds(table.get("thresholds", {}), source),
            acknowledged=_parse_acknowledged(table.get("acknowledged", {}), source),
            quarantine=_parse_quarantine(table.get("quarantine", []), source),
            metric_overrides=_parse_metrics(table.get("metrics", {}), source),
            task_metrics=_parse_task_metrics(table.get("task_metrics", {}), source),
            warn_only=warn_checks,
            warn_only_all=warn_all,
            source=str(source),
        )

    def with_default_threshold(self, threshold: float) -> RepoConfig:
        """This config with the run's default threshold (``--aitune-threshold``); per-key ones still win."""
        return replace(self, defaults=replace(self.defaults, threshold=threshold))

    def with_warn_only(self) -> RepoConfig:
        """This config with every check warn-only (``--aitune-warn-only``)."""
        return replace(self, warn_only_all=True)

    def is_warn_only(self, fixture: str, backend: str | None = None) -> bool:
        """Whether regressions of ``fixture[backend]`` are reported without failing."""
        return (
            self.warn_only_all
            or fixture in self.warn_only
            or (backend is not None and check_id(fixture, backend) in self.warn_only)
        )

    def keys_matching_nothing(
        self, checks: Collection[str], fixtures_only: bool = False, some_fixtures: bool = False
    ) -> list[str]:
        """One line per key of a per-check table that names no check in ``checks`` (ids such as
        ``tune_a[eager]``; ``fixtures_only``: match keys on their fixture alone, as when
        ``--aitune-backends`` left some checks out; ``some_fixtures``: the run collected only some of
        the repo's fixtures, as from a path argument, so a key of a fixture not collected is left
        alone). A typo there used to be ignored in silence."""
        fixtures = {c.split("[", 1)[0] for c in checks}
        tables: list[tuple[str, Iterable[str]]] = [
            ("thresholds", self.thresholds),
            ("acknowledged", self.acknowledged),
            ("quarantine", self.quarantine),
            ("warn_only", self.warn_only),
            *((f"metrics.{m}", [k for k in keys if k]) for m, keys in self.metric_overrides.items()),
        ]
        lines = []
        for table, keys in tables:
            for key in sorted(keys):
                fixture = key.split("[", 1)[0]
                if key in fixtures or (key in checks if not fixtures_only else fixture in fixtures):
                    continue
                if some_fixtures and fixture not in fixtures and not _near_miss(fixture, fixtures):
                    continue  # another folder's fixture, most likely; a near miss of a collected one is a typo
                hint = did_you_mean(key, {*checks, *fixtures}, quote=json.dumps)
                where = f"[tool.aitune] {table}" if table in ("quarantine", "warn_only") else f"[tool.aitune.{table}]"
                lines.append(f'{self.source}: {where}: "{key}" matches no check collected in this run{hint}')
        return lines

    def metric_gate(self, metric: str, fixture: str, backend: str | None = None) -> MetricGate:
        """The gate of ``metric`` for one check: each field from the most specific key that sets it."""
        fields_set: dict[str, Any] = {}
        overrides = self.metric_overrides.get(metric, {})
        for key in ("", fixture, *([check_id(fixture, backend)] if backend is not None else [])):
            fields_set.update(overrides.get(key, {}))
        return replace(METRICS[metric].default, **fields_set)

    def is_quarantined(self, fixture: str, backend: str | None = None) -> bool:
        """Whether ``fixture[backend]`` (or the whole fixture) is quarantined."""
        return fixture in self.quarantine or (backend is not None and check_id(fixture, backend) in self.quarantine)

    def policy_for(self, fixture: str, backend: str | None = None) -> Policy:
        """The policy of one check: per-backend key, then per-fixture key, then the defaults."""
        key = check_id(fixture, backend)
        threshold = self.thresholds.get(key, self.thresholds.get(fixture, self.defaults.threshold))
        ack = self.acknowledged.get(key) if backend is not None else None
        return replace(
            self.defaults,
            threshold=threshold,
            acknowledged=ack if ack is not None else self.acknowledged.get(fixture),
            quarantined=self.is_quarantined(fixture, backend),
            metrics={metric: self.metric_gate(metric, fixture, backend) for metric in METRICS},
            warn_only=self.is_warn_only(fixture, backend),
        )


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # Python 3.10
        import tomli
    except ImportError:
        raise AituneCIError(
            "reading [tool.aitune] on Python 3.10 needs the 'tomli' package: pip install tomli"
        ) from None
    return tomli


def _check_key(key: Any, source: object, table: str) -> str:
    if not isinstance(key, str) or not _CHECK_RE.match(key):
        raise ConfigError(
            source, f"{table}.{key}", 'keys name a fixture or one check, e.g. tune_resnet or "tune_resnet[inductor]"'
        )
    return key


def _check_entries(value: Any, source: object, table: str, entry: str) -> Iterator[tuple[str, Any]]:
    """The (check, entry) pairs of the table ``table``, each key checked before its entry is read."""
    if not isinstance(value, dict):
        raise ConfigError(source, table, f"expected a table of check -> {entry}, found {type(value).__name__}")
    for key, item in value.items():
        yield _check_key(key, source, table), item


def _parse_thresholds(value: Any, source: object) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, threshold in _check_entries(value, source, "thresholds", "number"):
        out[key] = _latency_threshold(threshold, source, f"thresholds.{key}")
    return out


def _latency_threshold(value: Any, source: object, where: str) -> Any:
    """A latency threshold as ``--aitune-threshold`` takes it: a fraction below 1 (``0.05``) or a
    percentage string (``"5%"``, ``"300%"``). A bare number of 1 or more is refused: ``threshold = 5``
    meant 500%, under which a 4x slowdown passed (the command line refused "5" already).
    A value that is no number is returned as is, for the caller's own message."""
    if isinstance(value, str):
        text = value.strip()
        try:
            number = float(text[:-1]) / 100 if text.endswith("%") else math.nan
        except ValueError:
            number = math.nan
        if not (number >= 0 and math.isfinite(number)):
            raise ConfigError(
                source, where, f'expected a fraction such as 0.05 or a percentage such as "5%", found {value!r}'
            )
        return number
    if _is_number(value) and value >= 1 and math.isfinite(value):
        raise ConfigError(
            source,
            where,
            f'{value!r} reads as a fraction, {value:.0%}: write "{value:g}%" for {value:g} percent, or '
            f'"{value:.0%}" if you mean it',
        )
    if _is_number(value) and not (value >= 0 and math.isfinite(value)):
        raise ConfigError(source, where, f"expected a number >= 0 such as 0.05, found {value!r}")
    if not _is_number(value):
        raise ConfigError(
            source, where, f'expected a fraction such as 0.05 or a percentage such as "5%", found {value!r}'
        )
    return value


def _near_miss(fixture: str, fixtures: Collection[str]) -> bool:
    """Whether ``fixture`` is a likely typo of one of ``fixtures``: compared without the ``tune_``
    prefix they all share, which makes any two names look alike."""
    stem = {f.removeprefix("tune_"): f for f in fixtures}
    return bool(difflib.get_close_matches(fixture.removeprefix("tune_"), list(stem), n=1, cutoff=0.75))


def _parse_acknowledged(value: Any, source: object) -> dict[str, Acknowledgement]:
    out: dict[str, Acknowledgement] = {}
    for key, entry in _check_entries(value, source, "acknowledged", "entry"):
        where = f"acknowledged.{key}"
        if isinstance(entry, str):
            entry = {"reason": entry}
        if not isinstance(entry, dict):
            raise ConfigError(
                source, where, f'expected a reason string or {{ reason = "...", max_slowdown = 0.1 }}, found {entry!r}'
            )
        extra = sorted(set(entry) - {"reason", "max_slowdown"})
        if extra:
            raise ConfigError(source, f"{where}.{extra[0]}", "unknown key; an entry has `reason` and `max_slowdown`")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(
                source, f"{where}.reason", "required: a non-empty string saying why the change is expected"
            )
        max_slowdown = entry.get("max_slowdown")
        if max_slowdown is not None:  # read as a latency threshold is: 0.1 or "10%"; a bare 10 is refused
            max_slowdown = _latency_threshold(max_slowdown, source, f"{where}.max_slowdown")
        out[key] = Acknowledgement(reason.strip(), None if max_slowdown is None else float(max_slowdown))
    return out


def _parse_quarantine(value: Any, source: object) -> frozenset[str]:
    if not isinstance(value, list):
        raise ConfigError(
            source, "quarantine", f'expected a list of checks such as ["tune_x[tensorrt]"], found {value!r}'
        )
    for item in value:
        _check_key(item, source, "quarantine")
    return frozenset(value)


def _parse_task_metrics(value: Any, source: object) -> dict[str, Any]:
    """``[tool.aitune.task_metrics]`` (``aitune_ci.task_metric_gates`` owns its format)."""
    return parse_task_metric_gates(value, source, lambda key, problem: ConfigError(source, key, problem))


def _parse_warn_only(value: Any, source: object) -> tuple[bool, frozenset[str]]:
    """``warn_only = true`` (every check) or a list of checks/fixtures such as ``["tune_new"]``."""
    if isinstance(value, bool):
        return value, frozenset()
    if not isinstance(value, list):
        raise ConfigError(
            source, "warn_only", f'expected true/false or a list of checks such as ["tune_new[aoti]"], found {value!r}'
        )
    for item in value:
        _check_key(item, source, "warn_only")
    return False, frozenset(value)


_GATE_FIELDS = {
    "threshold": "a number >= 0, e.g. 0.5 for 50%",
    "floor": "a number >= 0 in the metric's unit",
    "enabled": "true or false",
}


def _gate_fields(entry: Any, source: object, where: str) -> dict[str, Any]:
    """The gate fields one metric entry sets: a number (threshold), a bool (enabled) or a table."""
    if isinstance(entry, bool):
        return {"enabled": entry}
    if _is_number(entry):
        entry = {"threshold": entry}
    if not isinstance(entry, dict):
        raise ConfigError(
            source,
            where,
            f"expected a threshold number, true/false, or {{ threshold = 0.5, floor = 5 }}, found {entry!r}",
        )
    out: dict[str, Any] = {}
    for name, value in entry.items():
        if name not in _GATE_FIELDS:
            raise ConfigError(source, f"{where}.{name}", f"unknown key; a gate has {', '.join(_GATE_FIELDS)}")
        ok = (
            isinstance(value, bool)
            if name == "enabled"
            else (_is_number(value) and value >= 0 and math.isfinite(value))
        )
        if not ok:
            raise ConfigError(source, f"{where}.{name}", f"expected {_GATE_FIELDS[name]}, found {value!r}")
        out[name] = value if name == "enabled" else float(value)
    return out


def _parse_metrics(value: Any, source: object) -> dict[str, dict[str, dict[str, Any]]]:
    """``[tool.aitune.metrics.<metric>]``: the metric's own gate fields plus per-check entries."""
    if not isinstance(value, dict):
        raise ConfigError(source, "metrics", f"expected a table of metric -> table, found {type(value).__name__}")
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for metric, table in value.items():
        if metric not in METRICS:
            raise ConfigError(source, f"metrics.{metric}", f"unknown metric; the metrics are: {', '.join(METRICS)}")
        where = f"metrics.{metric}"
        if not isinstance(table, dict):
            raise ConfigError(
                source, where, f"expected a table (threshold, floor, enabled, or per-check keys), found {table!r}"
            )
        own = {k: v for k, v in table.items() if k in _GATE_FIELDS}
        entries: dict[str, dict[str, Any]] = {"": _gate_fields(own, source, where)}
        for key, entry in table.items():
            if key in _GATE_FIELDS:
                continue
            entries[_check_key(key, source, where)] = _gate_fields(entry, source, f"{where}.{key}")
        out[metric] = entries
    return out
