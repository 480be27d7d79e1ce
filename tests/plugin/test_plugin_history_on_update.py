"""--aitune-update appends the run to .aitune/history/<hardware>.jsonl: one line per fixture per run, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aitune_ci.store.history import HISTORY_SCHEMA_VERSION, append_run_history, read_history


def _history_files(project) -> list[Path]:
    return sorted((project.path / ".aitune" / "history").glob("*.jsonl"))


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_each_update_appends_one_line_per_fixture_and_a_plain_run_appends_none(project, monkeypatch):
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    project.add_fixture("tune_a", backends=("eager", "eager-bf16"))
    project.add_fixture("tune_b")

    first = project.tune("--aitune-update")
    assert first.ret == pytest.ExitCode.OK
    (path,) = _history_files(project)
    hardware = project.baseline_path("tune_a").parent.name
    assert path.name == f"{hardware}.jsonl"  # the same hardware key as the baselines
    first.stdout.fnmatch_lines([f"*history appended to *{path.name}"])
    lines = _lines(path)
    assert sorted(line["fixture"] for line in lines) == ["tune_a", "tune_b"]
    assert {line["schema_version"] for line in lines} == {HISTORY_SCHEMA_VERSION}
    assert {line["commit"] for line in lines} == {"a" * 40}
    assert set(next(line for line in lines if line["fixture"] == "tune_a")["backends"]) == {"eager", "eager-bf16"}

    project.tune().assert_outcomes(passed=5)  # a check, not a refresh: no history
    assert len(_lines(path)) == 2

    monkeypatch.setenv("GITHUB_SHA", "b" * 40)
    project.tune("--aitune-update").assert_outcomes(passed=5)
    lines = _lines(path)
    assert [line["commit"] for line in lines] == ["a" * 40] * 2 + ["b" * 40] * 2
    frame = read_history(path)  # the trend charts read what the plugin wrote
    assert sorted(frame["fixture"].unique()) == ["tune_a", "tune_b"]
    assert len(frame) == 2 * 3  # two runs x (tune_a: 2 backends, tune_b: 1)


def test_update_new_only_appends_no_history(project):
    project.add_fixture("tune_a")
    project.tune("--aitune-update-new-only").assert_outcomes(passed=2)
    assert _history_files(project) == []


def test_report_append_history_after_an_update_does_not_append_the_run_twice(project, monkeypatch):
    """The action's nightly runs --aitune-update and then `aitune-ci report --append-history` on its run.json."""
    monkeypatch.setenv("GITHUB_SHA", "c" * 40)
    project.add_fixture("tune_a")
    project.tune("--aitune-update", "--aitune-report", "run.json").assert_outcomes(passed=2)
    (path,) = _history_files(project)
    before = path.read_bytes()

    run = json.loads((project.path / "run.json").read_text())
    assert append_run_history(path.parent, run) == {path: 0}  # the CLI says "holds this run already"

    assert path.read_bytes() == before
    assert len(_lines(path)) == 1


def test_under_xdist_the_controller_appends_each_fixture_once(project, monkeypatch):
    pytest.importorskip("xdist")
    monkeypatch.setenv("GITHUB_SHA", "d" * 40)
    project.add_fixture("tune_a")
    project.add_fixture("tune_b")

    result = project.tune("-n", "2", "--aitune-update", subprocess=True)

    assert result.ret == pytest.ExitCode.OK
    (path,) = _history_files(project)
    assert sorted(line["fixture"] for line in _lines(path)) == ["tune_a", "tune_b"]
