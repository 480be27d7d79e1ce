"""A run, published in GitHub Actions: annotations, step summary and outputs, and the PR comment."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from aitune_ci.github.actions import annotation, echo_command, write_step_outputs, write_step_summary
from aitune_ci.github.comment import post_report_comment
from aitune_ci.report.markdown import render_markdown
from aitune_ci.report.view import RunView
from aitune_ci.status import VerdictKind

__all__ = ["annotations", "publish", "step_outputs"]

#: Kinds that are annotated as warnings when a check tolerates them (quarantined, acknowledged, known).
_TOLERATED = (VerdictKind.REGRESSED, VerdictKind.FAILED)


def annotations(run: Mapping[str, Any]) -> list[str]:
    """``::error`` lines for checks that fail CI, ``::warning`` for tolerated failures and an environment mismatch."""
    view = RunView.from_run(run)
    lines = []
    for v in view.verdicts:
        message = v.message or f"{v.check_id}: {v.kind}".split(". ")[0]
        if v.fails:
            lines.append(annotation("error", message, title=f"aitune-ci: {v.check_id} {v.kind.lower()}"))
        elif v.kind in _TOLERATED:
            lines.append(annotation("warning", message, title=f"aitune-ci: {v.check_id} {v.kind.lower()} (tolerated)"))
    if view.env_mismatch:
        diffs = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in view.env_mismatch.items())
        lines.append(
            annotation(
                "warning",
                f"the environment differs from the baseline ({diffs}); latency changes may come from it",
                title="aitune-ci: environment mismatch",
            )
        )
    return lines


def step_outputs(run: Mapping[str, Any], reports: Mapping[str, str | Path] | None = None) -> dict[str, Any]:
    """Step outputs: ``verdict``, ``failing`` (true when CI should fail), each count, ``total`` and ``report-<kind>`` paths."""
    view = RunView.from_run(run)
    out: dict[str, Any] = {"verdict": view.overall, "failing": view.failing, **view.counts, "total": len(view.verdicts)}
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
    echo: Callable[[str], Any] = echo_command,
) -> int:
    """In GitHub Actions: echo annotations, write the step summary and outputs, upsert the PR comment.

    Outside Actions (no ``GITHUB_STEP_SUMMARY`` / ``GITHUB_OUTPUT``) those writes are skipped.
    Returns the exit status of posting the comment (0 unless ``fail_on_error`` and it failed).

    Args:
        echo: where workflow commands go; the runner reads them from stdout (the default).
    """
    for line in annotations(run):
        echo(line)
    body = render_markdown(run, report_url=report_url)
    write_step_summary(body)
    write_step_outputs(step_outputs(run, reports))
    if not comment:
        return 0
    return post_report_comment(body, fail_on_error=fail_on_error, echo=echo)
