"""A verdict's message: what happened, by how much, with what confidence, and what to do about it."""

from __future__ import annotations

from dataclasses import replace

from aitune_ci.formatting import fmt_p, fmt_pct
from aitune_ci.status import VerdictKind, VerdictMode
from aitune_ci.store.baseline import update_command
from aitune_ci.verdict.model import ACCURACY, LATENCY, NOW_FAILING, Verdict

__all__ = ["stopped_backend_fix", "with_message"]


def _latency_text(v: Verdict) -> str | None:
    """``12.3 ms vs baseline 11.1 ms: +10.8% slower (95% CI ...; p=...)...``, or None when not compared."""
    if v.current_median_ms is None or v.baseline_median_ms is None or v.delta is None:
        if v.current_median_ms is not None and v.kind is VerdictKind.NEW:
            return f"{v.current_median_ms:.4g} ms"
        return None
    direction = "slower" if v.delta > 0 else "faster"
    against = f"base {v.base_ref}" if v.mode is VerdictMode.RELATIVE else "baseline"
    text = f"{v.current_median_ms:.4g} ms vs {against} {v.baseline_median_ms:.4g} ms: {fmt_pct(v.delta)} {direction}"
    if v.delta_ci is not None:
        text += f" (95% CI {fmt_pct(v.delta_ci[0])} to {fmt_pct(v.delta_ci[1])}"
        text += f"; p={fmt_p(v.p_value)}" if v.p_value is not None and v.delta > 0 else ""
        text += f", q={fmt_p(v.q_value)} over the run" if v.q_value is not None and v.q_value != v.p_value else ""
        text += ")"
    text += f"{_paired_label(v)}; threshold {fmt_pct(v.threshold or 0.0)[1:]}"
    if v.mde is not None:
        text += f", smallest detectable slowdown at this noise {fmt_pct(v.mde)[1:]}"
    return text


def _paired_label(v: Verdict) -> str:
    if not v.paired:
        return ""
    return " [relative to the base, paired in one process]" if v.mode is VerdictMode.RELATIVE else " [paired A/B]"


def _standing(v: Verdict) -> list[str]:
    """What qualifies the outcome: environment, acknowledgement, confirmation and quarantine."""
    parts = []
    if v.env_mismatch:
        diffs = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in sorted(v.env_mismatch.items()))
        parts.append(f"environment differs from the baseline ({diffs}): the change may come from the environment")
    if v.acknowledged:
        parts.append(f"acknowledged in [tool.aitune.acknowledged]: {v.acknowledged}")
    if v.needs_confirmation:
        parts.append(
            f"suspected: re-measuring before failing (confirmation {v.confirmations + 1} of {v.max_confirmations})"
        )
    elif v.kind is VerdictKind.REGRESSED and LATENCY in v.reasons and v.confirmations:
        parts.append(f"confirmed by {v.confirmations} re-measurement(s)")
    if v.quarantined and v.kind in (VerdictKind.REGRESSED, VerdictKind.FAILED):
        parts.append("quarantined in [tool.aitune]: reported, does not fail")
    if v.would_fail:
        parts.append("warn-only: this regression would fail the run; reported, does not fail")
    return parts


def stopped_backend_fix(v: Verdict) -> str:
    """What resolves a backend that stopped working (``now-failing``): the message and the PR comment say it.

    Neither an acknowledgement nor an update accepts one: an update would only record it as a known
    failure, reported on every run.
    """
    widen = (
        " (or, if the drop is expected, widen the spec's TuneSpec(tolerance=...), which every backend of the "
        "fixture shares)"
        if ACCURACY in v.reasons
        else ""
    )
    return (
        f"fix the backend{widen}, drop it from the spec's backends, or quarantine "
        f'"{v.check_id}" in [tool.aitune] of pyproject.toml while it is fixed'
    )


def _what_to_do(v: Verdict) -> str | None:
    """The command or setting that resolves this verdict, if it needs one."""
    command = update_command(v.fixture)
    if v.baseline_required:
        return (
            "no baseline for this hardware and --aitune-strict requires one: this check fails; "
            f"create it with `{update_command(v.fixture, new_only=True)}`"
        )
    if v.kind is VerdictKind.REGRESSED and NOW_FAILING in v.reasons:
        return stopped_backend_fix(v)
    if v.kind is VerdictKind.REGRESSED and v.acknowledged and v.reasons == (LATENCY,):
        return (
            f'if this larger slowdown is expected too, raise the max_slowdown of "{v.check_id}" in '
            "[tool.aitune.acknowledged] of pyproject.toml, or drop it to accept any slowdown"
        )
    if v.kind is VerdictKind.REGRESSED and v.mode is VerdictMode.RELATIVE:
        return (
            f'if this is expected, add "{v.check_id}" to [tool.aitune.acknowledged] in pyproject.toml with the reason'
        )
    if v.kind is VerdictKind.REGRESSED:
        return (
            f'if this is expected, accept it with `{command}`, or add "{v.check_id}" to '
            "[tool.aitune.acknowledged] in pyproject.toml with the reason"
        )
    if v.kind is VerdictKind.NEW:
        return f"record it with `{command}`"
    if v.kind is VerdictKind.IMPROVED:
        return f"lock the gain in with `{command}`"
    if v.kind is VerdictKind.FAILED and not v.quarantined and not v.known_failure:
        return (
            f'fix the backend, drop it from the spec, or quarantine "{v.check_id}" in [tool.aitune] of pyproject.toml'
        )
    return None


def _render(v: Verdict) -> str:
    """The human text: ``check: KIND (reasons). Sentence. Sentence.``"""
    head = f"{v.check_id}: {v.kind.value}"
    if v.reasons:
        head += f" ({', '.join(v.reasons)})"
    latency = _latency_text(v)
    advice = _what_to_do(v)
    metrics = [m.text() for m in v.metrics if m.moved]
    parts = [*([latency] if latency else []), *metrics, *v.notes, *_standing(v), *([advice] if advice else [])]
    return ". ".join([head, *(p[:1].upper() + p[1:] for p in parts)]) + "."


def with_message(v: Verdict) -> Verdict:
    """``v`` with its ``message`` written from its fields (call again after changing any of them)."""
    return replace(v, message=_render(v))
