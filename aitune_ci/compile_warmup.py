"""The process's one-time compile setup, paid once before any build is timed.

The first ``torch.compile`` in a process imports inductor and triton, starts the compile worker
pool and sets up the device's compiler; every later compile finds all of that done. Left inside
the first build, it lands on whichever backend happens to build first: in a relative PR check
that is always the head, so on the H200 the head's resnet50 inductor build read 9.3 s against the
base's 2.8 s for the same cache-hit build, and failed on build time (reports/h200/pr_check/,
2026-12-03 evening). A tiny compile on the build's device, untimed, takes that setup out of every
build, whatever the order of fixtures, backends or sides.
"""

from __future__ import annotations

import time

import torch

__all__ = ["warm_compiler"]

_warmed: set[str] = set()


def _tiny(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) * 2.0 + 1.0


def warm_compiler(device: torch.device) -> float | None:
    """Compile and run a two-op function on ``device`` once per process and device type.

    Returns the seconds it took the first time, None afterwards or when it could not run (the
    first build then pays the setup, as it did before; the build itself reports any real error).
    """
    if device.type in _warmed:
        return None
    _warmed.add(device.type)
    t0 = time.perf_counter()
    try:
        compiled = torch.compile(_tiny, backend="inductor", dynamic=False)
        with torch.inference_mode():
            compiled(torch.ones(8, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception:  # never fail a tune over its warm-up
        return None
    return time.perf_counter() - t0
