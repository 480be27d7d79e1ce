"""Why does ``aoti_load_package`` crash on this machine, and does another loader path work?

Seen on the lent H100 image (torch 2.11.0+cu130): every AOTInductor package segfaults in
``torch._inductor.aoti_load_package``, CPU or CUDA. This program compiles one ``nn.Linear`` package
per device, then tries each loader path in its own child process (a crash ends only that child):

  package      ``torch._inductor.aoti_load_package`` (what the aoti backend uses)
  loader       ``torch._C._aoti.AOTIModelPackageLoader`` directly, single-threaded
  runner       the package's extracted ``.so`` through ``AOTIModelContainerRunner{Cpu,Cuda}``
               (the loader ``torch._export.aot_load`` uses; no package machinery)

A crashing child runs with a small ``LD_PRELOAD`` signal handler that prints the native backtrace
(``backtrace_symbols_fd``), so the report names the faulting library and symbol. It also records the
C++ compiler, glibc and the ``.so``'s dynamic dependencies.

First finding (H100, torch 2.11.0+cu130): the crash is inside the package's own ``wrapper.so``, in
``std::regex`` code (AOTI's runtime parses the device string with a regex), and that ``.so`` exports
libstdc++'s own symbols (``std::codecvt<char16_t,...>::do_unshift``): libstdc++ linked statically
into a library loaded by a process that already has the shared libstdc++, i.e. two copies of the
locale machinery. So each package is also built by a compiler wrapper that logs every command, and
once more with ``-static-libstdc++``/``-static-libgcc`` removed from the link, and loaded again.

Third run: a CUDA package is also built with torch's ISA probe left on (``isa-probe``), to tell
whether skipping the probe is what made the CPU package load.

Run: ``python3 bench/aoti_loader_diag.py --out DIR`` (a few minutes). Writes ``DIR/aoti_loader.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

_HANDLER_C = r"""
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>
static void on_fault(int sig) {
    void *frames[64];
    int n = backtrace(frames, 64);
    const char msg[] = "\n[aoti-diag] native backtrace:\n";
    write(2, msg, sizeof(msg) - 1);
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}
__attribute__((constructor)) static void install(void) {
    signal(SIGSEGV, on_fault);
    signal(SIGBUS, on_fault);
    signal(SIGABRT, on_fault);
}
"""

_CHILD = r"""
import sys, json, zipfile, tempfile, os, glob, torch
mode, path, device = sys.argv[1], sys.argv[2], sys.argv[3]
x = torch.randn(4, 16, device=device)
if mode == "package":
    m = torch._inductor.aoti_load_package(path)
    out = m(x)
elif mode == "loader":
    loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, -1)
    out = loader.run([x])
elif mode == "runner":
    d = tempfile.mkdtemp()
    zipfile.ZipFile(path).extractall(d)
    sos = [p for p in glob.glob(d + "/**/*.so", recursive=True)]
    so = sos[0]
    if device == "cpu":
        r = torch._C._aoti.AOTIModelContainerRunnerCpu(so, 1)
    else:
        r = torch._C._aoti.AOTIModelContainerRunnerCuda(so, 1, device, os.path.dirname(so))
    out = r.run([x])
else:
    raise SystemExit("unknown mode " + mode)
out = out[0] if isinstance(out, (list, tuple)) else out
print(json.dumps({"ok": True, "shape": list(out.shape), "sum_finite": bool(torch.isfinite(out).all())}))
"""


def _sh(cmd: list[str], timeout: float = 60) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        return (proc.stdout + proc.stderr).strip()
    except Exception as exc:  # the tool may not exist here
        return f"({type(exc).__name__}: {exc})"


_BUILD = r"""
import sys, torch
path, device = sys.argv[1], sys.argv[2]
model = torch.nn.Linear(16, 8).to(device).eval()
x = torch.randn(4, 16, device=device)
with torch.no_grad():
    ep = torch.export.export(model, (x,))
    torch._inductor.aoti_compile_and_package(ep, package_path=path)
