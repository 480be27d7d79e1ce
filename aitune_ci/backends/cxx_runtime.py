"""Can this process load a library that inductor's C++ compiler builds? (libstdc++ versions)

AOTInductor compiles each package's ``wrapper.so`` with the C++ compiler torch picks (``$CXX``, else
``g++``) and ``dlopen``s it into the running process, whose libstdc++ was already chosen when
Python started. A compiler that ships a *newer* libstdc++ than the one loaded generates inline
library code (``std::regex``, locales) for a runtime the process does not have. Seen on the lent
H100 image: ``CXX=/opt/gcc/bin/g++`` and the system libstdc++ in the process; every package
segfaulted on load inside ``wrapper.so``'s ``std::regex`` code, while the same packages built with
the system ``g++`` loaded (``bench/aoti_loader_diag.py``, ``reports/h100/README.md``).

The comparison is by the newest ``GLIBCXX_3.4.N`` symbol version each libstdc++ defines; the pure
part (:func:`newest_glibcxx`, :func:`compatible`) is separate from reading files and running
compilers.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

__all__ = ["CompilerRuntime", "newest_glibcxx", "compatible", "runtime_libstdcxx", "inspect_compiler", "pick_compiler"]

_GLIBCXX = re.compile(rb"GLIBCXX_3\.4(?:\.(\d+))?(?![\d.])")
#: Compilers tried, in order, when torch's own choice builds for a newer libstdc++ than the process has.
FALLBACKS = ("g++", "/usr/bin/g++", "c++", "/usr/bin/c++")


def newest_glibcxx(data: bytes) -> int | None:
    """The highest N of the ``GLIBCXX_3.4.N`` versions named in a libstdc++ image (``3.4`` is 0)."""
    found = [int(m.group(1) or 0) for m in _GLIBCXX.finditer(data)]
    return max(found) if found else None


def compatible(compiler_version: int | None, runtime_version: int | None) -> bool:
    """Code built against ``compiler_version`` runs on ``runtime_version``: same or older, or unknown."""
    return compiler_version is None or runtime_version is None or compiler_version <= runtime_version


@dataclass(frozen=True)
class CompilerRuntime:
    """A compiler, the libstdc++ it links against, and the one this process runs."""

    compiler: str
    compiler_libstdcxx: str | None
    compiler_glibcxx: int | None
    runtime_libstdcxx: str | None
    runtime_glibcxx: int | None

    @property
    def ok(self) -> bool:
        return compatible(self.compiler_glibcxx, self.runtime_glibcxx)

    def describe(self) -> str:
        return (
            f"{self.compiler} builds against {self.compiler_libstdcxx} (GLIBCXX_3.4.{self.compiler_glibcxx}) "
            f"but this process runs {self.runtime_libstdcxx} (GLIBCXX_3.4.{self.runtime_glibcxx})"
        )


@lru_cache(maxsize=8)
def _glibcxx_of(path: str) -> int | None:
    try:
        return newest_glibcxx(Path(path).read_bytes())
    except OSError:
        return None


def runtime_libstdcxx(maps: str | None = None) -> str | None:
    """The libstdc++ mapped into this process (Linux ``/proc/self/maps``); None elsewhere."""
    if maps is None:
        try:
            maps = Path("/proc/self/maps").read_text()
        except OSError:
            return None
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if "/libstdc++.so" in path:
            return os.path.realpath(path)
    return None


@lru_cache(maxsize=16)
def inspect_compiler(compiler: str) -> CompilerRuntime | None:
    """What ``compiler`` links against, next to this process's libstdc++; None if it cannot be run."""
    exe = shutil.which(compiler)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    printed = out.stdout.strip()
    lib = os.path.realpath(printed) if out.returncode == 0 and os.path.isabs(printed) and os.path.exists(printed) else None
    runtime = runtime_libstdcxx()
    return CompilerRuntime(
        compiler=compiler,
        compiler_libstdcxx=lib,
        compiler_glibcxx=_glibcxx_of(lib) if lib else None,
        runtime_libstdcxx=runtime,
        runtime_glibcxx=_glibcxx_of(runtime) if runtime else None,
    )


def pick_compiler(
    current: str, fallbacks: Iterable[str] | None = None
) -> tuple[CompilerRuntime | None, CompilerRuntime | None]:
    """``(current's check, replacement)``: the replacement is None when ``current`` is fine or none fits."""
    fallbacks = FALLBACKS if fallbacks is None else fallbacks
    checked = inspect_compiler(current)
    if checked is None or checked.ok:
        return checked, None
    same = os.path.realpath(shutil.which(current) or current)
    for candidate in fallbacks:
        exe = shutil.which(candidate)
        if exe is None or os.path.realpath(exe) == same:
            continue
        other = inspect_compiler(candidate)
        if other is not None and other.ok and other.compiler_glibcxx is not None:
            return checked, other
    return checked, None
