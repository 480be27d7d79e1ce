"""What a verdict holds, so that judging, rendering and counting share one plain record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from aitune_ci.config import check_id
from aitune_ci.errors import DataFileError
from aitune_ci.formatting import round_sig
from aitune_ci.stats import RatioEstimate
from aitune_ci.status import VerdictKind, VerdictMode
from aitune_ci.verdict.metrics import MetricCheck, metric_reason

__all__ = [
    "ACCURACY",
    "LATENCY",
    "METRIC_REASONS",
    "NOT_COMPARED",
    "NOT_JUDGED",
    "NOW_FAILING",
    "REASON_ORDER",
    "TASK_METRIC",
    "PairedRatio",
    "RatioLike",
    "Verdict",
]

#: Why a check regressed (the order in which ``Verdict.reasons`` lists them).
LATENCY = "latency"
ACCURACY = "accuracy"
NOW_FAILING = "now-failing"
#: A task metric (``TuneSpec(metric=...)``) worsened beyond its tolerance; the note names the metric.
TASK_METRIC = "task-metric"
#: A gated metric beyond latency that regressed (``verdict.metrics``): ``peak-memory``, ``build-time``, ...
METRIC_REASONS = tuple(metric_reason(m) for m in ("throughput", "peak_memory", "build_time", "load_time", "first_call"))
REASON_ORDER = (LATENCY, *METRIC_REASONS, ACCURACY, TASK_METRIC, NOW_FAILING)

#: How a note starts when the latency was not compared at all (no data, or another batch size or
#: CPU share) or not judged (a stored comparison too noisy or unarmed): the reports look for them.
NOT_COMPARED = "latency not compared"
NOT_JUDGED = "latency not judged"

#: A paired A/B estimate with its numbers given directly (for callers and tests that have them).
PairedRatio = RatioEstimate


class RatioLike(Protocol):
    """A paired A/B estimate of current / baseline time (``aitune_ci.stats.RatioEstimate`` fits).

    ``ci_low``/``ci_high`` bound a 95% confidence interval of ``ratio``; ``n`` paired rounds.
    """

    @property
    def ratio(self) -> float: ...
    @property
    def ci_low(self) -> float: ...
    @property
    def ci_high(self) -> float: ...
    @property
    def n(self) -> int: ...


@dataclass(frozen=True)
class Verdict:
    """The judged outcome of one (fixture, backend) check, with everything needed to explain it.

    Attributes:
        delta: relative latency change, current vs baseline (+0.08 = 8% slower).
        delta_ci: 95% confidence interval of ``delta``.
        p_value: one-sided p that the current run is *slower* (the regression test); None when no
            latency comparison was made.
        q_value: ``p_value`` after Benjamini-Hochberg over the run (``apply_run_correction``);
            equal to ``p_value`` until then.
        threshold: the effective threshold applied (user's, or larger when noise demands).
        mde: minimum detectable slowdown at this check's noise (80% power).
        noise: the between-run relative noise (``sigma_run``) or, when paired, the ratio's SE.
        paired: the latency came from an interleaved A/B ratio against the baseline's artifact.
        env_mismatch: environment fields that differ from the baseline: ``{field: (old, new)}``.
        acknowledged: the reason from ``[tool.aitune.acknowledged]``, when one applies.
        needs_confirmation: a latency regression that must be re-measured before it fails.
        quarantined: listed in ``[tool.aitune] quarantine``: reported, never fails.
        known_failure: FAILED, and the baseline records the same backend as failing too.
        confirmations: re-measurements already pooled into the current latency.
        baseline_required: there is no baseline and ``--aitune-strict`` requires one, so the check
            fails whatever its kind (``require_baseline``).
        notes: further facts shown in the message (winner changes are reported separately).
        mode: what the check was judged against: the stored baseline, or (relative mode) the
            PR's base built and timed in the same process.
        base_ref: in relative mode, the git ref and commit of the base, e.g. ``main (1a2b3c4d5e6f)``.
        metrics: the gated metrics beyond latency, each compared with the baseline (or the base).
        warn_only: ``--aitune-warn-only`` or ``[tool.aitune] warn_only``: a regression is reported
            and ``would_fail`` says so, but it does not fail; a backend that now fails still does.
        identical_to_base: relative mode found base and head doing the same work (equal
            ``work_key``: code, weights, samples, options, environment), so it did not time them;
            in stored mode, the baseline's latest update did this run's work.
    """

    fixture: str
    backend: str
    kind: VerdictKind
    reasons: tuple[str, ...] = ()
    baseline_median_ms: float | None = None
    current_median_ms: float | None = None
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    p_value: float | None = None
    q_value: float | None = None
    threshold: float | None = None
    mde: float | None = None
    noise: float | None = None
    paired: bool = False
    env_mismatch: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    acknowledged: str | None = None
    needs_confirmation: bool = False
    quarantined: bool = False
    known_failure: bool = False
    confirmations: int = 0
    max_confirmations: int = 0
    alpha: float = 0.05
    baseline_required: bool = False
    notes: tuple[str, ...] = ()
    mode: VerdictMode = VerdictMode.STORED
    base_ref: str | None = None
    metrics: tuple[MetricCheck, ...] = ()
    warn_only: bool = False
    identical_to_base: bool = False
    message: str = ""

    @property
    def check_id(self) -> str:
        """``tune_resnet[inductor]``: the pytest item id and the ``[tool.aitune]`` key of this check."""
        return check_id(self.fixture, self.backend)

    @property
    def fails(self) -> bool:
        """Whether this verdict fails CI (once confirmed): a regression or a new failure, not quarantined.

        A check whose baseline ``--aitune-strict`` requires and is missing fails too.
        """
        if self.baseline_required:
            return True
        return self._would_fail and not self.would_fail

    @property
    def _would_fail(self) -> bool:
        if self.quarantined:
            return False
        return self.kind is VerdictKind.REGRESSED or (self.kind is VerdictKind.FAILED and not self.known_failure)

    @property
    def would_fail(self) -> bool:
        """Warn-only spared it: without warn-only this regression would fail CI.

        A backend that no longer builds, runs or stays accurate (``now-failing``) is no gradual
        rollout matter: it fails even in warn-only mode, like a FAILED backend.
        """
        return (
            self.warn_only
            and self._would_fail
            and self.kind is VerdictKind.REGRESSED
            and NOW_FAILING not in self.reasons
        )

    @property
    def latency_note(self) -> str | None:
        """Why this check's latency was not compared with what it is judged against, or None when it was."""
        return next((n for n in self.notes if n.startswith((NOT_JUDGED, NOT_COMPARED))), None)

    @property
    def latency_unjudged(self) -> str | None:
        """Why a PASS whose latency could have changed did not judge it (``latency_note``), or None.

        None where it was judged, where the verdict is not a PASS, and where the check did the same
        work as what it is compared with (``identical_to_base``): nothing there could have changed.
        A PASS with a reason here found nothing because it could not look, and every report says so apart.
        """
        if self.identical_to_base or self.kind is not VerdictKind.PASS:
            return None
        return self.latency_note

    def metric(self, name: str) -> MetricCheck | None:
        """The check of metric ``name`` (``build_time``, ``peak_memory``, ...), if it was compared."""
        return next((m for m in self.metrics if m.metric == name), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; floats keep 6 significant digits, NaN and ±inf stay as JSON's tokens."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (VerdictKind, VerdictMode)):
                value = value.value
            elif isinstance(value, float):
                value = round_sig(value)
            elif f.name == "delta_ci" and value is not None:
                value = [round_sig(x) for x in value]
            elif f.name == "env_mismatch":
                value = {k: [old, new] for k, (old, new) in sorted(value.items())}
            elif f.name == "metrics":
                value = [m.to_json() for m in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["would_fail"] = self.would_fail
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: object = "<verdict>") -> Verdict:
        """Parse what ``to_json`` wrote (e.g. verdicts sent back by pytest-xdist workers)."""
        try:
            kwargs = {f.name: data[f.name] for f in fields(cls) if f.name in data}
            kwargs["kind"] = VerdictKind(kwargs["kind"])
            kwargs["mode"] = VerdictMode(kwargs.get("mode", VerdictMode.STORED))
            kwargs["reasons"] = tuple(kwargs.get("reasons", ()))
            kwargs["notes"] = tuple(kwargs.get("notes", ()))
            if kwargs.get("delta_ci") is not None:
                low, high = kwargs["delta_ci"]
                kwargs["delta_ci"] = (low, high)
            kwargs["env_mismatch"] = {k: (v[0], v[1]) for k, v in kwargs.get("env_mismatch", {}).items()}
            kwargs["metrics"] = tuple(MetricCheck.from_json(m) for m in kwargs.get("metrics", ()))
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataFileError(
                source, f"malformed verdict ({type(exc).__name__}: {exc})", "re-run the check"
            ) from None