"""

#: A compiler wrapper: log the command line, optionally drop static-runtime flags, run the compiler.
_WRAPPER = """#!/bin/sh
echo "$@" >> {log}
{strip}
exec {cxx} "$@"
"""
_STRIP = """
for a in "$@"; do shift; case "$a" in -static-libstdc++|-static-libgcc) ;; *) set -- "$@" "$a";; esac; done
"""


def _build_package(device: str, work: Path, variant: str) -> dict[str, Any]:
    """Build in a child with its own inductor cache (a cached .so would hide the variant)."""
    # env-cxx: the compiler torch itself would use ($CXX); on the lent H100 that is /opt/gcc/bin/g++,
    # which links a static libstdc++ into shared libraries (the loader crash); the others use g++.
    cxx = os.environ.get("CXX") if variant == "env-cxx" and os.environ.get("CXX") else (shutil.which("g++") or "g++")
    log = work / f"cxx-{device}-{variant}.log"
    wrapper = work / f"cxx-{device}-{variant}.sh"
    wrapper.write_text(_WRAPPER.format(log=log, cxx=cxx, strip=_STRIP if variant == "dynamic-runtime" else ""))
    wrapper.chmod(0o755)
    path = work / f"linear-{device}-{variant}.pt2"
    # VEC_ISA_OK skips torch's CPU ISA probe (seen taking 54 s per fresh cache folder on the H100
    # machine); the loader, not the probe, is what this program looks at.
    env = dict(os.environ, CXX=str(wrapper), TORCHINDUCTOR_CACHE_DIR=str(work / f"cache-{device}-{variant}"),
               TORCHINDUCTOR_VEC_ISA_OK="1")
    if variant == "isa-probe":  # as torch builds by default (and the aoti backend does): the probe runs
        env.pop("TORCHINDUCTOR_VEC_ISA_OK")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(path), device], capture_output=True, text=True, env=env,
                          timeout=400)
    info: dict[str, Any] = {"variant": variant, "package": str(path), "returncode": proc.returncode,
                            "build_s": round(time.perf_counter() - t0, 1)}
    commands = log.read_text().splitlines() if log.exists() else []
    info["compiler_commands"] = [("…" + c[-900:]) if len(c) > 900 else c for c in commands[-2:]]
    info["links_libstdcxx_statically"] = any("-static-libstdc++" in c.split() for c in commands)
    if proc.returncode != 0:
        info["error"] = proc.stderr.strip()[-2000:]
        return info
    with zipfile.ZipFile(path) as zf:
        info["members"] = zf.namelist()
        zf.extractall(work / f"x-{device}-{variant}")
    sos = sorted((work / f"x-{device}-{variant}").rglob("*.so"))
    if sos:
        info["needed"] = [line.split("[")[-1].rstrip("]") for line in _sh(["readelf", "-d", str(sos[0])]).splitlines()
                          if "NEEDED" in line]
        exported = _sh(["nm", "-D", "--defined-only", str(sos[0])])
        info["exports_libstdcxx_internals"] = sum(
            1 for line in exported.splitlines() if "St7codecvt" in line
        )
    return info


def _try(mode: str, package: Path, device: str, handler: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    if handler is not None:
        env["LD_PRELOAD"] = str(handler)
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", _CHILD, mode, str(package), device],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    row: dict[str, Any] = {"mode": mode, "device": device, "returncode": proc.returncode}
    if proc.returncode == 0:
        row["result"] = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        row["stderr_tail"] = "\n".join(proc.stderr.strip().splitlines()[-60:])
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports"), help="Default: reports")
    parser.add_argument("--devices", default="cpu,cuda", help="Default: cpu,cuda")
    parser.add_argument("--variants", default="as-is,env-cxx,isa-probe,dynamic-runtime",
                        help="builds: as-is (g++ from PATH, ISA probe skipped), env-cxx (the $CXX torch uses), "
                             "isa-probe (torch's default probe on), dynamic-runtime (static libstdc++ flags "
                             "dropped). Default: all four")
    parser.add_argument("--modes", default="package,runner", help="loader paths to try. Default: package,runner")
    args = parser.parse_args()

    import torch

    work = Path(tempfile.mkdtemp(prefix="aoti-diag-"))
    handler: Path | None = work / "fault_handler.so"
    (work / "fault_handler.c").write_text(_HANDLER_C)
    built = _sh(["gcc", "-shared", "-fPIC", "-O0", "-o", str(handler), str(work / "fault_handler.c")])
    if not handler.exists():
        handler = None
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "glibc": " ".join(platform.libc_ver()),
        "cxx": _sh(["c++", "--version"]).splitlines()[0] if shutil.which("c++") else "no c++ on PATH",
        "gcc": _sh(["gcc", "--version"]).splitlines()[0] if shutil.which("gcc") else "no gcc on PATH",
        "handler_build": built or "ok",
        "CXX_env": os.environ.get("CXX"),
        "attempts": [],
        "packages": {},
        "torch_static_flags": _sh(["grep", "-n", "static-libstdc", str(Path(torch.__file__).parent / "_inductor" / "cpp_builder.py")]),
    }
    for device in [d for d in args.devices.split(",") if d]:
        if device == "cuda" and not torch.cuda.is_available():
            continue
        for variant in [v for v in args.variants.split(",") if v]:
            info = _build_package(device, work, variant)
            report["packages"][f"{device}/{variant}"] = info
            print(json.dumps({k: v for k, v in info.items() if k != "members"})[:3000], flush=True)
            _write(report, args.out)
            if info["returncode"] != 0:
                continue
            if variant == "dynamic-runtime" and not info["links_libstdcxx_statically"]:
                pass  # nothing was stripped: same build as as-is, still loaded to confirm
            for mode in args.modes.split(","):
                row = _try(mode, Path(info["package"]), device, handler)
                row["variant"] = variant
                print(json.dumps(row)[:3000], flush=True)
                report["attempts"].append(row)
                _write(report, args.out)  # after every attempt: a run cut short still leaves its findings
    _write(report, args.out)
    print(markdown(report))
    return 0


def _write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "aoti_loader.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "aoti_loader.md").write_text(markdown(report))


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# AOTInductor loader paths on this machine (bench/aoti_loader_diag.py)",
        "",
        f"{report['created_at']} · torch {report['torch']} · CUDA {report['cuda']} · {report['gpu']} · "
        f"python {report['python']} · {report['glibc']} · {report['gcc']}",
        "",
        f"`-static-libstdc++` in torch's cpp_builder: `{report.get('torch_static_flags') or 'not found'}`",
        "",
        "| device | build | links libstdc++ statically | libstdc++ internals exported | loader path | result |",
        "|---|---|---|---:|---|---|",
    ]
    for row in report["attempts"]:
        info = report["packages"].get(f"{row['device']}/{row.get('variant')}", {})
        if row["returncode"] == 0:
            result = f"ok, output {row['result']['shape']}"
        else:
            result = f"exit {row['returncode']}"
        lines.append(
            f"| {row['device']} | {row.get('variant')} | {info.get('links_libstdcxx_statically')} | "
            f"{info.get('exports_libstdcxx_internals')} | {row['mode']} | {result} |"
        )
    for key, info in report["packages"].items():
        lines += ["", f"### build {key}: exit {info['returncode']}, {info.get('build_s')} s", "", f"NEEDED: {info.get('needed')}", "",
                  "Last compiler commands:", "", "```", *info.get("compiler_commands", []), "```"]
        if info.get("error"):
            lines += ["", "```", info["error"], "```"]
    for row in report["attempts"]:
        if row["returncode"] != 0:
            lines += ["", f"## {row['device']} / {row.get('variant')} / {row['mode']}: exit {row['returncode']}", "",
                      "```", row.get("stderr_tail", "")[-4000:], "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
