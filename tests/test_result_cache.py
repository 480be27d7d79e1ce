"""The runner's result cache (``store.result_cache``) and when a stored result may answer for a tune.

Pure file and policy logic on hand-made results: milliseconds. That relative mode reuses a stored
result end to end (a nightly, then a PR check that changes no model) is in
``tests/plugin/test_plugin_relative.py``.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
from test_baseline import make_result

from aitune_ci.check import _why_not_reusable
from aitune_ci.result import TuneResult
from aitune_ci.store.build_cache import CacheEntryError
from aitune_ci.store.result_cache import RESULT_CACHE_SCHEMA_VERSION, ResultCache

KEY = "ab" + "0" * 62


def test_a_stored_result_reads_back_as_it_was_without_its_in_process_objects(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path)
    result = replace(make_result(), created_at="2026-12-03T10:00:01+00:00", runtime=object())

    path = cache.store(KEY, result)

    assert path == tmp_path / "results" / f"v{RESULT_CACHE_SCHEMA_VERSION}" / "ab" / f"{KEY}.json"
    assert cache.read(KEY).to_json() == result.to_json()  # as the run report writes it (floats rounded)
    assert cache.read("cd" + "0" * 62) is None
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # written atomically


@pytest.mark.parametrize(
    ("mangle", "said"),
    [
        (lambda entry: "{not json", "is not JSON"),
        (lambda entry: json.dumps({**entry, "schema_version": 99}), "is not schema_version 1"),
        (lambda entry: json.dumps({**entry, "key": "ff" * 32}), "written for another key"),
        (lambda entry: json.dumps({**entry, "result": {"schema_version": 1}}), "malformed result"),
    ],
)
def test_an_entry_that_cannot_be_trusted_is_refused_with_its_reason(tmp_path: Path, mangle, said: str) -> None:
    cache = ResultCache(tmp_path)
    path = cache.store(KEY, make_result())
    path.write_text(mangle(json.loads(path.read_text())))

    with pytest.raises(CacheEntryError, match=said):
        cache.read(KEY)
    cache.discard(KEY)
    assert cache.read(KEY) is None


def test_the_oldest_entries_go_beyond_the_bound(tmp_path: Path) -> None:
    cache = ResultCache(tmp_path, max_entries=3)
    keys = [f"{i:02x}" + "0" * 62 for i in range(5)]
    for age, key in enumerate(keys):
        path = cache.store(key, make_result(name=f"tune_{age}"))
        os.utime(path, (1000 + age, 1000 + age))  # stored in this order, a second apart

    cache.prune()

    assert [cache.read(k) is not None for k in keys] == [False, False, True, True, True]


def _stored(*rows: tuple[str, str]) -> TuneResult:
    result = make_result()
    by_name = {row.backend: row for row in result.backends}
    return replace(result, backends=tuple(replace(by_name[name], status=status) for name, status in rows))


def test_a_stored_result_answers_only_for_the_same_backends_all_working_or_unavailable() -> None:
    stored = _stored(("eager", "ok"), ("inductor", "ok"), ("tensorrt", "unavailable"))

    assert _why_not_reusable(stored, ["eager", "inductor", "tensorrt"]) is None
    assert _why_not_reusable(stored, ["eager", "inductor"]) == (
        "it tuned eager, inductor, tensorrt, this run tunes eager, inductor"
    )
    failing = _stored(("eager", "ok"), ("inductor", "inaccurate"), ("onnxruntime", "failed"))
    assert _why_not_reusable(failing, ["eager", "inductor", "onnxruntime"]) == (
        "inductor, onnxruntime did not run as it should there"
    )
