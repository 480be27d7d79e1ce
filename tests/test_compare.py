"""``aitune_ci.compare`` and its renderers on synthetic runs: every rule of the upgrade diff, in milliseconds."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from aitune_ci.compare import (
    COMPARISON_KIND,
    COMPARISON_SCHEMA_VERSION,
    CompareSettings,
    Drift,
    EventKind,
    NothingToCompare,
    compare_runs,
)
from aitune_ci.report.compare import (
    comparison_suffix,
    render_comparison,
    render_comparison_html,
    render_comparison_markdown,
    render_comparison_text,
)
from aitune_ci.result import AccuracyReport, BackendResult, LatencyStats, LeafMetrics, TuneResult

ENV = {
    "hardware_key": "NVIDIA-H100-80GB-HBM3",
    "device_type": "cuda",
    "gpu": "NVIDIA H100 80GB HBM3",
    "torch": "2.12.0",
    "cuda": "13.0",
    "driver": "580.1",
    "python": "3.12.3",
    "onnxruntime": "1.22.0",
    "numpy": "2.1.0",
}


def lat(median: float, spread: float = 0.001, rounds: int = 9, **kw: Any) -> LatencyStats:
    """Latency whose round medians wobble by ``spread`` (relative) around ``median``, with a CI to match.

    The wobble's phase depends on the median, so two backends' rounds do not move in lockstep (their
    per-round ratios then have a spread, as measured ones do).
    """
    medians = tuple(median * (1 + spread * math.sin(1.7 * i + 13 * median)) for i in range(rounds))
    half = 2.0 * spread * median
    fields: dict[str, Any] = dict(
        median_ms=median, mean_ms=median, min_ms=median * (1 - spread), p90_ms=median * (1 + spread),
        p99_ms=median * (1 + 2 * spread), iqr_ms=median * spread, ci_low_ms=median - half, ci_high_ms=median + half,
        cv=spread, iterations=100 * rounds, rounds=rounds, batch_size=8, round_medians_ms=medians,
    )  # fmt: skip
    fields.update(kw)
    return LatencyStats(**fields)


def acc(sqnr: float, cosine: float = 0.9999, passed: bool = True, reason: str = "") -> AccuracyReport:
    leaf = LeafMetrics(
        path="", shape=(8, 4), max_abs=1e-3, max_rel=1e-3, mean_abs=1e-4, cosine=cosine, sqnr_db=sqnr,
        rmse_ratio=None, nan_count=0, inf_count=0, passed=passed, reason=reason,
    )  # fmt: skip
    return AccuracyReport(passed=passed, precision="fp32", gate="allclose", leaves=(leaf,), reason=reason)


def backend(
    name: str, ms: float | None = 1.0, status: str = "ok", build_s: float | None = 1.0, **kw: Any
) -> BackendResult:
    latency = kw.pop("latency", lat(ms) if ms is not None else None)
    return BackendResult(
        backend=name, status=status, build_s=build_s, latency=latency, accuracy=kw.pop("accuracy", acc(60.0)), **kw
    )


def run(*fixtures: tuple[str, list[BackendResult]], env: dict[str, Any] | None = None, winner: str = "eager") -> dict:
    results = [
        TuneResult(
            name=name, strategy="min-latency", device="cuda", backends=tuple(rows), winner=winner,
            winner_reason="lowest median", environment=env or ENV,
        ).to_json()
        for name, rows in fixtures
    ]  # fmt: skip
    return {"schema_version": 1, "started": 1.7e9, "results": results, "verdicts": []}


def row(comparison, check: str):
    return next(r for r in comparison.rows if r.check == check)


# -- eager drift vs backend drift -------------------------------------------------------------


def test_a_backend_that_only_followed_eager_is_eager_drift_not_backend_drift():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", 1.2), backend("inductor", 0.6)]), env={**ENV, "torch": "2.13.0"})

    c = compare_runs(old, new, CompareSettings(run_noise=0.005))  # a machine whose processes agree

    f = c.fixtures[0]
    assert f.eager.drift is Drift.SLOWER and f.eager.ratio == pytest.approx(1.2)
    inductor = row(c, "tune_m[inductor]")
    assert inductor.latency.drift is Drift.SLOWER  # its own time moved with eager's...
    assert inductor.relative is not None and inductor.relative.ratio == pytest.approx(1.0, rel=2e-3)
    assert inductor.relative.drift is Drift.NOISE  # ...but relative to eager nothing moved
    assert c.backend_drifts == [] and c.eager_drifts == [f]


def test_by_default_one_run_per_side_cannot_call_a_20_percent_eager_change_drift_but_backend_drift_still_shows():
    # Fresh processes of unchanged code sat 25-45% apart (H200 eager, a 2-core CPU's µs-scale MLP):
    # one run per side cannot tell a 20% framework change from that; a ratio inside each run can.
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", 1.2), backend("inductor", 0.9)]))

    c = compare_runs(old, new)

    assert c.fixtures[0].eager.drift is Drift.NOISE and c.eager_drifts == []
    assert [r.check for r in c.backend_drifts] == ["tune_m[inductor]"]


def test_a_backend_slower_relative_to_eager_is_backend_drift_with_a_ci_excluding_one():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.8)]))

    c = compare_runs(old, new)

    inductor = row(c, "tune_m[inductor]")
    assert inductor.relative.drift is Drift.SLOWER
    assert inductor.relative.ratio == pytest.approx(1.6, rel=2e-3)  # the median of the per-round ratios
    low, high = inductor.relative.ci
    assert 1.0 < low < inductor.relative.ratio < high
    assert inductor.relative.old == pytest.approx(0.5, rel=2e-3) and inductor.relative.new == pytest.approx(
        0.8, rel=2e-3
    )
    assert c.fixtures[0].eager.drift is Drift.NOISE
    assert c.backend_drifts == [inductor]


def test_a_backend_faster_relative_to_eager_is_not_a_drift_to_fail_on():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.8)]))
    new = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))

    c = compare_runs(old, new)

    assert row(c, "tune_m[inductor]").relative.drift is Drift.FASTER
    assert c.backend_drifts == []


def test_a_ratio_whose_ci_includes_one_is_within_noise_however_large():
    """Rounds spread ±40%: a 20% move of the medians cannot be told from that."""
    old = run(("tune_m", [backend("eager", latency=lat(1.0, 0.4)), backend("inductor", latency=lat(0.5, 0.4))]))
    new = run(("tune_m", [backend("eager", latency=lat(1.2, 0.4)), backend("inductor", latency=lat(0.5, 0.4))]))

    c = compare_runs(old, new)

    assert c.fixtures[0].eager.drift is Drift.NOISE
    assert c.fixtures[0].eager.ci[0] < 1.0 < c.fixtures[0].eager.ci[1]
    assert row(c, "tune_m[inductor]").relative.drift is Drift.NOISE


def test_a_real_change_inside_the_threshold_is_under_threshold_until_the_threshold_is_lowered():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.515)]))

    assert row(compare_runs(old, new), "tune_m[inductor]").relative.drift is Drift.SMALL
    strict = compare_runs(old, new, CompareSettings(threshold=0.01))
    assert row(strict, "tune_m[inductor]").relative.drift is Drift.SLOWER


def test_eager_drift_carries_the_run_noise_of_two_processes():
    """Tight rounds, +3% eager: beyond a tiny between-process noise, within a 5% one."""
    old = run(("tune_m", [backend("eager", 1.0)]))
    new = run(("tune_m", [backend("eager", 1.03)]))

    quiet = compare_runs(old, new, CompareSettings(threshold=0.01, run_noise=0.0))
    noisy = compare_runs(old, new, CompareSettings(threshold=0.01, run_noise=0.05))

    assert quiet.fixtures[0].eager.drift is Drift.SLOWER
    assert noisy.fixtures[0].eager.drift is Drift.NOISE


def test_eager_drift_under_cpu_contention_is_shown_but_not_judged_while_backend_drift_still_is():
    old = run(("tune_m", [backend("eager", latency=lat(1.0, cpu_contention=0.9)), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", 2.0), backend("inductor", 1.5)]))

    c = compare_runs(old, new, old_label="old.json")

    eager = c.fixtures[0].eager
    assert eager.drift is Drift.NOT_JUDGED and eager.ratio == pytest.approx(2.0)
    assert "0.90 CPU cores in old.json" in eager.note
    assert row(c, "tune_m[inductor]").relative.drift is Drift.SLOWER


def test_latency_at_another_batch_size_is_not_compared():
    old = run(("tune_m", [backend("eager", latency=lat(1.0, batch_size=8))]))
    new = run(("tune_m", [backend("eager", latency=lat(2.0, batch_size=16))]))

    eager = compare_runs(old, new).fixtures[0].eager

    assert eager.drift is Drift.NOT_COMPARED and eager.ratio is None
    assert "batch size 8 vs 16" in eager.note


def test_rounds_that_do_not_line_up_fall_back_to_the_ratio_of_medians_and_say_so():
    old = run(
        ("tune_m", [backend("eager", latency=lat(1.0, rounds=9)), backend("inductor", latency=lat(0.5, rounds=7))])
    )
    new = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.8)]))

    inductor = row(compare_runs(old, new), "tune_m[inductor]")

    assert inductor.relative.drift is Drift.SLOWER
    assert inductor.relative.ratio == pytest.approx(1.6, rel=2e-3)
    assert "ratio of medians" in inductor.relative.note


def test_backend_drift_is_not_compared_without_eager_on_a_side():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5)]))
    new = run(("tune_m", [backend("eager", None, status="failed", error="boom"), backend("inductor", 0.5)]))

    inductor = row(compare_runs(old, new, new_label="new.json"), "tune_m[inductor]")

    assert inductor.relative.drift is Drift.NOT_COMPARED
    assert inductor.relative.note == "eager's latency not measured in new.json"


# -- compile time -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old_s", "new_s", "drift"),
    [
        (10.0, 14.0, Drift.SLOWER),  # +40%: the upgrade that made compiling slower
        (10.0, 6.0, Drift.FASTER),
        (10.0, 11.0, Drift.SMALL),  # +10%: inside the 20% build threshold
        (0.001, 0.05, Drift.SMALL),  # 50x, but 49 ms: under the absolute floor
        (None, 3.0, Drift.NOT_COMPARED),
    ],
)
def test_compile_time_drift_needs_both_the_threshold_and_the_absolute_floor(old_s, new_s, drift):
    old = run(("tune_m", [backend("eager", 1.0), backend("aoti", 0.5, build_s=old_s)]))
    new = run(("tune_m", [backend("eager", 1.0), backend("aoti", 0.5, build_s=new_s)]))

    build = row(compare_runs(old, new), "tune_m[aoti]").build

    assert build.drift is drift
    assert build.ci is None  # one build per side: no interval is claimed


# -- accuracy and availability ----------------------------------------------------------------


def _events(c, check: str) -> dict[EventKind, str]:
    return {e.kind: e.text for e in row(c, check).events}


def test_states_that_changed_are_named_with_their_reason():
    old = run(
        (
            "tune_m",
            [
                backend("eager", 1.0),
                backend("inductor", 0.5),
                backend("tensorrt", 0.3),
                backend("aoti", 0.4),
                backend("onnxruntime", None, status="failed", error="export failed: aten::foo"),
                backend("torchao-int8wo", 0.6),
            ],
        )
    )
    new = run(
        (
            "tune_m",
            [
                backend("eager", 1.0),
                backend("inductor", None, status="failed", error="InductorError: lowering failed\nTraceback..."),
                backend("tensorrt", None, status="unavailable", error="tensorrt is not installed"),
                backend("onnxruntime", 0.7),
                backend("torchao-int8wo", 0.6, status="inaccurate", accuracy=acc(12.0, 0.9, False, "SQNR 12 < 25 dB")),
                backend("cudagraphs", 0.2),
            ],
        )
    )

    c = compare_runs(old, new, old_label="old.json", new_label="new.json")

    assert _events(c, "tune_m[inductor]") == {EventKind.NOW_FAILING: "failed: InductorError: lowering failed"}
    assert _events(c, "tune_m[tensorrt]") == {EventKind.NOW_UNAVAILABLE: "tensorrt is not installed"}
    assert _events(c, "tune_m[aoti]") == {EventKind.DISAPPEARED: "only in old.json (ok)"}
    assert _events(c, "tune_m[cudagraphs]") == {EventKind.APPEARED: "only in new.json (ok)"}
    assert _events(c, "tune_m[onnxruntime]") == {EventKind.NOW_WORKING: "was failed: export failed: aten::foo"}
    int8 = _events(c, "tune_m[torchao-int8wo]")
    assert int8[EventKind.NOW_FAILING] == "inaccurate: SQNR 12 < 25 dB"
    assert int8[EventKind.ACCURACY_DROP] == "SQNR 60.0 → 12.0 dB (limit 3 dB)"
    lost = {r.check for r, e in c.events if e.kind.bad}
    assert lost == {"tune_m[inductor]", "tune_m[tensorrt]", "tune_m[aoti]", "tune_m[torchao-int8wo]"}
    assert row(c, "tune_m[torchao-int8wo]").new_cosine == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("old_db", "new_db", "dropped"),
    [(40.0, 36.5, True), (40.0, 37.5, False), (140.0, 95.0, False), (140.0, 70.0, True), (math.inf, 79.0, False)],
)
def test_an_sqnr_drop_counts_beyond_its_limit_and_below_the_rounding_ceiling(old_db, new_db, dropped):
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5, accuracy=acc(old_db))]))
    new = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5, accuracy=acc(new_db))]))

    assert (EventKind.ACCURACY_DROP in _events(compare_runs(old, new), "tune_m[inductor]")) is dropped


def test_a_winner_change_is_reported():
    rows = [backend("eager", 1.0), backend("inductor", 0.5)]
    c = compare_runs(run(("tune_m", rows), winner="inductor"), run(("tune_m", rows), winner="eager"))

    assert [(f.old_winner, f.new_winner) for f in c.winner_changes] == [("inductor", "eager")]


def test_submodule_rows_are_compared_against_their_own_eager():
    old = run(
        (
            "tune_m",
            [backend("eager", 1.0), backend("eager", 0.4, module="head"), backend("inductor", 0.2, module="head")],
        )
    )
    new = run(
        (
            "tune_m",
            [backend("eager", 1.0), backend("eager", 0.4, module="head"), backend("inductor", 0.4, module="head")],
        )
    )

    c = compare_runs(old, new)

    assert [r.check for r in c.rows] == ["tune_m[eager]", "tune_m/head[eager]", "tune_m/head[inductor]"]
    assert row(c, "tune_m/head[inductor]").relative.ratio == pytest.approx(2.0, rel=2e-3)


# -- environment and fixtures -----------------------------------------------------------------


def test_environment_differences_are_listed_and_other_hardware_is_flagged():
    old = run(("tune_m", [backend("eager", 1.0)]))
    new_env = {**ENV, "torch": "2.13.0", "driver": "590.2", "onnxruntime": "1.23.0"}
    same_hw = compare_runs(old, run(("tune_m", [backend("eager", 1.0)]), env=new_env))
    other_hw = compare_runs(
        old,
        run(("tune_m", [backend("eager", 1.0)]), env={**new_env, "hardware_key": "NVIDIA-H200", "gpu": "NVIDIA H200"}),
    )

    assert same_hw.environment == (
        ("torch", "2.12.0", "2.13.0"),
        ("driver", "580.1", "590.2"),
        ("onnxruntime", "1.22.0", "1.23.0"),
    )
    assert not same_hw.hardware_differs
    assert other_hw.hardware_differs
    assert ("hardware_key", "NVIDIA-H100-80GB-HBM3", "NVIDIA-H200") in other_hw.environment


def test_fixtures_on_one_side_only_are_listed_and_no_common_fixture_is_an_error():
    old = run(("tune_a", [backend("eager", 1.0)]), ("tune_b", [backend("eager", 1.0)]))
    new = run(("tune_b", [backend("eager", 1.0)]), ("tune_c", [backend("eager", 1.0)]))

    c = compare_runs(old, new)

    assert [f.name for f in c.fixtures] == ["tune_b"]
    assert c.only_old == ("tune_a",) and c.only_new == ("tune_c",)
    with pytest.raises(NothingToCompare, match=r"old.json and new.json have no fixture in common \(old.json: tune_a"):
        compare_runs(old, run(("tune_c", [backend("eager", 1.0)])), old_label="old.json", new_label="new.json")
    with pytest.raises(NothingToCompare, match="new.json holds no tune results"):
        compare_runs(old, {"schema_version": 1, "results": [], "verdicts": []}, new_label="new.json")


def test_a_model_whose_weights_changed_is_flagged_as_more_than_an_environment_change():
    old, new = run(("tune_m", [backend("eager", 1.0)])), run(("tune_m", [backend("eager", 1.0)]))
    old["results"][0]["inputs"] = {"weights": "aaa", "samples": "sss"}
    new["results"][0]["inputs"] = {"weights": "bbb", "samples": "sss"}

    c = compare_runs(old, new)

    assert c.fixtures[0].inputs_changed == ("weights",)
    assert "tune_m: the weights differ between the runs, so the model changed too" in render_comparison_text(c)
    assert "tune_m: the weights differ between the runs" in render_comparison_markdown(c)


def test_settings_refuse_a_negative_threshold():
    with pytest.raises(ValueError, match="threshold must be a finite number >= 0"):
        CompareSettings(threshold=-0.05)


# -- outputs ----------------------------------------------------------------------------------


def _drifted():
    old = run(("tune_m", [backend("eager", 1.0), backend("inductor", 0.5), backend("aoti", 0.4, build_s=10.0)]))
    new = run(
        ("tune_m", [backend("eager", 1.0), backend("inductor", 0.8), backend("aoti", 0.4, build_s=14.0)]),
        env={**ENV, "torch": "2.13.0", "hardware_key": "NVIDIA-H200", "gpu": "NVIDIA H200"},
    )
    return compare_runs(old, new, old_label="torch-2.12.json", new_label="torch-2.13.json")


def test_the_json_output_is_versioned_and_holds_every_ratio():
    data = json.loads(render_comparison(_drifted(), ".json"))

    assert data["schema_version"] == COMPARISON_SCHEMA_VERSION and data["kind"] == COMPARISON_KIND
    assert data["backend_drift"] == ["tune_m[inductor]"]
    assert data["hardware_differs"] is True
    inductor = next(b for b in data["fixtures"][0]["backends"] if b["backend"] == "inductor")
    assert inductor["backend_drift"]["drift"] == "slower" and inductor["backend_drift"]["ratio"] == pytest.approx(
        1.6, rel=2e-3
    )
    aoti = next(b for b in data["fixtures"][0]["backends"] if b["backend"] == "aoti")
    assert aoti["build"] == {
        "old": 10.0,
        "new": 14.0,
        "ratio": 1.4,
        "ci": None,
        "drift": "slower",
        "note": aoti["build"]["note"],
    }
    assert {"field": "torch", "old": "2.12.0", "new": "2.13.0"} in data["environment_differences"]


def test_markdown_leads_with_backend_drift_and_warns_about_other_hardware():
    md = render_comparison_markdown(_drifted())

    assert md.startswith("## 🔴 aitune-ci compare: 1 backend slower relative to eager\n")
    assert "> [!WARNING]\n> The runs come from different hardware (NVIDIA-H100-80GB-HBM3 in torch-2.12.json" in md
    assert "| torch | 2.12.0 | 2.13.0 |" in md
    drift_section = md.split("### Backend drift")[1].split("###")[0]
    visible = drift_section.split("<details>")[0]
    assert "`tune_m[inductor]` | 2× | 1.25× | +59.9% (+59.7% … +60.2%)" in visible and "🔴 slower" in visible
    build_section = md.split("### Compile-time drift")[1].split("<details>")[0]
    assert "`tune_m[aoti]` | 10 | 14 | +40.0% | 🔴 slower" in build_section
    assert md.count("<details>") == md.count("</details>")


def test_markdown_of_an_unchanged_environment_says_so():
    rows = [backend("eager", 1.0), backend("inductor", 0.5)]
    md = render_comparison_markdown(compare_runs(run(("tune_m", rows)), run(("tune_m", rows))))

    assert md.startswith("## ✅ aitune-ci compare: no drift beyond noise and threshold")
    assert "Identical on every recorded hardware and software field." in md
    assert "[!WARNING]" not in md


def test_html_is_one_self_contained_page_in_the_report_style():
    page = render_comparison_html(_drifted(), title="torch upgrade")

    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<title>torch upgrade — torch-2.12.json → torch-2.13.json</title>" in page
    assert "--bad:" in page and "table.sortable" in page  # the run report's stylesheet and sort script
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert "The runs come from different hardware" in page
    assert "tune_m[inductor]" in page and ">slower<" in page


def test_terminal_table_has_one_row_per_backend_and_the_summary():
    text = render_comparison_text(_drifted())

    assert text.splitlines()[0] == "aitune-ci compare: torch-2.12.json → torch-2.13.json"
    assert text.splitlines()[1].startswith("WARNING: The runs come from different hardware")
    assert re.search(r"^tune_m\[inductor\] .* backend drift slower", text, re.M)
    assert text.rstrip().splitlines()[-1].startswith("compare: 1 backend slower vs eager")


@pytest.mark.parametrize("path", ["diff.txt", "diff", "diff.benchmark.csv"])
def test_an_output_path_of_another_format_is_refused_with_the_ones_that_work(path):
    with pytest.raises(ValueError, match=r"end it in \.md \(markdown\), \.html .* or \.json"):
        comparison_suffix(path)


@pytest.mark.parametrize(
    ("old", "new", "drift", "note"),
    [
        ("cold", "cold", Drift.FASTER, "one build per side"),
        ("warm", "warm", Drift.FASTER, "one build per side"),
        (None, None, Drift.FASTER, "one build per side"),  # runs written before the state was kept
        ("cold", "reused", Drift.NOT_COMPARED, "NEW loaded an earlier build instead of building"),
        ("reused", "cold", Drift.NOT_COMPARED, "OLD loaded an earlier build instead of building"),
        ("cold", "warm", Drift.NOT_COMPARED, "OLD built cold, NEW warm (compile cache)"),
    ],
)
def test_build_times_are_compared_only_between_builds_that_met_the_caches_alike(old, new, drift, note):
    """A new user's compare counted 0.686 -> 0.0528 s, a build loaded from the build cache, as compile-time drift."""
    from aitune_ci.compare import build_change

    change = build_change(30.0, 3.0, CompareSettings(), old, new)
    assert change.drift is drift and note in change.note
