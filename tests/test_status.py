"""Statuses and verdict kinds: enums that read and write as their plain strings, and one presentation table."""

from __future__ import annotations

import json

import pytest

from aitune_ci import verdict
from aitune_ci.errors import DataFileError
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.status import NO_CHECKS, PRESENTATION, BackendStatus, VerdictKind, by_severity, presentation
from aitune_ci.store.baseline import BackendBaseline


def test_a_status_equals_and_writes_as_its_plain_string():
    assert BackendStatus.OK == "ok"
    assert BackendStatus("inaccurate") is BackendStatus.INACCURATE
    assert f"{BackendStatus.FAILED}" == str(BackendStatus.FAILED) == "failed"
    assert json.dumps({"status": BackendStatus.UNAVAILABLE}) == '{"status": "unavailable"}'
    assert json.dumps([VerdictKind.REGRESSED]) == '["REGRESSED"]'


def test_ran_and_broken_say_which_statuses_were_measured_and_which_fail_a_check():
    assert {s for s in BackendStatus if s.ran} == {BackendStatus.OK, BackendStatus.INACCURATE}
    assert {s for s in BackendStatus if s.broken} == {BackendStatus.FAILED, BackendStatus.INACCURATE}


def test_a_result_row_holds_its_status_as_the_enum_and_writes_the_string():
    row = BackendResult(backend="eager", status="ok")
    assert row.status is BackendStatus.OK
    data = row.to_json()
    assert type(data["status"]) is str and data["status"] == "ok"
    again = BackendResult.from_json(json.loads(json.dumps(data)))
    assert again == row and again.status is BackendStatus.OK


def test_an_unknown_status_in_a_result_file_names_the_file():
    data = {"schema_version": 1, "name": "tune_x", "strategy": "min-latency", "device": "cpu", "environment": {}}
    data["backends"] = [{"backend": "eager", "status": "exploded"}]
    with pytest.raises(DataFileError, match="result.json.*malformed result"):
        TuneResult.from_json(data, "result.json")


def test_a_baseline_entry_holds_its_status_as_the_enum():
    entry = BackendBaseline(status="failed")
    assert entry.status is BackendStatus.FAILED and not entry.worked


def test_every_verdict_kind_has_one_presentation_row_with_its_own_label_and_severity():
    assert set(PRESENTATION) == set(VerdictKind)
    assert len({row.count_label for row in PRESENTATION.values()}) == len(VerdictKind)
    assert len({row.severity for row in PRESENTATION.values()}) == len(VerdictKind)


def test_severity_puts_regressions_first_and_skips_last():
    assert by_severity() == [
        VerdictKind.REGRESSED,
        VerdictKind.FAILED,
        VerdictKind.IMPROVED,
        VerdictKind.NEW,
        VerdictKind.PASS,
        VerdictKind.SKIPPED,
    ]


def test_presentation_reads_a_member_or_its_string_and_falls_back_to_no_checks():
    assert presentation("REGRESSED") is PRESENTATION[VerdictKind.REGRESSED]
    assert presentation(VerdictKind.PASS).count_label == "passed"
    assert presentation("no checks") is NO_CHECKS


def test_the_verdict_package_reexports_the_one_verdict_kind():
    assert verdict.VerdictKind is VerdictKind


def test_the_count_labels_follow_the_presentation_table():
    assert list(verdict.summary_counts([])) == [row.count_label for row in PRESENTATION.values()] + ["quarantined"]
