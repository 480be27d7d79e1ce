"""Latency measurement with real clocks: warm-up until settled, then interleaved rounds.

Callables are timed in rounds where every callable runs once (a block of iterations), with the
order rotated each round, so slow drift of the machine (clocks, thermals, neighbours) hits all of
them alike. CPU iterations are timed with ``time.perf_counter_ns``; CUDA iterations with their own
``torch.cuda.Event`` pair, synchronizing once per block so the timer never stalls the GPU queue.
The statistics themselves live in :mod:`aitune_ci.stats`.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from aitune_ci.cpu_load import contended_cores, read_cpu_load
from aitune_ci.errors import AituneCIError
from aitune_ci.frame_stack import on_fresh_chunk
from aitune_ci.result import LatencyStats
from aitune_ci.stats import (
    RatioEstimate,
    is_settled,
    paired_ratio,
    relative_half_width,
    summarize,
)

__all__ = [
    "MeasureConfig",
    "MeasureError",
    "ABBA",
    "BAAB",
    "measure",
    "measure_paired",
    "paired_round_order",
    "round_order",
]

#: Receives one human-readable progress line per step (``ait.tune(progress=...)`` takes the same).
Progress = Callable[[str], None]

#: Upper bound on iterations per block, so a nanosecond-scale callable cannot exhaust memory.
_MAX_ITERS_PER_BLOCK = 100_000


class MeasureError(AituneCIError):
    """A callable raised while being measured; ``name`` says which one (the cause is chained)."""

    def __init__(self, name: str, exc: BaseException) -> None:
        super().__init__(f"{name!r} raised while being measured: {type(exc).__name__}: {exc}")
        self.name = name


@dataclass(frozen=True)
class MeasureConfig:
    """How long and how carefully to measure.

    Attributes:
        min_rounds: rounds always run (a statistic of fewer windows cannot see drift).
        max_rounds: stop after this many rounds even if the CI is still wide.
        target_round_s: time each callable spends per round; iterations per block are calibrated
            from the warm-up to fill it (at least one iteration).
        max_total_s: budget for calibration plus rounds of one :func:`measure` call. Blocks are
            shortened so ``min_rounds`` fit in it, and no round starts that would overrun it
            (``min_rounds`` are still run when a single iteration is slower than the budget).
            Warm-up is bounded separately by ``warmup_max_s`` per callable.
        ci_target: stop once every median's CI half-width is at most this fraction (0.01 = ±1%).
        warmup_min_iters: warm-up iterations always run per callable.
        warmup_max_s: warm-up ends after this long even if the times have not settled.
        settle_window, settle_tolerance: the :func:`~aitune_ci.stats.is_settled` rule.
        confidence: coverage of the reported median CI.
        bootstrap_resamples, seed: bootstrap settings (deterministic for a seed).
    """

    min_rounds: int = 5
    max_rounds: int = 50
    target_round_s: float = 0.05
    max_total_s: float = 5.0
    ci_target: float = 0.01
    warmup_min_iters: int = 10
    warmup_max_s: float = 2.0
    settle_window: int = 5
    settle_tolerance: float = 0.02
    confidence: float = 0.95
    bootstrap_resamples: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.min_rounds < 1:
            problems.append(f"min_rounds must be >= 1 (got {self.min_rounds})")
        if self.max_rounds < self.min_rounds:
            problems.append(f"max_rounds ({self.max_rounds}) must be >= min_rounds ({self.min_rounds})")
        for name in ("target_round_s", "max_total_s", "ci_target"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.warmup_min_iters < 0 or self.warmup_max_s < 0:
            problems.append("warmup_min_iters and warmup_max_s must be >= 0")
        if self.settle_window < 1 or self.settle_tolerance < 0:
            problems.append("settle_window must be >= 1 and settle_tolerance >= 0")
        if not 0 < self.confidence < 1:
            problems.append(f"confidence must be within (0, 1) (got {self.confidence})")
        if self.bootstrap_resamples < 1:
            problems.append(f"bootstrap_resamples must be >= 1 (got {self.bootstrap_resamples})")
        if problems:
            raise ValueError("invalid MeasureConfig: " + "; ".join(problems))


def round_order(names: Sequence[str], round_index: int) -> tuple[str, ...]:
    """The order of ``names`` in round ``round_index``: rotated by one each round.

    Over ``len(names)`` rounds every callable runs once in every position; with two callables this
    is the A B, B A alternation.
    """
    if not names:
        return ()
    shift = round_index % len(names)
    return tuple(names[shift:]) + tuple(names[:shift])


#: The blocks of one paired round: A B B A, so a drift that is linear within the round cancels.
ABBA: tuple[str, ...] = ("a", "b", "b", "a")
#: The mirror round: B runs first, right after the work between rounds, as A does in ABBA.
BAAB: tuple[str, ...] = ("b", "a", "a", "b")
#: Rounds combined into one ratio before the median: one ABBA and one BAAB.
ROUNDS_PER_PAIR = 2


def paired_round_order(round_index: int) -> tuple[str, ...]:
    """The blocks of paired round ``round_index``: ABBA on even rounds, BAAB on odd ones.

    ABBA alone leaves one effect of the position uncancelled: only A runs first in a round, right
    after the work between rounds. With one object in both slots, torchao-int8dq read B faster in
    17 of 20 measurements (median 0.995x; ``bench/paired_slot_bias.py``). Alternating the two
    orders gives that effect to each side in turn, and :func:`measure_paired` combines each
    ABBA + BAAB pair into one ratio (``paired_ratio(..., rounds_per_unit=2)``) before the median,
    so it cancels inside every pair: one object against itself read 1.0011 (sd 0.0050) where ABBA
    alone read 0.992 (sd 0.0101), and a known slowdown read as well as with ABBA
    (reports/paired_estimators.md, reports/verdict_trust_round_orders.md).
    """
    return ABBA if round_index % 2 == 0 else BAAB


class _Timer:
    """Times blocks of calls on one device: per-iteration milliseconds, one sync per block."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise ValueError(f"cannot time on {device}: CUDA is not available in this process")
        self._events: list[tuple[Any, Any]] = []

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def block(self, fn: Callable[[], Any], iters: int) -> list[float]:
        """Run ``fn`` ``iters`` times back to back; return each iteration's time in ms.

        From a fresh frame-stack chunk (``frame_stack``), so a call costs the same whatever the
        caller's depth: without it a 4 µs Linear read 11-18 µs from one call site in pytest.
        """
        return on_fresh_chunk(lambda: self._block(fn, iters))

    def _block(self, fn: Callable[[], Any], iters: int) -> list[float]:
        if self.cuda:
            return self._cuda_block(fn, iters)
        # A clock read on each side of every call, so loop bookkeeping stays outside the timing.
        clock = time.perf_counter_ns
        starts = [0] * iters
        ends = [0] * iters
        for i in range(iters):
            starts[i] = clock()
            fn()
            ends[i] = clock()
        return [(e - s) * 1e-6 for s, e in zip(starts, ends, strict=True)]

    def _cuda_block(self, fn: Callable[[], Any], iters: int) -> list[float]:
        # Events are reused across blocks; the GPU queue is only drained once, at the end.
        while len(self._events) < iters:
            self._events.append((torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)))
        events = self._events[:iters]
        with torch.cuda.device(self.device):
            for start, end in events:
                start.record()
                fn()
                end.record()
            torch.cuda.synchronize(self.device)
        return [start.elapsed_time(end) for start, end in events]

    def single(self, fn: Callable[[], Any]) -> float:
        """One call, synchronized on both sides (warm-up: the time must include all GPU work)."""
        return on_fresh_chunk(lambda: self._single(fn))

    def _single(self, fn: Callable[[], Any]) -> float:
        self.sync()
        t0 = time.perf_counter_ns()
        fn()
        self.sync()
        return (time.perf_counter_ns() - t0) * 1e-6


