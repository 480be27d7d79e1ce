"""The whole run's verdicts: false alarms controlled across checks, and the counts every report shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from aitune_ci.formatting import fmt_p, fmt_pct
from aitune_ci.status import PRESENTATION, VerdictKind
from aitune_ci.verdict.model import LATENCY, Verdict
from aitune_ci.verdict.text import with_message

__all__ = ["STRICT_NO_BASELINE", "apply_run_correction", "count_line", "summary_counts"]

#: ``count_line``'s label for checks that fail only because ``--aitune-strict`` wants a missing baseline.
STRICT_NO_BASELINE = "failed (no baseline, --aitune-strict)"
#: The count of quarantined regressions and failures: reported, never failing.
_QUARANTINED = "quarantined"


def _benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """BH-adjusted q-values, in input order (step-up: q_(i) = min_{j>=i} p_(j) * m / j)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    q = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        q[i] = min(running, 1.0)
    return q


def apply_run_correction(verdicts: Iterable[Verdict], alpha: float | None = None) -> list[Verdict]:
    """Control false alarms over the whole run: Benjamini-Hochberg over every latency p-value.

    With 40 checks, a 5% test would flag two of them by chance; BH keeps the expected share of
    false regressions among those flagged at ``alpha``. A latency regression whose q exceeds
    ``alpha`` loses that reason (becoming PASS when nothing else regressed) with a note. Order is
    kept; applying it twice gives the same result.

    Args:
        alpha: the run's false-discovery rate; defaults to each verdict's ``policy.alpha``.

    The plugin corrects each fixture's verdicts together; ``judge_with_confirmations``' early stop
    (``checks_in_run``) relies on knowing how many verdicts one correction covers.
    """
    verdicts = list(verdicts)
    tested = [i for i, v in enumerate(verdicts) if v.p_value is not None]
    if not tested:
        return verdicts
    q_values = _benjamini_hochberg([verdicts[i].p_value for i in tested])  # type: ignore[misc]
    out = list(verdicts)
    for i, q in zip(tested, q_values, strict=True):
        v = replace(verdicts[i], q_value=q)
        limit = alpha if alpha is not None else v.alpha
        if LATENCY in v.reasons and q > limit:
            reasons = tuple(r for r in v.reasons if r != LATENCY)
            note = (
                f"latency {fmt_pct(v.delta or 0.0)} not significant once {len(tested)} checks of this run are "
                f"taken into account (q={fmt_p(q)} > {limit:g})"
            )
            v = replace(
                v,
                reasons=reasons,
                kind=VerdictKind.REGRESSED if reasons else VerdictKind.PASS,
                needs_confirmation=False,
                notes=v.notes + (note,),
            )
        out[i] = with_message(v)
    return out


def summary_counts(verdicts: Iterable[Verdict]) -> dict[str, int]:
    """Checks per outcome, keyed and ordered by ``status.PRESENTATION``'s count labels.

    Quarantined regressions and failures are counted as ``quarantined`` only, after the rest.
    """
    counts = {row.count_label: 0 for row in PRESENTATION.values()}
    counts[_QUARANTINED] = 0
    for v in verdicts:
        if v.quarantined and v.kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
            counts[_QUARANTINED] += 1
        else:
            counts[PRESENTATION[v.kind].count_label] += 1
    return counts


def count_line(verdicts: Iterable[Verdict]) -> str:
    """``aitune: 12 passed, 1 regressed, 2 new, 3 skipped`` (outcomes with a zero count left out).

    Warn-only regressions count as regressed and say how many would fail without warn-only:
    ``2 regressed (1 warn-only: would fail, not failing)``. Passes whose latency could have changed
    but was not judged (a busy machine, a stored baseline not yet armed) say so:
    ``5 passed (2 with latency not judged)``: they found nothing because they could not look.
    Checks failed by ``--aitune-strict`` for want of a baseline are counted apart, after ``failed``
    (``2 failed (no baseline, --aitune-strict)``), not as the ``new`` or ``skipped`` their verdict says.
    """
    verdicts = list(verdicts)
    required = [v for v in verdicts if v.baseline_required]
    counts = summary_counts([v for v in verdicts if not v.baseline_required])
    failed = PRESENTATION[VerdictKind.FAILED].count_label
    regressed = PRESENTATION[VerdictKind.REGRESSED].count_label
    passed = PRESENTATION[VerdictKind.PASS].count_label
    warned = sum(v.would_fail for v in verdicts)
    unjudged = sum(v.latency_unjudged is not None for v in verdicts)
    notes = {
        regressed: f" ({warned} warn-only: would fail, not failing)" if warned else "",
        passed: f" ({unjudged} with latency not judged)" if unjudged else "",
    }
    shown = []
    for label, n in counts.items():
        if n:
            shown.append(f"{n} {label}{notes.get(label, '')}")
        if label == failed and required:
            shown.append(f"{len(required)} {STRICT_NO_BASELINE}")
    return "aitune: " + (", ".join(shown) if shown else "no checks")
