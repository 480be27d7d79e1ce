"""A run, published in GitHub Actions: annotations, step summary and outputs, and the PR comment."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Mapping

from aitune_ci.github.actions import annotation, echo_command, write_step_outputs, write_step_summary
from aitune_ci.github.comment import post_report_comment
from aitune_ci.report.markdown import render_markdown, severity_key
from aitune_ci.report.view import RunView
from aitune_ci.status import VerdictKind
from aitune_ci.verdict import NOW_FAILING, Verdict

__all__ = ["MAX_ANNOTATIONS", "STEP_VERDICTS", "annotations", "publish", "step_outputs", "step_verdict"]

#: GitHub shows 10 error and 10 warning annotations per step and drops the rest without a word.
MAX_ANNOTATIONS = 10

#: Every value of the ``verdict`` step output (action.yml documents them): stable and lower case.
STEP_VERDICTS = ("pass", "regressed", "failed", "none")

#: Kinds that are annotated as warnings when a check tolerates them (quarantined, acknowledged, known).
_TOLERATED = (VerdictKind.REGRESSED, VerdictKind.FAILED)


def step_verdict(verdicts: Sequence[Verdict]) -> str:
    """The ``verdict`` step output: one of ``STEP_VERDICTS``, so a workflow can branch on it.

    ``failed``: a check that fails CI broke: its backend fails (FAILED, or a regression to failing)
    or a baseline ``--aitune-strict`` requires is missing. ``regressed``: a check that fails CI got
    slower or less accurate, and none broke. ``none``: no check ran (none at all, or every one
    skipped). ``pass``: the rest, quarantined and acknowledged failures included. Then
    ``failing`` is true exactly when the verdict is ``failed`` or ``regressed``.
    """
    if all(v.kind is VerdictKind.SKIPPED and not v.fails for v in verdicts):
        return "none"
    failing = [v for v in verdicts if v.fails]
    if any(v.baseline_required or v.kind is not VerdictKind.REGRESSED or NOW_FAILING in v.reasons for v in failing):
        return "failed"
    return "regressed" if failing else "pass"


def annotations(run: Mapping[str, Any], *, limit: int = MAX_ANNOTATIONS, report_url: str | None = None) -> list[str]:
    """At most ``limit`` annotations, most severe first, and one ``::notice`` counting the rest.

    ``::error`` for checks that fail CI, ``::warning`` for an environment mismatch and for
    tolerated failures. GitHub would drop the ones past its per-step limit silently; here the
    notice says how many there are and where every check is listed.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1 (GitHub shows {MAX_ANNOTATIONS} per step), got {limit}")
    view = RunView.from_run(run)
    errors: list[str] = []
    warnings: list[str] = []
    for v in sorted(view.verdicts, key=severity_key):
        message = v.message or f"{v.check_id}: {v.kind}"
        if v.fails:
            errors.append(annotation("error", message, title=f"aitune-ci: {v.check_id} {v.kind.lower()}"))
        elif v.kind in _TOLERATED:
            title = f"aitune-ci: {v.check_id} {v.kind.lower()} (tolerated)"
            warnings.append(annotation("warning", message, title=title))
    if view.env_mismatch:
        diffs = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in view.env_mismatch.items())
        message = f"the environment differs from the baseline ({diffs}); latency changes may come from it"
        warnings.insert(0, annotation("warning", message, title="aitune-ci: environment mismatch"))
    lines = (errors + warnings)[:limit]
    hidden_errors = max(0, len(errors) - limit)
    hidden_warnings = len(errors) + len(warnings) - len(lines) - hidden_errors
    if hidden_errors or hidden_warnings:
        what = [f"{n} failing check{'s' if n != 1 else ''}" for n in (hidden_errors,) if n]
        what += [f"{n} warning{'s' if n != 1 else ''}" for n in (hidden_warnings,) if n]
        where = f"the report ({report_url})" if report_url else "the HTML report artifact"
        hidden = hidden_errors + hidden_warnings
        message = (
            f"{hidden} more not annotated ({', '.join(what)}): GitHub shows {MAX_ANNOTATIONS} annotations per "
            f"step. Every check is in the step summary, the PR comment and {where}"
        )
        lines.append(annotation("notice", message, title=f"aitune-ci: {hidden} more not annotated"))
    return lines


def step_outputs(run: Mapping[str, Any], reports: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """The step outputs of ``aitune-ci comment``.

    ``verdict`` (``step_verdict``: pass, regressed, failed or none), ``verdict-kind`` (the most
    severe kind that counts: PASS, IMPROVED, REGRESSED, FAILED, NEW, SKIPPED, or NONE without
    checks), ``failing`` (true when CI should fail), a count per outcome (``passed``, ``improved``,
    ``regressed``, ``failed``, ``new``, ``skipped``, ``quarantined``), ``broken`` (fixtures that failed
    before any verdict) and ``missing-shards`` (shards of a merged split that sent nothing), either of
    which makes the verdict ``failed``, ``not-judged`` (passes whose latency could have changed but
    was not judged), ``total``, and a ``report-<kind>`` path per report given.
    """
    view = RunView.from_run(run)
    verdict = step_verdict(view.verdicts)
    out: dict[str, Any] = {
        "verdict": "failed" if view.broken or view.missing_shards else verdict,  # "regressed" says nothing broke
        "verdict-kind": str(view.overall),
        "failing": view.failing,
        **view.counts,
        "broken": len(view.broken),
        "missing-shards": len(view.missing_shards),
        "not-judged": len(view.latency_unjudged),
        "total": len(view.verdicts),
    }
    for kind, path in (reports or {}).items():
        out[f"report-{kind}"] = str(path)
    return out


def publish(
    run: Mapping[str, Any],
    *,
    report_url: str | None = None,
    reports: Mapping[str, str | Path] | None = None,
    comment: bool = True,
    fail_on_error: bool = False,
    bot_login: str | None = None,
    echo: Callable[[str], Any] = echo_command,
) -> int:
    """In GitHub Actions: echo annotations, write the step summary and outputs, upsert the PR comment.

    Outside Actions (no ``GITHUB_STEP_SUMMARY`` / ``GITHUB_OUTPUT``) those writes are skipped.
    Returns the exit status of posting the comment (0 unless ``fail_on_error`` and it failed).

    Args:
        bot_login: the login the token comments as (see ``post_report_comment``); None finds it.
        echo: where workflow commands go; the runner reads them from stdout (the default).
    """
    for line in annotations(run, report_url=report_url):
        echo(line)
    body = render_markdown(run, report_url=report_url)
    write_step_summary(body)
    write_step_outputs(step_outputs(run, reports))
    if not comment:
        return 0
    return post_report_comment(body, fail_on_error=fail_on_error, bot_login=bot_login, echo=echo)
