"""Peak memory of one call, measured the same way on every run so that it can be gated.

CUDA: the caching allocator's peak (``torch.cuda.max_memory_allocated``) above what was allocated
before the call: activations and workspace, not the weights already resident. Exact.

CPU: the process's resident-set high-water mark only moves when a call beats every earlier peak
of the process, so it is useless for a gate. Instead the call runs once under the torch profiler
with ``profile_memory=True``; every allocation event carries the CPU allocator's running total,
and the peak is the largest total above the one before the call. Near-deterministic for a given
model, inputs and backend; it sees what goes through torch's CPU allocator (eager, inductor and
AOTInductor buffers), not a library's own arena (onnxruntime's allocations are invisible to it).
The first profiled call in a process costs about 0.1 s more than the call itself, later ones 20-40 ms (2-core CPU machine).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, Iterator

import torch

__all__ = ["peak_call_bytes"]


def peak_call_bytes(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes allocated while ``fn()`` runs, above the allocation before it; None if unmeasurable."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return max(0, int(torch.cuda.max_memory_allocated(device)) - int(before))
    if device.type != "cpu":
        return None
    return _cpu_peak(fn)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 around the profiler's start and stop only.

    Kineto writes a ``USDT ... profiler_start`` / ``profiler_stop`` line to the C-level stderr on
    each, which no logging setting turns off; the measured call itself runs with stderr untouched.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding host): let the lines through
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _cpu_peak(fn: Callable[[], Any]) -> int | None:
    """The CPU allocator's peak during ``fn()``, from the profiler's allocation events.

    Uses torch's low-level profiler entry points: ``torch.profiler.profile`` would import dynamo
    (seconds, and its operator registrations) in a run that may never compile anything.
    """
    try:
        from torch._C._profiler import ProfilerActivity, ProfilerConfig, ProfilerState, _EventType, _ExperimentalConfig
        from torch.autograd import _disable_profiler, _enable_profiler, _prepare_profiler

        # state, report_input_shapes, profile_memory, with_stack, with_flops, with_modules, experimental
        config = ProfilerConfig(ProfilerState.KINETO, False, True, False, False, False, _ExperimentalConfig())
        activities = {ProfilerActivity.CPU}
        with _quiet_stderr():
            _prepare_profiler(config, activities)
            _enable_profiler(config, activities)
        try:
            fn()
        finally:
            with _quiet_stderr():
                tree = _disable_profiler().experimental_event_tree()
    except (ImportError, AttributeError, TypeError, RuntimeError):  # another profiler is active, or torch moved these
        return None
    allocations: list[tuple[int, int, int]] = []
    stack = list(tree)
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            extra = node.extra_fields
            device = getattr(extra, "device", None)
            if device is not None and device.type != "cpu":
                continue
            allocations.append((node.start_time_ns, int(extra.alloc_size), int(extra.total_allocated)))
    if not allocations:
        return 0
    allocations.sort()
    _, size, total = allocations[0]
    before = total - size  # the allocator's total just before the first event of the call
    return max(0, max(t for _, _, t in allocations) - before)
