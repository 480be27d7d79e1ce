"""What ``aitune-ci comment`` tells the workflow: the ``verdict`` step output's mapping and the capped annotations."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from large_run import large_run

from aitune_ci.github.publish import MAX_ANNOTATIONS, STEP_VERDICTS, annotations, step_outputs, step_verdict
from aitune_ci.status import VerdictKind
from aitune_ci.store.runs import load_run
from aitune_ci.verdict import ACCURACY, LATENCY, NOW_FAILING, Verdict

DATA = Path(__file__).parent / "data"
URL = "https://github.com/acme/models/actions/runs/123456789"

K = VerdictKind


def _v(kind: VerdictKind, *reasons: str, **kw: object) -> Verdict:
    return Verdict(fixture=str(kw.pop("fixture", "tune_a")), backend="eager", kind=kind, reasons=reasons, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdicts", "expected"),
    [
        ([], "none"),
        ([_v(K.SKIPPED), _v(K.SKIPPED)], "none"),
        ([_v(K.PASS)], "pass"),
        ([_v(K.PASS), _v(K.IMPROVED), _v(K.NEW), _v(K.SKIPPED)], "pass"),
        ([_v(K.PASS), _v(K.REGRESSED, LATENCY)], "regressed"),
        ([_v(K.REGRESSED, ACCURACY), _v(K.IMPROVED)], "regressed"),
        ([_v(K.REGRESSED, LATENCY, quarantined=True), _v(K.PASS)], "pass"),
        ([_v(K.FAILED, known_failure=True)], "pass"),
        ([_v(K.FAILED, quarantined=True), _v(K.REGRESSED, LATENCY, quarantined=True)], "pass"),
        ([_v(K.FAILED), _v(K.PASS)], "failed"),
        ([_v(K.REGRESSED, LATENCY), _v(K.FAILED)], "failed"),
        ([_v(K.REGRESSED, NOW_FAILING), _v(K.REGRESSED, LATENCY)], "failed"),
        ([_v(K.REGRESSED, ACCURACY, NOW_FAILING)], "failed"),
        ([_v(K.NEW, baseline_required=True), _v(K.PASS)], "failed"),
        ([_v(K.SKIPPED, baseline_required=True)], "failed"),
    ],
)
def test_step_verdict_maps_checks_to_four_stable_words(verdicts: list[Verdict], expected: str) -> None:
    assert step_verdict(verdicts) == expected
    assert expected in STEP_VERDICTS
    # `failing` (CI fails) and the verdict agree: failing exactly when regressed or failed.
    assert any(v.fails for v in verdicts) == (expected in ("regressed", "failed"))


def test_step_outputs_keep_the_detailed_kind_apart_from_the_verdict() -> None:
    run = load_run(DATA / "report_run.json")
    assert step_outputs(run)["verdict"] == "pass" and step_outputs(run)["verdict-kind"] == "IMPROVED"
    assert step_outputs({"verdicts": [], "results": []})["verdict-kind"] == "NONE"
    broken = copy.deepcopy(run)
    broken["verdicts"][0].update(kind="FAILED", reasons=[], notes=["build raised RuntimeError"])
    out = step_outputs(broken)
    assert (out["verdict"], out["verdict-kind"], out["failing"], out["failed"]) == ("failed", "FAILED", True, 1)


# --- annotations ------------------------------------------------------------------------------


def _level(line: str) -> str:
    return line.split(" ", 1)[0].split("::")[1]


def test_234_regressions_give_ten_errors_most_severe_first_and_one_notice() -> None:
    run = large_run(700, 234)
    lines = annotations(run, report_url=URL)
    assert len(lines) == MAX_ANNOTATIONS + 1
    assert [_level(line) for line in lines] == ["error"] * MAX_ANNOTATIONS + ["notice"]
    regressed = sorted((v for v in run["verdicts"] if v["kind"] == "REGRESSED"), key=lambda v: -v["delta"])
    expected = [f"{v['fixture']}[inductor]" for v in regressed[:MAX_ANNOTATIONS]]
    shown = [re.search(r"title=aitune-ci%3A (\S+) regressed::", line).group(1) for line in lines[:-1]]  # type: ignore[union-attr]
    assert shown == expected
    notice = lines[-1]
    assert notice.startswith("::notice title=aitune-ci%3A 224 more not annotated::224 more not annotated")
    assert "(224 failing checks)" in notice and notice.endswith(f"the report ({URL})")


def test_tolerated_failures_and_the_environment_fill_the_rest_after_the_errors() -> None:
    run = large_run(40, 4)
    for v in run["verdicts"]:
        if v["kind"] == "SKIPPED" and v["backend"] == "onnxruntime":
            v.update(kind="REGRESSED", reasons=["latency"], delta=0.2, quarantined=True)  # 40 tolerated
    run["verdicts"][0]["env_mismatch"] = {"driver": ["575.51.03", "580.159.04"]}
    lines = annotations(run)
    levels = [_level(line) for line in lines]
    assert levels == ["error"] * 4 + ["warning"] * 6 + ["notice"]
    assert "environment mismatch" in lines[4]
    assert "(4 failing checks" not in lines[-1] and "35 warnings" in lines[-1]
    assert lines[-1].endswith("the HTML report artifact")


def test_few_annotations_come_without_a_notice() -> None:
    run = large_run(12, 3)
    lines = annotations(run)
    assert [_level(line) for line in lines] == ["error"] * 3


def test_annotation_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        annotations(large_run(2, 1), limit=0)
