"""Task metrics: the ready-made ones, how a spec declares them, their gate, their baseline and their verdict."""

from __future__ import annotations

import math

import pytest
import torch
from synthetic_latency import stats

import aitune_ci as ait
from aitune_ci.config import Acknowledgement, ConfigError, Policy, RepoConfig
from aitune_ci.measure import MeasureConfig
from aitune_ci.result import AccuracyReport, BackendResult, TaskMetricValue, TuneResult
from aitune_ci.status import BackendStatus
from aitune_ci.store.baseline import BackendBaseline, Baseline, LatencySummary
from aitune_ci.task_metric_gates import TaskMetricGate, gate_value, metric_drop, metric_drops, resolve_gate
from aitune_ci.task_metrics import TaskMetricError, normalize_metrics, score
from aitune_ci.verdict import TASK_METRIC, VerdictKind, compare_backend

QUICK = MeasureConfig(max_total_s=0.2)


def run(metric, outputs, reference):
    return metric.fn(outputs, reference, [((torch.zeros(1),), {})] * len(outputs))


# -- ready-made metrics ----------------------------------------------------------------------------


def test_top1_agreement_counts_positions_whose_argmax_matches():
    ref = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = ref.clone()
    out[0] = torch.tensor([2.0, 1.0, 0.0])  # argmax moves 1 -> 0
    assert run(ait.top1_agreement(), [out], [ref]) == pytest.approx(0.75)
    assert run(ait.top1_agreement(), [ref, out], [ref, ref]) == pytest.approx(7 / 8), "pooled over samples"


def test_top1_agreement_scores_the_logits_leaf_of_a_dict_output():
    ref = {"hidden": torch.zeros(2, 4), "logits": torch.tensor([[0.0, 1.0], [1.0, 0.0]])}
    out = {"hidden": torch.ones(2, 4), "logits": torch.tensor([[1.0, 0.0], [1.0, 0.0]])}
    assert run(ait.top1_agreement(), [out], [ref]) == pytest.approx(0.5)


def test_a_missing_leaf_names_the_leaves_there_are():
    with pytest.raises(ValueError, match=r"no tensor leaf 'scores'.*\['hidden', 'logits'\]"):
        run(
            ait.top1_agreement(leaf="scores"),
            [{"hidden": torch.zeros(1), "logits": torch.zeros(1)}] * 1,
            [{"hidden": torch.zeros(1), "logits": torch.zeros(1)}],
        )


def test_psnr_of_a_known_error_and_its_ceiling():
    ref = torch.tensor([0.0, 1.0, 0.0, 1.0])  # range 1
    out = ref + 0.1  # MSE 0.01 -> 20 dB
    assert run(ait.psnr(), [out], [ref]) == pytest.approx(20.0)
    assert run(ait.psnr(data_range=10.0), [out], [ref]) == pytest.approx(40.0)
    assert run(ait.psnr(), [ref], [ref]) == 100.0, "identical outputs report the ceiling, not inf"


def test_kl_divergence_is_zero_for_identical_logits_and_lower_is_better():
    ref = torch.randn(4, 10, generator=torch.Generator().manual_seed(0))
    kl = ait.kl_divergence()
    assert not kl.higher_is_better
    assert run(kl, [ref], [ref]) == pytest.approx(0.0, abs=1e-12)
    assert run(kl, [ref + torch.randn(4, 10, generator=torch.Generator().manual_seed(1))], [ref]) > 0.05


# -- declaring metrics on a spec -------------------------------------------------------------------


def my_score(outputs, reference, samples):
    return 1.0


def test_a_plain_function_is_named_after_itself_and_a_dict_names_its_metrics():
    assert [m.name for m in normalize_metrics(my_score)] == ["my_score"]
    metrics = normalize_metrics({"top1": ait.top1_agreement(), "mine": my_score})
    assert [m.name for m in metrics] == ["top1", "mine"]
    assert metrics[0].max_drop == 0.01, "a renamed ready-made metric keeps its tolerance"


def test_a_lambda_needs_a_name():
    with pytest.raises(ait.SpecError, match="lambda has no name.*metric=\\{'my_name': fn\\}"):
        normalize_metrics(lambda o, r, s: 1.0)


def test_spec_rejects_a_metric_that_is_not_callable_with_the_forms_it_accepts():
    with pytest.raises(ait.SpecError, match="TuneSpec.metric must be a function fn\\(outputs, reference, samples\\)"):
        ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], metric=42)


