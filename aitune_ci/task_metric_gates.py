"""Task metrics judged: a value against its absolute gate, and against the baseline's value.

Pure (plain numbers in, text out). A task metric is the user's own score of a backend's outputs
against the eager reference (top-1 agreement, PSNR, ...); see :mod:`aitune_ci.task_metrics` for
how one is declared and computed. Its gate and its tolerance come from the metric's declaration,
overridden by ``[tool.aitune.task_metrics]``::

    [tool.aitune.task_metrics]
    top1_agreement = { min = 0.99, max_drop = 0.005 }               # every fixture and backend
    "tune_resnet:top1_agreement" = { min = 0.98 }                    # one fixture
    "tune_resnet[torchao-int8wo]:top1_agreement" = { min = 0.97 }    # one check

Each key sets only the fields it names; the most specific key wins per field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Callable

from aitune_ci.result import TaskMetricValue

__all__ = [
    "DEFAULT_RELATIVE_DROP",
    "TaskMetricGate",
    "NAME_RE",
    "gate_resolver",
    "gate_value",
    "metric_drop",
    "metric_drops",
    "parse_task_metric_gates",
    "resolve_gate",
    "with_gate",
]

#: With no ``max_drop`` declared or configured, a task metric regresses when it worsens by more
#: than this fraction of the baseline's magnitude (the metric's scale is the user's, so only a
#: relative default means anything); ``_ABSOLUTE_FLOOR`` keeps a baseline of 0 from failing on
#: float rounding.
DEFAULT_RELATIVE_DROP = 0.01
_ABSOLUTE_FLOOR = 1e-9

#: What a task metric's name may look like (it is a config key and a JSON key).
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_KEY_RE = re.compile(r"^(?:(?P<check>[A-Za-z_][A-Za-z0-9_]*(\[[^\[\]\s]+\])?):)?(?P<metric>[A-Za-z_][A-Za-z0-9_.-]*)$")
_TOML_FIELDS = {"min": "minimum", "max": "maximum", "max_drop": "max_drop"}


@dataclass(frozen=True)
class TaskMetricGate:
    """What a task metric must satisfy; ``None`` leaves a field to the next, less specific source.

    Attributes:
        minimum: the value must be at least this (absolute gate; below it the backend is INACCURATE).
        maximum: the value must be at most this (absolute gate).
        max_drop: how far the value may worsen against the baseline before the check REGRESSES, in
            the metric's own units (a drop of a higher-is-better metric, a rise of a lower-is-better one).
    """

    minimum: float | None = None
    maximum: float | None = None
    max_drop: float | None = None

    def over(self, other: TaskMetricGate) -> TaskMetricGate:
        """This gate's fields, with ``other``'s where this one leaves them ``None``."""
        return TaskMetricGate(**{f.name: _first(getattr(self, f.name), getattr(other, f.name)) for f in fields(self)})


def _first(a: float | None, b: float | None) -> float | None:
    return a if a is not None else b


def _num(x: float) -> str:
    return f"{x:.4g}"


def gate_value(name: str, value: float, gate: TaskMetricGate) -> tuple[bool, str]:
    """``(passed, reason)`` of ``value`` against the absolute gate (reason is empty when it passes)."""
    if math.isnan(value):
        return False, f"task metric {name} is NaN"
    if gate.minimum is not None and value < gate.minimum:
        return False, f"task metric {name} {_num(value)} < {_num(gate.minimum)} (its minimum)"
    if gate.maximum is not None and value > gate.maximum:
        return False, f"task metric {name} {_num(value)} > {_num(gate.maximum)} (its maximum)"
    return True, ""


def metric_drop(name: str, old: float, new: float, *, higher_is_better: bool, max_drop: float | None) -> str | None:
    """Text of a worsening beyond ``max_drop`` (default: ``DEFAULT_RELATIVE_DROP`` of |old|), or None.

    ``inf`` on both sides (e.g. PSNR of exact outputs) is no change; NaN on either side is not judged.
    """
    if math.isnan(old) or math.isnan(new) or old == new:
        return None
    drop = (old - new) if higher_is_better else (new - old)
    if max_drop is None:
        limit = max(DEFAULT_RELATIVE_DROP * abs(old), _ABSOLUTE_FLOOR) if math.isfinite(old) else math.inf
        limit_text = f"{DEFAULT_RELATIVE_DROP:.0%} of the baseline's value, {_num(limit)}"
        if not math.isfinite(old):
            return None  # a baseline at ±inf has no scale: only an explicit max_drop judges it
    else:
        limit, limit_text = max_drop, _num(max_drop)
    if not drop > limit:
        return None
    direction = "dropped" if higher_is_better else "rose"
    return f"task metric {name} {direction} {_num(drop)} ({_num(old)} -> {_num(new)}; limit {limit_text})"


def metric_drops(baseline: Mapping[str, float], current: Sequence[TaskMetricValue]) -> list[str]:
    """One text per task metric of ``current`` that worsened beyond its tolerance against ``baseline``.

    A metric absent from the baseline (added since) is not judged: updating the baseline records it.
    """
    out = []
    for m in current:
        old = baseline.get(m.name)
        if old is None:
            continue
        text = metric_drop(m.name, old, m.value, higher_is_better=m.higher_is_better, max_drop=m.max_drop)
        if text:
            out.append(text)
    return out


def resolve_gate(
    table: Mapping[str, TaskMetricGate], fixture: str, backend: str, metric: str, declared: TaskMetricGate
) -> TaskMetricGate:
    """The gate of ``metric`` in check ``fixture[backend]``: per check, per fixture, per metric, then ``declared``."""
    gate = TaskMetricGate()
    for key in (f"{fixture}[{backend}]:{metric}", f"{fixture}:{metric}", metric):
        if key in table:
            gate = gate.over(table[key])
    return gate.over(declared)


def gate_resolver(
    table: Mapping[str, TaskMetricGate], fixture: str
) -> Callable[[str, str, TaskMetricGate], TaskMetricGate]:
    """``resolve_gate`` bound to one fixture: ``(backend, metric, declared) -> gate``, for the engine."""

    def resolve(backend: str, metric: str, declared: TaskMetricGate) -> TaskMetricGate:
        return resolve_gate(table, fixture, backend, metric, declared)

    return resolve


def parse_task_metric_gates(
    value: Any, source: object, error: Callable[[str, str], Exception]
) -> dict[str, TaskMetricGate]:
    """Validate ``[tool.aitune.task_metrics]``; ``error(key, problem)`` builds the exception to raise."""
    if not isinstance(value, dict):
        raise error("task_metrics", f"expected a table of metric -> {{ min, max, max_drop }}, found {value!r}")
    out: dict[str, TaskMetricGate] = {}
    for key, entry in value.items():
        where = f"task_metrics.{key}"
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise error(
                where,
                'keys name a metric, "fixture:metric" or "fixture[backend]:metric", e.g. "tune_resnet:top1_agreement"',
            )
        if not isinstance(entry, dict):
            raise error(where, f"expected {{ min = ..., max = ..., max_drop = ... }}, found {entry!r}")
        extra = sorted(set(entry) - set(_TOML_FIELDS))
        if extra:
            raise error(f"{where}.{extra[0]}", "unknown key; an entry has `min`, `max` and `max_drop`")
        kwargs: dict[str, float] = {}
        for toml_name, field_name in _TOML_FIELDS.items():
            if toml_name not in entry:
                continue
            x = entry[toml_name]
            if not isinstance(x, (int, float)) or isinstance(x, bool) or math.isnan(x):
                raise error(f"{where}.{toml_name}", f"expected a number, found {x!r}")
            if toml_name == "max_drop" and x < 0:
                raise error(f"{where}.max_drop", f"expected a number >= 0, found {x!r}")
            kwargs[field_name] = float(x)
        gate = TaskMetricGate(**kwargs)
        if gate.minimum is not None and gate.maximum is not None and gate.minimum > gate.maximum:
            raise error(where, f"min {gate.minimum:g} is above max {gate.maximum:g}")
        out[key] = gate
    return out


def with_gate(value: TaskMetricValue, gate: TaskMetricGate) -> TaskMetricValue:
    """``value`` judged against ``gate`` (the gate is recorded in it, so reports and verdicts need no config)."""
    passed, reason = gate_value(value.name, value.value, gate)
    return replace(
        value, minimum=gate.minimum, maximum=gate.maximum, max_drop=gate.max_drop, passed=passed, reason=reason
    )
