"""The HTML report of a real run (the demo models on an H100, tests/data/): self-contained, correct in a
real browser (headless Chromium, started here), readable on a phone and in dark mode."""

from __future__ import annotations

import copy
import json
import re
import shutil
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from aitune_ci.report import render_report, write_report
from aitune_ci.report.html import render_html
from aitune_ci.report.trends import mark_change_points
from aitune_ci.store.history import read_history
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"
RUN = DATA / "report_run.json"
HISTORY = DATA / "report_history.jsonl"

chromium_missing = pytest.mark.skipif(
    shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists(),
    reason="headless Chromium is not installed (Debian: apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(RUN)


@pytest.fixture(scope="module")
def history():
    return read_history(HISTORY)


@pytest.fixture(scope="module")
def page(run: dict, history, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_report(run, path, history=history, commit="cad57c84ebdc1d00ea41c1ddce9b225dc04a8cc9")
    return path


@pytest.fixture(scope="module")
def browser():
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("headless Chromium is not installed (Debian: apt-get install -y chromium)")
    from chromium import Browser

    with Browser() as b:
        yield b


def _checks(run: dict) -> list[tuple[str, str, str]]:
    return [(v["fixture"], v["backend"], v["kind"]) for v in run["verdicts"]]


class _Refs(HTMLParser):
    """Every URL-bearing attribute and every tag of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data") and value:
                self.urls.append(value)
            if name == "id" and value:
                self.ids.append(value)


def test_report_references_nothing_outside_the_file(page: Path) -> None:
    text = page.read_text()
    refs = _Refs()
    refs.feed(text)
    external = [u for u in refs.urls if not u.startswith("#")]
    assert external == [], f"the report must work offline, but links to {external}"
    assert "link" not in refs.tags and "img" not in refs.tags and "iframe" not in refs.tags
    assert not re.search(r"url\((?!['\"]?#)|@import", text), "CSS and SVG may only refer to ids in the page"
    assert "<svg" in text and "<script>" in text  # charts and the sort script are inline


def test_element_ids_are_unique_across_all_charts(page: Path) -> None:
    refs = _Refs()
    refs.feed(page.read_text())
    duplicates = sorted({i for i in refs.ids if refs.ids.count(i) > 1})
    assert duplicates == [], "inline SVGs share one id namespace; duplicated ids break clip paths"


def test_each_fixture_backend_verdict_and_number_is_in_the_report(run: dict, page: Path) -> None:
    text = page.read_text()
    for fixture, backend, kind in _checks(run):
        assert fixture in text and backend in text and kind in text
    for result in run["results"]:
        for row in result["backends"]:
            if row["latency"]:
                median = row["latency"]["median_ms"]
                assert f"{median:.4g}" in text, f"{result['name']}[{row['backend']}] median {median} missing"
            if row["error"]:
                assert row["error"].splitlines()[0][:40].replace("'", "&#39;") in text


def test_header_shows_gpu_driver_and_software_versions(run: dict, page: Path) -> None:
    env = run["results"][0]["environment"]
    text = page.read_text()
    for key in ("gpu", "driver", "torch", "cuda", "python", "hardware_key"):
        assert str(env[key]) in text, key


def test_environment_mismatch_with_the_baseline_is_shown(run: dict) -> None:
    changed = copy.deepcopy(run)
    changed["verdicts"][0]["env_mismatch"] = {"torch": ["2.10.0+cu130", "2.11.0+cu130"]}
    html = render_html(changed)
    assert "Differs from the baseline" in html
    assert "2.10.0+cu130" in html
    assert "Differs from the baseline" not in render_html(run)


def test_untrusted_error_text_is_escaped(run: dict) -> None:
    hostile = copy.deepcopy(run)
    row = hostile["results"][0]["backends"][0]
    row["status"], row["error"] = "failed", "<script>alert('x')</script> & more"
    html = render_html(hostile)
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert" in html


def test_trend_chart_marks_the_drift_found_in_the_history(run: dict, history) -> None:
    html = render_html(run, history=history)
    assert "Trend over the history" in html
    assert re.search(r"cudagraphs: level shift \+\d", html), "the real cudagraphs drift (0.12 -> 0.36 ms) is marked"
    assert "Trend over the history" not in render_html(run)


def test_a_level_shift_names_the_environment_change_that_came_with_it(run: dict, history, tmp_path: Path) -> None:
    """The real H100 history, edited so that torch was upgraded on the night the cudagraphs shift starts."""
    marked = mark_change_points(history)
    night = marked[(marked["backend"] == "cudagraphs") & marked["change_point"]]["date"].min()
    lines = []
    for line in HISTORY.read_text().splitlines():
        record = json.loads(line)
        if datetime.fromisoformat(record["date"]) >= night:
            record["environment"]["torch"] = "2.12.0+cu130"
        lines.append(json.dumps(record))
    edited = tmp_path / "history.jsonl"
    edited.write_text("\n".join(lines) + "\n")

    html = render_html(run, history=read_history(edited))

    assert re.search(
        r"cudagraphs: level shift \+[^<]*; the environment changed then: torch 2\.11\.0\+cu130 → 2\.12\.0\+cu130", html
    )
    assert "the environment changed" not in render_html(run, history=history)


def test_histories_of_two_machines_are_separate_series(run: dict, tmp_path: Path) -> None:
    """`aitune-ci report` reads one history file per hardware key; a CPU's shift is its own, not the GPU's."""
    import pandas as pd

    def history(hardware: str, medians: list[float]) -> Path:
        path = tmp_path / f"{hardware}.jsonl"
        lines = [
            json.dumps(
                {
                    "schema_version": 1,
                    "date": f"2026-11-{day + 1:02d}T02:00:00+00:00",
                    "fixture": "tune_small_cnn",
                    "hardware_key": hardware,
                    "environment": {"hardware_key": hardware, "torch": "2.13.0"},
                    "backends": {"eager": {"status": "ok", "median_ms": ms}},
                }
            )  # fmt: skip
            for day, ms in enumerate(medians)
        ]
        path.write_text("\n".join(lines) + "\n")
        return path

    quiet = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01]
    cpu = history("cpu-x86_64-AMD-EPYC", quiet + [2 * x for x in quiet])
    gpu = history("NVIDIA-H100-80GB-HBM3", [0.1 * x for x in quiet + quiet])
    merged = mark_change_points(pd.concat([read_history(cpu), read_history(gpu)], ignore_index=True))

    html = render_html(run, history=merged)

    assert re.search(r"eager on cpu-x86_64-AMD-EPYC: level shift \+\d+\.\d%", html)
    assert "hardware_key" not in html.split("Trend over the history")[1]


def test_suffix_dispatch_renders_html_and_markdown(run: dict) -> None:
    assert render_report(run, ".html").startswith("<!DOCTYPE html>")
    assert render_report(run, "report.md").startswith("<!-- aitune-ci:report -->")
    with pytest.raises(ValueError, match=r"\.html, \.md, \.json, \.benchmark\.json"):
        render_report(run, ".pdf")


@chromium_missing
def test_real_run_report_opens_in_chromium_without_console_errors(run: dict, page: Path, browser) -> None:
    shot_dir = page.parent
    report = browser.load(page, width=1280, height=900)
    (shot_dir / "report.png").write_bytes(report.screenshot)
    assert report.problems == [], report.problems
    assert report.console == []
    assert report.screenshot.startswith(b"\x89PNG") and len(report.screenshot) > 50_000
    for fixture, backend, kind in _checks(run):
        assert fixture in report.text and backend in report.text and kind in report.text
    assert report.text.count("Latency per backend") == len(run["results"])
    assert _luminance(report.body_background) > 0.9


@chromium_missing
def test_report_fits_a_phone_screen_and_follows_dark_mode(page: Path, browser) -> None:
    report = browser.load(page, width=390, height=844, mobile=True, dark=True)
    assert report.problems == []
    assert report.scroll_width <= report.inner_width, "wide tables must scroll inside their box, not the page"
    assert _luminance(report.body_background) < 0.15
    svg_text = browser.load(
        page, dark=True, script="getComputedStyle(document.querySelector('svg.chart text')).fill"
    ).script_result
    assert _luminance(svg_text) > 0.8, "chart text follows the page colour (currentColor)"


@chromium_missing
def test_clicking_a_header_sorts_the_table_numerically(page: Path, browser) -> None:
    script = """(() => {
      const table = document.querySelector('table.backends');
      const column = [...table.tHead.rows[0].cells].findIndex(th => th.textContent.startsWith('median ms'));
      const values = () => [...table.tBodies[0].rows].map(r => r.cells[column].getAttribute('data-v'))
                                               .filter(v => v !== '').map(Number);
      table.tHead.rows[0].cells[column].click();
      const up = values();
      table.tHead.rows[0].cells[column].click();
      return {up, down: values()};
    })()"""
    result = browser.load(page, script=script).script_result
    assert len(result["up"]) >= 3
    assert result["up"] == sorted(result["up"])
    assert result["down"] == sorted(result["down"], reverse=True)


@chromium_missing
def test_browser_check_catches_script_errors_and_missing_resources(tmp_path: Path, browser) -> None:
    """Proof that the console check above can fail: a deliberate throw, console.error and a missing image."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><p>x</p><img src='missing.png'>"
        "<script>console.error('planted'); throw new Error('deliberate boom');</script></body></html>"
    )
    problems = browser.load(bad).problems
    assert any("deliberate boom" in p for p in problems)
    assert any("planted" in p for p in problems)
    assert any("missing.png" in p for p in problems)


def _luminance(css_color: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