def test_two_metrics_of_one_name_are_refused():
    with pytest.raises(ait.SpecError, match="names 'psnr' twice"):
        normalize_metrics([ait.psnr(), ait.psnr(minimum=20)])


def test_task_metric_validates_its_gate():
    with pytest.raises(ait.SpecError, match="minimum 2 is above maximum 1"):
        ait.TaskMetric("x", my_score, minimum=2, maximum=1)
    with pytest.raises(ait.SpecError, match="max_drop must be >= 0"):
        ait.TaskMetric("x", my_score, max_drop=-1)
    with pytest.raises(ait.SpecError, match="name"):
        ait.TaskMetric("not a name", my_score)


def test_spec_summary_lists_the_metrics_only_when_there_are_some():
    plain = ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)])
    assert "metrics" not in plain.summary(), "specs without metrics keep their summary (and artifact hash)"
    spec = ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], metric=ait.psnr(minimum=30))
    assert spec.summary()["metrics"] == [{"name": "psnr", "higher_is_better": True, "minimum": 30, "max_drop": 1.0}]


# -- scoring ---------------------------------------------------------------------------------------


def test_a_metric_that_raises_names_the_check_and_the_metric():
    def broken(outputs, reference, samples):
        raise KeyError("labels")

    metric = normalize_metrics(broken)
    with pytest.raises(
        TaskMetricError, match=r"task metric 'broken' of tune_x\[inductor\] raised KeyError: 'labels' \(at "
    ):
        score(metric, [torch.zeros(1)], [torch.zeros(1)], [], where="tune_x[inductor]")


@pytest.mark.parametrize("bad", ["high", math.nan, torch.zeros(3), None, True])
def test_a_metric_must_return_one_number(bad):
    metric = normalize_metrics({"odd": lambda o, r, s: bad})
    with pytest.raises(TaskMetricError, match="task metric 'odd' of f\\[b\\] returned .*must return a number"):
        score(metric, [torch.zeros(1)], [torch.zeros(1)], [], where="f[b]")


def test_a_scalar_tensor_is_a_number_and_the_gate_is_recorded_in_the_value():
    metric = normalize_metrics({"t": ait.TaskMetric("t", lambda o, r, s: torch.tensor(0.5), minimum=0.9)})
    (value,) = score(metric, [torch.zeros(1)], [torch.zeros(1)], [], where="f[b]")
    assert (value.value, value.minimum, value.passed) == (0.5, 0.9, False)
    assert value.reason == "task metric t 0.5 < 0.9 (its minimum)"


# -- gates and drops (pure) ------------------------------------------------------------------------


def test_gate_value_checks_minimum_maximum_and_nan():
    assert gate_value("m", 0.5, TaskMetricGate(minimum=0.4, maximum=0.6)) == (True, "")
    assert gate_value("m", 0.7, TaskMetricGate(maximum=0.6)) == (False, "task metric m 0.7 > 0.6 (its maximum)")
    assert not gate_value("m", math.nan, TaskMetricGate())[0]


def test_drop_beyond_max_drop_regresses_in_the_metric_s_direction():
    assert metric_drop("top1", 0.99, 0.97, higher_is_better=True, max_drop=0.01) == (
        "task metric top1 dropped 0.02 (0.99 -> 0.97; limit 0.01)"
    )
    assert metric_drop("top1", 0.99, 0.985, higher_is_better=True, max_drop=0.01) is None
    assert metric_drop("top1", 0.97, 0.99, higher_is_better=True, max_drop=0.0) is None, "an improvement"
    assert metric_drop("kl", 0.01, 0.05, higher_is_better=False, max_drop=0.01) == (
        "task metric kl rose 0.04 (0.01 -> 0.05; limit 0.01)"
    )


def test_default_tolerance_is_one_percent_of_the_baseline():
    assert metric_drop("m", 50.0, 49.6, higher_is_better=True, max_drop=None) is None
    text = metric_drop("m", 50.0, 49.0, higher_is_better=True, max_drop=None)
    assert text is not None and "limit 1% of the baseline's value, 0.5" in text


def test_infinite_values_judge_sensibly():
    assert metric_drop("psnr", math.inf, math.inf, higher_is_better=True, max_drop=1.0) is None
    assert metric_drop("psnr", math.inf, 40.0, higher_is_better=True, max_drop=1.0) is not None
    assert metric_drop("psnr", math.inf, 40.0, higher_is_better=True, max_drop=None) is None, "no scale at inf"


