"""--aitune-warn-only and ``warn_only`` in [tool.aitune]: regressions reported as "would fail", crashes still fail.

The regression is a real run against a real baseline whose recorded peak memory was edited down
(as a baseline written before a change that grew the model's allocations would read).
"""

from __future__ import annotations

import json

import pytest
import torch._dynamo  # noqa: F401

# Imported up front: pytester's inline runs unload modules first imported during a run, and dynamo
# (imported by the artifact's spec hash) registers torch operators that cannot be registered twice.

#: [tool.aitune] with the memory gate's 8 MiB floor removed for tune_lin: its tiny Linear allocates bytes.
NO_MEMORY_FLOOR = "\n[tool.aitune.metrics.peak_memory]\ntune_lin = { floor = 0 }"

#: A tiny model whose forward refuses to run under autocast: eager works, eager-bf16 FAILS to build.
_NO_AUTOCAST = """
import torch
import aitune_ci as ait


class NoAutocast(torch.nn.Linear):
    def forward(self, x):
        if torch.is_autocast_enabled("cpu"):
            raise RuntimeError("this model does not run under autocast")
        return super().forward(x)


@ait.tune_fixture
def tune_fragile():
    torch.manual_seed(0)
    return ait.TuneSpec(model=NoAutocast(8, 4), samples=[torch.randn(2, 8)], backends=["eager", "eager-bf16"], device="cpu")


@ait.tune_fixture
def tune_raises():
    raise FileNotFoundError("weights.bin is missing")
"""


@pytest.fixture
def memory_regressed(project):
    """tune_lin[eager] with a baseline that records a fifth of the peak memory this run will measure."""
    project.configure(aitune=project.AITUNE + NO_MEMORY_FLOOR)
    project.add_fixture("tune_lin")
    project.tune("--aitune-update").assert_outcomes(passed=2)
    data = project.load_baseline("tune_lin")
    metrics = data["backends"]["eager"]["metrics"]
    # Measured for real: the Linear's output (2x4 floats) at least goes through torch's CPU allocator.
    assert metrics["peak_memory_bytes"] >= 32, metrics
    assert metrics["build_cache"] == "none" and metrics["build_s"] >= 0, metrics
    assert metrics["load_s"] >= 0 and metrics["first_call_ms"] >= 0, "the winner's artifact load is timed"
    metrics["peak_memory_bytes"] //= 5
    project.save_baseline("tune_lin", data)  # an edit: the record of the update's work no longer answers
    return project


def test_memory_regression_fails_without_warn_only(memory_regressed):
    result = memory_regressed.tune()

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert memory_regressed.verdicts(result) == {"tune_lin[eager]": "REGRESSED (peak-memory)"}
    result.stdout.fnmatch_lines(["tune_lin[[]eager[]]: peak memory * B -> * B (+*%, limit +10%)"])


def test_warn_only_reports_the_regression_exits_zero_and_says_it_would_fail(memory_regressed):
    result = memory_regressed.tune("--aitune-warn-only", "--aitune-report", "run.json")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2)
    summary = "\n".join(memory_regressed.summary(result))
    assert "REGRESSED (peak-memory) warn-only: would fail" in summary
    assert memory_regressed.count_line(result) == "aitune: 1 regressed (1 warn-only: would fail, not failing)"
    run = json.loads((memory_regressed.path / "run.json").read_text())
    (verdict,) = run["verdicts"]
    assert verdict["would_fail"] is True and verdict["kind"] == "REGRESSED"
    memory = next(m for m in verdict["metrics"] if m["metric"] == "peak_memory")
    assert memory["regressed"] and memory["after"] > memory["before"] > 0
    (row,) = [b for b in run["results"][0]["backends"] if b["backend"] == "eager"]
    assert row["peak_memory_bytes"] >= 32 and row["load_s"] is not None


@pytest.mark.parametrize(
    ("ini", "aitune"),
    [
        ("", '\nwarn_only = ["tune_lin"]'),  # per fixture in [tool.aitune]
        ("aitune_warn_only = true", ""),  # the option, set in [tool.pytest.ini_options]
    ],
    ids=["tool-aitune", "ini"],
)
def test_warn_only_from_config(memory_regressed, ini, aitune):
    memory_regressed.configure(ini=ini, aitune=memory_regressed.AITUNE + aitune + NO_MEMORY_FLOOR)

    result = memory_regressed.tune()

    assert result.ret == pytest.ExitCode.OK
    assert "REGRESSED (peak-memory) warn-only: would fail" in "\n".join(memory_regressed.summary(result))


def test_warn_only_still_fails_a_broken_backend_and_a_fixture_that_raises(project):
    project.write("conftest.py", _NO_AUTOCAST)

    result = project.tune("--aitune-warn-only", "-v")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines_random(
        [
            "conftest.py::tune_fragile[[]eager[]] PASSED*",
            "conftest.py::tune_fragile[[]eager-bf16[]] FAILED*",
            "conftest.py::tune_raises[[]*[]] FAILED*",
        ]
    )
    assert project.verdicts(result)["tune_fragile[eager-bf16]"] == "FAILED"
    assert "would fail" not in "\n".join(project.summary(result))
