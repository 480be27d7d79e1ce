"""ait.jit: tunes on the first call, then runs the winner; falls back to eager if the winner breaks."""

from __future__ import annotations

import pytest
import torch

import aitune_ci as ait
from aitune_ci.measure import MeasureConfig


def test_first_call_tunes_and_later_calls_use_the_winner(tiny_mlp, tiny_input):
    model = ait.jit(
        tiny_mlp, backends=["eager", "torchao-int8wo"], measure_config=MeasureConfig(max_total_s=0.2, min_rounds=3)
    )
    assert model.result is None
    out = model(tiny_input)
    assert model.result is not None and model.winner in ("eager", "torchao-int8wo")
    assert model.result.backend("eager").latency is not None
    torch.testing.assert_close(out, tiny_mlp(tiny_input), atol=0.05, rtol=0.05)
    again = model(tiny_input)
    assert again.shape == out.shape
    assert set(model.state_dict()) == {f"model.{k}" for k in tiny_mlp.state_dict()}


def test_a_winner_that_fails_on_a_new_input_falls_back_to_eager_with_a_warning(tiny_mlp, tiny_input):
    model = ait.jit(tiny_mlp, backends=["eager"], measure_config=MeasureConfig(max_total_s=0.2, min_rounds=3))
    model(tiny_input)

    def broken(*_a, **_k):
        raise RuntimeError("static shape")

    model._state["fn"] = broken
    with pytest.warns(RuntimeWarning, match="falling back to eager"):
        out = model(tiny_input)
    torch.testing.assert_close(out, tiny_mlp(tiny_input))


def test_jit_refuses_a_batch_sweep_strategy(tiny_mlp):
    with pytest.raises(ValueError, match="no batch sweep"):
        ait.jit(tiny_mlp, strategy="max-throughput")
