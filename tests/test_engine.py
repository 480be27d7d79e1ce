"""``ait.tune`` as a library: progress goes to a callable or to logging, never straight to the terminal."""

from __future__ import annotations

import logging

import pytest

import aitune_ci as ait
from aitune_ci.engine import tune
from aitune_ci.measure import MeasureConfig

FAST = MeasureConfig(max_total_s=0.1, min_rounds=2, warmup_min_iters=2, warmup_max_s=0.1)


@pytest.fixture
def spec(tiny_mlp, tiny_input):
    return ait.TuneSpec(model=tiny_mlp, samples=[tiny_input], backends=["eager"], device="cpu", name="tiny")


def test_without_a_progress_callable_tune_logs_its_steps_and_prints_nothing(spec, caplog, capfd):
    with caplog.at_level(logging.INFO, logger="aitune_ci"):
        result = tune(spec, measure_config=FAST)
    assert result.winner == "eager"
    steps = [r.getMessage() for r in caplog.records if r.name == "aitune_ci.engine" and r.levelno == logging.INFO]
    assert "tiny: 1 backend on cpu (eager)" in steps
    assert any(step.startswith("tiny: winner eager") for step in steps)
    assert capfd.readouterr() == ("", "")


def test_a_progress_callable_gets_every_step_instead_of_the_log(spec, caplog, capfd):
    lines: list[str] = []
    with caplog.at_level(logging.INFO, logger="aitune_ci"):
        tune(spec, measure_config=FAST, progress=lines.append)
    assert lines[0] == "tiny: 1 backend on cpu (eager)"
    assert any(line.startswith("tiny: winner eager") for line in lines)
    assert not [r for r in caplog.records if r.name == "aitune_ci.engine"]
    assert capfd.readouterr() == ("", "")


def test_a_sample_the_model_cannot_run_is_named_with_its_shapes():
    import torch

    from aitune_ci.errors import SpecError

    model = torch.nn.Linear(16, 4)
    samples = [torch.randn(4, 16), torch.randn(4, 7)]
    spec = ait.TuneSpec(model=model, samples=samples, backends=["eager"], device="cpu", name="tiny")
    with pytest.raises(
        SpecError,
        match=r"the eager model failed on samples\[1\] \(args\.0: float32\[4, 7\]\): "
        r"RuntimeError: mat1 and mat2 shapes cannot be multiplied.*what the model's forward\(\) takes",
    ):
        tune(spec, measure_config=FAST)


def test_the_mixed_models_build_state_is_its_parts():
    """Without one, compare read a mix loaded from the build cache beside a built one as compile drift."""
    from aitune_ci.engine import _mixed_build_state
    from aitune_ci.result import BackendResult

    def part(state, reused=None):
        return BackendResult(backend="eager", status="ok", build_cache=state, reused=reused)

    assert _mixed_build_state([part("warm"), part("cold")]) is None  # their summed time fits no one state
    assert _mixed_build_state([part("cold"), part("none"), part("cold")]) == "cold"
    assert _mixed_build_state([part("cold"), part("reused", reused="cache")]) == "reused"
    assert _mixed_build_state([part("none"), part("warm")]) == "warm"
    assert _mixed_build_state([part("none"), part("none")]) == "none"
    assert _mixed_build_state([part("warm"), part(None)]) is None


def test_a_dict_sample_for_a_forward_taking_one_dict_says_to_wrap_it():
    import torch

    from aitune_ci.errors import SpecError

    class Ranker(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, batch):
            return self.linear(batch["dense"])

    spec = ait.TuneSpec(
        model=Ranker(), samples=[{"dense": torch.randn(2, 4)}], backends=["eager"], device="cpu", name="ranker"
    )
    with pytest.raises(SpecError, match=r"unexpected keyword argument 'dense'.*one-element tuple: \(\{\.\.\.\},\)"):
        tune(spec, measure_config=FAST)