class _MemoryProbe:
    """Peak memory of a stretch of calls.

    CUDA: the allocator's peak above what was allocated before (activations and workspace, not the
    weights already resident), exact. CPU: the growth of the process's resident-set high-water
    mark (``getrusage``), coarse: it only moves when this callable exceeds every earlier peak of
    the process, so it is a lower bound and is often 0.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._before = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        else:
            self._before = _rss_high_water_bytes()

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return max(0, int(torch.cuda.max_memory_allocated(self.device)) - self._before)
        return max(0, _rss_high_water_bytes() - self._before)


def _rss_high_water_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # Linux reports KiB


@dataclass
class _Warmed:
    per_call_ms: float
    iterations: int
    seconds: float
    settled: bool
    peak_memory_bytes: int


def _warm_up(fn: Callable[[], Any], timer: _Timer, config: MeasureConfig) -> _Warmed:
    """Call ``fn`` until its times settle (or ``warmup_max_s``); estimate one call's time."""
    probe = _MemoryProbe(timer.device)
    probe.start()
    times: list[float] = []
    t0 = time.perf_counter()
    settled = False
    while True:
        times.append(timer.single(fn))
        elapsed = time.perf_counter() - t0
        if len(times) >= config.warmup_min_iters:
            settled = is_settled(times, config.settle_window, config.settle_tolerance)
            if settled:
                break
        if elapsed >= config.warmup_max_s:
            break
    peak = probe.stop()
    tail = times[-config.settle_window :]
    return _Warmed(float(np.median(tail)), len(times), time.perf_counter() - t0, settled, peak)


