"""Where a measurement was taken: hardware key and software versions, recorded everywhere.

Imports torch only to take a fingerprint, so reports can compare recorded environments without it.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from aitune_ci.gpus import physical_gpu

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "BASE_LIBRARIES",
    "CPU_FEATURES",
    "CPU_RUN_FIELDS",
    "CPU_SPEED_FIELDS",
    "compared_fields",
    "cpu_differences",
    "cpu_features",
    "environment_differences",
    "environment_fingerprint",
    "hardware_key",
    "library_fields",
    "software_fields",
    "speed_differences",
]

#: Libraries recorded in every environment whatever the backends: they build the model and its
#: samples, so they are shown but not compared. The backends' own libraries come from their
#: ``Backend.libraries`` (``backends.registry.fingerprint`` passes them in).
BASE_LIBRARIES = ("transformers", "numpy")

#: Compared on CPU runs only (a GPU run's kernels do not depend on the host CPU). A baseline that
#: predates one of them does not record it, and unknown is not a difference.
CPU_RUN_FIELDS = ("cpu_capability", "cpu_features")

#: How much of the CPU a run may use: the cores in its affinity mask (a pytest-xdist worker gets
#: its share) and torch's intra-op threads. On a CPU run a difference makes the latency of an
#: unpaired comparison meaningless (one core of two runs a model about twice as slow), so the
#: verdict does not judge it. Read live: tests and users change torch's threads during a run.
CPU_SPEED_FIELDS = ("cpus_usable", "torch_threads")

#: CPU features that decide which compiled code can run here, and how fast: inductor and
#: AOTInductor build AVX-512 or AMX code on a CPU that has them (code that dies with SIGILL on
#: one that lacks them), and bf16/int8 kernels are fast only with them (bf16 eager can run two
#: orders of magnitude slower without them). Clouds often hide the model name ("AMD EPYC"), so
#: two machines of one hardware key can differ here.
CPU_FEATURES = (
    "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_bf16", "amx_int8",  # x86
    "asimd", "sve", "sve2", "bf16", "i8mm",  # arm64
)  # fmt: skip

#: The fingerprint's own software fields, in the order reports show them.
_SOFTWARE_FIELDS = ("python", "torch", "cuda", "cudnn", "driver")
#: Every field the fingerprint writes itself: any other key of a recorded environment is a library's version.
_OWN_FIELDS = frozenset({
    *_SOFTWARE_FIELDS, *CPU_RUN_FIELDS, "hardware_key", "device_type", "platform", "cpu", "cpu_count", "cpus_usable", "torch_threads",
    "gpu", "gpu_memory_gb", "gpu_index", "gpu_physical_index", "gpu_uuid", "compute_capability",
})  # fmt: skip
#: Own fields whose difference between a baseline and now makes a latency comparison suspect.
_COMPARED_OWN_FIELDS = ("hardware_key", "torch", "cuda", "driver", "python")


def cpu_features(cpuinfo: str) -> str | None:
    """The ``CPU_FEATURES`` a ``/proc/cpuinfo`` text lists, space-separated; None when it lists none.

    Pure (the text is passed in), so it is tested on any machine.
    """
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            present = set(value.split())
            return " ".join(f for f in CPU_FEATURES if f in present)
    return None


def _read_cpu_features() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return cpu_features(f.read())
    except OSError:
        return None


def _cpu_capability() -> str | None:
    """The kernel set torch dispatches to here (``AVX512``, ``AVX2``, ``DEFAULT``, ...)."""
    import torch

    get = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    try:
        return str(get()) if get is not None else None
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _slug(text: str) -> str:
    text = re.sub(r"\((R|TM)\)|CPU|@.*$|Processor", "", text, flags=re.IGNORECASE)
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "unknown"


def hardware_key(device: torch.device | str | None = None) -> str:
    """A filesystem-safe name for the hardware: ``NVIDIA-H100-80GB-HBM3`` or ``cpu-x86_64-<model>``.

    Two identical GPUs share a key, so their results compare against the same baseline.
    """
    import torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        name = props.name
        gib = round(props.total_memory / 2**30)
        if not re.search(r"\d+\s*GB", name):
            name = f"{name} {gib}GB"
        return _slug(name.replace("NVIDIA ", "NVIDIA-"))
    return f"cpu-{platform.machine()}-{_slug(_cpu_model())}"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@lru_cache(maxsize=8)
def _fingerprint(device_str: str, libraries: tuple[str, ...]) -> tuple[tuple[str, Any], ...]:
    import torch  # lazy: reports compare recorded environments without torch

    device = torch.device(device_str)
    env: dict[str, Any] = {
        "hardware_key": hardware_key(device),
        "device_type": device.type,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        # what this process may run on: under one xdist worker per GPU, its share of the cores
        "cpu_capability": _cpu_capability(),
        "cpu_features": _read_cpu_features(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    for lib in libraries:
        env[lib] = _version(lib)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu"] = props.name
        env["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        env["gpu_index"] = device.index if device.index is not None else torch.cuda.current_device()
        # Under one-GPU-per-worker pinning (or any CUDA_VISIBLE_DEVICES) the visible index is not
        # the host's: keep the host's id, and the card's UUID, which no renumbering changes.
        env["gpu_physical_index"] = physical_gpu(env["gpu_index"])
        env["gpu_uuid"] = _uuid(props)
        env["compute_capability"] = f"{props.major}.{props.minor}"
        env["driver"] = _nvidia_driver()
    return tuple(env.items())


def _uuid(props: Any) -> str | None:
    uuid = getattr(props, "uuid", None)
    return f"GPU-{uuid}" if uuid is not None else None


def _nvidia_driver() -> str | None:
    try:
        import pynvml  # from nvidia-ml-py

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:
        return None


def environment_fingerprint(device: torch.device | str | None = None, libraries: Iterable[str] = ()) -> dict[str, Any]:
    """Hardware and software versions for results, baselines and artifacts (cached per device).

    Args:
        device: the device measured on (default: the CPU).
        libraries: distributions (pip names) whose versions to record besides torch and
            ``BASE_LIBRARIES``; one not installed is recorded as None. Results record every
            registered backend's (``backends.registry.fingerprint``).
    """
    import torch  # lazy: reports compare recorded environments without torch

    device = torch.device(device) if device is not None else torch.device("cpu")
    recorded = tuple(sorted(set(libraries).union(BASE_LIBRARIES) - _OWN_FIELDS))
    env = dict(_fingerprint(str(device), recorded))
    env["cpus_usable"] = _usable_cpus()
    env["torch_threads"] = torch.get_num_threads()
    return env


def _usable_cpus() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def library_fields(env: Mapping[str, Any]) -> list[str]:
    """The keys of a recorded environment that are library versions (every key the fingerprint
    does not write itself), by name."""
    return sorted(k for k in env if k not in _OWN_FIELDS)


def software_fields(env: Mapping[str, Any]) -> list[str]:
    """The keys of ``env`` that are software versions, in the order reports show them: Python,
    torch, CUDA, cuDNN, the driver, the backends' libraries, then ``BASE_LIBRARIES``."""
    libraries = library_fields(env)
    backend_libraries = [lib for lib in libraries if lib not in BASE_LIBRARIES]
    base = [lib for lib in BASE_LIBRARIES if lib in libraries]
    return [*(k for k in _SOFTWARE_FIELDS if k in env), *backend_libraries, *base]


