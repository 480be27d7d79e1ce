"""Tune fixtures are called with torch, numpy and random seeded, so random weights and samples repeat."""

from __future__ import annotations

import json

import pytest

CONFTEST = """
import random

import numpy as np
import torch
import aitune_ci as ait


@ait.tune_fixture
def tune_rand():
    model = torch.nn.Linear(4, 4).eval()  # random init: no seed in the fixture, as most users write it
    x = torch.randn(2, 4)
    with open("draws.json", "a") as f:
        f.write(
            __import__("json").dumps(
                {"w": model.weight.sum().item(), "x": x.sum().item(), "np": float(np.random.rand()), "py": random.random()}
            )
            + "\\n"
        )
    return ait.TuneSpec(model=model, samples=[x], backends=["eager"])
"""


def test_unseeded_fixture_draws_the_same_weights_and_samples_in_every_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    for _ in range(2):
        result = pytester.runpytest_subprocess("--aitune", "--aitune-measure-seconds", "0.1", "--aitune-update")
        assert result.ret == pytest.ExitCode.OK
    first, second = (json.loads(line) for line in (pytester.path / "draws.json").read_text().splitlines())
    assert first == second


def test_seeding_leaves_the_callers_random_state_as_it_was() -> None:
    import random

    import numpy as np
    import torch

    from aitune_ci.plugin.discovery import seeded

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    expected = (torch.rand(1).item(), float(np.random.rand()), random.random())
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    with seeded(0):
        inside = torch.rand(1).item()
    assert (torch.rand(1).item(), float(np.random.rand()), random.random()) == expected
    with seeded(0):
        assert torch.rand(1).item() == inside  # the same seed, the same draw
