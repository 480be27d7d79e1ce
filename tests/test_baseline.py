"""Baseline files: stable JSON, clear errors for bad files, atomic and lock-protected writes."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

import pytest

from aitune_ci.atomic import atomic_write_bytes, atomic_write_text, locked
from aitune_ci.errors import DataFileError
from aitune_ci.result import AccuracyReport, BackendResult, LatencyStats, LeafMetrics, TuneResult
from aitune_ci.stats import log_spread
from aitune_ci.store.baseline import (
    BASELINE_SCHEMA_VERSION,
    NOISE_HISTORY_MAX,
    Baseline,
    BaselineStore,
    BaselineWork,
)

HW = "cpu-x86_64-Test-CPU"


def latency(median_ms: float, rounds: tuple[float, ...]) -> LatencyStats:
    return LatencyStats(
        median_ms=median_ms,
        mean_ms=median_ms * 1.01,
        min_ms=median_ms * 0.9,
        p90_ms=median_ms * 1.1,
        p99_ms=median_ms * 1.2,
        iqr_ms=0.1,
        ci_low_ms=median_ms * 0.99,
        ci_high_ms=median_ms * 1.01,
        cv=0.0123456789,
        iterations=140,
        rounds=len(rounds),
        batch_size=8,
        round_medians_ms=rounds,
    )


def make_result(name: str = "tune_resnet", median_ms: float = 10.123456789, **env: object) -> TuneResult:
    leaf = LeafMetrics("out", (8, 10), 1.5e-6, 2e-6, 1e-7, 0.99999999, math.inf, 1.0, 0, 0, True)
    rows = (
        BackendResult(
            backend="eager",
            status="ok",
            latency=latency(median_ms, (10.0, 10.2, 9.9)),
            accuracy=AccuracyReport(True, "fp32", "allclose", (leaf,)),
        ),
        BackendResult(
            backend="inductor",
            status="ok",
            latency=latency(median_ms / 2, (5.0, 5.1, 4.95)),
            accuracy=AccuracyReport(True, "fp32", "allclose", (replace(leaf, sqnr_db=131.23456789),)),
        ),
        BackendResult(backend="tensorrt", status="unavailable", error="tensorrt is not installed"),
        BackendResult(backend="onnxruntime", status="failed", error="x" * 2000),
    )
    environment = {"hardware_key": HW, "torch": "2.13.0", "gpu_memory_gb": 79.1234567, **env}
    return TuneResult(
        name=name,
        strategy="min-latency",
        device="cpu",
        backends=rows,
        winner="inductor",
        winner_reason="fastest correct",
        environment=environment,
    )


def make_baseline(name: str = "tune_resnet", **kw: object) -> Baseline:
    return Baseline.from_result(make_result(name, **kw), None, updated_at="2026-01-01T00:00:00+00:00")


# -- format ---------------------------------------------------------------------------------------


def test_round_trip_keeps_everything_the_verdict_needs():
    b = make_baseline()
    again = Baseline.from_json(b.to_json(), "x.json")
    assert again.to_json() == b.to_json()
    inductor = again.backends["inductor"]
    assert inductor.latency.round_medians_ms == (5.0, 5.1, 4.95)
    assert inductor.latency.median_ms == pytest.approx(5.06173, rel=1e-9)
    assert inductor.accuracy.sqnr_db == pytest.approx(131.235)
    assert again.backends["eager"].accuracy.sqnr_db == math.inf
    assert inductor.noise_history == (pytest.approx(log_spread((5.0, 5.1, 4.95)), rel=1e-5),)
    assert again.backends["tensorrt"].status == "unavailable"
    assert again.winner == "inductor" and again.schema_version == BASELINE_SCHEMA_VERSION


def test_file_is_strict_sorted_rounded_json():
    text = make_baseline().to_json()
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert text.endswith("}\n")
    assert list(data) == sorted(data)
    assert list(data["backends"]) == sorted(data["backends"])
    assert data["environment"]["gpu_memory_gb"] == 79.1235
    assert data["backends"]["eager"]["latency"]["median_ms"] == 10.1235
    assert data["backends"]["eager"]["latency"]["cv"] == 0.0123457
    assert data["backends"]["eager"]["accuracy"]["sqnr_db"] == "inf"
    assert len(data["backends"]["onnxruntime"]["error"]) == 500


def test_writing_the_same_baseline_twice_gives_identical_bytes(tmp_path):
    store = BaselineStore(tmp_path)
    path = store.write(make_baseline())
    first = path.read_bytes()
    store.write(Baseline.from_json(first, path))
    assert path.read_bytes() == first
    assert path == tmp_path / HW / "tune_resnet.json"


def test_from_result_carries_noise_history_and_caps_it():
    b = make_baseline()
    for _ in range(NOISE_HISTORY_MAX + 5):
        b = Baseline.from_result(make_result(), b)
    history = b.backends["inductor"].noise_history
    assert len(history) == NOISE_HISTORY_MAX


def test_update_keeps_backends_not_in_this_run_and_unavailable_ones():
    previous = make_baseline()
    ok_trt = replace(previous.backends["eager"], precision="fp16")
    previous = replace(previous, backends={**previous.backends, "tensorrt": ok_trt, "aoti": ok_trt})
    filtered = replace(make_result(), backends=make_result().backends[1:3])  # inductor + tensorrt only
    updated = Baseline.from_result(filtered, previous)
    assert updated.backends["eager"] == previous.backends["eager"]  # not run: untouched
    assert updated.backends["aoti"] == ok_trt
    assert updated.backends["tensorrt"] == ok_trt  # unavailable here: what another machine measured stays
    assert len(updated.backends["inductor"].noise_history) == 2


def test_update_drops_backends_the_spec_no_longer_declares_but_keeps_filtered_and_submodule_ones():
    previous = make_baseline()
    gone = previous.backends["eager"]
    previous = replace(previous, backends={**previous.backends, "aoti": gone, "head/aoti": gone, "head/inductor": gone})
    filtered = replace(make_result(), backends=make_result().backends[1:2])  # this run tuned inductor only
    updated = Baseline.from_result(filtered, previous, declared=["eager", "inductor", "tensorrt", "onnxruntime"])
    assert "aoti" not in updated.backends and "head/aoti" not in updated.backends  # the spec dropped aoti
    assert updated.backends["head/inductor"] == gone  # still declared, not run this time: kept
    assert updated.backends["eager"] == previous.backends["eager"]


# -- bad files ------------------------------------------------------------------------------------


def _write_and_read(tmp_path: Path, text: str) -> DataFileError:
    store = BaselineStore(tmp_path)
    path = store.path(HW, "tune_resnet")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(DataFileError) as info:
        store.read(HW, "tune_resnet")
    message = str(info.value)
    assert str(path) in message
    assert "pytest --aitune --aitune-update --aitune-fixtures tune_resnet" in message
    assert "no need to delete it" in message
    return info.value


KEY = "ab" * 32


def test_an_update_records_its_work_key_and_the_rows_it_wrote_and_never_carries_an_older_record():
    b = Baseline.from_result(make_result(), None, work_key=KEY)
    assert b.work == BaselineWork(KEY, ("eager", "inductor", "onnxruntime", "tensorrt"))
    again = Baseline.from_json(b.to_json(), "x.json")
    assert again.work == b.work and again.work.intact and again.to_json() == b.to_json()
    work = json.loads(b.to_json())["work"]
    assert work["key"] == KEY and work["backends"] == ["eager", "inductor", "onnxruntime", "tensorrt"]
    assert len(work["sha256"]) == 64

    # An update deselected to two rows keeps the others' older figures: it records only its own rows.
    # Its unavailable tensorrt keeps the previous entry, which holds no figures: as good as written.
    filtered = replace(make_result(), backends=make_result().backends[1:3])
    partial = Baseline.from_result(filtered, b, work_key=KEY)
    assert partial.work == BaselineWork(KEY, ("inductor", "tensorrt"))
    assert partial.work.covers(KEY, ["inductor"]) and not partial.work.covers(KEY, ["eager", "inductor"])
    assert not partial.work.covers("cd" * 32, ["inductor"])
    # An unavailable backend whose kept entry holds another machine's figures is not this update's row.
    measured_elsewhere = replace(b, backends={**b.backends, "tensorrt": b.backends["eager"]})
    assert Baseline.from_result(filtered, measured_elsewhere, work_key=KEY).work.backends == ("inductor",)
    # An update that could not take its key drops the record: its rows were rewritten all the same.
    assert Baseline.from_result(make_result(), b).work is None


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["backends"]["eager"]["latency"].update(median_ms=1.0),  # a number edited by hand
        lambda d: d["environment"].update(torch="2.99.0"),
        lambda d: d.update(winner="eager"),
        lambda d: d["backends"].pop("onnxruntime"),
        lambda d: d["work"].update(key="cd" * 32),  # the record itself is covered too
        lambda d: d["work"]["backends"].remove("onnxruntime"),
        lambda d: d["work"].pop("sha256"),  # as the record's first version wrote it
        lambda d: d["backends"]["eager"]["latency"].update(cv=math.nan),  # json writes NaN, which strict JSON lacks
    ],
)
def test_a_baseline_edited_since_its_update_keeps_a_record_that_answers_for_nothing(tmp_path, edit):
    data = json.loads(Baseline.from_result(make_result(), None, work_key=KEY).to_json())
    edit(data)
    edited = Baseline.from_json(json.dumps(data), "x.json")
    assert edited.work is not None and not edited.work.intact and not edited.work.covers(KEY, ["eager"])
    assert "work" not in json.loads(edited.to_json())  # not written again as if it still held


def test_a_baseline_written_before_the_work_record_still_loads_without_one():
    data = json.loads(make_baseline().to_json())
    assert "work" not in data
    assert Baseline.from_json(json.dumps(data), "x.json").work is None


@pytest.mark.parametrize(
    ("work", "field"),
    [
        ({"key": "not-a-digest", "backends": ["eager"], "sha256": KEY}, "work.key"),
        ({"key": KEY, "backends": "eager", "sha256": KEY}, "work.backends"),
        ({"key": KEY, "backends": [""], "sha256": KEY}, "work.backends"),
        ({"backends": ["eager"], "sha256": KEY}, "work.key"),
        ("ab", "work"),
    ],
)
def test_a_malformed_work_record_names_its_field(tmp_path, work, field):
    data = json.loads(make_baseline().to_json())
    data["work"] = work
    err = _write_and_read(tmp_path, json.dumps(data))
    assert err.problem.startswith(f"{field}:") and "--aitune-update" in err.fix


def test_corrupt_json_names_file_and_fix(tmp_path):
    err = _write_and_read(tmp_path, "{not json")
    assert "not valid JSON" in err.problem


def test_truncated_file_names_file_and_fix(tmp_path):
    text = make_baseline().to_json()
    err = _write_and_read(tmp_path, text[: len(text) // 2])
    assert "truncated" in err.problem


def test_unknown_schema_version_names_file_and_fix(tmp_path):
    data = json.loads(make_baseline().to_json())
    data["schema_version"] = 99
    err = _write_and_read(tmp_path, json.dumps(data))
    assert "schema_version 99" in err.problem
    assert "upgrade aitune-ci" in err.fix


def test_wrong_type_names_the_field(tmp_path):
    data = json.loads(make_baseline().to_json())
    data["backends"]["inductor"]["latency"]["median_ms"] = "fast"
    err = _write_and_read(tmp_path, json.dumps(data))
    assert "backends.inductor.latency.median_ms" in err.problem


def test_file_of_another_fixture_is_rejected(tmp_path):
    err = _write_and_read(tmp_path, make_baseline("tune_bert").to_json())
    assert "'tune_bert'" in err.problem


def test_missing_baseline_reads_as_none(tmp_path):
    assert BaselineStore(tmp_path).read(HW, "tune_resnet") is None
    assert BaselineStore(tmp_path).list_fixtures(HW) == []


def test_update_replaces_a_corrupt_file(tmp_path):
    store = BaselineStore(tmp_path)
    path = store.path(HW, "tune_resnet")
    path.parent.mkdir(parents=True)
    path.write_text("{broken")
    seen = []

    def make(previous):
        seen.append(previous)
        return make_baseline()

    store.update(HW, "tune_resnet", make)
    assert seen == [None]
    assert store.read(HW, "tune_resnet").to_json() == make_baseline().to_json()


def test_unsafe_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be a file name"):
        BaselineStore(tmp_path).path("../etc", "tune_x")


# -- writes ---------------------------------------------------------------------------------------


def test_write_leaves_other_fixtures_files_untouched(tmp_path):
    store = BaselineStore(tmp_path)
    other = store.write(make_baseline("tune_bert"))
    os.utime(other, (1_000_000, 1_000_000))
    before = other.read_bytes()
    store.write(make_baseline("tune_resnet", median_ms=20.0))
    assert other.read_bytes() == before
    assert other.stat().st_mtime == 1_000_000
    assert store.list_fixtures(HW) == ["tune_bert", "tune_resnet"]
    assert (tmp_path / ".gitignore").read_text().count("*.lock") == 1


def test_failed_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "old\n")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def _bump(root: str, fixture: str, count: int) -> None:
    """Worker: read-modify-write one shared baseline ``count`` times, and rewrite its own."""
    store = BaselineStore(root)

    def increment(previous: Baseline | None) -> Baseline:
        base = previous or make_baseline("tune_shared")
        n = base.environment.get("writes", 0)
        return replace(base, environment={**base.environment, "writes": n + 1})

    for i in range(count):
        store.update(HW, "tune_shared", increment)
        store.write(make_baseline(fixture, median_ms=10.0 + i))


def test_concurrent_writers_never_corrupt_or_lose_updates(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    count = 8
    workers = [ctx.Process(target=_bump, args=(str(tmp_path), f"tune_w{i}", count)) for i in range(4)]
    for w in workers:
        w.start()
    store = BaselineStore(tmp_path)
    reads = 0
    while any(w.is_alive() for w in workers):  # a reader racing the writers never sees a torn file
        for fixture in store.list_fixtures(HW):
            store.read(HW, fixture)
            reads += 1
    for w in workers:
        w.join()
        assert w.exitcode == 0
    shared = store.read(HW, "tune_shared")
    assert shared.environment["writes"] == 4 * count  # the lock serialised every read-modify-write
    for i in range(4):
        assert store.read(HW, f"tune_w{i}").backends["eager"].latency.median_ms == 10.0 + count - 1
    assert not [p.name for p in (tmp_path / HW).iterdir() if p.name.endswith(".tmp")]


def test_locked_is_exclusive_within_one_process_too(tmp_path):
    from filelock import FileLock

    target = tmp_path / "f.json"
    with locked(target):
        with pytest.raises(Exception, match="could not be acquired"):
            FileLock(str(target) + ".lock", timeout=0, is_singleton=False).acquire()
