"""The committed .ait must be the file its baseline pins by sha256, checked on every run: a check
answered without tuning never opens it, and a tampered or LFS-pointer artifact used to pass unseen."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def nightly(project):
    project.add_fixture("tune_lin")
    project.tune("--aitune-update").assert_outcomes(passed=2)
    (artifact,) = (project.path / ".aitune" / "artifacts").glob("*/tune_lin.ait")
    return project, artifact


def test_an_untouched_or_uncommitted_artifact_passes_and_a_missing_one_is_mentioned(nightly):
    project, artifact = nightly
    assert project.tune().ret == pytest.ExitCode.OK
    artifact.unlink()  # a repo may commit baselines without their binaries: not a failure...
    result = project.tune("-q", "--aitune-report", "run.json", "--aitune-report", "run.md")
    assert result.ret == pytest.ExitCode.OK
    # in the summary (shown under -q too) and in the reports, not only in a progress line
    result.stdout.fnmatch_lines(["tune_lin: note: the baseline pins the artifact *which is not there*"])
    assert "which is not there" in json.loads((project.path / "run.json").read_text())["missing_artifacts"]["tune_lin"]
    assert "⚠️ `tune_lin`: note: the baseline pins the artifact" in (project.path / "run.md").read_text()
    # ...but what it costs is said (a deleted .ait passed unmentioned, its A/B silently gone)
    pytest.LineMatcher(result.outlines + result.errlines).fnmatch_lines(
        [
            "*tune_lin: note: the baseline pins the artifact *tune_lin.ait (sha256 *…), which is not there, so "
            "nothing is timed against it*git checkout -- *pytest --aitune --aitune-update --aitune-fixtures tune_lin*"
        ]
    )


def test_a_changed_artifact_fails_the_selection_naming_both_digests_and_the_fix(nightly):
    project, artifact = nightly
    artifact.write_bytes(artifact.read_bytes() + b"\0")

    result = project.tune("-v", "--aitune-report", "run.md")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(["*tune_lin[[]selection[]] FAILED*", "*tune_lin[[]eager[]] PASSED*"])
    result.stdout.fnmatch_lines(
        [
            "*the committed artifact *tune_lin.ait has sha256 *…, but its baseline records *…: it was changed or "
            "replaced after the baseline was written*git checkout -- *pytest --aitune --aitune-update --aitune-fixtures "
            "tune_lin*"
        ]
    )
    # the count line and the PR comment say it: they read "1 passed" and "no regressions"
    result.stdout.fnmatch_lines(["aitune: 1 passed, 1 fixture broken (tune_lin: see the failures above)"])
    comment = (project.path / "run.md").read_text()
    assert "no regressions" not in comment and "1 broken fixture" in comment
    assert "- `tune_lin`: tune_lin: the committed artifact" in comment


def test_an_lfs_pointer_says_to_fetch_lfs_objects(nightly):
    project, artifact = nightly
    artifact.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")

    result = project.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*tune_lin.ait is a Git LFS pointer, not the artifact: fetch LFS objects*git lfs pull*"]
    )


def test_an_update_rewrites_it_and_is_not_failed_by_it(nightly):
    project, artifact = nightly
    artifact.write_bytes(artifact.read_bytes() + b"\0")

    assert project.tune("--aitune-update").ret == pytest.ExitCode.OK
    assert project.tune().ret == pytest.ExitCode.OK


def test_a_fixture_with_baselines_only_for_other_hardware_says_which(nightly):
    """Every check read NEW, as if the repo held no baseline at all."""
    project, _ = nightly
    baselines = project.path / ".aitune" / "baselines"
    (mine,) = [p for p in baselines.iterdir() if p.is_dir()]
    mine.rename(baselines / "NVIDIA-H100-80GB-HBM3")
    (project.path / ".aitune" / "artifacts" / mine.name).rename(project.path / ".aitune" / "artifacts" / "x")

    result = project.tune("--aitune-report", "run.json")

    assert project.verdicts(result) == {"tune_lin[eager]": "NEW"}
    result.stdout.fnmatch_lines([f"*tune_lin: no baseline for {mine.name}; there are for NVIDIA-H100-80GB-HBM3*"])
    (verdict,) = json.loads((project.path / "run.json").read_text())["verdicts"]
    assert "baselines of tune_lin exist for NVIDIA-H100-80GB-HBM3" in verdict["message"]


def test_a_serving_process_loads_the_committed_artifact_pinned_by_its_baseline(nightly):
    """A new user had to copy the sha256 out of the baseline JSON, and find the <hardware> folder, by hand."""
    import torch

    import aitune_ci as ait

    project, artifact = nightly
    skeleton, x = torch.nn.Linear(8, 4), torch.randn(3, 8)
    untrained = skeleton(x).detach().clone()
    served = ait.load_committed("tune_lin", skeleton, aitune_dir=project.path / ".aitune", device="cpu")
    with torch.no_grad():
        out = served(x)
    assert out.shape == (3, 4) and not torch.allclose(out, untrained)  # the artifact's weights, not the skeleton's

    with pytest.raises(
        ait.ArtifactError,
        match=r"no baseline of 'tune_lni' for any hardware \(did you mean 'tune_lin'\?\); its baselines are: tune_lin",
    ):
        ait.load_committed("tune_lni", torch.nn.Linear(8, 4), aitune_dir=project.path / ".aitune")
    # baselines of another machine only: named, with how to build one here
    (hardware,) = [p for p in (project.path / ".aitune" / "baselines").iterdir() if p.is_dir()]
    moved = hardware.rename(hardware.with_name("NVIDIA-H100-80GB-HBM3"))
    with pytest.raises(
        ait.ArtifactError, match=r"no baseline of tune_lin for this hardware .*; it has one for NVIDIA-H100"
    ):
        ait.load_committed("tune_lin", torch.nn.Linear(8, 4), aitune_dir=project.path / ".aitune", device="cpu")
    moved.rename(hardware)
    # the artifact pinned by its baseline: a replaced file is refused
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    with pytest.raises(ait.ArtifactError, match="the committed baseline records"):
        ait.load_committed("tune_lin", torch.nn.Linear(8, 4), aitune_dir=project.path / ".aitune", device="cpu")
