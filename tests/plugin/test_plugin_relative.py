"""Relative mode: ``--aitune-against REF`` builds the PR's base from a git worktree and times it with the head.

The user repo is a real git repository with two commits. Its model code lives in a package of
its own (``mymodels``), imported by the conftest, so the base's code and the head's must both
be loaded in one process under the same module name. The model spins for a fixed time in
``forward`` (a busy-wait, the same on every machine), so a change in the code is a known slowdown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = """
import time

import torch

SPIN_S = {spin!r}


class Spin(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        end = time.perf_counter() + SPIN_S
        while time.perf_counter() < end:
            pass
        return self.lin(x)
"""

CONFTEST = """
import torch
import aitune_ci as ait
from mymodels import Spin


@ait.tune_fixture
def tune_spin():
    return ait.TuneSpec(model=Spin().eval(), samples=[torch.randn(4, 16)], backends=["eager"])
"""

NEW_FIXTURE = """

@ait.tune_fixture
def tune_new():
    return ait.TuneSpec(model=Spin().eval(), samples=[torch.randn(2, 16)], backends=["eager"])
"""


def _git(path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", *args],
        cwd=path,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def aitune_in(root: Path, *args: str) -> subprocess.CompletedProcess:
    """``pytest --aitune ARGS`` in ``root`` in a fresh process on one thread, as the tests' repos run:
    a module-scoped fixture makes a run once (a nightly, a first build) that its tests then copy."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--aitune", *args, "-p", "no:cacheprovider"],
        cwd=root,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A git repo whose first commit (the base) spins 1 ms per call, with a runner cache of its own:
    the tests' repos do the same work, so a shared cache would answer one test with another's result."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("AITUNE_CACHE_DIR", str(pytester.path / ".runner-cache"))
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naitune_measure_seconds = "1.0"\n')
    pytester.makepyfile(**{"mymodels/__init__.py": MODELS.format(spin=0.001)})
    pytester.makeconftest(CONFTEST)
    _git(pytester.path, "init", "-q")
    _git(pytester.path, "add", "-A")
    _git(pytester.path, "commit", "-qm", "base")
    return pytester


def _commit_head(repo: pytest.Pytester, spin: float, conftest_extra: str = "") -> None:
    repo.makepyfile(**{"mymodels/__init__.py": MODELS.format(spin=spin)})
    repo.makeconftest(CONFTEST + conftest_extra)
    _git(repo.path, "commit", "-qam", "head", "--allow-empty")


def _run(repo: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict[str, dict]]:
    result = repo.runpytest_subprocess("--aitune", "--aitune-report", "run.json", *args)
    run = json.loads((repo.path / "run.json").read_text())
    return result, {f"{v['fixture']}[{v['backend']}]": v for v in run["verdicts"]}


def test_a_base_given_as_its_sha_is_named_once(repo: pytest.Pytester) -> None:
    """The action passes the PR base's full sha: it read "base 9ce4bc686335def5…d72d (9ce4bc686335)"."""
    _commit_head(repo, spin=0.001)
    sha = _git(repo.path, "rev-parse", "HEAD~1")

    result, verdicts = _run(repo, "--aitune-against", sha, "-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["base_ref"] == sha[:12]
    assert sha not in result.stdout.str()


def test_unchanged_code_passes_untimed_because_the_base_does_the_same_work(repo: pytest.Pytester) -> None:
    _commit_head(repo, spin=0.001)

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS" and verdict["mode"] == "relative"
    assert verdict["identical_to_base"] and not verdict["paired"] and verdict["delta"] is None
    assert verdict["current_median_ms"] > 0
    output = result.stdout.str()
    assert "base · tune_spin" not in output  # the base was never tuned
    assert "the base does the same work" in output
    result.stdout.fnmatch_lines(
        ["*tune_spin[[]eager[]]*identical*base HEAD~1 (*), identical*PASS*", "*--aitune-rebuild*"]
    )


def test_the_nightlys_result_of_the_same_work_answers_for_the_head_so_nothing_is_tuned(repo: pytest.Pytester) -> None:
    nightly = repo.runpytest_subprocess("--aitune", "--aitune-update")
    assert nightly.ret == pytest.ExitCode.OK, nightly.stdout.str()
    _git(repo.path, "add", "-A", ".aitune")
    _git(repo.path, "commit", "-qm", "nightly baselines")
    _commit_head(repo, spin=0.001)  # a PR that changes no model

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS" and verdict["identical_to_base"] and verdict["current_median_ms"] > 0
    assert "which this runner tuned at" in verdict["notes"][0]
    output = result.stdout.str()
    assert "this runner tuned the same work at" in output
    assert "tune_spin: tuned in" not in output and "base · tune_spin" not in output  # neither side ran
    run = json.loads((repo.path / "run.json").read_text())
    assert [r["result_reused"] for r in run["results"]] == [True]

    # A stored result that cannot be trusted is discarded and the head tuned: the verdict is the same.
    for stored in (repo.path / ".runner-cache" / "results").rglob("*.json"):
        stored.write_text("{truncated")
    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["identical_to_base"]
    result.stdout.fnmatch_lines(["*stored result of this work is unusable*not JSON*discarded, tuning*", "*tuned in*"])

    # That relative run stored its own result, under the key it compared: the next run reuses it.
    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "-s")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "which this runner tuned at" in verdicts["tune_spin[eager]"]["notes"][0]
    assert "tune_spin: tuned in" not in result.stdout.str()


