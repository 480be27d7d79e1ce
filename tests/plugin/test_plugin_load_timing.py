"""Stored mode: the update stores the median of three timed loads, and a check past the load gates times again.

The model spins on the first call of each instance (a busy-wait, the same on every machine): what
loading its artifact then costs. The head's code makes that spin longer, a first-call regression
the steady calls do not show. Relative mode's counterpart is in ``test_plugin_relative.py``.
"""

from __future__ import annotations

import json

import pytest

MODELS = """
import time

import torch

FIRST_S = {first!r}
_SEEN = set()


class SlowStart(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        if id(self) not in _SEEN:
            _SEEN.add(id(self))
            end = time.perf_counter() + FIRST_S
            while time.perf_counter() < end:
                pass
        return self.lin(x)
"""

CONFTEST = """
import torch
import aitune_ci as ait
from mymodels import SlowStart


@ait.tune_fixture
def tune_start():
    return ait.TuneSpec(model=SlowStart().eval(), samples=[torch.randn(4, 16)], backends=["eager"])
"""


@pytest.fixture
def repo(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("AITUNE_CACHE_DIR", "off")
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naitune_measure_seconds = "0.5"\n')
    pytester.makepyfile(**{"mymodels/__init__.py": MODELS.format(first=0.05)})
    pytester.makeconftest(CONFTEST)
    return pytester


def test_the_update_stores_the_median_of_three_loads_and_a_slower_first_call_is_timed_again(
    repo: pytest.Pytester,
) -> None:
    update = repo.runpytest_subprocess("--aitune", "--aitune-update")
    assert update.ret == pytest.ExitCode.OK, update.stdout.str()
    update.stdout.fnmatch_lines(["*tune_start · eager: median of 3 loads: loads in *, first call *"])
    (stored,) = (repo.path / ".aitune" / "baselines").rglob("tune_start.json")
    first_call = json.loads(stored.read_text())["backends"]["eager"]["metrics"]["first_call_ms"]
    assert 50 <= first_call < 250, first_call  # the 50 ms spin, not a 0.4 s one

    repo.makepyfile(**{"mymodels/__init__.py": MODELS.format(first=0.45)})  # +400 ms on every first call
    check = repo.runpytest_subprocess("--aitune", "--aitune-report", "run.json")

    check.stdout.fnmatch_lines(
        [
            "*tune_start · eager: first call *, limit +50% and 250 ms) in one load; timing it twice more",
            "*tune_start · eager: median of 3 loads: *",
        ]
    )
    verdict = {v["backend"]: v for v in json.loads((repo.path / "run.json").read_text())["verdicts"]}["eager"]
    assert verdict["kind"] == "REGRESSED" and "first-call" in verdict["reasons"], verdict["message"]
