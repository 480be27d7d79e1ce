"""History files: append, read, corrupt lines, concurrent writers, and the environment column a shift is put down to."""

from __future__ import annotations

import json
import multiprocessing
import warnings
from pathlib import Path

import numpy as np
import pytest

from aitune_ci.errors import DataFileError
from aitune_ci.result import TuneResult
from aitune_ci.store.history import (
    HISTORY_SCHEMA_VERSION,
    HistoryWarning,
    append_history,
    environment_changes,
    history_path,
    read_history,
)
from aitune_ci.store.runs import load_run

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def results() -> list[TuneResult]:
    return [TuneResult.from_json(r) for r in load_run(DATA / "report_run.json")["results"]]


def test_append_then_read_round_trips_every_backend(results: list[TuneResult], tmp_path: Path) -> None:
    cnn = results[0]
    path = append_history(tmp_path, cnn, "abc123", date="2026-11-01T02:00:00+00:00")
    assert append_history(tmp_path, cnn, "def456", date="2026-11-02T02:00:00+00:00") == path
    assert path == history_path(tmp_path, "NVIDIA-H100-80GB-HBM3")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["schema_version"] for line in lines] == [HISTORY_SCHEMA_VERSION] * 2
    assert [line["commit"] for line in lines] == ["abc123", "def456"]
    # the lock beside it is ignored by git, as the baselines' are (a new user's `git add .aitune` took it)
    assert "*.lock" in (path.parent / ".gitignore").read_text().splitlines()

    frame = read_history(path)
    assert len(frame) == 2 * len(cnn.backends)
    assert list(frame["commit"].unique()) == ["abc123", "def456"]
    for row in cnn.backends:
        got = frame[(frame["backend"] == row.backend) & (frame["commit"] == "abc123")].iloc[0]
        assert got["status"] == row.status
        if row.latency is None:
            assert np.isnan(got["median_ms"])
        else:
            assert got["median_ms"] == pytest.approx(row.latency.median_ms, rel=1e-5)
            assert got["ci_high_ms"] == pytest.approx(row.latency.ci_high_ms, rel=1e-5)
            assert got["throughput"] == pytest.approx(row.latency.throughput, rel=1e-5)
        if row.accuracy is not None and row.accuracy.worst is not None:
            assert got["sqnr_db"] == pytest.approx(row.accuracy.worst.sqnr_db, rel=1e-5)  # inf survives as "inf"
    assert frame.loc[frame["winner"], "backend"].unique().tolist() == [cnn.winner]


def test_commit_defaults_to_github_sha(
    results: list[TuneResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "f" * 40)
    path = append_history(tmp_path, results[1])
    assert json.loads(path.read_text())["commit"] == "f" * 40


def test_corrupt_and_newer_lines_are_skipped_with_a_warning_naming_the_line(
    results: list[TuneResult], tmp_path: Path
) -> None:
    path = append_history(tmp_path, results[0], "one")
    with path.open("a") as f:
        f.write("{not json\n")
        f.write(json.dumps({"schema_version": 99, "fixture": "x"}) + "\n")
        f.write(json.dumps({"schema_version": 1, "fixture": "x", "date": "2026-11-01", "backends": 7}) + "\n")
        f.write('{"schema_version": 1, "fixture": "tune_small_cn')  # a writer that died mid-line
    append_history(tmp_path, results[0], "two")  # must start on a line of its own
    with pytest.warns(HistoryWarning) as caught:
        frame = read_history(path)
    messages = [str(w.message) for w in caught]
    assert any(f"{path}:2: skipped a corrupt history line" in m for m in messages)
    assert any(f"{path}:3: skipped a history line of schema_version 99" in m and "newer" in m for m in messages)
    assert any(f"{path}:4: skipped a corrupt history line" in m for m in messages)
    assert any(f"{path}:5: skipped a corrupt history line" in m for m in messages)
    assert len(messages) == 4
    assert sorted(frame["commit"].unique()) == ["one", "two"]


def test_missing_history_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFileError, match=r"nope\.jsonl: cannot read the history file .* To fix: "):
        read_history(tmp_path / "nope.jsonl")


def _append_many(directory: str, data: dict, writer: int, count: int) -> None:
    result = TuneResult.from_json(data)
    for i in range(count):
        append_history(directory, result, f"writer{writer}-{i}")


def test_concurrent_writers_never_interleave_lines(results: list[TuneResult], tmp_path: Path) -> None:
    data = results[0].to_json()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_many, args=(str(tmp_path), data, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    path = history_path(tmp_path, "NVIDIA-H100-80GB-HBM3")
    with warnings.catch_warnings():
        warnings.simplefilter("error", HistoryWarning)  # a torn line would warn
        frame = read_history(path)
    assert frame["commit"].nunique() == 45


def test_environment_changes_between_runs_name_the_fields_a_shift_can_be_put_down_to(tmp_path: Path) -> None:
    def line(day: int, **env) -> str:
        environment = {
            "hardware_key": "cpu-x86_64-AMD-EPYC",
            "device_type": "cpu",
            "torch": "2.13.0",
            "cpu": "AMD EPYC",
        }
        environment.update(env)
        return json.dumps({"schema_version": HISTORY_SCHEMA_VERSION, "date": f"2026-11-{day:02d}T02:00:00+00:00",
                           "fixture": "tune_x", "environment": environment,
                           "backends": {"eager": {"status": "ok", "median_ms": 1.0}}})  # fmt: skip

    path = tmp_path / "h.jsonl"
    path.write_text("\n".join([line(1), line(2, cpu_features="avx2 fma"), line(3, cpu_features="avx2 fma avx512f"),
                                line(4, cpu_features="avx2 fma avx512f", torch="2.14.0")]) + "\n")  # fmt: skip
    envs = read_history(path)["environment"].tolist()

    assert environment_changes(envs[0], envs[1]) == {}  # a field first recorded is not a change
    assert environment_changes(envs[1], envs[2]) == {"cpu_features": ("avx2 fma", "avx2 fma avx512f")}
    assert environment_changes(envs[2], envs[3]) == {"torch": ("2.13.0", "2.14.0")}
    assert environment_changes(envs[3], envs[0]) == {"torch": ("2.14.0", "2.13.0")}  # an older writer: no features
    assert environment_changes(None, envs[3]) == {} and environment_changes(float("nan"), envs[3]) == {}
