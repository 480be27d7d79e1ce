"""Sanity checks that catch fake wins: a torchao recipe that converted nothing, a speed-up too good to be true."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from synthetic_latency import stats

import aitune_ci as ait
from aitune_ci.backends.base import BuildContext
from aitune_ci.config import Acknowledgement, ConfigError, Policy, RepoConfig
from aitune_ci.errors import BackendError
from aitune_ci.measure import MeasureConfig
from aitune_ci.result import AccuracyReport, BackendResult, LeafMetrics
from aitune_ci.sanity import SanityConfig, SpeedClaim, conversion_problem, implausible_speedups
from aitune_ci.status import BackendStatus
from aitune_ci.strategies import select
from aitune_ci.verdict import VerdictKind, compare_backend

torchao = pytest.importorskip("torchao", reason="torchao is not installed: pip install 'aitune-ci[torchao]'")

from aitune_ci.backends.torchao import TorchAOBackend, converted_linear_layers  # noqa: E402


class ConvOnly(torch.nn.Module):
    """A conv net with no nn.Linear: torchao's Linear-only recipes have nothing to convert."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(8, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.conv1(x))).mean(dim=(2, 3))


class ConvThenLinear(ConvOnly):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(4, 64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(super().forward(x))


def _ctx(tmp_path: Path) -> BuildContext:
    return BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)


def _image() -> list:
    return [((torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)),), {})]


# -- (a) a quantization that did not apply ---------------------------------------------------------


def test_conversion_problem_names_the_backend_and_the_counts():
    text = conversion_problem("torchao-int8wo", 0, 0, model="ConvOnly")
    assert text is not None
    assert text.startswith("torchao-int8wo converted 0 of 0 Linear layers of ConvOnly (it quantized no layer)")
    assert "any speed-up would be an artifact" in text
    assert "skipped every one" in (conversion_problem("torchao-fp8", 0, 3) or "")
    assert conversion_problem("torchao-fp8", 2, 3) is None, "a partial conversion (fp8 skips odd shapes) is legitimate"


def test_torchao_on_a_conv_only_model_fails_with_the_reason(tmp_path):
    with pytest.raises(BackendError, match=r"torchao-int8wo converted 0 of 0 Linear layers of ConvOnly.*artifact"):
        TorchAOBackend(recipe="int8wo").build(ConvOnly().eval(), _image(), _ctx(tmp_path))


def test_torchao_converts_the_linear_layers_it_finds(tmp_path):
    model = ConvThenLinear().eval()
    assert converted_linear_layers(model) == (0, 1)
    built = TorchAOBackend(recipe="int8wo").build(model, _image(), _ctx(tmp_path))
    assert converted_linear_layers(built) == (1, 1)
    assert converted_linear_layers(model) == (0, 1), "the user's model is left as it was"


def test_a_tune_records_the_unconverted_backend_as_failed_and_goes_on():
    spec = ait.TuneSpec(
        model=ConvOnly().eval(),
        samples=[torch.randn(2, 3, 8, 8)],
        backends=["eager", "torchao-int8wo"],
        device="cpu",
        name="tune_conv",
    )
    result = ait.tune(spec, measure_config=MeasureConfig(max_total_s=0.2))
    row = result.backend("torchao-int8wo")
    assert row.status is BackendStatus.FAILED
    assert "converted 0 of 0 Linear layers of ConvOnly" in row.error
    assert result.winner == "eager"


# -- (b) a speed-up too good to be true (synthetic numbers) ----------------------------------------


def test_a_far_faster_and_less_accurate_backend_is_flagged():
    claims = [
        SpeedClaim("eager", 10.0, math.inf, 1.0),
        SpeedClaim("inductor", 6.0, 95.0, 1.0),
        SpeedClaim("torchao-int8dq", 1.5, 22.0, 0.995),
    ]
    flagged = implausible_speedups(claims, 3.0)
    assert list(flagged) == ["torchao-int8dq"]
    assert flagged["torchao-int8dq"].startswith(
        "4.0x faster than the best other backend (inductor, 6 ms vs 1.5 ms) while its SQNR is 22.0 dB against 95.0 dB for inductor"
    )
    assert "[tool.aitune.acknowledged]" in flagged["torchao-int8dq"]


def test_a_far_faster_backend_as_accurate_as_the_others_is_a_real_win():
    claims = [SpeedClaim("eager", 10.0, math.inf, 1.0), SpeedClaim("tensorrt", 1.0, 120.0, 1.0)]
    assert implausible_speedups(claims, 3.0) == {}, "both above the 80 dB ceiling: no accuracy drop"


def test_a_plausible_speedup_with_an_accuracy_drop_is_not_flagged():
    claims = [SpeedClaim("eager", 10.0, math.inf, 1.0), SpeedClaim("int8", 4.0, 30.0, 0.999)]
    assert implausible_speedups(claims, 3.0) == {}, "2.5x is within the 3x limit"


def test_the_limit_is_configurable_and_inf_turns_it_off():
    claims = [SpeedClaim("eager", 10.0, math.inf, 1.0), SpeedClaim("int8", 2.0, 30.0, 0.999)]
    assert list(implausible_speedups(claims, 4.0)) == ["int8"]
    assert implausible_speedups(claims, 6.0) == {}
    assert implausible_speedups(claims, math.inf) == {}


