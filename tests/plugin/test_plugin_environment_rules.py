"""What the plugin does when the model or samples changed since the baseline, or the CPU share did."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker


@pytest.fixture
def tuned(project):
    """tune_lin (eager, eager-bf16: SQNR about 49 dB), baseline written with one torch thread."""
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update").assert_outcomes(passed=3)
    return project


def _verdicts(project, result) -> dict[str, dict]:
    run = json.loads((project.path / "run.json").read_text())
    return {f"{v['fixture']}[{v['backend']}]": v for v in run["verdicts"]}


def test_the_baseline_records_digests_of_the_weights_and_samples(tuned):
    inputs = tuned.load_baseline("tune_lin")["inputs"]

    assert set(inputs) == {"weights", "samples"} and all(len(v) == 64 for v in inputs.values())


def test_an_sqnr_drop_with_the_same_model_regresses(tuned):
    tuned.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)

    result = tuned.tune("--aitune-report", "run.json")

    assert _verdicts(tuned, result)["tune_lin[eager-bf16]"]["kind"] == "REGRESSED"


def test_an_sqnr_drop_after_the_weights_changed_says_so_and_passes(tuned):
    tuned.set_accuracy("tune_lin", "eager-bf16", sqnr_db=78.0)
    data = tuned.load_baseline("tune_lin")
    data["inputs"]["weights"] = "0" * 64  # the baseline was measured on other weights
    tuned.save_baseline("tune_lin", data)

    result = tuned.tune("--aitune-report", "run.json")

    verdict = _verdicts(tuned, result)["tune_lin[eager-bf16]"]
    assert verdict["kind"] == "PASS"
    assert "Model or samples changed since the baseline (weights): SQNR dropped" in verdict["message"]


def test_another_torch_thread_count_is_not_a_false_regression(tuned, monkeypatch):
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the baseline was written with 1

    result = tuned.tune("--aitune-report", "run.json", subprocess=True)

    verdict = _verdicts(tuned, result)["tune_lin[eager]"]
    assert verdict["kind"] == "PASS"
    assert "Latency not compared: this run may use 2 torch threads (the baseline 1)" in verdict["message"]
    assert verdict["env_mismatch"]["torch_threads"] == [1, 2]


def test_the_same_thread_count_judges_the_same_edit_as_a_regression(tuned):
    tuned.scale_latency("tune_lin", "eager", 1 / tuned.FACTOR)

    result = tuned.tune("--aitune-report", "run.json", subprocess=True)

    assert _verdicts(tuned, result)["tune_lin[eager]"]["kind"] == "REGRESSED"
