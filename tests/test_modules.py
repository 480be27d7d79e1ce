"""Module-level tuning: input capture, swapping without touching the user's model, end-to-end mix."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aitune_ci.backends import registry
from aitune_ci.backends.base import Backend
from aitune_ci.engine import MIXED, PartChoice, tune
from aitune_ci.errors import SpecError
from aitune_ci.measure import MeasureConfig
from aitune_ci.modules import CallableModule, capture_module_inputs, with_submodules_replaced
from aitune_ci.spec import TuneSpec


class Composite(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.head = nn.Linear(16, 4)
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.head(self.backbone(x)) * scale


class Shared(nn.Module):
    """Calls one block twice: with the same structure (fine) or, if asked, different ranks."""

    def __init__(self, vary: bool) -> None:
        super().__init__()
        self.block = nn.Linear(4, 4)
        self.vary = vary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.block(y.unsqueeze(0) if self.vary else y)


def test_capture_records_what_each_submodule_really_receives():
    model = Composite().eval()
    x = torch.randn(3, 8)
    got = capture_module_inputs(model, [((x,), {"scale": 2.0})], ["backbone", "head"])
    assert torch.equal(got["backbone"][0][0][0], x)
    assert got["head"][0][0][0].shape == (3, 16)


def test_a_module_that_is_never_called_is_a_clear_error():
    with pytest.raises(SpecError, match="'unused' is never called"):
        capture_module_inputs(Composite().eval(), [((torch.randn(1, 8),), {})], ["unused"])


def test_a_shared_block_called_twice_gives_two_samples():
    got = capture_module_inputs(Shared(vary=False).eval(), [((torch.randn(2, 4),), {})], ["block"])
    assert len(got["block"]) == 2


def test_varying_input_structure_is_a_clear_error():
    with pytest.raises(SpecError, match="called with varying input structures"):
        capture_module_inputs(Shared(vary=True).eval(), [((torch.randn(2, 4),), {})], ["block"])


def test_swapping_leaves_the_users_model_untouched_and_shares_weights():
    model = Composite().eval()
    marker = CallableModule(lambda t: torch.zeros(t.shape[0], 16), "zeros")
    mixed = with_submodules_replaced(model, {"backbone.0": marker})
    assert isinstance(model.backbone[0], nn.Linear)
    assert mixed.backbone[0] is marker
    assert mixed.head.weight is model.head.weight  # no copy of the weights
    x = torch.randn(2, 8)
    assert torch.allclose(mixed(x), model.head(torch.zeros(2, 16)))


def test_module_level_tune_chooses_per_module_and_validates_the_mix_end_to_end():
    torch.manual_seed(0)
    spec = TuneSpec(
        model=Composite().eval(),
        samples=[torch.randn(4, 8)],
        backends=["eager", "torchao-int8wo"],
        modules=["backbone", "head"],
    )
    result = tune(spec, measure_config=MeasureConfig(max_total_s=0.3, min_rounds=3), progress=None)
    assert set(result.module_choice) == {"backbone", "head"}
    module_rows = [r for r in result.backends if r.module]
    assert {r.module for r in module_rows} == {"backbone", "head"}
    assert sum(r.selected for r in module_rows if r.module == "head") == 1
    mixed = result.backend(MIXED)
    assert mixed is not None and mixed.status == "ok" and mixed.latency is not None
    assert mixed.description == ", ".join(f"{p}={b}" for p, b in result.module_choice.items())
    out = result.runtime.built[MIXED](spec.normalized_samples[0][0][0])
    assert out.shape == (4, 4)


def test_a_part_decided_before_builds_only_its_backend_and_is_not_measured():
    pytest.importorskip("torchao")
    torch.manual_seed(0)
    lines: list[str] = []
    spec = TuneSpec(
        model=Composite().eval(),
        samples=[torch.randn(4, 8)],
        backends=["eager", "torchao-int8wo"],
        modules=["backbone", "head"],
    )
    decided = PartChoice({"backbone": "torchao-int8wo"}, "the nightly")  # nothing decided for the head
    result = tune(
        spec, measure_config=MeasureConfig(max_total_s=0.3, min_rounds=3), progress=lines.append, decided_parts=decided
    )

    assert result.module_choice["backbone"] == "torchao-int8wo"
    backbone = [r for r in result.backends if r.module == "backbone"]
    assert [r.backend for r in backbone] == ["torchao-int8wo"]  # eager was not built for it
    assert backbone[0].selected and backbone[0].latency is None
    assert backbone[0].selection_note == "selected: chosen by the nightly, not measured again"
    assert any(line.endswith(".backbone: torchao-int8wo — chosen by the nightly, not measured again") for line in lines)
    assert not [line for line in lines if ".backbone: measuring" in line], lines
    # The head was not decided: it is tuned as usual.
    assert {r.backend for r in result.backends if r.module == "head"} == {"eager", "torchao-int8wo"}
    assert [line for line in lines if ".head: measuring" in line], lines
    # The mixed model built from the decision is validated and timed end to end as always.
    mixed = result.backend(MIXED)
    assert mixed is not None and mixed.status == "ok" and mixed.latency is not None
    assert "backbone=torchao-int8wo" in mixed.description


class _BrokenOnParts(Backend):
    """Eager on the whole model; raises on a part. Counts its builds."""

    precision = "fp32"
    builds = 0

    def build(self, module, samples, ctx):
        type(self).builds += 1
        if isinstance(module, nn.Sequential):
            raise RuntimeError("cannot build this part")
        return module


def test_a_decided_part_backend_that_does_not_work_here_is_chosen_again(monkeypatch):
    monkeypatch.setattr(registry, "_registry", {**registry._registry, "broken-on-parts": (_BrokenOnParts, {})})
    monkeypatch.setattr(_BrokenOnParts, "builds", 0)
    torch.manual_seed(0)
    lines: list[str] = []
    spec = TuneSpec(
        model=Composite().eval(),
        samples=[torch.randn(4, 8)],
        backends=["eager", "broken-on-parts"],
        modules=["backbone", "head"],
    )
    # backbone: a backend that fails there; head: one that is not among this tune's backends.
    decided = PartChoice({"backbone": "broken-on-parts", "head": "onnxruntime"}, "the nightly")
    result = tune(
        spec, measure_config=MeasureConfig(max_total_s=0.3, min_rounds=3), progress=lines.append, decided_parts=decided
    )

    # The head is chosen by measuring eager against the same model under another name: either may win.
    assert result.module_choice["backbone"] == "eager" and set(result.module_choice) == {"backbone", "head"}
    assert any(
        line.endswith(".backbone: broken-on-parts, chosen by the nightly, does not work here (failed); choosing again")
        for line in lines
    ), lines
    backbone = {r.backend: r for r in result.backends if r.module == "backbone"}
    assert set(backbone) == {"eager", "broken-on-parts"} and backbone["broken-on-parts"].status == "failed"
    # Built once on the whole model, on the backbone once (not again when choosing), once on the head.
    assert _BrokenOnParts.builds == 3
    assert [line for line in lines if ".backbone: measuring 1 backend " in line], lines
    assert [line for line in lines if ".head: measuring" in line], lines
    assert result.backend(MIXED).status == "ok"


class ConvThenLinear(nn.Module):
    """A conv backbone (no nn.Linear: nothing for a torchao recipe to quantize) and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def test_a_quantizer_with_nothing_to_quantize_in_a_part_leaves_that_part_not_failed():
    pytest.importorskip("torchao")
    torch.manual_seed(0)
    lines: list[str] = []
    spec = TuneSpec(
        model=ConvThenLinear().eval(),
        samples=[torch.randn(2, 3, 8, 8)],
        backends=["eager", "torchao-int8wo"],
        modules=["backbone", "head"],
    )
    result = tune(spec, measure_config=MeasureConfig(max_total_s=0.3, min_rounds=3), progress=lines.append)
    rows = {(r.module, r.backend): r for r in result.backends}
    skipped = rows[("backbone", "torchao-int8wo")]
    assert skipped.status == "unavailable", skipped
    assert skipped.error == (
        "not applicable to this part: Sequential has no nn.Linear layer, the only kind torchao-int8wo quantizes"
    )
    assert rows[("head", "torchao-int8wo")].status == "ok"
    assert result.module_choice["backbone"] == "eager"
    assert not [line for line in lines if "FAILED" in line], lines
    assert any("backbone · torchao-int8wo: not applicable to this part" in line for line in lines), lines
    assert result.backend(MIXED).status == "ok"

    # The whole model, where the user asked for the quantizer outright: a failure that says why.
    whole = tune(
        TuneSpec(model=ConvThenLinear().backbone.eval(), samples=[torch.randn(2, 3, 8, 8)],
                 backends=["eager", "torchao-int8wo"]),
        measure_config=MeasureConfig(max_total_s=0.3, min_rounds=3),
        progress=None,
    )  # fmt: skip
    failed = whole.backend("torchao-int8wo")
    assert failed.status == "failed" and "quantized no layer" in failed.error, failed


def test_capture_keeps_whether_each_input_is_an_inference_tensor():
    captured = capture_module_inputs(Composite().eval(), [((torch.randn(2, 8),), {})], ["backbone", "head"])
    assert not captured["backbone"][0][0][0].is_inference()  # the caller's own tensor
    assert captured["head"][0][0][0].is_inference()  # made inside the capture's inference_mode