def test_an_unavailable_backend_of_an_unchanged_fixture_is_skipped_with_its_reason(repo: pytest.Pytester) -> None:
    # TensorRT cannot be installed here (the brief): the head's row is unavailable, and the base,
    # doing the same work, would say the same, so the check is SKIPPED with the reason, untimed.
    repo.makeconftest(CONFTEST.replace('backends=["eager"]', 'backends=["eager", "tensorrt"]'))
    _git(repo.path, "commit", "-qam", "base with tensorrt")
    _git(repo.path, "commit", "-qm", "head", "--allow-empty")

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["identical_to_base"]
    skipped = verdicts["tune_spin[tensorrt]"]
    assert skipped["kind"] == "SKIPPED" and not skipped["identical_to_base"] and skipped["mode"] == "relative"
    assert "tensorrt" in " ".join(skipped["notes"]).lower()


@pytest.mark.quiet  # asserts on latency measured here
def test_a_change_that_reaches_the_model_is_timed_even_when_it_costs_nothing(repo: pytest.Pytester) -> None:
    repo.makepyfile(**{"mymodels/__init__.py": MODELS.format(spin=0.001) + '\nNOTE = "new code, same speed"\n'})
    _git(repo.path, "commit", "-qam", "head")

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS" and verdict["paired"] and not verdict["identical_to_base"]


def test_a_comment_only_change_is_the_same_work_and_passes_untimed(repo: pytest.Pytester) -> None:
    commented = MODELS.format(spin=0.001).replace(
        "    def forward(self, x):\n", "    def forward(self, x):  # spin\n\n"
    )
    repo.makepyfile(**{"mymodels/__init__.py": "# the models\n" + commented})
    _git(repo.path, "commit", "-qam", "head")

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS" and verdict["identical_to_base"] and not verdict["paired"]
    result.stdout.fnmatch_lines(["*tune_spin: the base does the same work*"])


@pytest.mark.quiet  # asserts on latency measured here
def test_unchanged_code_passes_on_the_paired_ratio_of_base_and_head(repo: pytest.Pytester) -> None:
    _commit_head(repo, spin=0.001)

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "--aitune-rebuild")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "PASS"
    assert verdict["mode"] == "relative" and verdict["paired"]
    assert verdict["base_ref"].startswith("HEAD~1 (")
    # No bias beyond the design's paired A/A bound (±0.1%): the CI of the delta must reach into that
    # band. Not "the CI contains 0": two separately built copies of one model differ by a fixed ~0.01%
    # (their tensors sit at other addresses), and a busy-wait model has so little noise that 5 rounds
    # resolve that (measured: 0.99987x [0.99981, 0.99994] for two Spin() instances in one process).
    # Not "the point estimate is within ±0.1%" either: on a busy 2-core CI runner the rounds scatter
    # (seen: +0.2%, CI [-0.2%, +1.5%]), and a point estimate off by noise is not a bias.
    low, high = verdict["delta_ci"]
    assert low < 0.001 and high > -0.001, (verdict["delta"], low, high)


