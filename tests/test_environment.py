"""What the environment records about the CPU, and which differences a verdict or an artifact reports."""

from __future__ import annotations

import torch

from aitune_ci.backends.registry import fingerprint
from aitune_ci.environment import (
    BASE_LIBRARIES,
    compared_fields,
    cpu_features,
    environment_differences,
    environment_fingerprint,
    library_fields,
    software_fields,
)
from aitune_ci.store.artifact.safety import environment_differences as artifact_differences
from aitune_ci.store.artifact.safety import missing_cpu_features, non_portable_differences

X86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw amx_tile ht\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm sve sve2 bf16 i8mm\nCPU part\t: 0xd4f\n"


def test_cpu_features_keeps_the_ones_that_decide_compiled_code():
    assert cpu_features(X86) == "avx2 fma avx512f avx512bw amx_tile"
    assert cpu_features(ARM) == "asimd sve sve2 bf16 i8mm"
    assert cpu_features("processor\t: 0\nmodel name\t: something\n") is None


def test_this_machine_is_recorded_with_torchs_kernel_set_and_its_features():
    env = environment_fingerprint("cpu")
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        assert env["cpu_features"] == cpu_features(f.read())


def _env(**fields):
    base = dict(hardware_key="cpu-x86_64-AMD-EPYC", device_type="cpu", torch="2.13.0", cpu_capability="AVX512",
                cpu_features="avx2 fma avx512f", cpus_usable=16)  # fmt: skip
    base.update(fields)
    return base


def test_a_cpu_run_reports_another_instruction_set_under_one_hardware_key():
    now = _env(cpu_capability="AVX2", cpu_features="avx2 fma")
    assert environment_differences(_env(), now) == {
        "cpu_capability": ("AVX512", "AVX2"),
        "cpu_features": ("avx2 fma avx512f", "avx2 fma"),
    }


def test_a_share_of_the_cores_is_a_difference_on_a_cpu_run():
    """pytest-xdist gives each worker a share of the cores: a CPU model's latency changes with it."""
    assert environment_differences(_env(), _env(cpus_usable=1)) == {"cpus_usable": (_env()["cpus_usable"], 1)}


def test_a_gpu_run_does_not_compare_the_host_cpu():
    old, now = _env(device_type="cuda"), _env(device_type="cuda", cpu_capability="AVX2", cpus_usable=2)
    assert environment_differences(old, now) == {}


def test_a_baseline_that_predates_the_cpu_fields_is_not_different_for_lacking_them():
    old = {k: v for k, v in _env().items() if k not in ("cpu_capability", "cpu_features")}
    assert environment_differences(old, _env()) == {}
    assert artifact_differences(old, _env()) == {}


def test_only_features_this_cpu_lacks_block_a_compiled_payload():
    assert missing_cpu_features("avx2 fma avx512f amx_tile", "avx2 fma") == ["amx_tile", "avx512f"]
    assert missing_cpu_features("avx2 fma", "avx2 fma avx512f") == []
    assert missing_cpu_features(None, "avx2") == [] and missing_cpu_features("avx2", None) == []

    built_on_less = artifact_differences(_env(cpu_features="avx2 fma"), _env())
    assert "cpu_features" in built_on_less  # reported (latency may differ) ...
    assert non_portable_differences(built_on_less) == {}  # ... but the code runs here
    built_on_more = artifact_differences(_env(), _env(cpu_features="avx2 fma"))
    assert non_portable_differences(built_on_more) == {"cpu_features": ("avx2 fma avx512f", "avx2 fma")}


#: What every environment recorded before the libraries came from the backends' declarations.
OLD_LIBRARIES = dict.fromkeys(
    ("torchao", "onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript", "tensorrt", "torch-tensorrt", "triton",
     "numpy", "transformers")
)  # fmt: skip


def test_a_backend_library_change_is_a_difference_and_a_model_building_one_is_not():
    old = _env(**{**OLD_LIBRARIES, "torchao": "0.16.0", "numpy": "2.3.0", "transformers": "4.57.0"})
    now = _env(**{**OLD_LIBRARIES, "torchao": "0.18.0", "numpy": "2.4.6", "transformers": "5.24.0"})
    assert environment_differences(old, now) == {"torchao": ("0.16.0", "0.18.0")}
    assert set(artifact_differences(old, now)) == {"torchao"}


def test_a_baseline_recording_the_old_library_list_is_compared_on_the_same_fields_plus_onnx():
    """The fields compared before they were derived, and onnx/onnxscript, now compared as backend libraries."""
    before = {"hardware_key", "torch", "cuda", "driver", "torchao", "onnxruntime", "onnxruntime-gpu", "tensorrt",
              "torch-tensorrt", "triton", "python"}  # fmt: skip
    old = _env(**OLD_LIBRARIES)
    assert set(compared_fields(old, fingerprint("cpu"))) == before | {"onnx", "onnxscript"}
    assert environment_differences(old, old) == {}


def test_a_library_the_baseline_does_not_record_counts_as_not_installed_there():
    assert environment_differences(_env(), _env(newlib="1.0")) == {"newlib": (None, "1.0")}
    assert environment_differences(_env(), _env(numpy="2.4.6")) == {}


def test_every_key_the_fingerprint_writes_besides_libraries_is_its_own():
    env = environment_fingerprint("cpu", libraries=("onnx",))
    assert library_fields(env) == sorted({"onnx", *BASE_LIBRARIES})
    assert software_fields(env)[:2] == ["python", "torch"]
    assert software_fields(env)[-len(BASE_LIBRARIES) :] == list(BASE_LIBRARIES)
    assert compared_fields(env) == ["hardware_key", "torch", "cuda", "driver", "python", "onnx"]
