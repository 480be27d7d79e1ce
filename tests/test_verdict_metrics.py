"""Gates on build time, artifact load, first call, peak memory and throughput: synthetic numbers, pure logic."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from synthetic_latency import ROUNDS, stats

from aitune_ci.config import METRICS, ConfigError, MetricGate, Policy, RepoConfig
from aitune_ci.peak_memory import peak_call_bytes
from aitune_ci.report.markdown import render_markdown
from aitune_ci.report.terminal import format_verdict_table
from aitune_ci.result import BackendResult
from aitune_ci.status import VerdictKind
from aitune_ci.store.baseline import BackendBaseline, BackendMetrics, Baseline, LatencySummary
from aitune_ci.verdict import NOW_FAILING, Verdict, compare_backend, count_line
from aitune_ci.verdict.metrics import build_time_check, judge_metric, throughput_check

MIB = 1024 * 1024


def base(**metrics) -> BackendBaseline:
    """A steady baseline (five runs with one median) carrying ``metrics``."""
    latency = LatencySummary.from_stats(stats(ROUNDS, 1.0, batch_size=8))
    return BackendBaseline(
        status="ok", latency=latency, run_medians_ms=(latency.median_ms,) * 5, metrics=BackendMetrics(**metrics)
    )


def now(**fields) -> BackendResult:
    return BackendResult(backend="inductor", status="ok", latency=stats(ROUNDS, 1.0, batch_size=8), **fields)


def judge(b: BackendBaseline, c: BackendResult, policy: Policy | None = None) -> Verdict:
    return compare_backend("tune_m", b, c, policy or Policy())


# -- each gate on plain numbers --------------------------------------------------------------------


def test_peak_memory_regresses_past_ten_percent_and_the_floor():
    gate = METRICS["peak_memory"].default
    assert judge_metric("peak_memory", 100.0, 115.0, gate).regressed  # +15%, +15 MiB
    assert not judge_metric("peak_memory", 100.0, 108.0, gate).regressed  # +8%: within 10%
    assert not judge_metric("peak_memory", 10.0, 17.0, gate).regressed  # +70% but only 7 MiB: under the floor
    assert judge_metric("peak_memory", 100.0, 80.0, gate).improved


def test_build_time_is_compared_only_between_builds_that_met_the_cache_alike():
    gate = METRICS["build_time"].default
    slow = build_time_check(20.0, "cold", 40.0, "cold", gate)
    assert slow.regressed and slow.change == pytest.approx(1.0)
    assert not build_time_check(20.0, "cold", 28.0, "cold", gate).regressed  # +40%: under +50%
    assert not build_time_check(2.0, "cold", 6.0, "cold", gate).regressed  # +200% but 4 s: under the 5 s floor
    warm_vs_cold = build_time_check(2.0, "warm", 40.0, "cold", gate)
    assert not warm_vs_cold.regressed and "warm and this one cold" in warm_vs_cold.note
    unknown = build_time_check(2.0, None, 40.0, "cold", gate)
    assert not unknown.regressed and "does not record" in unknown.note
    assert "loaded an earlier build" in build_time_check(2.0, "cold", 0.1, "reused", gate).note


def test_in_a_relative_check_two_cold_builds_are_not_compared_and_two_warm_ones_are():
    """The base builds second in the head's process, on caches its own code and the head's build
    filled: a cold base can only look faster (H200: resnet50 aoti 22.6 s base, 77.4 s head, a
    comment-only PR). Two warm builds only load from caches, so they stay comparable."""
    gate = METRICS["build_time"].default
    cold = build_time_check(22.6, "cold", 77.4, "cold", gate, base_in_process=True)
    assert not cold.regressed and "the base second" in cold.note and "nightly judges" in cold.note
    assert build_time_check(22.6, "cold", 77.4, "cold", gate).regressed  # stored mode: nightly against nightly
    warm = build_time_check(2.8, "warm", 9.3, "warm", gate, base_in_process=True)
    assert warm.regressed and not warm.note  # +232%, +6.5 s: still judged
    assert not build_time_check(2.8, "warm", 3.0, "warm", gate, base_in_process=True).regressed


def test_load_and_first_call_have_their_own_floors():
    assert judge_metric("load_time", 2.0, 3.5, METRICS["load_time"].default).regressed  # +75%, +1.5 s
    assert not judge_metric("load_time", 0.2, 0.9, METRICS["load_time"].default).regressed  # +0.7 s < 1 s
    assert judge_metric("first_call", 400.0, 900.0, METRICS["first_call"].default).regressed
    assert not judge_metric("first_call", 10.0, 200.0, METRICS["first_call"].default).regressed  # +190 ms < 250


def test_a_disabled_gate_shows_the_change_without_judging_it():
    check = judge_metric("peak_memory", 100.0, 500.0, MetricGate(0.1, 8.0, enabled=False))
    assert not check.regressed and check.change == pytest.approx(4.0) and "gate off" in check.note


def test_metric_missing_now_is_absent_and_missing_in_baseline_is_shown_not_judged():
    assert judge_metric("load_time", 1.0, None, METRICS["load_time"].default) is None
    check = judge_metric("load_time", None, 1.0, METRICS["load_time"].default)
    assert not check.regressed and "no baseline value" in check.note


def test_throughput_drop_mirrors_latency_threshold_and_noise():
    gate = MetricGate(0.05, 0.0)
    before = {8: 1000.0, 16: 1800.0}
    drop = throughput_check(before, {8: 990.0, 16: 1500.0}, 8, gate, latency_threshold=0.05, latency_unjudged=None)
    assert drop.regressed and drop.batch_size == 16 and drop.change == pytest.approx(1500 / 1800 - 1)
    # The latency's noise-widened threshold (25%) widens throughput's too.
    wide = throughput_check(before, {8: 990.0, 16: 1500.0}, 8, gate, latency_threshold=0.25, latency_unjudged=None)
    assert not wide.regressed and wide.threshold == pytest.approx(0.25)
    # A stored latency that could not be judged leaves throughput unjudged as well.
    unjudged = throughput_check(before, {16: 900.0}, 8, gate, latency_threshold=None, latency_unjudged="too noisy")
    assert not unjudged.regressed and unjudged.note.startswith("not judged")
    # At the latency's own batch size throughput is latency, judged already.
    assert throughput_check(before, {8: 500.0}, 8, gate, latency_threshold=0.05, latency_unjudged=None) is None


# -- in a verdict ----------------------------------------------------------------------------------


def test_memory_regression_makes_the_verdict_regressed_naming_the_metric():
    v = judge(base(peak_memory_bytes=40 * MIB), now(peak_memory_bytes=60 * MIB))
    assert v.kind is VerdictKind.REGRESSED and v.reasons == ("peak-memory",)
    memory = v.metric("peak_memory")
    assert memory.regressed and memory.text() == "peak memory 40 MiB -> 60 MiB (+50.0%, limit +10% and 8 MiB)"
    assert v.fails and memory.text().lower() in v.message.lower()


def test_metrics_within_their_gates_pass_and_stay_out_of_the_terminal_table():
    v = judge(
        base(peak_memory_bytes=40 * MIB, build_s=20.0, build_cache="cold", load_s=1.0, first_call_ms=5.0),
        now(peak_memory_bytes=41 * MIB, build_s=22.0, build_cache="cold", load_s=1.1, first_call_ms=6.0),
    )
    assert v.kind is VerdictKind.PASS and {m.metric for m in v.metrics} == {
        "peak_memory",
        "build_time",
        "load_time",
        "first_call",
    }
    assert "peak memory" not in format_verdict_table([v])


def test_relative_mode_compares_base_and_head_values_the_same_way():
    """Relative mode judges against ``Baseline.from_result(base run)``: the base row's metrics become the baseline's."""
    base_row = now(build_s=10.0, build_cache="cold", peak_memory_bytes=40 * MIB)
    reference = BackendBaseline.from_result(base_row)
    assert reference.metrics.build_s == 10.0 and reference.metrics.build_cache == "cold"
    v = judge(reference, now(build_s=30.0, build_cache="cold", peak_memory_bytes=40 * MIB))
    assert v.kind is VerdictKind.REGRESSED and v.reasons == ("build-time",)


def test_per_check_config_loosens_one_metric():
    config = RepoConfig.from_table({"metrics": {"peak_memory": {"tune_m[inductor]": 1.0}}})
    v = judge(
        base(peak_memory_bytes=40 * MIB), now(peak_memory_bytes=60 * MIB), config.policy_for("tune_m", "inductor")
    )
    assert v.kind is VerdictKind.PASS


def test_acknowledgement_accepts_a_metric_regression():
    config = RepoConfig.from_table({"acknowledged": {"tune_m": "bigger workspace on purpose (#7)"}})
    v = judge(
        base(peak_memory_bytes=40 * MIB), now(peak_memory_bytes=60 * MIB), config.policy_for("tune_m", "inductor")
    )
    assert v.kind is VerdictKind.PASS and "peak-memory accepted as acknowledged" in v.message.lower()


# -- warn-only -------------------------------------------------------------------------------------


def test_warn_only_regression_is_reported_as_would_fail_and_does_not_fail():
    policy = Policy(warn_only=True)
    v = judge(base(peak_memory_bytes=40 * MIB), now(peak_memory_bytes=60 * MIB), policy)
    assert v.kind is VerdictKind.REGRESSED and v.would_fail and not v.fails
    assert "would fail" in v.message and "warn-only: would fail" in format_verdict_table([v])
    assert "1 regressed (1 warn-only: would fail, not failing)" in count_line([v])
    data = v.to_json()
    assert data["would_fail"] is True and data["metrics"][0]["metric"] == "peak_memory"
    back = Verdict.from_json(json.loads(json.dumps(data)))  # as xdist workers send it
    assert back.metrics == v.metrics and back.would_fail and not back.fails
    assert "warn-only: would fail" in render_markdown({"results": [], "verdicts": [data]})


def test_warn_only_does_not_hide_a_backend_that_now_fails():
    broken = BackendResult(backend="inductor", status="failed", error="RuntimeError: boom")
    v = judge(base(), broken, Policy(warn_only=True))
    assert v.kind is VerdictKind.REGRESSED and NOW_FAILING in v.reasons
    assert v.fails and not v.would_fail
    never_worked = compare_backend("tune_m", None, broken, Policy(warn_only=True))
    assert never_worked.kind is VerdictKind.FAILED and never_worked.fails


# -- config ----------------------------------------------------------------------------------------


def test_metric_gate_precedence_check_then_fixture_then_table_then_default():
    config = RepoConfig.from_table(
        {
            "metrics": {
                "build_time": {
                    "threshold": 1.0,
                    "tune_a": 2.0,
                    "tune_a[aoti]": {"floor": 30},
                    "tune_b[onnxruntime]": False,
                }
            }
        }
    )
    assert config.policy_for("tune_a", "aoti").gate("build_time") == MetricGate(2.0, 30.0, True)
    assert config.policy_for("tune_a", "eager").gate("build_time") == MetricGate(2.0, 5.0, True)
    assert config.policy_for("tune_c", "eager").gate("build_time") == MetricGate(1.0, 5.0, True)
    assert not config.policy_for("tune_b", "onnxruntime").gate("build_time").enabled
    # Throughput's default threshold is the check's latency threshold.
    cfg = RepoConfig.from_table({"thresholds": {"tune_a": 0.12}})
    assert cfg.policy_for("tune_a", "eager").gate("throughput").threshold == 0.12


def test_warn_only_config_per_fixture_per_check_or_all():
    config = RepoConfig.from_table({"warn_only": ["tune_a", "tune_b[aoti]"]})
    assert config.policy_for("tune_a", "eager").warn_only
    assert config.policy_for("tune_b", "aoti").warn_only and not config.policy_for("tune_b", "eager").warn_only
    assert RepoConfig.from_table({"warn_only": True}).policy_for("tune_z", "x").warn_only
    assert RepoConfig().with_warn_only().policy_for("tune_z", "x").warn_only


@pytest.mark.parametrize(
    ("table", "key", "says"),
    [
        ({"metrics": {"compile_time": {}}}, "metrics.compile_time", "unknown metric; the metrics are: build_time"),
        ({"metrics": {"peak_memory": {"threshold": -1}}}, "metrics.peak_memory.threshold", "a number >= 0"),
        ({"metrics": {"peak_memory": {"tune_a": "lots"}}}, "metrics.peak_memory.tune_a", "expected a threshold"),
        ({"metrics": {"peak_memory": {"tune_a": {"limit": 1}}}}, "metrics.peak_memory.tune_a.limit", "unknown key"),
        ({"metrics": {"peak_memory": {"tune a": 0.2}}}, "metrics.peak_memory.tune a", "keys name a fixture"),
        ({"metrics": {"peak_memory": 0.2}}, "metrics.peak_memory", "expected a table"),
        ({"metrics": {"peak_memory": {"enabled": "no"}}}, "metrics.peak_memory.enabled", "true or false"),
        ({"warn_only": "yes"}, "warn_only", "expected true/false or a list"),
        ({"warn_only": ["tune a"]}, "warn_only.tune a", "keys name a fixture"),
    ],
)
def test_bad_metric_and_warn_only_config_names_the_key(table, key, says):
    with pytest.raises(ConfigError) as info:
        RepoConfig.from_table(table, source="pyproject.toml")
    assert info.value.key == key and says in str(info.value)


# -- baselines -------------------------------------------------------------------------------------


def test_baseline_written_before_metrics_still_loads_and_new_metrics_round_trip(tmp_path):
    old = {
        "schema_version": 1,
        "fixture": "tune_m",
        "hardware_key": "cpu-x",
        "environment": {},
        "updated_at": "2026-01-01T00:00:00+00:00",
        "winner": "eager",
        "module_choice": {},
        "artifact_sha256": None,
        "backends": {"eager": {"status": "ok", "precision": "fp32", "latency": None, "accuracy": None, "error": None}},
    }
    loaded = Baseline.from_json(json.dumps(old))
    assert loaded.backend("eager").metrics == BackendMetrics()
    metrics = BackendMetrics(2.5, "cold", 0.3, 4.0, 123456, {8: 1000.0, 16: 1500.0})
    written = replace(loaded, backends={"eager": replace(loaded.backend("eager"), metrics=metrics)})
    again = Baseline.from_json(written.to_json())
    assert again.backend("eager").metrics == metrics
    assert "metrics" not in json.loads(loaded.to_json())["backends"]["eager"]  # unchanged bytes without them


# -- measuring -------------------------------------------------------------------------------------


def test_cpu_peak_memory_is_the_allocator_peak_of_one_call():
    """Linear(256->1024), ReLU, Linear(1024->10) on 64 rows: two 256 KiB activations alive at once.

    The ReLU's output is allocated while the first Linear's is still referenced; the last Linear's
    2.5 KiB output comes after the first activation is freed. So the peak is exactly 512 KiB, every time.
    """
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 10)).eval()
    x = torch.randn(64, 256)
    with torch.inference_mode():
        peaks = {peak_call_bytes(lambda: model(x), torch.device("cpu")) for _ in range(3)}
    assert peaks == {2 * 64 * 1024 * 4}
