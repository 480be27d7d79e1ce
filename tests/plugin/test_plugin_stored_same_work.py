"""Stored mode: a fixture that does the work its baseline's latest update tuned passes untimed.

Timing it against the baseline's figures would time the same work twice, in two processes, which
can only measure noise (relative mode's rule for a base doing the head's work). The nightly records
its work key in the baseline (``work``); a later plain ``pytest --aitune`` takes its own key and,
where they are equal, takes this runner's stored result of that work instead of tuning. Anything
the key covers that changed, the environment included, times the check as before.
"""

from __future__ import annotations

import json

import pytest
from test_plugin_relative import MODELS

CONFTEST = """
import torch
import aitune_ci as ait
from mymodels import Spin


@ait.tune_fixture
def tune_spin():
    return ait.TuneSpec(model=Spin().eval(), samples=[torch.randn(4, 16)], backends=["eager", "tensorrt"])
"""


def _write_model(repo: pytest.Pytester, spin: float) -> None:
    repo.makepyfile(**{"mymodels/__init__.py": MODELS.format(spin=spin)})


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A user repo with a runner cache of its own (the tests' repos do the same work)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("TORCHINDUCTOR_MAX_AUTOTUNE", raising=False)
    monkeypatch.setenv("AITUNE_CACHE_DIR", str(pytester.path / ".runner-cache"))
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naitune_measure_seconds = "0.5"\n')
    _write_model(pytester, spin=0.001)
    pytester.makeconftest(CONFTEST)
    return pytester


def _check(repo: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    result = repo.runpytest_subprocess("--aitune", "--aitune-report", "run.json", "-s", *args)
    run = json.loads((repo.path / "run.json").read_text())
    return result, {f"{v['fixture']}[{v['backend']}]": v for v in run["verdicts"]}


def _nightly(repo: pytest.Pytester, *args: str) -> dict:
    nightly = repo.runpytest_subprocess("--aitune", "--aitune-update", *args)
    assert nightly.ret == pytest.ExitCode.OK, nightly.stdout.str()
    (path,) = (repo.path / ".aitune" / "baselines").rglob("tune_spin.json")
    return json.loads(path.read_text())


def test_the_work_the_nightly_tuned_passes_untimed_from_its_stored_result_and_a_change_is_timed(
    repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = _nightly(repo)
    assert len(baseline["work"]["key"]) == 64 and baseline["work"]["backends"] == ["eager", "tensorrt"]

    result, verdicts = _check(repo)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS" and verdict["identical_to_base"] and verdict["mode"] == "stored"
    assert not verdict["paired"] and verdict["delta"] is None and verdict["current_median_ms"] > 0
    assert "the baseline's latest update did the same work, which this runner tuned at" in verdict["notes"][0]
    skipped = verdicts["tune_spin[tensorrt]"]  # unavailable: judged as ever, with its reason
    assert skipped["kind"] == "SKIPPED" and not skipped["identical_to_base"]
    output = result.stdout.str()
    assert "tune_spin: the baseline's latest update (" in output and "did the same work" in output
    assert "tune_spin: tuned in" not in output and "artifact loads in" not in output  # nothing tuned or timed
    result.stdout.fnmatch_lines(["*tune_spin[[]eager[]]* → same work *identical*baseline, identical*PASS*"])
    assert verdict["baseline_median_ms"] == pytest.approx(baseline["backends"]["eager"]["latency"]["median_ms"])
    run = json.loads((repo.path / "run.json").read_text())
    assert [r["result_reused"] for r in run["results"]] == [True]

    # Without this runner's stored result (a fresh runner) the head is tuned, and still not timed
    # against the baseline: the same work, so no paired A/B and no load timing.
    for stored in (repo.path / ".runner-cache" / "results").rglob("*.json"):
        stored.unlink()
    result, verdicts = _check(repo)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["identical_to_base"]
    assert "--aitune-rebuild times it" in verdicts["tune_spin[eager]"]["notes"][0]
    output = result.stdout.str()
    assert "tune_spin: tuned in" in output and "paired A/B" not in output and "artifact loads in" not in output
    assert list((repo.path / ".runner-cache" / "results").rglob("*.json"))  # kept for the next check

    # An environment the key covers is other work: here a compiler setting; torch, CUDA, the driver
    # and the GPU are in the key's environment alike (``registry.fingerprint``).
    monkeypatch.setenv("TORCHINDUCTOR_MAX_AUTOTUNE", "1")
    result, verdicts = _check(repo)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not verdicts["tune_spin[eager]"]["identical_to_base"]
    assert "did the same work" not in result.stdout.str() and "tune_spin: tuned in" in result.stdout.str()
    monkeypatch.delenv("TORCHINDUCTOR_MAX_AUTOTUNE")

    # --aitune-rebuild distrusts the keys: it tunes and times.
    result, verdicts = _check(repo, "--aitune-rebuild")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not verdicts["tune_spin[eager]"]["identical_to_base"]

    # A change of the model's code is other work: tuned and judged against the baseline.
    _write_model(repo, spin=0.002)
    result, verdicts = _check(repo)

    assert not verdicts["tune_spin[eager]"]["identical_to_base"]
    assert "did the same work" not in result.stdout.str() and "tune_spin: tuned in" in result.stdout.str()


def test_rows_a_deselected_nightly_did_not_write_are_judged_against_the_baseline(repo: pytest.Pytester) -> None:
    _nightly(repo)  # every row, at this code
    baseline = _nightly(repo, "-k", "not tensorrt")  # the same work key, only eager's row rewritten
    assert baseline["work"]["backends"] == ["eager"]

    result, verdicts = _check(repo)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not verdicts["tune_spin[eager]"]["identical_to_base"]
    result.stdout.fnmatch_lines(
        ["*tune_spin: the baseline's latest update did the same work but did not tune tensorrt; checked against*"]
    )

    # The same selection as that nightly is covered.
    result, verdicts = _check(repo, "-k", "not tensorrt")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["identical_to_base"]


def test_a_baseline_without_a_work_record_is_checked_as_before(repo: pytest.Pytester) -> None:
    _nightly(repo)
    (path,) = (repo.path / ".aitune" / "baselines").rglob("tune_spin.json")
    data = json.loads(path.read_text())
    del data["work"]  # written by an aitune-ci that did not record it
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    result, verdicts = _check(repo)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not verdicts["tune_spin[eager]"]["identical_to_base"]
    assert "tune_spin: tuned in" in result.stdout.str() and "did the same work" not in result.stdout.str()
