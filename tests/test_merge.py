"""Loading run files and merging CI shards (real shards of one H100 run in tests/data/), and the
``report`` / ``merge`` commands end to end."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest

from aitune_ci.cli.report_commands import add_subcommands
from aitune_ci.errors import AituneCIError, DataFileError
from aitune_ci.store.runs import MergeConflict, MissingShards, load_run, merge_runs

DATA = Path(__file__).parent / "data"
SHARDS = [DATA / "report_shard1.json", DATA / "report_shard2.json"]


@pytest.fixture(scope="module")
def shards() -> list[dict]:
    return [load_run(p) for p in SHARDS]


def _checks(run: dict) -> list[tuple[str, str]]:
    return sorted((v["fixture"], v["backend"]) for v in run["verdicts"])


def test_shards_merge_into_one_run_with_every_check(shards: list[dict]) -> None:
    merged = merge_runs(shards, sources=[p.name for p in SHARDS])
    assert _checks(merged) == sorted(_checks(shards[0]) + _checks(shards[1]))
    assert sorted(r["name"] for r in merged["results"]) == ["tune_small_cnn", "tune_small_encoder"]
    assert merged["started"] == min(s["started"] for s in shards)
    assert merged["schema_version"] == 1 and merged["merged_from"] == 2
    assert merged["results"] == load_run(DATA / "report_run.json")["results"]
    assert load_run(DATA / "report_run.json")["verdicts"] == merged["verdicts"]


def test_the_same_shard_twice_is_counted_once(shards: list[dict]) -> None:
    merged = merge_runs([shards[0], shards[0], shards[1]])
    assert _checks(merged) == sorted(_checks(shards[0]) + _checks(shards[1]))


def test_conflicting_verdicts_name_the_check_and_both_files(shards: list[dict]) -> None:
    rerun = copy.deepcopy(shards[0])
    rerun["verdicts"][0]["delta"] = 0.5
    check = f"{rerun['verdicts'][0]['fixture']}[{rerun['verdicts'][0]['backend']}]"
    with pytest.raises(
        MergeConflict, match=rf"{re_escape(check)} has different verdicts in shard1\.json and rerun\.json"
    ):
        merge_runs([shards[0], rerun], sources=["shard1.json", "rerun.json"])


def test_conflicting_results_name_the_backend(shards: list[dict]) -> None:
    rerun = copy.deepcopy(shards[0])
    row = rerun["results"][0]["backends"][0]
    row["latency"]["median_ms"] *= 2
    with pytest.raises(MergeConflict, match=rf"\[{row['backend']}\] has different results in run 1 and run 2"):
        merge_runs([shards[0], rerun])


def test_a_fixture_split_over_backends_merges_its_rows(shards: list[dict]) -> None:
    whole = shards[0]["results"][0]
    part_a, part_b = copy.deepcopy(shards[0]), copy.deepcopy(shards[0])
    part_a["results"][0]["backends"] = whole["backends"][:3]
    part_b["results"][0]["backends"] = whole["backends"][2:]
    merged = merge_runs([part_a, part_b])
    assert merged["results"][0]["backends"] == whole["backends"]


def _as_shard(run: dict, index: int, count: int) -> dict:
    """``run`` as ``--aitune-shard index/count`` writes it."""
    return {**copy.deepcopy(run), "shard": {"index": index, "count": count}}


def test_a_missing_shard_is_named_not_merged_into_a_passing_run(shards: list[dict]) -> None:
    """A merge of shard 1 of 2 alone (or passed twice) used to read as a whole run with no regression."""
    first = _as_shard(shards[0], 1, 2)
    for runs in ([first], [first, first]):
        with pytest.raises(MissingShards, match=r"shard 2/2 is missing.*: merged, .*--allow-missing-shards"):
            merge_runs(runs)
    with pytest.raises(
        MissingShards, match=r"shard 2/2 is missing \(and shard 1/2 is in both a.json and b.json: a file"
    ):
        merge_runs([first, first], sources=["a.json", "b.json"])
    partial = merge_runs([first], allow_missing_shards=True)
    assert partial["missing_shards"] == [2] and _checks(partial) == _checks(shards[0])
    whole = merge_runs([first, _as_shard(shards[1], 2, 2)])
    assert "missing_shards" not in whole and _checks(whole) == sorted(_checks(shards[0]) + _checks(shards[1]))


def test_shards_of_different_splits_are_not_merged(shards: list[dict]) -> None:
    with pytest.raises(MergeConflict, match=r"shards of different splits: 1/2 \(a.json\), 2/3 \(b.json\)"):
        merge_runs([_as_shard(shards[0], 1, 2), _as_shard(shards[1], 2, 3)], sources=["a.json", "b.json"])


def test_a_malformed_shard_record_names_the_file(shards: list[dict]) -> None:
    bad = {**shards[0], "shard": {"index": 3, "count": 2}}
    with pytest.raises(DataFileError, match=r"a.json: 'shard' must be"):
        merge_runs([bad, shards[1]], sources=["a.json", "b.json"])


def test_winner_changes_travel_through_a_merge_and_are_checked(shards: list[dict]) -> None:
    first, second = copy.deepcopy(shards[0]), copy.deepcopy(shards[1])
    first["winner_changes"] = {"tune_a": "winner changed: onnxruntime -> eager (lowest median latency)"}
    assert merge_runs([first, second])["winner_changes"] == first["winner_changes"]
    assert "winner_changes" not in merge_runs(shards)
    second["winner_changes"] = ["tune_b"]
    with pytest.raises(DataFileError, match="'winner_changes' must map fixture names to text"):
        merge_runs([first, second], sources=["a.json", "b.json"])


def test_load_run_rejects_bad_files_naming_them(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "garbage.json": "{not json",
        "newer.json": json.dumps({"schema_version": 7, "results": []}),
        "list.json": "[]",
        "broken.json": json.dumps({"schema_version": 1, "results": [{"schema_version": 1, "name": "x"}]}),
        "bench.json": json.dumps({"machine_info": {}, "benchmarks": []}),
        "other.json": json.dumps({"foo": 1}),
    }
    expected = {
        "missing.json": "cannot read it",
        "garbage.json": "not valid JSON",
        "newer.json": r"unknown run schema_version 7 .* To fix: upgrade aitune-ci",
        "list.json": "expected a JSON object, found list",
        "broken.json": "malformed result",
        "bench.json": "this is a pytest-benchmark export, not an aitune-ci run",
        "other.json": r"not an aitune-ci run file: no 'schema_version' or 'results' \(keys: foo\)",
    }
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        with pytest.raises(DataFileError, match=rf"{re_escape(str(path))}: {expected[name]}"):
            load_run(path)


def test_a_single_tune_result_file_loads_as_a_run_of_one(shards: list[dict], tmp_path: Path) -> None:
    path = tmp_path / "small_cnn.json"  # what `aitune-ci demo` writes
    path.write_text(json.dumps(shards[0]["results"][0]))
    run = load_run(path)
    assert [r["name"] for r in run["results"]] == ["tune_small_cnn"] and run["verdicts"] == []


def _cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="aitune-ci")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_merge_command_writes_the_merged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "merged.json"
    assert _cli("merge", *map(str, SHARDS), "-o", str(out)) == 0
    assert "merged 2 run file(s): 2 fixtures, 14 checks" in capsys.readouterr().out
    assert _checks(load_run(out)) == _checks(load_run(DATA / "report_run.json"))


def test_merge_command_refuses_to_overwrite_an_input_or_write_another_format(tmp_path: Path) -> None:
    shard = tmp_path / "s1.json"
    shard.write_text(SHARDS[0].read_text())
    with pytest.raises(AituneCIError, match="is one of the runs to merge"):
        _cli("merge", str(shard), str(SHARDS[1]), "-o", str(shard))
    with pytest.raises(AituneCIError, match=r"name the output \*\.json"):
        _cli("merge", str(shard), str(SHARDS[1]), "-o", str(tmp_path / "merged.xyz"))
    assert shard.read_text() == SHARDS[0].read_text()


def test_merge_command_merges_what_there_is_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shard = tmp_path / "s1.json"
    shard.write_text(json.dumps(_as_shard(load_run(SHARDS[0]), 1, 2)))
    with pytest.raises(MissingShards):
        _cli("merge", str(shard), "-o", str(tmp_path / "m.json"))
    assert _cli("merge", str(shard), "-o", str(tmp_path / "m.json"), "--allow-missing-shards") == 0
    assert "shards [2] are missing" in capsys.readouterr().err


def test_report_command_appends_history_and_writes_every_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    history_dir = tmp_path / "history"
    history_dir.mkdir()
    (history_dir / "NVIDIA-H100-80GB-HBM3.jsonl").write_text((DATA / "report_history.jsonl").read_text())
    html, md, bench, csv = (tmp_path / n for n in ("r.html", "r.md", "r.benchmark.json", "h.csv"))
    code = _cli(
        "report",
        *map(str, SHARDS),
        "--append-history",
        str(history_dir),
        "--html",
        str(html),
        "--markdown",
        str(md),
        "--benchmark-json",
        str(bench),
        "--csv",
        str(csv),
    )
    assert code == 0
    lines = (history_dir / "NVIDIA-H100-80GB-HBM3.jsonl").read_text().splitlines()
    assert [json.loads(line)["commit"] for line in lines[-2:]] == ["a" * 40] * 2  # one line per fixture
    assert "Trend over the history" in html.read_text() and "aaaaaaaaaaaa" in html.read_text()
    assert md.read_text().startswith("<!-- aitune-ci:report -->")
    assert len(json.loads(bench.read_text())["benchmarks"]) == 8
    header = csv.read_text().splitlines()[0].split(",")
    assert "change_point" in header and "median_ms" in header


def re_escape(text: str) -> str:
    import re

    return re.escape(text)