@pytest.mark.quiet  # asserts on latency measured here
def test_a_slower_head_regresses_against_its_base(repo: pytest.Pytester) -> None:
    _commit_head(repo, spin=0.0015)  # +50%

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "REGRESSED" and verdict["mode"] == "relative"
    assert 0.3 < verdict["delta"] < 0.7
    result.stdout.fnmatch_lines(
        [
            "*tune_spin[[]eager[]]: REGRESSED (latency)*vs base HEAD~1 (*[[]relative to the base, paired in one process[]]*"
        ]
    )


@pytest.mark.quiet  # asserts on latency measured here
def test_the_base_keeps_its_own_code_although_both_import_the_same_module_name(repo: pytest.Pytester) -> None:
    _commit_head(repo, spin=0.0005)  # the head is twice as fast: only the base's own code can show that

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert verdicts["tune_spin[eager]"]["kind"] == "IMPROVED"
    assert -0.65 < verdicts["tune_spin[eager]"]["delta"] < -0.35


PARTS_FIXTURE = """

class Pair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.spin, self.head = Spin(), torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.spin(x))


@ait.tune_fixture
def tune_pair():
    return ait.TuneSpec(
        model=Pair().eval(), samples=[torch.randn(4, 16)], backends=["eager", "eager-bf16"], modules=["spin", "head"]
    )
"""


def _stored_results(repo: pytest.Pytester) -> list[Path]:
    return sorted((repo.path / ".runner-cache" / "results").rglob("*.json"))


def test_the_base_takes_its_parts_from_the_nightlys_tune_of_the_same_work(repo: pytest.Pytester) -> None:
    repo.makeconftest(CONFTEST + PARTS_FIXTURE)
    _git(repo.path, "commit", "-qam", "base with a fixture tuned per part")
    nightly = repo.runpytest_subprocess("--aitune", "--aitune-update", "-k", "tune_pair")
    assert nightly.ret == pytest.ExitCode.OK, nightly.stdout.str()
    _git(repo.path, "add", "-A", ".aitune")
    _git(repo.path, "commit", "-qm", "nightly baselines")
    # Which backend wins a part here is noise (a busy-wait and a small Linear), so the stored choice
    # is set to one: as if the nightly had chosen bf16 for both parts. The base must take exactly that.
    [entry] = _stored_results(repo)
    stored = json.loads(entry.read_text())
    stored["result"]["module_choice"] = {"spin": "eager-bf16", "head": "eager-bf16"}
    entry.write_text(json.dumps(stored))
    # A PR whose change reaches the model (new code, the same speed): the head tunes its parts.
    repo.makepyfile(**{"mymodels/__init__.py": MODELS.format(spin=0.001) + '\nNOTE = "new code, same speed"\n'})
    _git(repo.path, "commit", "-qam", "head")

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1", "-k", "tune_pair", "-s")

    result.stdout.fnmatch_lines(
        [
            "*] tune_pair.spin: measuring 2 backends*",  # the head chose its own parts
            "*base · [[]1/1[]] tune_pair.spin · eager-bf16: building*",
            "*base · tune_pair.spin: eager-bf16 — chosen by this runner's tune of the same work at *, not measured again",
            "*base · tune_pair.head: eager-bf16 — chosen by this runner's tune of the same work at *, not measured again",
            "*base · tune_pair · mixed (spin=eager-bf16, head=eager-bf16): accuracy ok*",
            "*tune_pair · mixed: paired head/base *",  # the mixed models are still timed against each other
        ]
    )
    output = result.stdout.str()
    assert "base · tune_pair.spin: measuring" not in output and "base · tune_pair.head: measuring" not in output
    assert "base · [1/2] tune_pair.spin · eager:" not in output  # the part's other backend is not built
    mixed = verdicts["tune_pair[mixed]"]
    assert mixed["mode"] == "relative"
    # The head measured its parts (eager or bf16 may win either): where its mix differs from the
    # base's bf16 one, the mixed verdict says so, and only then.
    run = json.loads((repo.path / "run.json").read_text())
    [head_choice] = [r["module_choice"] for r in run["results"] if r["name"] == "tune_pair"]
    differently = [f"{p}: eager-bf16 -> {b}" for p, b in sorted(head_choice.items()) if b != "eager-bf16"]
    notes = [n for n in mixed["notes"] if n.startswith("parts chosen differently")]
    assert notes == ([f"parts chosen differently: {', '.join(differently)}"] if differently else []), (
        head_choice,
        mixed,
    )

    # A nightly of the base that deselected a backend's check (-k): the same work key, but its parts
    # chose from eager alone. It is not taken: the base measures its parts as the head does.
    # (--aitune-backends is another work key: the key covers the backends' names.) Its tune is the
    # only one stored: it would not evict the fuller tune of the same work above (_store_result).
    for entry in _stored_results(repo):
        entry.unlink()
    _git(repo.path, "checkout", "-q", "HEAD~1")
    nightly = repo.runpytest_subprocess("--aitune", "--aitune-update", "-k", "tune_pair and not bf16")
    assert nightly.ret == pytest.ExitCode.OK, nightly.stdout.str()
    _git(repo.path, "checkout", "-q", "-f", "-")  # back to the head, dropping the update's baselines
    result, _ = _run(repo, "--aitune-against", "HEAD~1", "-k", "tune_pair", "-s")

    result.stdout.fnmatch_lines(
        [
            "*base · tune_pair: this runner's stored tune of the same work did not try every backend of this run "
            "on head, spin, so the base measures them*",
            "*base · tune_pair.spin: measuring 2 backends*",
        ]
    )
    assert "chosen by this runner's tune" not in result.stdout.str()