def _iters_for(per_call_ms: float, seconds: float) -> int:
    per_call_s = max(per_call_ms * 1e-3, 1e-9)
    return int(min(_MAX_ITERS_PER_BLOCK, max(1, round(seconds / per_call_s))))


def _run_block(name: str, fn: Callable[[], Any], timer: _Timer, iters: int) -> list[float]:
    try:
        return timer.block(fn, iters)
    except Exception as exc:
        raise MeasureError(name, exc) from exc


def _warm_all(
    fns: Mapping[str, Callable[[], Any]], timer: _Timer, config: MeasureConfig, say: Progress
) -> dict[str, _Warmed]:
    warmed = {}
    for name, fn in fns.items():
        try:
            w = _warm_up(fn, timer, config)
        except Exception as exc:
            raise MeasureError(name, exc) from exc
        state = "settled" if w.settled else "not settled (warmup_max_s reached)"
        say(f"warm-up {name}: {state} after {w.iterations} calls in {w.seconds:.2f} s, ~{w.per_call_ms:.4g} ms/call")
        warmed[name] = w
    return warmed


def _block_sizes(warmed: Mapping[str, _Warmed], blocks_per_round: int, config: MeasureConfig) -> dict[str, int]:
    """Iterations per block: ``target_round_s`` per callable per round, shrunk to fit the budget."""
    target = config.target_round_s
    round_s = target * len(warmed)
    if config.min_rounds * round_s > config.max_total_s:
        target *= config.max_total_s / (config.min_rounds * round_s)
    return {name: _iters_for(w.per_call_ms, target / blocks_per_round) for name, w in warmed.items()}


#: What :func:`measure` says when its rounds end, by the reason :func:`_stop` gives.
_STOP_LINES = {
    "converged": "stopped after {rounds} rounds: every median within ±{ci_percent:g}%",
    "max_rounds": "stopped at max_rounds={config.max_rounds}",
    "budget": "stopped after {rounds} rounds: max_total_s={config.max_total_s:g} s budget",
}


def _stop(config: MeasureConfig, rounds: int, converged: bool, spent_s: float, round_s: float) -> str | None:
    """Why the rounds end now: ``"converged"``, ``"max_rounds"`` or ``"budget"``; None to go on.

    ``min_rounds`` always run; after them the CI target ends the rounds first, then
    ``max_rounds``, then the budget: no round starts that would overrun ``max_total_s``, judged by
    the time ``spent_s`` so far and the last round's ``round_s``.
    """
    if rounds < config.min_rounds:
        return None
    if converged:
        return "converged"
    if rounds >= config.max_rounds:
        return "max_rounds"
    if spent_s + round_s > config.max_total_s:
        return "budget"
    return None


