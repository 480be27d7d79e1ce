"""AOTInductor packages are built with a compiler whose libraries this process can load.

The H100 image's compiler (a relocated GCC whose dangling ``libstdc++.so`` link makes it put a
static libstdc++ into every shared library) is reproduced faithfully by a script that runs this
machine's g++ with ``-static-libstdc++``; a compiler built for a newer libstdc++ than any real one
is a script that only answers ``--version`` and ``-print-file-name``. The replacement compiler is
this machine's g++.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from aitune_ci.backends import _cxx_runtime as cxx_runtime
from aitune_ci.backends._cxx_runtime import (
    classify_link,
    compatible,
    inspect_compiler,
    newest_glibcxx,
    pick_compiler,
    runtime_libstdcxx,
)
from aitune_ci.errors import BackendError

needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++ (inductor's CPU compiler)")


def test_newest_glibcxx_is_the_highest_symbol_version_named():
    image = b"\x00GLIBCXX_3.4\x00GLIBCXX_3.4.29\x00GLIBCXX_3.4.33\x00GLIBCXX_DEBUG_MESSAGE_LENGTH\x00GLIBCXX_3.4.3\x00"
    assert newest_glibcxx(image) == 33
    assert newest_glibcxx(b"GLIBCXX_3.4\x00") == 0
    assert newest_glibcxx(b"no versions at all") is None


def test_how_a_library_got_libstdcxx_is_read_from_its_bytes():
    assert classify_link(b"\x00libstdc++.so.6\x00libc.so.6\x00") == "shared"
    assert classify_link(b"\x00libc.so.6\x00_ZNSt7codecvtIDsc11__mbstate_tE2idE\x00") == "static"
    assert classify_link(b"\x00libc.so.6\x00") == "unknown"


def test_code_built_for_an_older_or_equal_runtime_is_compatible():
    assert compatible(30, 33) and compatible(33, 33)
    assert not compatible(34, 33)
    assert compatible(None, 33) and compatible(34, None)  # unknown: do not second-guess torch


def test_the_runtime_libstdcxx_is_read_from_the_process_maps():
    maps = (
        "7f00-7f01 r-xp 00000000 08:01 42 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
        "7f02-7f03 r-xp 00000000 08:01 43 /usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33\n"
    )
    assert runtime_libstdcxx(maps) == os.path.realpath("/usr/lib/x86_64-linux-gnu/libstdc++.so.6.0.33")
    assert runtime_libstdcxx("7f00-7f01 r-xp 00000000 08:01 42 /lib/libc.so.6\n") is None
    mine = runtime_libstdcxx()  # torch is imported, so this process has one
    assert mine is not None and os.path.exists(mine) and newest_glibcxx(open(mine, "rb").read()) is not None


@pytest.fixture
def newer_compiler(tmp_path):
    """A compiler whose libstdc++ is newer than any real one; it cannot compile anything."""
    lib = tmp_path / "lib" / "libstdc++.so.6"
    lib.parent.mkdir()
    lib.write_bytes(b"\x00GLIBCXX_3.4\x00GLIBCXX_3.4.99\x00")
    used = tmp_path / "compiled-with-me.log"
    script = tmp_path / "newer-g++"
    script.write_text(
        "#!/bin/sh\n"
        'case "$1" in\n'
        "  --version) echo 'g++ (future) 99.0'; exit 0;;\n"
        f"  -print-file-name=libstdc++.so.6) echo {lib}; exit 0;;\n"
        "esac\n"
        f'echo "$@" >> {used}\n'
        "exit 1\n"
    )
    script.chmod(0o755)
    inspect_compiler.cache_clear()
    yield str(script), used
    inspect_compiler.cache_clear()


@pytest.fixture
def static_compiler(tmp_path):
    """This machine's g++, linking libstdc++ statically into shared libraries as the H100's CXX did."""
    used = tmp_path / "static-g++.log"
    script = tmp_path / "static-g++"
    script.write_text(f'#!/bin/sh\necho "$@" >> {used}\nexec {shutil.which("g++")} -static-libstdc++ "$@"\n')
    script.chmod(0o755)
    inspect_compiler.cache_clear()
    yield str(script), used
    inspect_compiler.cache_clear()


@needs_gxx
def test_a_compiler_that_links_libstdcxx_statically_is_flagged(static_compiler):
    compiler, _ = static_compiler
    checked = inspect_compiler(compiler)
    assert checked is not None and checked.links_libstdcxx == "static" and not checked.ok
    assert "static copy of libstdc++" in checked.describe() and str(checked.runtime_libstdcxx) in checked.describe()
    real = inspect_compiler("g++")
    assert real is not None and real.links_libstdcxx == "shared" and real.ok


def test_a_compiler_newer_than_the_runtime_is_flagged_with_both_libraries(newer_compiler):
    compiler, _ = newer_compiler
    checked = inspect_compiler(compiler)
    assert checked is not None and not checked.ok
    assert checked.compiler_glibcxx == 99 and checked.runtime_glibcxx is not None
    assert "GLIBCXX_3.4.99" in checked.describe() and str(checked.runtime_libstdcxx) in checked.describe()


@needs_gxx
def test_the_system_compiler_replaces_a_newer_one(newer_compiler):
    compiler, _ = newer_compiler
    checked, replacement = pick_compiler(compiler, fallbacks=("no-such-compiler-xyz", "g++"))
    assert not checked.ok
    assert replacement is not None and replacement.compiler == "g++" and replacement.ok


@needs_gxx
def test_a_compatible_compiler_is_kept():
    checked, replacement = pick_compiler("g++")
    assert checked is not None and checked.ok and replacement is None


def test_with_no_compatible_compiler_the_build_fails_with_what_to_do(newer_compiler, monkeypatch):
    from torch._inductor import config as inductor_config

    from aitune_ci.backends.aoti import package_compiler

    compiler, _ = newer_compiler
    monkeypatch.setattr(cxx_runtime, "FALLBACKS", ())
    monkeypatch.delenv("AITUNE_AOTI_CXX", raising=False)
    with inductor_config.patch({"cpp.cxx": (None, compiler)}):
        with pytest.raises(
            BackendError,
            match=r"would crash this process when loaded: .*newer-g\+\+.*GLIBCXX_3\.4\.99.*AITUNE_AOTI_CXX",
        ):
            package_compiler()


def test_an_explicit_compiler_is_used_as_given(newer_compiler, monkeypatch):
    from aitune_ci.backends.aoti import AOTIBackend, package_compiler

    compiler, _ = newer_compiler
    assert package_compiler("clang++") == "clang++"
    monkeypatch.setenv("AITUNE_AOTI_CXX", compiler)
    assert package_compiler() == compiler
    with pytest.raises(BackendError, match="cxx must name a C\\+\\+ compiler"):
        AOTIBackend(cxx="")


@pytest.mark.slow
@needs_gxx
def test_a_package_is_built_with_the_replacement_and_loads(
    static_compiler, tiny_mlp, tiny_input, tmp_path, monkeypatch, caplog
):
    """torch's choice is the static-libstdc++ compiler: the package must be built with g++, and say so."""
    from torch._inductor import config as inductor_config

    from aitune_ci.backends.aoti import AOTIBackend
    from aitune_ci.backends.base import BuildContext

    compiler, used = static_compiler
    monkeypatch.delenv("AITUNE_AOTI_CXX", raising=False)
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path / "aoti")
    with inductor_config.patch({"cpp.cxx": (None, compiler)}), caplog.at_level("INFO", logger="aitune_ci"):
        built = AOTIBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)
    calls = used.read_text().splitlines()
    assert calls, "the check never ran the compiler"
    builds = [c for c in calls if "aitune-cxx-" not in c and "-print-file-name" not in c and c != "--version"]
    assert not builds, f"the static-libstdc++ compiler built package code: {builds[:2]}"
    said = [r.getMessage() for r in caplog.records if r.name == "aitune_ci.backends.aoti"]
    assert any("building AOTInductor packages with g++, not" in m and "static copy of libstdc++" in m for m in said)
    with torch.no_grad():
        torch.testing.assert_close(built(tiny_input), tiny_mlp(tiny_input), atol=1e-5, rtol=1e-5)
    import zipfile

    with zipfile.ZipFile(built.package_path) as archive:
        libraries = [archive.read(n) for n in archive.namelist() if n.endswith(".so")]
    assert libraries and all(classify_link(lib) == "shared" for lib in libraries)