def compared_fields(*envs: Mapping[str, Any]) -> list[str]:
    """Fields whose difference makes a latency comparison suspect: the hardware key, torch, CUDA, the
    driver, Python, and every library but ``BASE_LIBRARIES`` that any of ``envs`` records."""
    libraries = {lib for env in envs for lib in library_fields(env)} - set(BASE_LIBRARIES)
    return [*_COMPARED_OWN_FIELDS, *sorted(libraries)]


def environment_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The compared fields that differ, as ``{field: (old, new)}`` (pure; for verdict text).

    A library one side does not record counts as not installed there. On a CPU run the CPU's
    instruction set (``CPU_RUN_FIELDS``) counts too, where ``old`` records it.
    """
    differences = {k: (old.get(k), new.get(k)) for k in compared_fields(old, new) if old.get(k) != new.get(k)}
    differences.update(cpu_differences(old, new))
    differences.update(speed_differences(old, new))
    return differences


def speed_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """On a CPU run, the ``CPU_SPEED_FIELDS`` (usable cores, torch threads) that differ where ``old`` records them."""
    if new.get("device_type") != "cpu":
        return {}
    return {k: (old[k], new.get(k)) for k in CPU_SPEED_FIELDS if old.get(k) is not None and old[k] != new.get(k)}


def cpu_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """On a CPU run (``new``'s device), the ``CPU_RUN_FIELDS`` that differ where ``old`` records them."""
    if new.get("device_type") != "cpu":
        return {}
    return {k: (old[k], new.get(k)) for k in CPU_RUN_FIELDS if k in old and old[k] != new.get(k)}
