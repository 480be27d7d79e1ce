"""One table of report formats and one table of verdict looks: every writer, help text and renderer reads them."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from aitune_ci.options import add_options
from aitune_ci.report import REPORT_FORMATS, render_report, report_suffix, write_report
from aitune_ci.report.markdown import render_markdown
from aitune_ci.report.terminal import format_verdict_table
from aitune_ci.status import PRESENTATION, VerdictKind
from aitune_ci.store.runs import load_run
from aitune_ci.verdict import Verdict

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(DATA / "report_run.json")


def test_the_report_option_help_names_every_format() -> None:
    parser = argparse.ArgumentParser()
    add_options(parser.add_argument)
    help_text = " ".join(parser.format_help().split())
    for suffix, fmt in REPORT_FORMATS.items():
        assert f"{suffix} {' '.join(fmt.description.split())}" in help_text


@pytest.mark.parametrize(
    ("name", "suffix"),
    [
        ("a.html", ".html"),
        ("a.HTM", ".html"),
        ("a.md", ".md"),
        ("a.markdown", ".md"),
        ("run.json", ".json"),
        ("nightly.benchmark.json", ".benchmark.json"),
    ],
)
def test_a_file_name_picks_its_format_and_a_double_suffix_wins(name: str, suffix: str) -> None:
    assert report_suffix(name) == suffix


def test_every_format_in_the_table_writes_its_file(run: dict, tmp_path: Path) -> None:
    starts = {".html": "<!DOCTYPE html>", ".md": "<!-- aitune-ci:report -->"}
    for suffix in REPORT_FORMATS:
        path = write_report(run, tmp_path / f"report{suffix}")
        text = path.read_text(encoding="utf-8")
        if suffix in starts:
            assert text.startswith(starts[suffix])
        else:
            json.loads(text)
    assert (tmp_path / "report.json").read_text() == render_report(run, ".json")
    assert json.loads((tmp_path / "report.json").read_text()) == run
    assert "benchmarks" in json.loads((tmp_path / "report.benchmark.json").read_text())


def test_the_run_json_takes_no_renderer_options(run: dict) -> None:
    with pytest.raises(TypeError, match="takes no options"):
        render_report(run, ".json", title="x")


def test_the_comment_reads_icons_and_headlines_from_the_presentation_table(
    run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    improved = PRESENTATION[VerdictKind.IMPROVED]
    monkeypatch.setitem(
        PRESENTATION, VerdictKind.IMPROVED, dataclasses.replace(improved, icon="🚀", headline="quicker")
    )
    text = render_markdown(run)
    assert "## 🚀 aitune-ci: quicker" in text
    assert "| 🚀 IMPROVED |" in text


def test_the_terminal_table_orders_checks_by_the_table_severity(run: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    verdicts = [Verdict.from_json(v) for v in run["verdicts"]]
    first = format_verdict_table(verdicts).splitlines()[2]
    assert first.rstrip().endswith("IMPROVED")
    skipped = PRESENTATION[VerdictKind.SKIPPED]
    monkeypatch.setitem(PRESENTATION, VerdictKind.SKIPPED, dataclasses.replace(skipped, severity=-1))
    assert format_verdict_table(verdicts).splitlines()[2].rstrip().endswith("SKIPPED")
