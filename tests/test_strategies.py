"""Each strategy's choice on synthetic results (no torch, no timing)."""

from __future__ import annotations

from aitune_ci.result import AccuracyReport, BackendResult, LatencyStats
from aitune_ci.strategies import select, sweep_batch_sizes


def lat(ms: float, batch: int = 8) -> LatencyStats:
    return LatencyStats(ms, ms, ms, ms, ms, 0.0, ms, ms, 0.0, 100, 5, batch_size=batch)


def row(name: str, ms: float | None, status: str = "ok", sweep: dict[int, float] | None = None) -> BackendResult:
    acc = AccuracyReport(
        passed=status == "ok", precision="fp32", gate="", reason="" if status == "ok" else "SQNR 12 dB < 25 dB"
    )
    return BackendResult(
        backend=name,
        status=status,  # type: ignore[arg-type]
        latency=lat(ms) if ms is not None else None,
        accuracy=acc,
        sweep=tuple(lat(m, b) for b, m in (sweep or {}).items()),
        error="no GPU" if status == "unavailable" else None,
    )


ROWS = [
    row("eager", 10.0),
    row("inductor", 6.0),
    row("aoti", 5.0),
    row("torchao-int8dq", 2.0, status="inaccurate"),
    row("tensorrt", None, status="unavailable"),
]


def test_min_latency_picks_the_fastest_accurate_backend():
    sel = select(ROWS, "min-latency")
    assert sel.winner == "aoti"
    notes = {r.backend: r.selection_note for r in sel.rows}
    assert notes["torchao-int8dq"].startswith("not selected: inaccurate (SQNR 12 dB")
    assert notes["tensorrt"] == "not selected: unavailable (no GPU)"
    assert notes["inductor"] == "not selected: 1.20x the winner's latency"
    assert [r.backend for r in sel.rows if r.selected] == ["aoti"]


def test_an_inaccurate_backend_is_never_selected_even_when_fastest():
    sel = select([row("eager", 10.0), row("int8", 0.1, status="inaccurate")], "min-latency")
    assert sel.winner == "eager"


def test_first_wins_takes_the_first_listed_backend_that_is_1pct_faster():
    rows = [row("eager", 10.0), row("a", 9.95), row("b", 9.0), row("c", 5.0)]
    sel = select(rows, "first-wins", order=["eager", "a", "b", "c"])
    assert sel.winner == "b"
    assert "only +0.5% vs eager" in next(r for r in sel.rows if r.backend == "a").selection_note


def test_first_wins_keeps_eager_when_nothing_is_faster():
    assert select([row("eager", 10.0), row("a", 10.5)], "first-wins", order=["eager", "a"]).winner == "eager"


def test_max_throughput_uses_the_best_point_of_the_sweep():
    rows = [row("eager", 10.0, sweep={8: 10.0, 16: 19.0}), row("x", 9.0, sweep={8: 9.0, 16: 18.5, 32: 30.0})]
    sel = select(rows, "max-throughput")
    assert sel.winner == "x"  # 32/30ms = 1067/s beats eager's 16/19ms = 842/s


def test_one_backend_uses_the_configured_one_or_none():
    assert select(ROWS, "one-backend", order=["eager", "inductor"]).winner == "inductor"
    sel = select(ROWS, "one-backend", order=["eager", "torchao-int8dq"])
    assert sel.winner is None and "not usable" in sel.reason


def test_no_usable_backend_means_no_winner_with_a_reason():
    sel = select([row("eager", None, status="failed")], "min-latency")
    assert sel.winner is None and "no backend was usable" in sel.reason


def test_sweep_sizes_are_powers_of_two_plus_the_sample_batch():
    assert sweep_batch_sizes(8, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert sweep_batch_sizes(6, 16) == [1, 2, 4, 6, 8, 16]
