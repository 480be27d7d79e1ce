"""Rendering results for people and tools: terminal tables, HTML, markdown, run JSON, pytest-benchmark JSON.

Renderers are imported on use, so ``import aitune_ci.report`` stays free of jinja2, matplotlib and
pandas (the pytest plugin imports it on every run).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["REPORT_SUFFIXES", "render_report", "report_suffix", "to_pytest_benchmark", "write_report"]

#: What each suffix renders. ``.benchmark.json`` is matched on the whole file name.
REPORT_SUFFIXES = {
    ".html": "self-contained HTML report",
    ".md": "markdown (PR comment / step summary)",
    ".json": "run JSON (input of `aitune-ci report`, `merge` and `comment`)",
    ".benchmark.json": "pytest-benchmark JSON (for `pytest-benchmark compare`, github-action-benchmark)",
}
_ALIASES = {".htm": ".html", ".markdown": ".md"}


def report_suffix(path: str | os.PathLike[str]) -> str:
    """The format key of a report path: ``.html``, ``.md``, ``.json`` or ``.benchmark.json``.

    Raises:
        ValueError: the suffix is not one aitune-ci writes (the message lists those it does).
    """
    name = Path(path).name.lower()
    if name.endswith(".benchmark.json"):
        return ".benchmark.json"
    suffix = _ALIASES.get(Path(name).suffix, Path(name).suffix)
    if suffix not in REPORT_SUFFIXES:
        known = ", ".join(REPORT_SUFFIXES)
        raise ValueError(f"cannot tell the report format of {os.fspath(path)!r}: use one of the suffixes {known}")
    return suffix


def render_report(run: Mapping[str, Any], suffix: str, **kw: Any) -> str:
    """Render a run JSON in the format of ``suffix`` (a suffix such as ``.html`` or a file name).

    Keyword arguments go to the renderer: ``render_html`` (history, title, report_url,
    baseline_environment, commit), ``render_markdown`` (report_url, max_chars, marker, title) or
    ``to_pytest_benchmark`` (commit, project, branch).
    """
    name = "report" + suffix if suffix.startswith(".") else suffix if "." in suffix else "report." + suffix
    key = report_suffix(name)
    if key == ".html":
        from aitune_ci.report.html import render_html

        return render_html(run, **kw)
    if key == ".md":
        from aitune_ci.report.markdown import render_markdown

        return render_markdown(run, **kw)
    if key == ".benchmark.json":
        return json.dumps(to_pytest_benchmark(run, **kw), indent=4, allow_nan=False) + "\n"
    if kw:
        raise TypeError(f"the run JSON takes no options, got {sorted(kw)}")
    return json.dumps(run, indent=2, sort_keys=True) + "\n"


def write_report(run: Mapping[str, Any], path: str | os.PathLike[str], **kw: Any) -> Path:
    """Render ``run`` in the format its file name asks for and write it atomically; return the path."""
    from aitune_ci.atomic import atomic_write_text

    path = Path(path)
    atomic_write_text(path, render_report(run, path.name, **kw))
    return path


def to_pytest_benchmark(run: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
    """The run in pytest-benchmark's JSON format (see ``aitune_ci.report.pytest_benchmark``)."""
    from aitune_ci.report.pytest_benchmark import to_pytest_benchmark as convert

    return convert(run, **kw)