def measure(
    fns: Mapping[str, Callable[[], Any]],
    device: torch.device | str = "cpu",
    config: MeasureConfig | None = None,
    *,
    batch_size: int | None = None,
    on_progress: Progress | None = None,
) -> dict[str, LatencyStats]:
    """Measure each zero-argument callable's latency, interleaved so drift hits all alike.

    Steps: warm up each callable until :func:`~aitune_ci.stats.is_settled` (recording peak
    memory), calibrate iterations per block so a block lasts about ``target_round_s``, then run
    rounds in which every callable runs one block, in :func:`round_order`. After ``min_rounds``,
    stop as soon as every median's CI half-width is within ``ci_target``, or at ``max_rounds`` or
    the ``max_total_s`` budget. Everything runs under ``torch.inference_mode()``.

    Args:
        fns: name -> callable running one inference call (inputs already bound).
        device: where the callables run; ``cuda`` devices are timed with CUDA events.
        config: measurement settings (defaults: :class:`MeasureConfig`).
        batch_size: items per call, copied into every result (for throughput).
        on_progress: receives one human-readable line per step.

    Returns:
        name -> :class:`~aitune_ci.result.LatencyStats` (per-call milliseconds), in ``fns`` order.

    Raises:
        MeasureError: a callable raised; ``.name`` says which.
    """
    if not fns:
        raise ValueError("measure() needs at least one callable")
    config = config or MeasureConfig()
    say = on_progress or (lambda _line: None)
    timer = _Timer(torch.device(device))
    names = list(fns)
    with torch.inference_mode():
        warmed = _warm_all(fns, timer, config, say)
        start = time.perf_counter()
        load_before = read_cpu_load()
        iters = _block_sizes(warmed, 1, config)
        say("iterations per round: " + ", ".join(f"{n} {iters[n]}" for n in names))
        samples: dict[str, list[float]] = {n: [] for n in names}
        round_medians: dict[str, list[float]] = {n: [] for n in names}
        rounds = 0
        while True:
            round_t0 = time.perf_counter()
            for name in round_order(names, rounds):
                times = _run_block(name, fns[name], timer, iters[name])
                samples[name].extend(times)
                round_medians[name].append(float(np.median(times)))
            rounds += 1
            now = time.perf_counter()
            widths = {n: _median_ci_width(samples[n], round_medians[n], config) for n in names}
            say(
                f"round {rounds}: "
                + ", ".join(f"{n} {np.median(samples[n]):.4g} ms ±{widths[n] * 100:.1f}%" for n in names)
            )
            converged = all(w <= config.ci_target for w in widths.values())
            stop = _stop(config, rounds, converged, now - start, now - round_t0)
            if stop is not None:
                say(_STOP_LINES[stop].format(rounds=rounds, config=config, ci_percent=config.ci_target * 100))
                break
    contention = contended_cores(load_before, read_cpu_load())
    if contention:
        say(f"other processes took {contention:.2f} CPU cores while measuring, with no core idle")
    return {
        n: replace(
            summarize(
                samples[n],
                round_medians_ms=round_medians[n],
                batch_size=batch_size,
                peak_memory_bytes=warmed[n].peak_memory_bytes,
                rounds=rounds,
                confidence=config.confidence,
                resamples=config.bootstrap_resamples,
                seed=config.seed,
            ),
            cpu_contention=contention,
        )
        for n in names
    }


def _median_ci_width(samples: list[float], round_medians: list[float], config: MeasureConfig) -> float:
    """Relative CI half-width of the median, computed exactly as :func:`summarize` reports it."""
    stats = summarize(
        samples,
        round_medians_ms=round_medians,
        confidence=config.confidence,
        resamples=config.bootstrap_resamples,
        seed=config.seed,
    )
    return relative_half_width(stats.ci_low_ms, stats.ci_high_ms, stats.median_ms)


