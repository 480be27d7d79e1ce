"""Task metrics: the user's own score of a backend's outputs against the eager reference.

SQNR and cosine say how far the numbers moved; a task metric says whether the *task* still works
(does the classifier pick the same class? how many dB of PSNR did the image lose?). Declare one on
the spec and it is computed for every backend, gated, stored in the baseline and judged against it::

    ait.TuneSpec(model=..., samples=[...], metric=ait.top1_agreement(minimum=0.99))
    ait.TuneSpec(..., metric={"top1": ait.top1_agreement(), "psnr": ait.psnr(minimum=30)})
    ait.TuneSpec(..., metric=my_score)     # my_score(outputs, reference, samples) -> float

A metric function is called once per backend with ``outputs`` and ``reference`` (one model output
per sample, any pytree, the reference being the fp32 eager model's) and ``samples`` (one
``(args, kwargs)`` per sample, as the model received them). It returns a float. The ready-made
ones here are plain torch on tensors.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aitune_ci.accuracy import flatten_outputs
from aitune_ci.errors import AituneCIError, SpecError
from aitune_ci.result import TaskMetricValue
from aitune_ci.task_metric_gates import NAME_RE, TaskMetricGate, with_gate

__all__ = [
    "MetricFn",
    "TaskMetric",
    "TaskMetricError",
    "kl_divergence",
    "normalize_metrics",
    "psnr",
    "score",
    "top1_agreement",
]

#: ``fn(outputs, reference, samples) -> float``: one output per sample on each side.
MetricFn = Callable[[Sequence[Any], Sequence[Any], Sequence[Any]], float]


class TaskMetricError(AituneCIError):
    """A task metric raised or returned something that is not a number (the backend is FAILED)."""


@dataclass(frozen=True)
class TaskMetric:
    """A named task metric with its direction, absolute gate and tolerance against the baseline.

    Attributes:
        name: the key in results, baselines and ``[tool.aitune.task_metrics]``.
        fn: ``fn(outputs, reference, samples) -> float``.
        higher_is_better: False for errors and divergences (lower is better).
        minimum: a backend scoring below this is INACCURATE (never selected).
        maximum: a backend scoring above this is INACCURATE.
        max_drop: how far the score may worsen against the baseline before the check REGRESSES, in
            the metric's units; None uses 1% of the baseline's value.
    """

    name: str
    fn: MetricFn
    higher_is_better: bool = True
    minimum: float | None = None
    maximum: float | None = None
    max_drop: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise SpecError(
                f"TaskMetric name {self.name!r} must start with a letter or _ and hold only letters, digits, _ . -"
            )
        if not callable(self.fn):
            raise SpecError(f"TaskMetric {self.name!r}: fn must be callable(outputs, reference, samples) -> float")
        for attr in ("minimum", "maximum", "max_drop"):
            value = getattr(self, attr)
            if value is not None and (
                not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value)
            ):
                raise SpecError(f"TaskMetric {self.name!r}: {attr} must be a number or None, got {value!r}")
        if self.max_drop is not None and self.max_drop < 0:
            raise SpecError(f"TaskMetric {self.name!r}: max_drop must be >= 0, got {self.max_drop!r}")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise SpecError(f"TaskMetric {self.name!r}: minimum {self.minimum} is above maximum {self.maximum}")

    @property
    def gate(self) -> TaskMetricGate:
        return TaskMetricGate(self.minimum, self.maximum, self.max_drop)

    def named(self, name: str) -> TaskMetric:
        return TaskMetric(name, self.fn, self.higher_is_better, self.minimum, self.maximum, self.max_drop)


_FORMS = (
    "a function fn(outputs, reference, samples) -> float, an ait.TaskMetric, a list of them, "
    "or a dict of name -> function/TaskMetric"
)


def normalize_metrics(metric: Any) -> tuple[TaskMetric, ...]:
    """``TuneSpec.metric`` in any accepted form as TaskMetrics with unique names.

    Raises:
        SpecError: for anything else, or two metrics of one name.
    """
    if metric is None:
        return ()
    if isinstance(metric, Mapping):
        items = [_one(v, str(k)) if isinstance(k, str) else _bad(k) for k, v in metric.items()]
    elif isinstance(metric, (list, tuple)):
        items = [_one(m, None) for m in metric]
    else:
        items = [_one(metric, None)]
    names = [m.name for m in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"TuneSpec.metric names {dup[0]!r} twice; give each task metric its own name")
    return tuple(items)


def _bad(key: Any) -> TaskMetric:
    raise SpecError(f"TuneSpec.metric dict keys must be metric names (strings), got {key!r}")


def _one(metric: Any, name: str | None) -> TaskMetric:
    if isinstance(metric, TaskMetric):
        return metric.named(name) if name else metric
    if callable(metric) and not isinstance(metric, type):
        fallback = getattr(metric, "__name__", "")
        chosen = name or (fallback if fallback != "<lambda>" else "")
        if not chosen:
            raise SpecError("TuneSpec.metric: a lambda has no name; pass it as metric={'my_name': fn}")
        return TaskMetric(chosen, metric)
    raise SpecError(f"TuneSpec.metric must be {_FORMS}; got {type(metric).__name__} {metric!r:.80}")


def score(
    metrics: Sequence[TaskMetric],
    outputs: Sequence[Any],
    reference: Sequence[Any],
    samples: Sequence[Any],
    *,
    where: str,
    gate: Callable[[TaskMetric], TaskMetricGate] | None = None,
) -> tuple[TaskMetricValue, ...]:
    """Every metric on one backend's outputs, judged against its gate (``gate(metric)``, default its own).

    Raises:
        TaskMetricError: a metric raised or returned a non-number; the message names ``where``
            (e.g. ``tune_resnet[inductor]``), the metric and the error.
    """
    out = []
    for m in metrics:
        try:
            with torch.inference_mode():
                raw = m.fn(list(outputs), list(reference), list(samples))
        except Exception as exc:
            raise TaskMetricError(f"task metric {m.name!r} of {where} raised {_error_text(exc)}") from exc
        value = _as_float(raw)
        if value is None or math.isnan(value):
            raise TaskMetricError(
                f"task metric {m.name!r} of {where} returned {raw!r:.80}; it must return a number (not NaN)"
            )
        judged = TaskMetricValue(name=m.name, value=value, higher_is_better=m.higher_is_better)
        out.append(with_gate(judged, gate(m) if gate is not None else m.gate))
    return tuple(out)


def _as_float(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, torch.Tensor):
        if raw.numel() != 1:
            return None
        raw = raw.item()
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


def _error_text(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


# ---------------------------------------------------------------------------------------------
# Ready-made metrics (plain torch on tensors)
# ---------------------------------------------------------------------------------------------


def _leaf(output: Any, leaf: str | None) -> torch.Tensor:
    """The tensor to score: the output itself, or the leaf named ``leaf`` (default: ``logits``, else the first float leaf)."""
    if isinstance(output, torch.Tensor) and leaf is None:
        return output

    leaves = {p: v for p, v in flatten_outputs(output) if isinstance(v, torch.Tensor)}
    if leaf is not None:
        if leaf not in leaves:
            raise ValueError(f"the output has no tensor leaf {leaf!r}; its leaves are {sorted(leaves)}")
        return leaves[leaf]
    if "logits" in leaves:
        return leaves["logits"]
    floats = [v for v in leaves.values() if v.is_floating_point()]
    if not floats:
        raise ValueError(f"the output has no floating-point tensor to score; its leaves are {sorted(leaves)}")
    return floats[0]


def _pairs(
    outputs: Sequence[Any], reference: Sequence[Any], leaf: str | None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    pairs = []
    for out, ref in zip(outputs, reference, strict=True):
        o, r = _leaf(out, leaf).detach().float().cpu(), _leaf(ref, leaf).detach().float().cpu()
        if o.shape != r.shape:
            raise ValueError(f"output shape {tuple(o.shape)} differs from the reference's {tuple(r.shape)}")
        pairs.append((o, r))
    return pairs


def top1_agreement(
    *,
    dim: int = -1,
    leaf: str | None = None,
    minimum: float | None = None,
    max_drop: float | None = 0.01,
    name: str = "top1_agreement",
) -> TaskMetric:
    """Fraction of positions where the backend's argmax along ``dim`` equals the reference's (classifier / LM head).

    Default tolerance: 0.01 (one point of agreement) against the baseline; no absolute gate.
    """

    def fn(outputs: Sequence[Any], reference: Sequence[Any], samples: Sequence[Any]) -> float:
        agree = total = 0
        for o, r in _pairs(outputs, reference, leaf):
            same = o.argmax(dim=dim) == r.argmax(dim=dim)
            agree += int(same.sum())
            total += same.numel()
        return agree / total if total else 1.0

    return TaskMetric(name, fn, True, minimum, None, max_drop)


def psnr(
    *,
    data_range: float | None = None,
    leaf: str | None = None,
    minimum: float | None = None,
    max_drop: float | None = 1.0,
    ceiling_db: float = 100.0,
    name: str = "psnr",
) -> TaskMetric:
    """Peak signal-to-noise ratio (dB) of the outputs against the reference, over every sample (images, audio).

    ``data_range`` defaults to the reference's max - min. Values above ``ceiling_db`` (float rounding,
    or identical outputs) are reported as ``ceiling_db`` so that exact and near-exact do not differ.
    Default tolerance: 1 dB against the baseline.
    """

    def fn(outputs: Sequence[Any], reference: Sequence[Any], samples: Sequence[Any]) -> float:
        pairs = _pairs(outputs, reference, leaf)
        sq = sum(float(((o.double() - r.double()) ** 2).sum()) for o, r in pairs)
        n = sum(r.numel() for _, r in pairs)
        if data_range is not None:
            peak = float(data_range)
        else:
            peak = max(float(r.max()) for _, r in pairs) - min(float(r.min()) for _, r in pairs)
        if n == 0 or sq == 0.0:
            return ceiling_db
        if peak <= 0:
            raise ValueError("the reference is constant, so PSNR has no range; pass data_range=")
        return min(10.0 * math.log10(peak * peak / (sq / n)), ceiling_db)

    return TaskMetric(name, fn, True, minimum, None, max_drop)


def kl_divergence(
    *,
    dim: int = -1,
    leaf: str | None = None,
    maximum: float | None = None,
    max_drop: float | None = None,
    name: str = "kl_divergence",
) -> TaskMetric:
    """Mean KL(reference softmax || backend softmax) along ``dim``, in nats: lower is better (LM logits).

    Default tolerance: a rise of 1% of the baseline's value.
    """

    def fn(outputs: Sequence[Any], reference: Sequence[Any], samples: Sequence[Any]) -> float:
        total, count = 0.0, 0
        for o, r in _pairs(outputs, reference, leaf):
            log_p, log_q = r.double().log_softmax(dim), o.double().log_softmax(dim)
            kl = (log_p.exp() * (log_p - log_q)).sum(dim)
            total += float(kl.sum())
            count += kl.numel()
        return max(total / count, 0.0) if count else 0.0

    return TaskMetric(name, fn, False, None, maximum, max_drop)
