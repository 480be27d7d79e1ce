"""The pytest-benchmark export: the layout its tools read, times in seconds, ``ops`` from the median, the
commit from git, and the real ``pytest-benchmark compare`` (the dev extra installs it) reading two exports."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from aitune_ci.report import render_report, to_pytest_benchmark, write_report
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"
STATS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers", "stddev_outliers",
         "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations")  # fmt: skip


@pytest.fixture(scope="module")
def run() -> dict:
    return load_run(DATA / "report_run.json")


def _latencies(run: dict) -> dict[str, dict]:
    return {f"{r['name']}[{b['backend']}]": b["latency"] for r in run["results"] for b in r["backends"] if b["latency"]}


def test_every_measured_backend_is_a_benchmark_in_seconds(run: dict) -> None:
    doc = to_pytest_benchmark(run, commit="c0ffee")
    assert set(doc) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert doc["commit_info"]["id"] == "c0ffee"
    measured = _latencies(run)
    assert {b["name"] for b in doc["benchmarks"]} == set(measured)
    for bench in doc["benchmarks"]:
        lat, stats = measured[bench["name"]], bench["stats"]
        assert set(stats) == set(STATS)
        assert stats["median"] == pytest.approx(lat["median_ms"] / 1000)
        assert stats["mean"] == pytest.approx(lat["mean_ms"] / 1000)
        assert stats["min"] <= stats["q1"] <= stats["median"] <= stats["q3"] <= stats["max"]
        assert stats["ops"] == pytest.approx(1000 / lat["median_ms"])  # github-action-benchmark plots ops
        assert stats["rounds"] == lat["iterations"] and stats["iterations"] == 1
        assert bench["group"] == bench["name"].split("[")[0]
        assert bench["extra_info"]["derived"]["max"].startswith("p99")
        assert bench["extra_info"]["derived"]["ops"].startswith("1 / median")


def test_ops_follows_the_median_when_the_tail_dominates_the_mean(run: dict) -> None:
    tail = copy.deepcopy(run)
    lat = next(b["latency"] for b in tail["results"][0]["backends"] if b["latency"])
    lat.update(median_ms=0.019, min_ms=0.018, iqr_ms=0.001, mean_ms=0.82, p99_ms=24.0)  # the GPU numbers
    bench = next(b for b in to_pytest_benchmark(tail)["benchmarks"] if b["stats"]["median"] == pytest.approx(19e-6))
    assert bench["stats"]["ops"] == pytest.approx(52_631.6, rel=1e-4)  # 1 / 19 µs, not 1 / 0.82 ms = 1,220
    assert bench["stats"]["mean"] == pytest.approx(0.82e-3)  # the mean itself stays the mean


def test_export_is_strict_json(run: dict) -> None:
    json.loads(render_report(run, ".benchmark.json"), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))


# --- commit_info.id when pytest (or anyone) writes the file ----------------------------------------


def _git(repo: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(repo), "PATH": "/usr/bin:/bin"}  # fmt: skip
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("a")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_the_written_file_names_the_rootdirs_commit(run: dict, repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "out"  # the report is written outside the checkout, as a CI artifact may be
    path = write_report(run, elsewhere / "nightly.benchmark.json", root=repo)
    assert json.loads(path.read_text())["commit_info"]["id"] == _git(repo, "rev-parse", "HEAD")


def test_github_sha_wins_and_an_explicit_commit_wins_over_both(
    run: dict, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    doc = json.loads(write_report(run, tmp_path / "a.benchmark.json", root=repo).read_text())
    assert doc["commit_info"]["id"] == "f" * 40
    doc = json.loads(write_report(run, tmp_path / "b.benchmark.json", root=repo, commit="c0ffee").read_text())
    assert doc["commit_info"]["id"] == "c0ffee"


def test_outside_a_checkout_the_commit_stays_unknown(
    run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_SHA", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git must not find a repository above tmp_path
    (tmp_path / "plain").mkdir()
    doc = json.loads(write_report(run, tmp_path / "c.benchmark.json", root=tmp_path / "plain").read_text())
    assert doc["commit_info"]["id"] == "unknown"


# --- the real pytest-benchmark reads two exports ----------------------------------------------------

_UNITS = {"": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9, "K": 1e3, "M": 1e6}
_ROW = re.compile(r"^(?P<name>\S+) \((?P<source>\d{4}_\w+)\)\s+(?P<median>[\d,.]+) \([\d.]+\)\s+(?P<ops>[\d,.]+) \(")


def _compare_table(output: str) -> dict[tuple[str, str], tuple[float, float]]:
    """``{(name, source): (median seconds, ops per second)}`` from ``pytest-benchmark compare``'s printed tables."""
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    time_scale = ops_scale = None
    for line in output.splitlines():
        if line.startswith("Name (time in "):
            time_scale = _UNITS[re.search(r"\(time in (\w*?)s\)", line).group(1)]  # type: ignore[union-attr]
            ops = re.search(r"OPS(?: \((\w?)ops/s\))?", line)
            assert ops, f"no OPS column in {line!r}"
            ops_scale = _UNITS[ops.group(1) or ""]
        elif m := _ROW.match(line):
            assert time_scale and ops_scale, "a row before its table's header"
            number = lambda s: float(s.replace(",", ""))  # noqa: E731
            rows[m["name"], m["source"]] = (number(m["median"]) * time_scale, number(m["ops"]) * ops_scale)
    return rows


def test_pytest_benchmark_compare_prints_both_exports_with_ops_from_the_median(run: dict, tmp_path: Path) -> None:
    try:
        from pytest_benchmark.utils import get_machine_id
    except ImportError:
        pytest.fail("pytest-benchmark is missing: install the dev extra (pip install -e '.[dev]')")
    head = copy.deepcopy(run)  # the same checks, 10% slower at the median and with a heavy tail
    for result in head["results"]:
        for backend in result["backends"]:
            if backend["latency"]:
                backend["latency"]["median_ms"] *= 1.1
                backend["latency"]["mean_ms"] *= 3
    storage = tmp_path / "benchmarks"
    folder = storage / get_machine_id()  # pytest-benchmark's own layout: <machine id>/<NNNN>_<name>.json
    write_report(run, folder / "0001_base.benchmark.json", commit="a" * 40)
    write_report(head, folder / "0002_head.benchmark.json", commit="b" * 40)
    for path in folder.iterdir():
        path.rename(folder / path.name.replace(".benchmark.json", ".json"))
    out = subprocess.run(
        [sys.executable, "-m", "pytest_benchmark", "--storage", f"file://{storage}", "compare", "0001", "0002",
         "--columns=median,ops", "--group-by=name"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Failed to load" not in out.stdout + out.stderr
    table = _compare_table(out.stdout)
    expected = {
        (name, source): lat["median_ms"] / 1000
        for source, data in (("0001_base", run), ("0002_head", head))
        for name, lat in _latencies(data).items()
    }
    assert set(table) == set(expected), out.stdout
    for key, (median_s, ops) in table.items():
        assert median_s == pytest.approx(expected[key], rel=1e-3)
        assert ops * expected[key] == pytest.approx(1.0, rel=0.01), f"{key}: ops {ops} is not 1 / median"
