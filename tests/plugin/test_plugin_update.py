"""--aitune-update and --aitune-update-new-only: which baselines get written, and that they then pass."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.quiet  # asserts on latency measured here: `make test` never runs it beside another worker


def test_first_run_reports_new_and_writes_nothing(project):
    project.add_fixture("tune_lin")

    result = project.tune()

    result.assert_outcomes(passed=2)
    assert project.verdicts(result) == {"tune_lin[eager]": "NEW"}
    result.stdout.fnmatch_lines(["aitune: 1 new"])
    assert project.baselines() == {}


def test_update_writes_a_baseline_per_fixture_with_every_backend(project):
    project.add_fixture("tune_a", backends=("eager", "eager-bf16"))
    project.add_fixture("tune_b", where="test_models.py")

    result = project.tune("--aitune-update")

    assert result.ret == pytest.ExitCode.OK
    assert set(project.baselines()) == {"tune_a", "tune_b"}
    data = project.load_baseline("tune_a")
    assert data["fixture"] == "tune_a"
    assert set(data["backends"]) == {"eager", "eager-bf16"}
    assert all(entry["status"] == "ok" for entry in data["backends"].values())
    result.stdout.fnmatch_lines(["*tune_a: baseline written to *tune_a.json"])


def test_rerun_after_update_passes_against_the_baseline(project):
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update").assert_outcomes(passed=3)

    result = project.tune()

    assert result.ret == pytest.ExitCode.OK
    assert project.verdicts(result) == {"tune_lin[eager]": "PASS", "tune_lin[eager-bf16]": "PASS"}
    assert project.count_line(result) == "aitune: 2 passed"


def test_update_new_only_writes_missing_baselines_and_leaves_existing_ones_byte_for_byte(project):
    project.add_fixture("tune_old")
    project.tune("--aitune-update")
    old = project.baseline_path("tune_old").read_bytes()
    project.add_fixture("tune_fresh")

    result = project.tune("--aitune-update-new-only")

    assert result.ret == pytest.ExitCode.OK
    assert set(project.baselines()) == {"tune_old", "tune_fresh"}
    assert project.baseline_path("tune_old").read_bytes() == old
    assert project.verdicts(result) == {"tune_old[eager]": "PASS", "tune_fresh[eager]": "NEW"}


def test_update_rewrites_an_existing_baseline_and_extends_its_noise_history(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    before = project.load_baseline("tune_lin")

    project.tune("--aitune-update").assert_outcomes(passed=2)

    after = project.load_baseline("tune_lin")
    assert len(after["backends"]["eager"]["noise_history"]) == len(before["backends"]["eager"]["noise_history"]) + 1


def test_five_updates_arm_the_stored_latency_verdict(project):
    """One run cannot see its own speed offset: the stored median is judged once five runs measured it."""
    project.add_fixture("tune_lin")
    for updates in (1, 2, 3, 4, 5):
        project.tune("--aitune-update")
        assert len(project.load_baseline("tune_lin")["backends"]["eager"]["run_medians_ms"]) == updates
        project.forget_work("tune_lin")  # the check's code changed since: timed against the baseline
        result = project.tune("--aitune-report", "run.json")
        verdict = json.loads((project.path / "run.json").read_text())["verdicts"][0]
        if updates < 5:
            assert verdict["threshold"] is None and verdict["kind"] == "PASS"
            assert f"it holds {updates} of the 5 runs in separate processes" in verdict["message"]
            # the terminal says why too, under the table, instead of a bare "-"
            assert "tune_lin[eager]: Latency not judged against the stored baseline yet" in result.stdout.str()
        else:  # armed: judged, or (a µs-scale check whose three runs spread widely) the spread is named
            assert "runs in separate processes" not in verdict["message"], verdict
            assert verdict["threshold"] is not None or "between runs of unchanged code" in verdict["message"]
        assert result.ret == pytest.ExitCode.OK


def test_update_accepts_a_regression_and_the_next_run_passes(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update")
    project.scale_latency("tune_lin", "eager", 1 / project.FACTOR)
    project.tune().assert_outcomes(passed=1, failed=1)

    accepted = project.tune("--aitune-update")
    accepted.assert_outcomes(passed=2)
    accepted.stdout.fnmatch_lines(["*tune_lin: baseline written to*"])
    rerun = project.tune()

    assert rerun.ret == pytest.ExitCode.OK
    assert project.verdicts(rerun) == {"tune_lin[eager]": "PASS"}


def test_update_with_a_backend_filter_keeps_the_other_backends_entries(project):
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update")
    bf16 = project.load_baseline("tune_lin")["backends"]["eager-bf16"]

    project.tune("--aitune-update", "--aitune-backends", "eager").assert_outcomes(passed=2)

    data = project.load_baseline("tune_lin")
    assert data["backends"]["eager-bf16"] == bf16
    assert len(data["backends"]["eager"]["noise_history"]) == 2  # eager was re-measured and merged


def test_a_changed_winner_is_shown_in_the_summary_and_every_report(project):
    """The [selection] item names a winner change, but a passing item's text is never printed: a new
    user's winner flipped from onnxruntime to eager and no report said it had been anything else."""
    project.add_fixture("tune_lin", backends=("eager", "eager-bf16"))
    project.tune("--aitune-update").assert_outcomes(passed=3)
    baseline = project.load_baseline("tune_lin")
    old = next(b for b in baseline["backends"] if b != baseline["winner"])
    now = baseline["winner"]
    baseline["winner"] = old
    project.save_baseline("tune_lin", baseline)

    result = project.tune("--aitune-report", "run.json", "--aitune-report", "run.md")

    result.stdout.fnmatch_lines([f"tune_lin: winner changed: {old} -> {now} (*)"])
    run = json.loads((project.path / "run.json").read_text())
    assert run["winner_changes"]["tune_lin"].startswith(f"winner changed: {old} -> {now}")
    assert f"`tune_lin` → **{now}**" in (project.path / "run.md").read_text()
    assert f": winner changed: {old} -> {now}" in (project.path / "run.md").read_text()
