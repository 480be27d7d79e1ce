"""Paired A/B: a committed ahead-of-time artifact is timed against the fresh build in one process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from baseline_edits import other_work
from test_plugin_relative import aitune_in

CONFTEST = """
import os, torch, aitune_ci as ait

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(256, 256)
        self.register_buffer("eye", torch.eye(256))

    def forward(self, x):
        y = self.lin(x)
        # A code change that makes the model slower but not different: extra identity matmuls.
        for _ in range(int(os.environ.get("EXTRA_MATMULS", "0"))):
            y = y @ self.eye
        return y

@ait.tune_fixture
def tune_net():
    torch.manual_seed(0)
    return ait.TuneSpec(model=Net().eval(), samples=[torch.randn(64, 256)], backends=["eager", "onnxruntime"],
                        strategy="one-backend")
"""

# Every check keeps the default 5% threshold. The eager check has no compiled artifact to pair
# with, and a baseline written by one update has not measured how far a run can sit off, so its
# latency is reported "not judged" rather than compared (tests/test_verdict_between_runs.py).
PYPROJECT = """
[tool.pytest.ini_options]
aitune_measure_seconds = "0.4"
"""


@pytest.fixture
def repo(pytester, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    # Written as is (makeconftest would strip it): the module's nightly must hash the same file content.
    (pytester.path / "conftest.py").write_text(CONFTEST)
    (pytester.path / "pyproject.toml").write_text(PYPROJECT)
    return pytester


@pytest.fixture(scope="module")
def nightly(tmp_path_factory) -> Path:
    """The ``.aitune`` one ``--aitune-update`` of this repo writes, made once for the module's tests."""
    root = tmp_path_factory.mktemp("paired-nightly")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "pyproject.toml").write_text(PYPROJECT)
    done = aitune_in(root, "--aitune-update")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root / ".aitune"


@pytest.fixture
def updated(repo, nightly):
    """``repo`` after a nightly: its baselines and artifacts, copied (each test may change its own)."""
    shutil.copytree(nightly, repo.path / ".aitune")
    return repo


@pytest.fixture
def refactored(updated):
    """``updated``, its nightly made of other code that computes the same (a refactor since): after a
    nightly of this very code a check passes untimed and pairs nothing (test_plugin_stored_same_work.py)."""
    for path in (updated.path / ".aitune" / "baselines").rglob("*.json"):
        path.write_text(json.dumps(other_work(json.loads(path.read_text())), indent=2, sort_keys=True) + "\n")
    return updated


def _run(repo, *args):
    return repo.runpytest_subprocess("--aitune", "--aitune-report", "run.json", "-p", "no:cacheprovider", *args)


def _verdict(repo, backend):
    run = json.loads((repo.path / "run.json").read_text())
    return next(v for v in run["verdicts"] if v["backend"] == backend)


def test_update_commits_the_winner_as_an_artifact_pinned_in_the_baseline(repo):
    result = _run(repo, "--aitune-update")
    assert result.ret == 0, result.stdout.str()
    baseline = json.loads(next((repo.path / ".aitune" / "baselines").glob("*/tune_net.json")).read_text())
    artifact = next((repo.path / ".aitune" / "artifacts").glob("*/tune_net.ait"))
    import hashlib

    assert baseline["winner"] == "onnxruntime"
    assert baseline["artifact_sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()


@pytest.mark.quiet  # asserts on latency measured here
def test_unchanged_code_passes_on_the_paired_ratio(refactored):
    # Two identical ONNX sessions once came out 0.900x here (intra-op pools on both cores, a bias:
    # reports/ort_aa_bias.md); on one thread each they are centred, so the default 5% holds.
    repo = refactored
    result = _run(repo)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*tune_net · onnxruntime: paired A/B vs baseline artifact: *x*"])
    verdict = _verdict(repo, "onnxruntime")
    assert verdict["paired"] is True and verdict["kind"] == "PASS"


@pytest.mark.quiet  # asserts on latency measured here
def test_a_slower_build_is_caught_by_the_paired_ratio(updated, monkeypatch):
    # Under the nightly's own record of its work: the variable is in the key (the code names it), so
    # this is other work, timed against the committed artifact, and fails.
    repo = updated
    monkeypatch.setenv("EXTRA_MATMULS", "6")
    result = _run(repo)
    verdict = _verdict(repo, "onnxruntime")
    assert verdict["paired"] is True
    assert verdict["kind"] == "REGRESSED" and verdict["delta"] > 0.5, verdict
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_tampered_artifact_is_refused_and_the_medians_are_used(refactored):
    repo = refactored
    artifact = next((repo.path / ".aitune" / "artifacts").glob("*/tune_net.ait"))
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    result = _run(repo)
    result.stdout.fnmatch_lines(["*no paired A/B against the baseline artifact*sha256*"])
    assert _verdict(repo, "onnxruntime")["paired"] is False


def test_reuse_loads_the_committed_artifact_when_nothing_changed_and_rebuild_overrides_it(refactored):
    # The reused build *is* the baseline's artifact, so no A/B is timed: onnxruntime too falls back
    # to the stored median, which one update has not armed; this test is about the reuse.
    repo = refactored
    result = _run(repo, "--aitune-reuse")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*tune_net · onnxruntime: nothing changed since the baseline; reusing its artifact*"])
    assert "(reused artifact)" in json.dumps(json.loads((repo.path / "run.json").read_text())["results"])
    result = _run(repo, "--aitune-reuse", "--aitune-rebuild")
    assert "reusing its artifact" not in result.stdout.str()


def test_an_artifact_that_does_not_hold_the_baselines_winner_is_not_loaded_as_it(updated):
    """Before 2026-12-03 a tune with modules=[...] saved its mixture under a whole-model winner's
    name; such an artifact (here: the baseline says eager, the .ait holds onnxruntime) is never
    timed as the winner: the check says so and builds."""
    repo = updated
    (path,) = (repo.path / ".aitune" / "baselines").rglob("tune_net.json")
    data = json.loads(path.read_text())
    held = data["winner"]
    data["winner"] = "eager" if held != "eager" else "onnxruntime"
    path.write_text(json.dumps(data))
    result = _run(repo, "--aitune-reuse")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [f"*tune_net: tune_net.ait holds {{'': '{held}'}}, not the winner {data['winner']}; building instead*"]
    )
    assert "reusing its artifact" not in result.stdout.str()


def test_a_code_change_invalidates_reuse(updated):
    repo = updated
    conftest = repo.path / "conftest.py"
    conftest.write_text(conftest.read_text().replace("y = self.lin(x)", "y = self.lin(x) * 1.0"))
    result = _run(repo, "--aitune-reuse")
    assert "reusing its artifact" not in result.stdout.str()
