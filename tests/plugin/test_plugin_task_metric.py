"""A task metric in a user's repo: recorded in the baseline, regressing when a code change makes it drop.

The repo's classifier head gains a large constant offset in the "PR": logits near 100 keep only
bf16's 0.5 resolution there, so eager-bf16's argmax collapses while its SQNR (which sees the offset
as signal) gets *better*. Only the task metric notices; that is the case it exists for.
"""

from __future__ import annotations

import pytest

_CONFTEST = """
import torch
import aitune_ci as ait

SCALE, OFFSET = {scale!r}, {offset!r}


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(16, 10)

    def forward(self, x):
        return self.body(x) * SCALE + OFFSET


def {metric_name}(outputs, reference, samples):
    {metric_body}


@ait.tune_fixture
def tune_cls():
    torch.manual_seed(0)
    return ait.TuneSpec(
        model=Classifier(),
        samples=[torch.randn(64, 16)],
        backends=["eager", "eager-bf16"],
        device="cpu",
        metric={metric},
    )
"""


def write_repo(project, *, scale=1.0, offset=0.0, metric="ait.top1_agreement()", body="return 1.0", name="unused"):
    project.write(
        "conftest.py",
        _CONFTEST.format(scale=scale, offset=offset, metric=metric, metric_body=body, metric_name=name),
    )


@pytest.fixture
def tuned(project):
    """tune_cls with its baseline written before the head change: bf16 agrees with fp32 on (nearly) every row."""
    write_repo(project)
    project.tune("--aitune-update").assert_outcomes(passed=3)
    baseline = project.load_baseline("tune_cls")["backends"]
    assert baseline["eager"]["task_metrics"] == {"top1_agreement": 1.0}
    assert baseline["eager-bf16"]["task_metrics"]["top1_agreement"] >= 0.95
    return project


def test_head_change_that_breaks_top1_in_bf16_regresses_on_the_task_metric(tuned):
    write_repo(tuned, scale=0.01, offset=100.0)

    result = tuned.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert tuned.verdicts(result) == {"tune_cls[eager]": "PASS", "tune_cls[eager-bf16]": "REGRESSED (task-metric)"}
    result.stdout.fnmatch_lines(
        ["tune_cls[[]eager-bf16[]]: REGRESSED (task-metric)*Task metric top1_agreement dropped * (* -> *; limit 0.01)*"]
    )
    assert "SQNR dropped" not in result.stdout.str(), "the accuracy gate and SQNR do not see this change"


def test_a_strict_gate_in_tool_aitune_makes_the_backend_fail_its_accuracy_gate(tuned):
    tuned.configure(aitune=tuned.AITUNE + "\n[tool.aitune.task_metrics]\ntop1_agreement = { min = 0.95 }")
    write_repo(tuned, scale=0.01, offset=100.0)

    result = tuned.tune("-rA")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert tuned.verdicts(result)["tune_cls[eager-bf16]"] == "REGRESSED (accuracy, now-failing)"
    result.stdout.fnmatch_lines(["*Fails its accuracy gate: task metric top1_agreement * < 0.95 (its minimum)*"])
    result.stdout.fnmatch_lines(["*tune_cls: winner eager *"])


def test_a_metric_that_raises_fails_each_check_naming_the_metric_and_the_run_completes(project):
    write_repo(project, metric="needs_labels", name="needs_labels", body="raise KeyError('labels')")

    result = project.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=3)
    assert project.verdicts(result) == {"tune_cls[eager]": "FAILED", "tune_cls[eager-bf16]": "FAILED"}
    result.stdout.fnmatch_lines(
        ["tune_cls[[]eager-bf16[]]: FAILED. Fails: task metric 'needs_labels' of * raised KeyError: 'labels' (at *"]
    )