def _whole_pairs(config: MeasureConfig) -> MeasureConfig:
    """``config`` for paired rounds: ``min_rounds`` whole ABBA + BAAB pairs, ``max_rounds`` rounded up to a pair.

    The median and its CI rest on pairs, so ``min_rounds`` counts pairs: with 3 units (6 rounds)
    even the widest interval a median's bootstrap can give, the range, holds the true median only
    75% of the time (1 - 2 / 2**3), and one object timed against itself stopped "converged" at 6
    rounds with its CI excluding 1 in 6 of 20 measurements here (reports/paired_slot_bias.md).
    """
    min_rounds = ROUNDS_PER_PAIR * config.min_rounds
    max_rounds = max(min_rounds, -(-config.max_rounds // ROUNDS_PER_PAIR) * ROUNDS_PER_PAIR)
    return replace(config, min_rounds=min_rounds, max_rounds=max_rounds)


def measure_paired(
    fn_a: Callable[[], Any],
    fn_b: Callable[[], Any],
    device: torch.device | str = "cpu",
    config: MeasureConfig | None = None,
    *,
    on_progress: Progress | None = None,
) -> RatioEstimate:
    """Measure how much slower B is than A (ratio > 1: B slower), with paired ABBA / BAAB rounds.

    Each round runs blocks A, B, B, A (or B, A, A, B: :func:`paired_round_order`) back to back; the
    round's ratio is the median of its B iterations over the median of its A iterations, so drift
    that is linear within a round cancels. Each ABBA + BAAB pair's two ratios are combined, so the
    position effect cancels too; the result is the median over pairs with its bootstrap CI. Rounds
    end only on a complete pair, and ``min_rounds`` counts pairs (:func:`_whole_pairs`). Stops after
    ``min_rounds`` pairs once the ratio's CI half-width is within ``ci_target``, or at ``max_rounds`` /
    ``max_total_s``. This is how an old artifact is compared with a fresh build in one process.

    Raises:
        MeasureError: a callable raised; ``.name`` is ``"a"`` or ``"b"``.
    """
    config = _whole_pairs(config or MeasureConfig())
    say = on_progress or (lambda _line: None)
    timer = _Timer(torch.device(device))
    fns = {"a": fn_a, "b": fn_b}
    with torch.inference_mode():
        warmed = _warm_all(fns, timer, config, say)
        start = time.perf_counter()
        # Each callable runs two blocks per round; together they fill target_round_s.
        load_before = read_cpu_load()
        iters = _block_sizes(warmed, 2, config)
        say(f"iterations per block: a {iters['a']}, b {iters['b']}")
        a_medians: list[float] = []
        b_medians: list[float] = []
        rounds = 0
        pair_t0 = start
        while True:
            times: dict[str, list[float]] = {"a": [], "b": []}
            for name in paired_round_order(rounds):
                times[name].extend(_run_block(name, fns[name], timer, iters[name]))
            a_medians.append(float(np.median(times["a"])))
            b_medians.append(float(np.median(times["b"])))
            rounds += 1
            if rounds % ROUNDS_PER_PAIR:
                continue  # the estimate and every stop wait for the pair's BAAB round
            now = time.perf_counter()
            est = paired_ratio(
                a_medians,
                b_medians,
                rounds_per_unit=ROUNDS_PER_PAIR,
                confidence=config.confidence,
                resamples=config.bootstrap_resamples,
                seed=config.seed,
            )
            say(f"paired rounds 1-{rounds}: ratio b/a {est.ratio:.4f} [{est.ci_low:.4f}, {est.ci_high:.4f}]")
            stop = _stop(config, rounds, est.half_width <= config.ci_target, now - start, now - pair_t0)
            pair_t0 = now
            if stop == "budget":
                say(f"stopped after {rounds} paired rounds: max_total_s={config.max_total_s:g} s budget")
            if stop is not None:
                break
    contention = contended_cores(load_before, read_cpu_load())
    if contention:
        say(f"other processes took {contention:.2f} CPU cores while the pair was timed, with no core idle")
    return replace(est, cpu_contention=contention)
