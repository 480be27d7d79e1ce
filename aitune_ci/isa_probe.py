"""Inductor's CPU vector-ISA probe, answered once per machine instead of once per process.

Before its first C++ compile in a process (AOTInductor's wrapper on any device; every inductor
build on the CPU) inductor finds out which x86 vector ISAs work: for each one the CPU reports, it
compiles a test library and loads it in a fresh Python. Before torch 2.13 that Python imports
torch, and on the lent H200's host ten such loads took 47.7 s of a 75 s ResNet-50 AOTI build, in
every process that builds one (reports/h200/first_build_probe_aoti.md): every PR check that
rebuilds a model paid it again.

One answer depends on the test code, the compile flags, the compiler, the torch build, the Python
and the CPU. Keyed on all of them, "it works" found once stays true, so it is kept in inductor's
own cache folder (the runner's compile cache, next to the test libraries inductor keeps there) and
later processes skip the probe. "It does not work" is never kept: it is probed again next time, in
case the failure was a passing one. The answers inductor then holds are the ones its own probe
would have given: the same functions run, only ``check_build``'s successes come from the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aitune_ci.atomic import atomic_write_text, locked

__all__ = ["CACHE_FILE", "IsaProbe", "answer_isa_probe"]

CACHE_FILE = "aitune-isa-probe.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class IsaProbe:
    """What preparing inductor's ISA answers cost and how they were found.

    Attributes:
        seconds: wall time, probes included.
        answered: checks answered from the cache file.
        probed: checks that ran torch's own probe (a build and a load in a fresh Python).
        picked: the vector ISA inductor picked (``avx512``, ``avx2``, ... or ``INVALID_VEC_ISA``).
    """

    seconds: float
    answered: int
    probed: int
    picked: str

    def describe(self) -> str:
        if not self.probed:
            return f"C++ vector ISA {self.picked}: {self.answered} checks answered from the cache"
        return f"C++ vector ISA {self.picked}: {self.probed} checks probed, {self.answered} answered from the cache"


_done = False


def answer_isa_probe(folder: Path | None = None, compiler: str | None = None) -> IsaProbe | None:
    """Have inductor pick its CPU vector ISA now, its known successes answered from ``folder``.

    Once per process, and before anything else compiles C++ (inductor keeps the first answer for
    the process's life). ``folder`` defaults to inductor's cache folder; ``compiler`` is the C++
    compiler the build will use (the probe then checks with it, as it would inside that build),
    None for torch's own. Returns None afterwards, or when this torch's probe is not the one this
    module knows (inductor then probes as it always did).
    """
    global _done
    if _done:
        return None
    _done = True
    try:
        from torch._inductor import cpu_vec_isa

        fingerprint = cpu_vec_isa._get_isa_dry_compile_fingerprint
        original = cpu_vec_isa.VecISA.check_build
        path = (folder or Path(_inductor_cache_dir())) / CACHE_FILE
    except Exception:  # another torch: leave its probe alone
        return None
    machine = _machine()
    known = _read(path)
    found: dict[str, bool] = {}
    counts = {"answered": 0, "probed": 0}

    def check_build(isa: Any, code: str) -> bool:
        key = _key(machine, str(isa), fingerprint(isa.build_arch_flags()), code)
        if known.get(key) is True:
            counts["answered"] += 1
            return True
        counts["probed"] += 1
        works = bool(original(isa, code))
        if works:
            found[key] = True
        return works

    from torch._inductor import config as inductor_config

    t0 = time.perf_counter()
    cpu_vec_isa.VecISA.check_build = check_build  # type: ignore[method-assign]
    try:
        with inductor_config.patch({"cpp.cxx": (compiler,)} if compiler else {}):
            picked = str(cpu_vec_isa.pick_vec_isa())
    except Exception:  # the first build then probes again, or fails with torch's own message
        _undo_flag_changes(cpu_vec_isa)
        return None
    finally:
        cpu_vec_isa.VecISA.check_build = original  # type: ignore[method-assign]
    if found:
        _remember(path, found)
    return IsaProbe(time.perf_counter() - t0, counts["answered"], counts["probed"], picked or "INVALID_VEC_ISA")


def _undo_flag_changes(cpu_vec_isa: Any) -> None:
    """torch widens an ISA's ``_arch_flags`` around its bf16 / fp16 checks and narrows them after;
    a check that raised left them wide. Back to the class's own, as before any probe."""
    for isa in getattr(cpu_vec_isa, "supported_vec_isa_list", ()):
        vars(isa).pop("_arch_flags", None)


def _inductor_cache_dir() -> str:
    try:
        from torch._inductor.runtime.cache_dir_utils import cache_dir
    except ImportError:  # torch < 2.5
        from torch._inductor.runtime.runtime_utils import cache_dir  # type: ignore[no-redef,attr-defined]
    return cache_dir()


def _machine() -> list[str]:
    """What a probe's answer depends on besides its code and flags (the fingerprint has the compiler)."""
    cpu = ""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        cpu = "\n".join(
            next((line for line in lines if line.startswith(field)), "")
            for field in ("model name", "flags", "Features")
        )
    return [
        torch.__version__,
        str(torch.version.git_version),
        sys.version,
        platform.machine(),
        platform.processor(),
        cpu,
    ]


def _key(machine: list[str], isa: str, fingerprint: str, code: str) -> str:
    return hashlib.sha256(json.dumps([*machine, isa, fingerprint, code]).encode()).hexdigest()


def _read(path: Path) -> dict[str, bool]:
    """The kept answers; an unreadable or foreign file counts as none (it is rewritten by the next success)."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(payload, dict) or payload.get("schema_version") != SCHEMA_VERSION:
        return {}
    answers = payload.get("works")
    return {k: True for k, v in answers.items() if v is True} if isinstance(answers, dict) else {}


def _remember(path: Path, found: dict[str, bool]) -> None:
    """Add ``found`` to the file (under a lock: pytest-xdist workers probe at the same time)."""
    with contextlib.suppress(Exception):  # a cache that cannot be written only costs the next process a probe
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            works = {**_read(path), **found}
            atomic_write_text(path, json.dumps({"schema_version": SCHEMA_VERSION, "works": works}, indent=1))
