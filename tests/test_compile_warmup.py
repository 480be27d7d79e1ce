"""The process's one-time compile setup is paid once, before the first build that uses inductor, and
counted in no build's time (``aitune_ci.compile_warmup``; bench/first_build_probe.py measures it)."""

from __future__ import annotations

import pytest
import torch

import aitune_ci as ait
from aitune_ci import compile_warmup, engine
from aitune_ci.backends import registry
from aitune_ci.backends.aoti import AOTIBackend
from aitune_ci.backends.eager import EagerBackend
from aitune_ci.backends.inductor import inductor_toolchain
from aitune_ci.measure import MeasureConfig

FAST = MeasureConfig(max_total_s=0.1, min_rounds=2, warmup_min_iters=2, warmup_max_s=0.1)


class _CompilingEager(EagerBackend):
    """Eager, declared as an inductor backend: the engine's warm-up order without a real compile."""

    @property
    def uses_inductor(self) -> bool:
        return True


def test_the_builtin_backends_that_run_inductor_say_so():
    uses = {name for name in registry.backend_names() if registry.get_backend(name).uses_inductor}
    assert {"inductor", "inductor-max-autotune", "aoti", "torchao-int8dq-compiled"} <= uses
    assert not uses & {"eager", "eager-fp16", "cudagraphs", "torchao-int8wo", "onnxruntime", "tensorrt"}
    # AOTInductor's wrapper is C++ on every device: its first build would run the CPU ISA probe.
    assert {name for name in uses if registry.get_backend(name).compiles_cxx} == {"aoti"}


@pytest.mark.skipif(not inductor_toolchain("cpu")[0], reason="inductor cannot compile for the CPU here")
def test_warm_compiler_compiles_once_per_device_type(monkeypatch):
    monkeypatch.setattr(compile_warmup, "_warmed", set())
    first = compile_warmup.warm_compiler(torch.device("cpu"))
    assert first is not None and first.seconds > 0 and first.isa is None  # no C++ build asked for
    assert compile_warmup.warm_compiler(torch.device("cpu")) is None


def test_the_engine_warms_the_compiler_once_before_the_first_inductor_build(monkeypatch, tiny_mlp, tiny_input):
    monkeypatch.setattr(registry, "_registry", {**registry._registry, "compiling-eager": (_CompilingEager, {})})
    events: list[str] = []
    monkeypatch.setattr(
        engine,
        "warm_compiler",
        lambda device, cxx, compiler: (
            events.append(f"warm {device.type} cxx={cxx}") or compile_warmup.CompilerSetup(1.5)
        ),
    )
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if "building" in line:
            events.append(line.split("] ", 1)[1])

    spec = ait.TuneSpec(
        model=tiny_mlp, samples=[tiny_input], backends=["eager", "compiling-eager"], device="cpu", name="tiny"
    )
    ait.tune(spec, measure_config=FAST, progress=progress)
    # On the CPU every inductor build compiles C++, so the setup has inductor's ISA probe answered too.
    assert events == ["tiny · eager: building…", "warm cpu cxx=True", "tiny · compiling-eager: building…"]
    assert "compiler set up in 1.5 s (imports, workers; once per process, in no build's time)" in lines

    # A loaded build's time is never compared, so loading one pays no warm-up.
    events.clear()
    ait.tune(spec, measure_config=FAST, progress=progress, prebuilt={"compiling-eager": tiny_mlp})
    assert events == ["tiny · eager: building…"]


def test_the_isa_probe_is_asked_for_with_the_compiler_the_build_uses(monkeypatch):
    aoti, inductor = AOTIBackend(cxx="/usr/bin/g++"), registry.get_backend("inductor")
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object only: nothing runs on it

    assert engine._cxx_toolchain(aoti, cuda) == (True, "/usr/bin/g++")  # the wrapper is C++ on any device
    assert engine._cxx_toolchain(inductor, cpu) == (True, None)  # torch's own compiler
    assert engine._cxx_toolchain(inductor, cuda) == (False, None)  # Triton kernels, Python wrapper

    def no_compiler():
        raise RuntimeError("no sound C++ compiler here")

    monkeypatch.setattr(aoti, "cxx_compiler", no_compiler)
    assert engine._cxx_toolchain(aoti, cuda) == (False, None)  # the build reports it, not the warm-up
