"""GitHub integration in one import: the REST client, the PR comment, and the Actions outputs of a run."""

from __future__ import annotations

from aitune_ci.github.actions import annotation, echo_command, write_step_outputs, write_step_summary
from aitune_ci.github.client import GitHubClient
from aitune_ci.github.comment import (
    DEFAULT_AUTHOR,
    CommentResult,
    post_report_comment,
    pull_request_number,
    upsert_comment,
)
from aitune_ci.github.publish import annotations, publish, step_outputs
from aitune_ci.report.markdown import DEFAULT_MARKER, MAX_COMMENT_CHARS

__all__ = [
    "DEFAULT_AUTHOR",
    "DEFAULT_MARKER",
    "MAX_COMMENT_CHARS",
    "CommentResult",
    "GitHubClient",
    "annotation",
    "annotations",
    "echo_command",
    "post_report_comment",
    "publish",
    "pull_request_number",
    "step_outputs",
    "upsert_comment",
    "write_step_outputs",
    "write_step_summary",
]