def test_metrics_new_since_the_baseline_are_not_judged():
    current = [TaskMetricValue("a", 0.5), TaskMetricValue("b", 0.1)]
    assert metric_drops({"b": 0.9}, current) == [
        "task metric b dropped 0.8 (0.9 -> 0.1; limit 1% of the baseline's value, 0.009)"
    ]


def test_config_gates_resolve_per_field_most_specific_first():
    config = RepoConfig.from_table(
        {
            "task_metrics": {
                "top1": {"min": 0.9, "max_drop": 0.05},
                "tune_a:top1": {"min": 0.95},
                "tune_a[int8]:top1": {"max_drop": 0.02},
            }
        }
    )
    declared = TaskMetricGate(minimum=0.5, max_drop=0.5, maximum=1.0)
    assert resolve_gate(config.task_metrics, "tune_a", "int8", "top1", declared) == TaskMetricGate(0.95, 1.0, 0.02)
    assert resolve_gate(config.task_metrics, "tune_a", "eager", "top1", declared) == TaskMetricGate(0.95, 1.0, 0.05)
    assert resolve_gate(config.task_metrics, "tune_b", "eager", "top1", declared) == TaskMetricGate(0.9, 1.0, 0.05)
    assert resolve_gate(config.task_metrics, "tune_b", "eager", "psnr", declared) == declared


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ({"top1": {"minimum": 1}}, r"task_metrics.top1.minimum: unknown key; an entry has `min`, `max` and `max_drop`"),
        ({"top1": 0.9}, r"task_metrics.top1: expected \{ min = ..., max = ..., max_drop = ... \}"),
        ({"top1": {"min": "high"}}, r"task_metrics.top1.min: expected a number"),
        ({"top1": {"max_drop": -1}}, r"task_metrics.top1.max_drop: expected a number >= 0"),
        ({"a b:top1": {"min": 1}}, r"keys name a metric"),
        ({"top1": {"min": 2, "max": 1}}, r"min 2 is above max 1"),
    ],
)
def test_config_errors_name_the_key(table, match):
    with pytest.raises(ConfigError, match=match):
        RepoConfig.from_table({"task_metrics": table})


# -- baseline and verdict --------------------------------------------------------------------------


def _row(value: float, backend: str = "eager-bf16", **kw) -> BackendResult:
    return BackendResult(
        backend=backend,
        status="ok",
        precision="bf16",
        latency=stats(),
        accuracy=AccuracyReport(passed=True, precision="bf16", gate="g"),
        task_metrics=(TaskMetricValue("top1", value, max_drop=0.01),),
        **kw,
    )


def _baseline(value: float) -> BackendBaseline:
    latency = LatencySummary.from_stats(stats())
    return BackendBaseline(
        status="ok",
        precision="bf16",
        latency=latency,
        run_medians_ms=(latency.median_ms,) * 5,
        task_metrics={"top1": value},
    )


def test_a_task_metric_drop_regresses_naming_the_metric():
    v = compare_backend("tune_cls", _baseline(0.99), _row(0.90), Policy())
    assert v.kind is VerdictKind.REGRESSED
    assert v.reasons == (TASK_METRIC,)
    assert "task metric top1 dropped 0.09 (0.99 -> 0.9; limit 0.01)" in v.notes
    assert "REGRESSED (task-metric). " in v.message and "Task metric top1 dropped" in v.message
    assert v.fails


def test_a_drop_within_tolerance_passes():
    assert compare_backend("tune_cls", _baseline(0.99), _row(0.985), Policy()).kind is VerdictKind.PASS


def test_a_drop_after_the_model_changed_is_a_note_not_a_regression():
    v = compare_backend("tune_cls", _baseline(0.99), _row(0.90), Policy(), inputs_changed=["weights"])
    assert v.kind is VerdictKind.PASS
    assert any(
        n.startswith("model or samples changed since the baseline (weights): task metric top1 dropped") for n in v.notes
    )


def test_an_acknowledged_drop_passes_and_says_so():
    policy = Policy(acknowledged=Acknowledgement("bf16 head accepted (#7)"))
    v = compare_backend("tune_cls", _baseline(0.99), _row(0.90), policy)
    assert v.kind is VerdictKind.PASS
    assert "task metric drop accepted as acknowledged" in v.notes


