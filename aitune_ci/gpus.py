"""One pytest-xdist worker per GPU: which GPU a worker gets, and when to refuse (pure + env).

Two workers timing on one GPU slow each other down, so their numbers would be wrong: with more
workers than GPUs the run is refused unless the user opts in. A worker is pinned by setting
``CUDA_VISIBLE_DEVICES`` before CUDA initialises, so inside it the GPU is always ``cuda:0``.

Workers also share the host's CPUs, which launch every kernel: a launch-bound model (BERT eager)
times about twice as slow on one GPU while another worker compiles (``reports/multigpu/README.md``).
So each worker also gets its own CPU cores (whole physical cores, hyper-thread siblings kept
together) through ``sched_setaffinity``, inherited by inductor's compile workers.
``AITUNE_CPU_PINNING=0`` turns that off.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Mapping, Sequence

__all__ = [
    "PinningError",
    "assign_gpu",
    "visible_gpus",
    "worker_index",
    "pin_worker",
    "physical_gpu",
    "partition_cpus",
    "pin_worker_cpus",
]


class PinningError(ValueError):
    """More measuring workers than GPUs, without ``--aitune-oversubscribe``."""


def worker_index(worker_id: str | None) -> int | None:
    """``gw3`` -> 3; the controller or a run without xdist -> None."""
    if not worker_id:
        return None
    m = re.fullmatch(r"gw(\d+)", worker_id)
    return int(m.group(1)) if m else None


def visible_gpus(environ: Mapping[str, str] | None = None, detected_count: int | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else ``0..count-1``."""
    env = os.environ if environ is None else environ
    value = env.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        return [v.strip() for v in value.split(",") if v.strip() and v.strip() != "-1"]
    count = detected_count if detected_count is not None else _nvml_count()
    return [str(i) for i in range(count)]


def physical_gpu(visible_index: int, environ: Mapping[str, str] | None = None) -> str:
    """The host's id for the GPU this process sees as ``cuda:visible_index``.

    A pinned worker records its GPU in ``AITUNE_PHYSICAL_GPU``; otherwise ``CUDA_VISIBLE_DEVICES``
    renumbers the GPUs a process sees, so ``cuda:0`` under ``CUDA_VISIBLE_DEVICES=1`` is GPU 1.
    """
    env = os.environ if environ is None else environ
    pinned = env.get("AITUNE_PHYSICAL_GPU")
    if pinned:
        return pinned
    listed = visible_gpus(env, detected_count=0) if env.get("CUDA_VISIBLE_DEVICES") is not None else []
    return listed[visible_index] if 0 <= visible_index < len(listed) else str(visible_index)


def _nvml_count() -> int:
    """GPU count without initialising CUDA (NVML), 0 when there is no driver."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        pass
    try:
        import torch

        return torch.cuda.device_count()  # uses NVML itself where it can, without creating a context
    except Exception:
        return 0


def assign_gpu(worker: int, workers: int, gpus: Sequence[str], oversubscribe: bool = False) -> str | None:
    """The GPU id worker ``worker`` of ``workers`` measures on (None when there are no GPUs).

    Raises:
        PinningError: ``workers > len(gpus)`` and not ``oversubscribe``.
    """
    if not gpus:
        return None
    if workers > len(gpus) and not oversubscribe:
        raise PinningError(
            f"{workers} pytest-xdist workers but {len(gpus)} GPU(s) ({','.join(gpus)}): two workers timing on one "
            f"GPU disturb each other's numbers. Use `-n {len(gpus)}`, or pass --aitune-oversubscribe to accept that."
        )
    return gpus[worker % len(gpus)]


def pin_worker(
    worker_id: str | None, workers: int, oversubscribe: bool = False, environ: dict[str, str] | None = None
) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` for this xdist worker; returns the physical GPU id it got."""
    env = os.environ if environ is None else environ
    index = worker_index(worker_id)
    if index is None:
        return None
    gpu = assign_gpu(index, workers, visible_gpus(env), oversubscribe)
    if gpu is not None:
        env["AITUNE_PHYSICAL_GPU"] = gpu
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return gpu


def partition_cpus(cpus: Sequence[int], siblings: Mapping[int, frozenset[int]], workers: int, index: int) -> list[int]:
    """The CPUs worker ``index`` of ``workers`` may run on: a contiguous share of whole physical cores.

    ``siblings`` maps a CPU to the hardware threads of its core (itself included); CPUs it does not
    name count as cores of their own. With fewer cores than workers, cores are shared round-robin.
    """
    allowed = set(cpus)
    cores: list[list[int]] = []
    seen: set[int] = set()
    for cpu in sorted(allowed):
        if cpu in seen:
            continue
        core = sorted(allowed & (siblings.get(cpu) or frozenset({cpu})) | {cpu})
        seen.update(core)
        cores.append(core)
    if not cores or workers < 1:
        return sorted(allowed)
    if len(cores) < workers:
        return cores[index % len(cores)]
    share, extra = divmod(len(cores), workers)
    start = index * share + min(index, extra)
    mine = cores[start : start + share + (1 if index < extra else 0)]
    return [cpu for core in mine for cpu in core]


def _parse_cpu_list(text: str) -> frozenset[int]:
    """``"0,16"`` or ``"0-1"`` (the kernel's cpu-list format)."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.update(range(int(lo), int(hi) + 1))
        elif part:
            cpus.add(int(part))
    return frozenset(cpus)


def _thread_siblings(cpus: Sequence[int]) -> dict[int, frozenset[int]]:
    siblings: dict[int, frozenset[int]] = {}
    for cpu in cpus:
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list") as f:
                siblings[cpu] = _parse_cpu_list(f.read())
        except (OSError, ValueError):
            pass
    return siblings


def pin_worker_cpus(worker_id: str | None, workers: int, environ: Mapping[str, str] | None = None) -> list[int] | None:
    """Restrict this xdist worker (and the processes it starts) to its share of the CPUs.

    Returns the CPUs it got, or None where nothing was pinned (no xdist, one worker, opted out, or a
    platform without ``sched_setaffinity``).
    """
    env = os.environ if environ is None else environ
    index = worker_index(worker_id)
    if (
        index is None
        or workers < 2
        or env.get("AITUNE_CPU_PINNING", "1") == "0"
        or not hasattr(os, "sched_setaffinity")
    ):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    # xdist numbers a worker that replaces a crashed one past workercount (gw2 of 2): wrap around
    mine = partition_cpus(allowed, _thread_siblings(allowed), workers, index % workers)
    if not mine:
        return None
    os.sched_setaffinity(0, mine)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > len(mine):
        torch.set_num_threads(len(mine))
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None and getattr(inductor_config, "compile_threads", 1) > len(mine):
        inductor_config.compile_threads = len(mine)  # read at import from the affinity; it may predate it
    return mine
