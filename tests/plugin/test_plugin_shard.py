"""--aitune-shard i/n: every aitune item runs in exactly one shard, a fixture is never split, plain tests run everywhere."""

from __future__ import annotations

import json
import re

import pytest

_FIXTURES = ("tune_a", "tune_b", "tune_c")
_ITEM = re.compile(r"^(\S+::tune_\w+\[[^\]]+\])$")


@pytest.fixture
def sharded(project):
    for name in _FIXTURES:
        project.add_fixture(name, backends=("eager", "eager-bf16"))
    project.write("test_plain.py", "def test_plain():\n    pass\n")
    return project


def _collected(project, *args: str) -> list[str]:
    result = project.tune("--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return [line for line in result.outlines if "::" in line]


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shards_cover_every_item_exactly_once(sharded, count):
    everything = [line for line in _collected(sharded) if _ITEM.match(line)]
    assert len(everything) == len(_FIXTURES) * 3

    shards = [
        [line for line in _collected(sharded, "--aitune-shard", f"{i}/{count}") if _ITEM.match(line)]
        for i in range(1, count + 1)
    ]

    ran = [item for shard in shards for item in shard]
    assert sorted(ran) == sorted(everything)  # nothing lost, nothing twice
    owners = {}
    for index, shard in enumerate(shards):
        for item in shard:
            owners.setdefault(item.split("::")[1].split("[")[0], set()).add(index)
    assert all(len(o) == 1 for o in owners.values()), owners  # a fixture is tuned on one shard only
    sizes = sorted(len(s) for s in shards)
    assert sizes[-1] - sizes[0] <= 3  # shards differ by at most one fixture


def test_plain_tests_run_in_every_shard(sharded):
    for i in (1, 2):
        assert "test_plain.py::test_plain" in _collected(sharded, "--aitune-shard", f"{i}/2")


def test_shard_counts_its_items_as_deselected(sharded):
    result = sharded.tune("--collect-only", "--aitune-shard", "1/3")

    result.stdout.fnmatch_lines(["collected 10 items / 6 deselected / 4 selected"])


def test_shard_runs_and_tunes_only_its_own_fixtures(sharded):
    result = sharded.tune("--aitune-shard", "2/3", "--aitune-report", "run.json")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=4, deselected=6)
    assert set(sharded.verdicts(result)) == {"tune_b[eager]", "tune_b[eager-bf16]"}
    # its run file says which shard it is, so that a merge can tell one missing or passed twice
    assert json.loads((sharded.path / "run.json").read_text())["shard"] == {"index": 2, "count": 3}


def test_shard_applies_after_keyword_selection(sharded):
    result = sharded.tune("--collect-only", "-q", "-k", "tune_a or tune_c", "--aitune-shard", "2/2")

    assert [line for line in result.outlines if _ITEM.match(line)] == [
        "conftest.py::tune_c[eager]",
        "conftest.py::tune_c[eager-bf16]",
        "conftest.py::tune_c[selection]",
    ]
