"""Rendering results for people and tools: terminal tables, HTML, markdown, run JSON, benchmark-tool JSON.

A report format is its renderer module plus one row of ``REPORT_FORMATS``. Renderers are imported on
use, so ``import aitune_ci.report`` stays free of jinja2, matplotlib and pandas (the pytest plugin
and the option help import it on every run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aitune_ci.atomic import atomic_write_text
from aitune_ci.store.history import current_commit

__all__ = [
    "REPORT_FORMATS",
    "ReportFormat",
    "render_report",
    "render_run_json",
    "report_suffix",
    "to_pytest_benchmark",
    "write_report",
]


def _html(run: Mapping[str, Any], **kw: Any) -> str:
    from aitune_ci.report.html import render_html  # lazy: jinja2, matplotlib and pandas load only for a page

    return render_html(run, **kw)


def _markdown(run: Mapping[str, Any], **kw: Any) -> str:
    from aitune_ci.report.markdown import render_markdown  # lazy: a renderer loads on use, like the page's

    return render_markdown(run, **kw)


def _pytest_benchmark(run: Mapping[str, Any], **kw: Any) -> str:
    from aitune_ci.report.pytest_benchmark import render_pytest_benchmark  # lazy: a renderer loads on use

    return render_pytest_benchmark(run, **kw)


def _action_benchmark(run: Mapping[str, Any], **kw: Any) -> str:
    from aitune_ci.report.action_benchmark import render_action_benchmark  # lazy: a renderer loads on use

    return render_action_benchmark(run, **kw)


def render_run_json(run: Mapping[str, Any], **kw: Any) -> str:
    """The run JSON itself, keys sorted (what ``aitune-ci report``, ``merge`` and ``comment`` read)."""
    if kw:
        raise TypeError(f"the run JSON takes no options, got {sorted(kw)}")
    return json.dumps(run, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class ReportFormat:
    """One format a report file can have.

    Attributes:
        render: turns a run JSON (and the renderer's keyword options) into the file's text.
        description: what the file is, shown in ``--aitune-report``'s help.
        name: the ``report-<name>`` step output that ``aitune-ci comment --report-file`` sets.
        flag: the ``aitune-ci report`` option that writes this format.
        keywords: the keyword options ``render`` takes from ``aitune-ci report``.
    """

    render: Callable[..., str]
    description: str
    name: str
    flag: str
    keywords: tuple[str, ...] = ()


#: Suffix -> format, in the order help texts list them. A suffix of two dots (``.benchmark.json``)
#: is matched on the whole file name, before ``.json``.
REPORT_FORMATS: dict[str, ReportFormat] = {
    ".html": ReportFormat(
        _html, "self-contained HTML report", "html", "--html", ("history", "title", "report_url", "commit")
    ),
    ".md": ReportFormat(_markdown, "markdown (PR comment / step summary)", "markdown", "--markdown", ("report_url",)),
    ".json": ReportFormat(
        render_run_json, "run JSON (input of `aitune-ci report`, `merge` and `comment`)", "json", "--json"
    ),
    ".benchmark.json": ReportFormat(
        _pytest_benchmark,
        "pytest-benchmark JSON (for `pytest-benchmark compare`, github-action-benchmark)",
        "benchmark",
        "--benchmark-json",
        ("commit",),
    ),
    ".action-benchmark.json": ReportFormat(
        _action_benchmark,
        "github-action-benchmark JSON for its customSmallerIsBetter tool (median latency per check, ms)",
        "action-benchmark",
        "--action-benchmark-json",
    ),
}
_ALIASES = {".htm": ".html", ".markdown": ".md"}


def report_suffix(path: str | os.PathLike[str]) -> str:
    """The format key of a report path: one of ``REPORT_FORMATS`` (``.html``, ``.md``, ...).

    Raises:
        ValueError: the suffix is not one aitune-ci writes (the message lists those it does).
    """
    name = Path(path).name.lower()
    compound = [s for s in REPORT_FORMATS if s.count(".") > 1 and name.endswith(s)]
    if compound:
        return max(compound, key=len)
    suffix = _ALIASES.get(Path(name).suffix, Path(name).suffix)
    if suffix not in REPORT_FORMATS:
        known = ", ".join(REPORT_FORMATS)
        raise ValueError(f"cannot tell the report format of {os.fspath(path)!r}: use one of the suffixes {known}")
    return suffix


def render_report(run: Mapping[str, Any], suffix: str, **kw: Any) -> str:
    """Render a run JSON in the format of ``suffix`` (a suffix such as ``.html`` or a file name).

    Keyword arguments go to the renderer: ``render_html`` (history, title, report_url,
    baseline_environment, commit), ``render_markdown`` (report_url, max_chars, marker, title) or
    ``to_pytest_benchmark`` (commit, project, branch); the run JSON and ``render_action_benchmark``
    take none.
    """
    name = "report" + suffix if suffix.startswith(".") else suffix if "." in suffix else "report." + suffix
    return REPORT_FORMATS[report_suffix(name)].render(run, **kw)


def write_report(
    run: Mapping[str, Any], path: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None, **kw: Any
) -> Path:
    """Render ``run`` in the format its file name asks for and write it atomically; return the path.

    A format that records the commit gets this checkout's when ``commit`` is not given
    (``GITHUB_SHA``, else ``git rev-parse HEAD`` in ``root``, default the current directory), so a
    file pytest writes names what it measured.
    """
    path = Path(path)
    if "commit" in REPORT_FORMATS[report_suffix(path.name)].keywords and kw.get("commit") is None:
        kw["commit"] = current_commit(root)
    atomic_write_text(path, render_report(run, path.name, **kw))
    return path


def to_pytest_benchmark(run: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON format (see ``aitune_ci.report.pytest_benchmark``)."""
    from aitune_ci.report.pytest_benchmark import to_pytest_benchmark as convert  # lazy: a renderer loads on use

    return convert(run, **kw)