def test_a_fixture_new_in_the_head_falls_back_to_the_stored_baseline(repo: pytest.Pytester) -> None:
    _commit_head(repo, spin=0.001, conftest_extra=NEW_FIXTURE)

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    assert verdicts["tune_new[eager]"]["kind"] == "NEW"
    assert verdicts["tune_new[eager]"]["mode"] == "stored"
    assert verdicts["tune_spin[eager]"]["mode"] == "relative"
    result.stdout.fnmatch_lines(["*no base version at HEAD~1 (*) of tune_new*"])


def test_an_unknown_ref_is_a_usage_error_that_says_how_to_fetch_it(
    repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the run's temporary folders go

    result = repo.runpytest_subprocess("--aitune", "--aitune-against", "origin/nope")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aitune-against 'origin/nope': no such commit*fetch-depth: 0*"])
    assert not list(tmp_path.glob("aitune-base-*"))  # the folder made for the worktree is gone too


def test_relative_mode_refuses_to_write_baselines(repo: pytest.Pytester) -> None:
    result = repo.runpytest_subprocess("--aitune", "--aitune-against", "HEAD", "--aitune-update")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--aitune-against*cannot also write baselines*"])


def test_the_worktree_and_its_folder_are_removed_after_the_run(
    repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _commit_head(repo, spin=0.001)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # where the run's temporary folders go

    _run(repo, "--aitune-against", "HEAD~1")

    assert _git(repo.path, "worktree", "list").count("\n") == 0  # only the main checkout is left
    assert not list(tmp_path.glob("aitune-base-*"))  # a PR check leaves no empty folder in /tmp per run


FIRST_CALL_MODELS = (
    MODELS
    + """

_SEEN = set()


class SlowStart(Spin):
    \"\"\"Spin, plus {first!r} s on each instance's first call: what loading its artifact then costs.\"\"\"

    def forward(self, x):
        if id(self) not in _SEEN:
            _SEEN.add(id(self))
            end = time.perf_counter() + {first!r}
            while time.perf_counter() < end:
                pass
        return super().forward(x)
"""
)


def test_a_slower_first_call_is_timed_again_on_both_sides_and_fails_on_the_medians(
    repo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The head's code makes the first call of every loaded copy 0.4 s slower, its steady calls not.
    repo.makepyfile(**{"mymodels/__init__.py": FIRST_CALL_MODELS.format(spin=0.001, first=0.4)})
    repo.makeconftest(CONFTEST.replace("Spin", "SlowStart"))
    _git(repo.path, "commit", "-qam", "head")
    monkeypatch.setenv("TMPDIR", str(tmp_path))

    result, verdicts = _run(repo, "--aitune-against", "HEAD~1")

    verdict = verdicts["tune_spin[eager]"]
    assert verdict["kind"] == "REGRESSED" and "first-call" in verdict["reasons"], verdict["message"]
    result.stdout.fnmatch_lines(
        [
            "*tune_spin · eager: first call *, one load each; timing each side's load twice more (base, head, head, base)",
            "*tune_spin · eager: median of 3 loads: base loads in *",
        ]
    )
    assert not list(tmp_path.glob("aitune-load-*"))  # the artifacts kept for timing again are gone
