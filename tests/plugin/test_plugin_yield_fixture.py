"""A tune fixture may ``yield`` its spec: the code after the yield runs once, whether or not its items ran."""

from __future__ import annotations

import pytest

_YIELDING = """
import torch
import aitune_ci as ait
from pathlib import Path

LOG = Path(__file__).parent / "log.txt"


def log(line):
    with LOG.open("a") as f:
        f.write(line + "\\n")


@ait.tune_fixture
def tune_{name}():
    log("setup {name}")
    yield ait.TuneSpec(model=torch.nn.Linear(8, 4), samples=[torch.randn(2, 8)], backends=["eager"], device="cpu")
    log("teardown {name}")
    {after}
"""


def _log(project) -> list[str]:
    path = project.path / "log.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_setup_and_teardown_each_run_exactly_once(project):
    project.write("conftest.py", _YIELDING.format(name="gen", after=""))

    result = project.tune()

    result.assert_outcomes(passed=2)
    assert _log(project) == ["setup gen", "teardown gen"]


def test_deselected_yield_fixture_is_still_torn_down(project):
    project.write("conftest.py", _YIELDING.format(name="skipped", after=""))
    project.add_fixture("tune_kept", where="test_models.py")

    result = project.tune("-k", "tune_kept")

    result.assert_outcomes(passed=2, deselected=2)
    assert _log(project) == ["setup skipped", "teardown skipped"]


def test_teardown_that_raises_is_reported_and_does_not_crash_the_run(project):
    project.write("conftest.py", _YIELDING.format(name="bad", after='raise OSError("disk full")'))

    result = project.tune("-k", "nothing_matches")

    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["aitune: tune_bad: teardown raised OSError: disk full"])
    assert "INTERNALERROR" not in result.stdout.str()
