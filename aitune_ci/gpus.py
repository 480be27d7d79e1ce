"""One pytest-xdist worker per GPU: which GPU a worker gets, and when to refuse (pure + env).

Two workers timing on one GPU slow each other down, so their numbers would be wrong: with more
workers than GPUs the run is refused unless the user opts in. A worker is pinned by setting
``CUDA_VISIBLE_DEVICES`` before CUDA initialises, so inside it the GPU is always ``cuda:0``.
"""

from __future__ import annotations

import os
import re
from typing import Mapping, Sequence

__all__ = ["PinningError", "assign_gpu", "visible_gpus", "worker_index", "pin_worker", "physical_gpu"]


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


def pin_worker(worker_id: str | None, workers: int, oversubscribe: bool = False, environ: dict[str, str] | None = None) -> str | None:
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