def test_a_cosine_drop_counts_when_sqnr_is_unknown():
    claims = [SpeedClaim("eager", 10.0, None, 1.0), SpeedClaim("fast", 1.0, None, 0.98)]
    assert "its cosine is 0.98000 against 1.00000 for eager" in implausible_speedups(claims, 3.0)["fast"]


def test_a_lone_backend_is_never_flagged():
    assert implausible_speedups([SpeedClaim("eager", 1.0, 10.0, 0.9)], 3.0) == {}


def test_the_limit_comes_from_tool_aitune_and_is_validated():
    assert RepoConfig.from_table({"max_plausible_speedup": 5.0}).policy_for("tune_x").max_plausible_speedup == 5.0
    assert Policy().max_plausible_speedup == 3.0
    assert RepoConfig.from_table({"max_plausible_speedup": math.inf}).defaults.max_plausible_speedup == math.inf
    with pytest.raises(ConfigError, match=r"max_plausible_speedup: expected a number > 1"):
        RepoConfig.from_table({"max_plausible_speedup": 1.0})
    with pytest.raises(ValueError, match="max_speedup must be a number > 1"):
        SanityConfig(max_speedup=0.5)


def _accuracy(sqnr: float) -> AccuracyReport:
    leaf = LeafMetrics("out", (4,), 1e-2, 1e-2, 1e-3, 0.999, sqnr, None, 0, 0, True)
    return AccuracyReport(passed=True, precision="int8", gate="g", leaves=(leaf,))


def _row(backend: str, factor: float, sqnr: float = math.inf, review: str | None = None) -> BackendResult:
    return BackendResult(
        backend=backend, status="ok", latency=stats(factor=factor), accuracy=_accuracy(sqnr), review=review
    )


def test_a_flagged_backend_is_never_selected_and_says_why():
    rows = [_row("eager", 1.0), _row("fast", 0.2, 20.0, review="5.0x faster than the best other backend; more")]
    selection = select(rows, "min-latency")
    assert selection.winner == "eager"
    assert (
        selection.rows[1].selection_note == "not selected: flagged for review (5.0x faster than the best other backend)"
    )


def test_a_flagged_backend_fails_its_check_until_acknowledged():
    row = _row("fast", 0.2, 20.0, review="5.0x faster than the best other backend (eager); acknowledge it")
    v = compare_backend("tune_x", None, row, Policy())
    assert v.kind is VerdictKind.FAILED and v.fails
    assert v.notes[0].startswith("flagged for review: 5.0x faster")

    acknowledged = compare_backend("tune_x", None, row, Policy(acknowledged=Acknowledgement("int8 kernels, #42")))
    assert acknowledged.kind is VerdictKind.NEW and not acknowledged.fails


def test_a_flagged_row_round_trips_through_json():
    row = _row("fast", 0.2, 20.0, review="why")
    assert BackendResult.from_json(row.to_json()).review == "why"
    assert "review" not in _row("eager", 1.0).to_json()


def test_a_backend_serving_stale_cached_outputs_is_flagged_for_review_in_a_real_tune():
    """The fake win the check exists for: outputs cached once (rounded to bf16, so the bf16 gate passes)
    and returned without computing anything. It is hundreds of times faster than eager and less accurate."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(3)]).eval()
    x = torch.randn(8, 64)
    with torch.inference_mode():
        cached = model(x).to(torch.bfloat16).float()
    spec = ait.TuneSpec(model=model, samples=[x], backends=["eager", "eager-bf16"], device="cpu", name="tune_stale")

    result = ait.tune(spec, measure_config=MeasureConfig(max_total_s=0.3), prebuilt={"eager-bf16": lambda x: cached})

    stale = result.backend("eager-bf16")
    assert stale.status is BackendStatus.OK, "it passes the bf16 accuracy gate: only the sanity check catches it"
    assert stale.review is not None and "faster than the best other backend (eager" in stale.review
    assert result.winner == "eager"
    assert stale.selection_note.startswith("not selected: flagged for review")

    accepted = ait.tune(
        spec,
        measure_config=MeasureConfig(max_total_s=0.3),
        prebuilt={"eager-bf16": lambda x: cached},
        sanity=SanityConfig(accepted=frozenset({"eager-bf16"})),
    )
    assert accepted.backend("eager-bf16").review is None
    assert accepted.winner == "eager-bf16", "acknowledged, the (here stale) fast backend wins: a human said so"


def test_the_plugin_passes_the_repo_s_limit_and_acknowledgements_to_the_engine(tmp_path):
    from aitune_ci.check import CheckOptions, FixtureCheck
    from aitune_ci.task_metric_gates import TaskMetricGate

    config = RepoConfig.from_table(
        {
            "max_plausible_speedup": 5.0,
            "acknowledged": {"tune_x[eager-bf16]": "bf16 kernels are this fast, #12"},
            "task_metrics": {"tune_x:psnr": {"min": 30.0}},
        }
    )
    spec = ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], device="cpu")
    check = FixtureCheck(
        "tune_x", spec, ["eager", "eager-bf16"], {"eager", "eager-bf16"}, CheckOptions(tmp_path), config, print
    )
    given = check._tune_checks(["eager", "eager-bf16"])
    assert given["sanity"] == SanityConfig(5.0, frozenset({"eager-bf16"}), 80.0)
    assert given["metric_gate"]("eager", "psnr", TaskMetricGate(max_drop=1.0)) == TaskMetricGate(30.0, None, 1.0)
