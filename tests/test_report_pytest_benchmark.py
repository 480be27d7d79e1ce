"""The pytest-benchmark export: the layout its tools read, times in seconds, and pytest-benchmark's
own ``compare`` command reading it (when pytest-benchmark is installed somewhere on this machine)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from aitune_ci.report import render_report, to_pytest_benchmark
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"
PYTEST_BENCHMARK = shutil.which("pytest-benchmark") or "/root/.pyenv/versions/3.11.7/bin/pytest-benchmark"
STATS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers", "stddev_outliers",
         "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations")  # fmt: skip


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(DATA / "report_run.json")


def test_every_measured_backend_is_a_benchmark_in_seconds(run: dict) -> None:
    doc = to_pytest_benchmark(run, commit="c0ffee")
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert doc["commit_info"]["id"] == "c0ffee"
    measured = {
        f"{r['name']}[{b['backend']}]": b["latency"] for r in run["results"] for b in r["backends"] if b["latency"]
    }
    assert {b["name"] for b in doc["benchmarks"]} == set(measured)
    for bench in doc["benchmarks"]:
        lat, stats = measured[bench["name"]], bench["stats"]
        assert set(stats) == set(STATS)
        assert stats["median"] == pytest.approx(lat["median_ms"] / 1000)
        assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
        assert stats["ops"] == pytest.approx(1 / stats["mean"])  # github-action-benchmark plots ops
        assert stats["rounds"] == lat["iterations"] and stats["iterations"] == 1
        assert bench["group"] == bench["name"].split("[")[0]
        assert bench["extra_info"]["derived"]["max"].startswith("p99")


def test_export_is_strict_json(run: dict) -> None:
    json.loads(render_report(run, ".benchmark.json"), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


@pytest.mark.skipif(not Path(PYTEST_BENCHMARK).exists(), reason="pytest-benchmark's command is not installed")
def test_pytest_benchmark_compare_reads_the_export(run: dict, tmp_path: Path) -> None:
    path = tmp_path / "0001_aitune.json"
    path.write_text(render_report(run, ".benchmark.json"))
    out = subprocess.run(
        [PYTEST_BENCHMARK, "compare", str(path), "--columns=min,median,mean,ops,rounds", "--group-by=group"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Failed to load" not in out.stdout + out.stderr
    for bench in to_pytest_benchmark(run)["benchmarks"]:
        assert bench["name"] in out.stdout
