"""Relative mode: a load-time or first-call regression seen in one load per side is timed again before it counts.

The timers are scripted here (``FixtureCheck._load_timers``): what is tested is when the check times
again, in which order, and what it judges on; also stored mode's check against the baseline, and the
update's median of three that it compares with. ``tests/plugin/test_plugin_relative.py`` runs the
real loads.
"""

from __future__ import annotations

import gc
from unittest import mock

import torch

import aitune_ci as ait
import aitune_ci.check as check_module
from aitune_ci.check import CheckOptions, FixtureCheck, _time_load
from aitune_ci.config import RepoConfig
from aitune_ci.engine import tune
from aitune_ci.measure import MeasureConfig
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.status import BackendStatus
from aitune_ci.store.artifact import save
from aitune_ci.store.baseline import BackendBaseline, BackendMetrics, Baseline


def _result(first_call_ms: float, load_s: float = 0.5, winner: str = "inductor") -> TuneResult:
    rows = (
        BackendResult("eager", BackendStatus.OK),
        BackendResult(winner, BackendStatus.OK, load_s=load_s, first_call_ms=first_call_ms),
    )
    return TuneResult("tune_x", "whole", "cpu", rows, winner, "fastest", {})


def _check(tmp_path, timings: dict[str, list[tuple[float, float]]]) -> tuple[FixtureCheck, list[str], list[str]]:
    """A check whose load timers return ``timings[side]`` in turn; returns it, the sides timed in order, and its progress."""
    spec = ait.TuneSpec(model=torch.nn.Linear(2, 2), samples=[torch.randn(1, 2)], device="cpu")
    lines: list[str] = []
    check = FixtureCheck(
        "tune_x", spec, ["eager", "inductor"], {"eager", "inductor"}, CheckOptions(tmp_path), RepoConfig(), lines.append
    )
    order: list[str] = []

    def timer(side: str):
        def again() -> tuple[float, float]:
            order.append(side)
            return timings[side].pop(0)

        return again

    check._load_timers = {side: timer(side) for side in timings}
    return check, order, lines


def test_a_first_call_regression_seen_once_is_timed_twice_more_per_side_and_judged_on_the_medians(tmp_path) -> None:
    # one slow head load, then two like the base's (the H200 read 0.90x-1.40x for equal work)
    check, order, lines = _check(
        tmp_path, {"head": [(0.5, 1290.0), (0.5, 1350.0)], "base": [(0.5, 1310.0), (0.5, 1280.0)]}
    )

    head, base = check._confirm_load_timing(_result(2814.0), _result(1299.0))

    assert order == ["base", "head", "head", "base"]
    assert head.backend("inductor").first_call_ms == 1350.0  # median of 2814, 1290, 1350
    assert base.backend("inductor").first_call_ms == 1299.0  # median of 1299, 1310, 1280
    assert any("timing each side's load twice more" in line for line in lines)
    assert any("median of 3 loads" in line for line in lines)


def test_a_persistent_first_call_regression_survives_the_medians(tmp_path) -> None:
    check, _, _ = _check(tmp_path, {"head": [(0.5, 2700.0), (0.5, 2600.0)], "base": [(0.5, 1300.0), (0.5, 1400.0)]})

    head, base = check._confirm_load_timing(_result(2650.0), _result(1350.0))

    assert (head.backend("inductor").first_call_ms, base.backend("inductor").first_call_ms) == (2650.0, 1350.0)


def test_a_load_time_regression_alone_is_timed_again_too(tmp_path) -> None:
    check, order, _ = _check(tmp_path, {"head": [(0.6, 10.0), (0.7, 10.0)], "base": [(0.5, 10.0), (0.6, 10.0)]})

    head, _ = check._confirm_load_timing(_result(10.0, load_s=3.0), _result(10.0, load_s=0.55))

    assert len(order) == 4 and head.backend("inductor").load_s == 0.7


