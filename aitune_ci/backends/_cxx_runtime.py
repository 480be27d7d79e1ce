"""Can this process load a library that inductor's C++ compiler builds? (how it links libstdc++)

AOTInductor compiles each package's ``wrapper.so`` with the C++ compiler torch picks (``$CXX``, else
``g++``) and ``dlopen``s it into the running process, which already has the shared libstdc++. A
library that carries its *own static copy* of libstdc++ brings a second set of locale and
``std::regex`` machinery, and crashes as soon as both meet.

A compiler does that when its ``libstdc++.so`` cannot be found (a relocated GCC whose link is
dangling, say): ``ld`` then falls back to ``libstdc++.a``, and every ``wrapper.so`` it builds has no
``NEEDED libstdc++.so.6`` and exports libstdc++'s own symbols. The system ``g++`` of the same GCC
usually links libstdc++ dynamically, and packages built with it load. (The case this guards
against, and the diagnosis: ``reports/h100/README.md``, ``bench/aoti_loader_diag.py``.)

So a compiler is checked by linking a tiny shared library with it, as inductor would, and reading
how libstdc++ came in; a compiler that builds for a newer libstdc++ than the process runs is
refused too. The verdicts on bytes and versions (:func:`classify_link`, :func:`newest_glibcxx`,
:func:`compatible`) are pure; running compilers and reading files is not.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Literal

__all__ = [
    "CompilerRuntime",
    "classify_link",
    "newest_glibcxx",
    "compatible",
    "runtime_libstdcxx",
    "inspect_compiler",
    "pick_compiler",
]

LinkMode = Literal["shared", "static", "unknown"]

_GLIBCXX = re.compile(rb"GLIBCXX_3\.4(?:\.(\d+))?(?![\d.])")
#: Compilers tried, in order, when torch's own choice would build libraries this process cannot load.
FALLBACKS = ("g++", "/usr/bin/g++", "c++", "/usr/bin/c++")
#: Uses out-of-line libstdc++ code (streams, locales), so the link must bring libstdc++ in somehow.
_PROBE_SOURCE = (
    "#include <sstream>\nstd::string aitune_probe(int x) { std::ostringstream s; s << x; return s.str(); }\n"
)


def classify_link(library: bytes) -> LinkMode:
    """How a shared library got libstdc++: ``shared`` (it needs libstdc++.so), ``static`` (it carries
    libstdc++'s locale code itself), or ``unknown``."""
    if b"libstdc++.so" in library:
        return "shared"
    if b"_ZNSt7codecvt" in library:
        return "static"
    return "unknown"


def newest_glibcxx(data: bytes) -> int | None:
    """The highest N of the ``GLIBCXX_3.4.N`` versions named in a libstdc++ image (``3.4`` is 0)."""
    found = [int(m.group(1) or 0) for m in _GLIBCXX.finditer(data)]
    return max(found) if found else None


def compatible(compiler_version: int | None, runtime_version: int | None) -> bool:
    """Code built against ``compiler_version`` runs on ``runtime_version``: same or older, or unknown."""
    return compiler_version is None or runtime_version is None or compiler_version <= runtime_version


@dataclass(frozen=True)
class CompilerRuntime:
    """A compiler, how it links libstdc++ into a shared library, and the libstdc++ this process runs."""

    compiler: str
    links_libstdcxx: LinkMode
    compiler_libstdcxx: str | None
    compiler_glibcxx: int | None
    runtime_libstdcxx: str | None
    runtime_glibcxx: int | None

    @property
    def ok(self) -> bool:
        static_into_shared = self.links_libstdcxx == "static" and self.runtime_libstdcxx is not None
        return not static_into_shared and compatible(self.compiler_glibcxx, self.runtime_glibcxx)

    def describe(self) -> str:
        if self.links_libstdcxx == "static" and self.runtime_libstdcxx is not None:
            return (
                f"{self.compiler} links a static copy of libstdc++ into the shared libraries it builds (its "
                f"libstdc++.so cannot be found), while this process already runs {self.runtime_libstdcxx}"
            )
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
        fields = line.split()
        if fields and "/libstdc++.so" in fields[-1]:
            return os.path.realpath(fields[-1])
    return None


def _link_mode(exe: str) -> LinkMode:
    """Link a tiny shared library with ``exe`` (as inductor does, ``-shared -fPIC``) and look inside."""
    with tempfile.TemporaryDirectory(prefix="aitune-cxx-") as tmp:
        source, library = Path(tmp) / "probe.cpp", Path(tmp) / "probe.so"
        source.write_text(_PROBE_SOURCE)
        try:
            proc = subprocess.run(
                [exe, "-shared", "-fPIC", "-o", str(library), str(source)], capture_output=True, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        if proc.returncode != 0 or not library.exists():
            return "unknown"
        return classify_link(library.read_bytes())


@lru_cache(maxsize=16)
def inspect_compiler(compiler: str) -> CompilerRuntime | None:
    """How ``compiler`` links libstdc++, next to this process's libstdc++; None if it cannot be run."""
    exe = shutil.which(compiler)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-print-file-name=libstdc++.so.6"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    printed = out.stdout.strip()
    lib = (
        os.path.realpath(printed)
        if out.returncode == 0 and os.path.isabs(printed) and os.path.exists(printed)
        else None
    )
    runtime = runtime_libstdcxx()
    return CompilerRuntime(
        compiler=compiler,
        links_libstdcxx=_link_mode(exe),
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
        if other is not None and other.ok and other.links_libstdcxx == "shared":
            return checked, other
    return checked, None
