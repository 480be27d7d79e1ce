"""The process's one-time compile setup, paid once before any build is timed.

The first ``torch.compile`` in a process imports inductor and triton, starts the compile worker
pool and sets up the device's compiler; every later compile finds all of that done. Left inside
the first build, it lands on whichever backend happens to build first: in a relative PR check
that is always the head, so on the H200 the head's resnet50 inductor build read 9.3 s against the
base's 2.8 s for the same cache-hit build, and failed on build time (reports/h200/pr_check/,
2026-12-03 evening). A tiny compile on the build's device, untimed, takes that setup out of every
build, whatever the order of fixtures, backends or sides.

A build that compiles C++ (inductor on the CPU, AOTInductor's wrapper on any device) also makes
inductor probe the CPU's vector ISAs first: 47.7 s of the H200's first ResNet-50 AOTI build. That
probe runs here too, its known answers taken from the runner's compile cache (``isa_probe``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from aitune_ci.isa_probe import IsaProbe, answer_isa_probe

__all__ = ["CompilerSetup", "warm_compiler"]

_warmed: set[str] = set()


def _tiny(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) * 2.0 + 1.0


@dataclass(frozen=True)
class CompilerSetup:
    """What the one-time setup did: its seconds and, if it ran, the ISA probe's account."""

    seconds: float
    isa: IsaProbe | None = None

    def describe(self) -> str:
        done = "imports, workers" + (f", {self.isa.describe()}" if self.isa else "")
        return f"compiler set up in {self.seconds:.1f} s ({done}; once per process, in no build's time)"


def warm_compiler(device: torch.device, cxx: bool = False, compiler: str | None = None) -> CompilerSetup | None:
    """Compile and run a two-op function on ``device`` once per process and device type; with
    ``cxx`` (the build compiles C++, with ``compiler`` or torch's own), have inductor's CPU ISA
    probe answered first, once per process: the tiny compile on the CPU would run it otherwise.

    Returns what it did, None when nothing was left to do or the compile could not run (the first
    build then pays the setup, as it did before; the build itself reports any real error).
    """
    t0 = time.perf_counter()
    isa = answer_isa_probe(compiler=compiler) if cxx else None
    compiled = device.type not in _warmed and _compile_tiny(device)
    if not compiled and isa is None:
        return None
    return CompilerSetup(time.perf_counter() - t0, isa)


def _compile_tiny(device: torch.device) -> bool:
    _warmed.add(device.type)
    try:
        compiled = torch.compile(_tiny, backend="inductor", dynamic=False)
        with torch.inference_mode():
            compiled(torch.ones(8, device=device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception:  # never fail a tune over its warm-up
        return False
    return True