def test_nothing_is_timed_again_when_nothing_looks_slower(tmp_path) -> None:
    check, order, lines = _check(tmp_path, {"head": [], "base": []})

    head, base = check._confirm_load_timing(_result(1400.0), _result(1300.0))

    assert order == [] and lines == []
    assert head.backend("inductor").first_call_ms == 1400.0


def test_nothing_is_timed_again_when_the_sides_have_different_winners(tmp_path) -> None:
    check, order, _ = _check(tmp_path, {"head": [], "base": []})

    check._confirm_load_timing(_result(5000.0, winner="inductor"), _result(10.0, winner="aoti"))

    assert order == []


def test_a_load_that_fails_when_timed_again_leaves_the_single_readings(tmp_path) -> None:
    check, _, lines = _check(tmp_path, {"head": [], "base": []})  # popping an empty list raises

    head, base = check._confirm_load_timing(_result(2814.0), _result(1299.0))

    assert (head.backend("inductor").first_call_ms, base.backend("inductor").first_call_ms) == (2814.0, 1299.0)
    assert any("load not timed again (IndexError" in line for line in lines)


def _stored(first_call_ms: float, load_s: float = 0.5) -> Baseline:
    entry = BackendBaseline(status="ok", metrics=BackendMetrics(load_s=load_s, first_call_ms=first_call_ms))
    return Baseline("tune_x", "cpu-test", {}, "2026-12-04T00:00:00+00:00", "inductor", {"inductor": entry})


def test_stored_mode_times_a_suspect_head_load_twice_more_and_judges_its_median(tmp_path) -> None:
    check, order, lines = _check(tmp_path, {"head": [(0.5, 1320.0), (0.5, 1290.0)]})
    check.baseline = _stored(1300.0)

    head = check._confirm_stored_load_timing(_result(2814.0))

    assert order == ["head", "head"]
    assert head.backend("inductor").first_call_ms == 1320.0  # median of 2814, 1320, 1290
    assert any("in one load; timing it twice more" in line for line in lines)


def test_stored_mode_leaves_a_load_within_its_gates_alone(tmp_path) -> None:
    check, order, _ = _check(tmp_path, {"head": []})
    check.baseline = _stored(1300.0)

    check._confirm_stored_load_timing(_result(1500.0))

    assert order == []


def test_an_update_stores_the_median_of_three_loads(tmp_path) -> None:
    check, order, lines = _check(tmp_path, {"head": [(0.4, 1200.0), (0.6, 1250.0)]})

    head = check._median_of_three_loads(_result(2900.0, load_s=0.5))

    assert order == ["head", "head"]
    assert (head.backend("inductor").load_s, head.backend("inductor").first_call_ms) == (0.5, 1250.0)


class _RecordsCollector(torch.nn.Module):
    """An eager model that notes, in a list its copies share, whether the collector was on when called."""

    calls: list[bool] = []

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _RecordsCollector.calls.append(gc.isenabled())
        return self.linear(x)


def test_a_load_and_its_first_call_are_timed_with_the_garbage_collector_off(tmp_path) -> None:
    # A full collection of all a check tuned fell into some first calls and not others (aitune_ci/gc_pause.py).
    spec = ait.TuneSpec(model=_RecordsCollector().eval(), samples=[torch.randn(2, 4)], backends=["eager"], device="cpu")
    result = tune(spec, backends=["eager"], measure_config=MeasureConfig(max_total_s=0.2))
    path = tmp_path / "tune_x.ait"
    sha = save(result, path).sha256
    loads: list[bool] = []

    def load_noting_the_collector(*args, **kwargs):
        loads.append(gc.isenabled())
        return real_load(*args, **kwargs)

    real_load = check_module.load
    _RecordsCollector.calls = []
    with mock.patch.object(check_module, "load", load_noting_the_collector):
        load_s, first_call_ms = _time_load(path, spec, result, sha)

    assert load_s > 0 and first_call_ms > 0
    assert loads == [False]  # the load ran with the collector off
    assert _RecordsCollector.calls == [False]  # and so did the first call, the only call
    assert gc.isenabled()  # on again after
