"""What identifies a model and a tune, so an artifact is reused only for the very build it holds."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aitune_ci.backends.registry import fingerprint, get_backend
from aitune_ci.digests import weights_sha256
from aitune_ci.engine import default_backend_names
from aitune_ci.environment import CPU_RUN_FIELDS
from aitune_ci.errors import AituneCIError
from aitune_ci.store.artifact.safety import SCHEMA_VERSION, sha256_json
from aitune_ci.version import __version__

__all__ = ["jsonable", "spec_fields", "spec_hash", "state_entries", "structure_sha256", "tune_hash"]

# Environment fields left out of the spec hash: they differ between identical CI machines (or
# between the identical GPUs and CPU shares of one machine's xdist workers).
_VOLATILE_ENV = frozenset({"cpu_count", "cpus_usable", "torch_threads", "gpu_index", "gpu_physical_index", "gpu_uuid"})


def _ignored_env(environment: Mapping[str, Any]) -> frozenset[str]:
    """Fields left out of the spec hash: the volatile ones, and on a GPU run the host CPU's
    instruction set, which its kernels do not depend on (a reuse across runner hosts stays valid)."""
    return _VOLATILE_ENV if environment.get("device_type") == "cpu" else _VOLATILE_ENV | set(CPU_RUN_FIELDS)


def jsonable(value: Any) -> Any:
    """Plain JSON data with string keys (dim indices, dtypes and the like become strings)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def state_entries(model: torch.nn.Module, dtype: torch.dtype | None) -> list[list[Any]]:
    """``[name, shape, dtype]`` of every state tensor, floating ones at the dtype the model runs at."""
    entries = []
    for name, tensor in model.state_dict().items():
        run_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        entries.append([name, list(tensor.shape), str(run_dtype).removeprefix("torch.")])
    return entries


def structure_sha256(model: torch.nn.Module, entries: list[list[Any]]) -> str:
    """What must match between the model given to ``load`` and the one saved: module types and state."""
    modules = [[name, type(m).__qualname__] for name, m in model.named_modules()]
    return sha256_json({"modules": modules, "state": entries})


def _code_sha256(model: torch.nn.Module) -> str:
    """A digest of the source of every module class in the tree (and their bases up to nn.Module).

    A PR that changes ``forward`` without changing structure or weights must not reuse yesterday's
    compiled artifact. Code outside these classes (helper functions they call) is not covered:
    ``--aitune-rebuild`` forces a build after such a change.
    """
    digest = hashlib.sha256()
    seen: set[type] = set()
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls in seen or cls.__module__.startswith("torch.") or cls is object:
                continue
            seen.add(cls)
            try:
                source = inspect.getsource(cls)
            except (OSError, TypeError):
                source = f"{cls.__module__}.{cls.__qualname__}"  # no source (C extension, REPL): name only
            digest.update(f"{cls.__module__}.{cls.__qualname__}\n{source}".encode())
    return digest.hexdigest()


def _backend_descriptor(name: str) -> dict[str, Any]:
    """A backend's name, class and options: a change of any of them is another build."""
    try:
        backend = get_backend(name)
    except AituneCIError:
        return {"name": name}
    cls = type(backend)
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}", "options": jsonable(backend.options)}


def spec_fields(spec: Any) -> dict[str, Any]:
    """The spec's summary as hashed: without its name (a renamed fixture reuses its artifact)."""
    summary = dict(spec.summary())
    summary.pop("name", None)
    summary.pop("backends", None)  # covered by the backend names
    summary["dynamic_axes"] = jsonable(spec.dynamic_axes)
    summary["max_batch"] = spec.max_batch
    return summary


def tune_hash(
    model: torch.nn.Module,
    dtype: torch.dtype,
    fields: Mapping[str, Any],
    backend_names: Sequence[str],
    environment: Mapping[str, Any],
) -> str:
    """:func:`spec_hash` from its parts, for a tune whose spec lives on as a runtime's model and fields."""
    entries = state_entries(model, dtype)
    ignored = _ignored_env(environment)
    return sha256_json(
        {
            "aitune_ci": __version__,
            "artifact_schema": SCHEMA_VERSION,
            "model": {
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "structure": structure_sha256(model, entries),
                "weights": weights_sha256(model, dtype),
                "code": _code_sha256(model),
            },
            "spec": jsonable(fields),
            "backends": [_backend_descriptor(n) for n in sorted(set(backend_names) | {"eager"})],
            "environment": {k: jsonable(v) for k, v in environment.items() if k not in ignored},
        }
    )


def spec_hash(
    spec: Any, backend_names: Sequence[str] | None = None, environment: Mapping[str, Any] | None = None
) -> str:
    """The key under which a tune's artifact can be reused instead of rebuilt.

    Covers the model (class, module types, state tensor names/shapes/dtypes, a digest of the
    weights' values at the spec's dtype, so converting the model in place during the tune does
    not change it, and a digest of its module classes' source code), the sample signatures, dtype,
    device, strategy, modules, tolerance, dynamic axes, the backends tried (name, class and
    options; ``eager`` always included), the environment (hardware, torch and library versions)
    and the aitune-ci version.

    Args:
        spec: the :class:`~aitune_ci.spec.TuneSpec`.
        backend_names: the backends tuned (default: ``spec.backends``, else every one available).
        environment: default :func:`~aitune_ci.backends.registry.fingerprint` of the spec's device.
    """
    device = spec.resolved_device
    if backend_names is None:
        backend_names = list(spec.backends) if spec.backends is not None else default_backend_names(device)
    env = environment if environment is not None else fingerprint(device)
    return tune_hash(spec.model, spec.dtype, spec_fields(spec), list(backend_names), env)