def _zip_with_library(tmp_path, name, extra_flags):
    import subprocess
    import zipfile

    source = tmp_path / f"{name}.cpp"
    source.write_text("#include <sstream>\nstd::string f(int x){std::ostringstream s; s << x; return s.str();}\n")
    library = tmp_path / f"{name}.so"
    subprocess.run(["g++", "-shared", "-fPIC", *extra_flags, "-o", str(library), str(source)], check=True)
    package = tmp_path / f"{name}.pt2"
    with zipfile.ZipFile(package, "w") as archive:
        archive.write(library, f"model/data/aotinductor/model/{name}.wrapper.so")
    return package


@needs_gxx
def test_a_package_carrying_a_static_libstdcxx_is_refused_before_any_load(tmp_path, monkeypatch):
    """A committed artifact built elsewhere by such a compiler must not reach the loader (or a probe)."""
    import aitune_ci.backends.aoti as aoti

    static = _zip_with_library(tmp_path, "static", ["-static-libstdc++"])
    shared = _zip_with_library(tmp_path, "shared", [])
    aoti.check_package_libraries(shared)  # fine
    probes = []
    monkeypatch.setattr(aoti, "probe_load", lambda *a, **k: probes.append(a))
    with pytest.raises(
        BackendError, match=r"static\.wrapper\.so, which carries its own static copy of libstdc\+\+.*Rebuild"
    ):
        aoti.AOTIBackend()._load_package(static, torch.device("cpu"))
    assert probes == []
