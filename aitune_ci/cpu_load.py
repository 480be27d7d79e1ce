"""How much CPU other processes took while a measurement ran, when no core was left idle.

A stored baseline and a later run are compared across processes, so anything else running on the
machine during either one moves the comparison. On this project's 2-core CI machine, a 2-thread
MLP timed 30-45% slower in the runs where another process started up (an import of torch takes a
core for a second or two): bench/verdict_trust.py on CPU, stored mode. Relative mode times both
sides in the same windows, so contention hits both alike; a stored comparison cannot tell, so
the run records it and the verdict declines to judge a contended run (``verdict.judge``).

Linux only (``/proc/stat``); elsewhere nothing is recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CONTENDED_CORES", "CpuLoad", "contended_cores", "read_cpu_load"]

#: Other processes' CPU above this many cores, with no core idle, makes a run contended.
CONTENDED_CORES = 0.1
#: Fewer idle cores than this over the window: the machine had none to spare.
_NO_SPARE_CORES = 0.5
_PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class CpuLoad:
    """One snapshot: the machine's busy and idle CPU seconds, this process's CPU seconds, the wall clock."""

    busy_s: float
    idle_s: float
    own_s: float
    wall_s: float


def read_cpu_load(stat_path: Path = _PROC_STAT, cpus: Iterable[int] | None = None) -> CpuLoad | None:
    """A snapshot of the CPUs this process may run on (``sched_getaffinity``), or None where unreadable.

    Only those CPUs count: under ``pytest -n`` each worker is pinned to its own cores, and another
    worker busy on *its* cores takes nothing from this one.
    """
    if cpus is None:
        cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    wanted = {f"cpu{c}" for c in cpus} if cpus is not None else {"cpu"}
    busy = idle = 0
    found = 0
    try:
        for line in stat_path.read_text().splitlines():
            fields = line.split()
            if not fields or fields[0] not in wanted:
                continue
            user, nice, system, idle_t, iowait, irq, softirq = (int(v) for v in fields[1:8])
            busy += user + nice + system + irq + softirq
            idle += idle_t + iowait
            found += 1
    except (OSError, ValueError):
        return None
    if found != len(wanted):
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return CpuLoad(busy_s=busy / hz, idle_s=idle / hz, own_s=time.process_time(), wall_s=time.perf_counter())


def contended_cores(before: CpuLoad | None, after: CpuLoad | None) -> float | None:
    """Cores' worth of CPU other processes used between two snapshots, counted only when no core was idle.

    0.0 when the machine had a core to spare (others then did not take ours); None when unknown.
    """
    if before is None or after is None:
        return None
    wall = after.wall_s - before.wall_s
    if wall <= 0:
        return None
    others = ((after.busy_s - before.busy_s) - (after.own_s - before.own_s)) / wall
    idle = (after.idle_s - before.idle_s) / wall
    if idle >= _NO_SPARE_CORES:
        return 0.0
    return round(max(others, 0.0), 3)