def test_baseline_stores_task_metrics_and_reads_old_files_without_them():
    result = TuneResult(
        name="tune_cls",
        strategy="min-latency",
        device="cpu",
        backends=(_row(0.97), _row(1.0, backend="eager")),
        winner="eager",
        winner_reason="",
        environment={"hardware_key": "cpu-test"},
    )
    data = Baseline.from_result(result).to_dict()
    assert data["backends"]["eager-bf16"]["task_metrics"] == {"top1": 0.97}
    assert Baseline.from_json(data).backend("eager-bf16").task_metrics == {"top1": 0.97}
    del data["backends"]["eager-bf16"]["task_metrics"]
    assert Baseline.from_json(data).backend("eager-bf16").task_metrics == {}


def test_an_infinite_task_metric_survives_the_strict_json_baseline():
    result = TuneResult(
        name="tune_cls",
        strategy="min-latency",
        device="cpu",
        backends=(_row(math.inf),),
        winner=None,
        winner_reason="",
        environment={"hardware_key": "cpu-test"},
    )
    text = Baseline.from_result(result).to_json()
    assert '"top1": "inf"' in text
    assert Baseline.from_json(text).backend("eager-bf16").task_metrics == {"top1": math.inf}


def test_result_json_round_trips_task_metrics_and_omits_them_when_absent():
    row = _row(0.97)
    assert BackendResult.from_json(row.to_json()) == row
    plain = BackendResult(backend="eager", status="ok")
    assert "task_metrics" not in plain.to_json()


# -- in a real tune --------------------------------------------------------------------------------


def _linear_spec(**kw) -> ait.TuneSpec:
    torch.manual_seed(0)
    return ait.TuneSpec(
        model=torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)),
        samples=[torch.randn(32, 16)],
        backends=["eager", "eager-bf16"],
        device="cpu",
        **kw,
    )


def test_every_backend_gets_its_task_metrics_and_a_failed_gate_is_never_selected():
    result = ait.tune(_linear_spec(metric=[ait.psnr(minimum=70.0), ait.top1_agreement()]), measure_config=QUICK)
    eager, bf16 = result.backend("eager"), result.backend("eager-bf16")
    assert [m.name for m in eager.task_metrics] == ["psnr", "top1_agreement"]
    assert eager.task_metrics[0].value == 100.0 and eager.status is BackendStatus.OK
    assert 30 < bf16.task_metrics[0].value < 70, "bf16 rounding costs 40-65 dB of PSNR on a small MLP"
    assert bf16.status is BackendStatus.INACCURATE
    assert bf16.error.startswith("task metric psnr ") and "< 70 (its minimum)" in bf16.error
    assert result.winner == "eager"
    assert "task metric psnr" in bf16.selection_note


def test_a_metric_that_raises_fails_each_backend_and_the_tune_goes_on():
    def needs_labels(outputs, reference, samples):
        raise RuntimeError("no labels in these samples")

    result = ait.tune(_linear_spec(metric=needs_labels, name="tune_cls"), measure_config=QUICK)
    for backend in ("eager", "eager-bf16"):
        row = result.backend(backend)
        assert row.status is BackendStatus.FAILED
        assert row.error.startswith(
            f"task metric 'needs_labels' of tune_cls[{backend}] raised RuntimeError: no labels in these samples"
        )
    assert result.winner is None


# -- reports ---------------------------------------------------------------------------------------


def test_reports_show_task_metrics_and_review_flags():
    import copy
    import json
    from pathlib import Path

    from aitune_ci.report.html import render_html
    from aitune_ci.report.markdown import render_markdown
    from aitune_ci.report.view import RunView

    run = copy.deepcopy(json.loads((Path(__file__).parent / "data" / "report_run.json").read_text()))
    rows = {b["backend"]: b for b in run["results"][0]["backends"]}
    rows["eager-fp16"]["task_metrics"] = [TaskMetricValue("top1_agreement", 0.9921875).to_json()]
    rows["inductor"]["review"] = "4.2x faster than the best other backend (eager); look at it"

    view = RunView.from_run(run)
    by_backend = {r.backend: r for r in view.fixtures[0].rows}
    assert by_backend["eager-fp16"].task_metrics == "top1_agreement 0.9922"
    assert (
        by_backend["inductor"].error
        == "flagged for review: 4.2x faster than the best other backend (eager); look at it"
    )

    markdown = render_markdown(run)
    assert "top1_agreement 0.9922" in markdown
    html = render_html(run)
    assert "top1_agreement 0.9922" in html
    assert "flagged for review: 4.2x faster" in html
