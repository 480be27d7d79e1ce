"""What identifies a model and a tune, so an artifact or a cached build is reused only for the very build it holds.

The rule (what a key must cover to be sound) is written down in :mod:`aitune_ci.store.build_inputs`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from aitune_ci.backends.registry import fingerprint, get_backend
from aitune_ci.digests import samples_sha256, weights_sha256
from aitune_ci.engine import default_backend_names
from aitune_ci.environment import CPU_RUN_FIELDS
from aitune_ci.errors import AituneCIError
from aitune_ci.samples import Sample, sample_signature
from aitune_ci.store.artifact.safety import SCHEMA_VERSION, sha256_json
from aitune_ci.store.build_inputs import (
    aitune_code_sha256,
    model_attributes,
    relevant_env,
    torch_state,
    user_code,
)
from aitune_ci.version import __version__

__all__ = [
    "BUILD_KEY_SCHEMA",
    "BuildKeys",
    "jsonable",
    "spec_fields",
    "spec_hash",
    "state_entries",
    "structure_sha256",
    "tune_hash",
    "work_key",
]

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
    """A digest of the content of every user file the model can reach (``build_inputs.user_code``),
    and the values of the environment variables that code names.

    A PR that changes ``forward``, or a helper function in another user module that ``forward``
    calls, without changing structure or weights, must not reuse yesterday's compiled artifact.
    By content, not path: the PR's base, imported from a git worktree, matches the nightly's build.
    """
    return sha256_json(user_code(model))


def _process_state(device_type: str) -> dict[str, Any]:
    """What the process adds to a build: torch's compiler config and flags, relevant env vars, aitune-ci's code."""
    return {
        "torch": jsonable(torch_state(torch.device(device_type))),
        "env": relevant_env(os.environ),
        "aitune_code": aitune_code_sha256(),
    }


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
                "attributes": sha256_json(jsonable(model_attributes(model))),
            },
            "process": _process_state(str(environment.get("device_type", "cpu"))),
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
    not change it, its submodules' plain attributes, and the content of every user file it can
    reach), the sample signatures, dtype,
    device, strategy, modules, tolerance, dynamic axes, the backends tried (name, class and
    options; ``eager`` always included), the environment (hardware, torch and library versions),
    torch's compiler config and flags, the relevant environment variables, and aitune-ci's code
    (the rule: :mod:`aitune_ci.store.build_inputs`).

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


#: Bumped whenever what a build key covers changes, so older cache entries are never matched.
BUILD_KEY_SCHEMA = 2  # 2: the fp32_precision and bf16 reduced-precision matmul settings


def _explain(digest: str, parts: Mapping[str, Any]) -> None:
    """With ``$AITUNE_BUILD_KEY_DEBUG`` set to a folder, write what a key covered there (to diff two runs' keys)."""
    folder = os.environ.get("AITUNE_BUILD_KEY_DEBUG")
    if not folder:
        return
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{digest}.json"), "w") as fh:
            json.dump(jsonable(parts), fh, indent=1, sort_keys=True)
    except OSError:
        pass


class BuildKeys:
    """The build key of each backend of one model: what the runner's build cache is keyed by.

    The part every backend shares (the model, its code, inputs, process state and environment:
    :mod:`aitune_ci.store.build_inputs`) is computed once, on the first :meth:`key`, i.e. when the
    first backend is about to build, after the eager reference ran (so code imported lazily by
    ``forward`` is loaded). The tune converts the model in place to its dtype and device; the key
    does not move with that.

    Args:
        model: the model being tuned.
        dtype: the dtype it runs at.
        samples: the spec's normalized samples (values and signatures are covered).
        device: where it runs.
        environment: default :func:`~aitune_ci.backends.registry.fingerprint` of ``device``.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        dtype: torch.dtype,
        samples: Sequence[Sample],
        device: torch.device,
        environment: Mapping[str, Any] | None = None,
    ) -> None:
        self.model, self.dtype, self.samples, self.device = model, dtype, list(samples), device
        self.environment = environment
        self._common: str | None = None

    def common(self) -> str:
        """The digest of what every backend's key shares."""
        if self._common is None:
            model, env = self.model, self.environment or fingerprint(self.device)
            ignored = _ignored_env(env)
            entries = state_entries(model, self.dtype)
            parts = {
                "schema": BUILD_KEY_SCHEMA,
                "aitune_ci": __version__,
                "model": {
                    "class": type(model).__qualname__,  # not its module: the base's conftest is renamed
                    "structure": structure_sha256(model, entries),
                    "weights": weights_sha256(model, self.dtype),
                    "code": user_code(model),
                    "attributes": jsonable(model_attributes(model)),
                },
                "samples": {
                    "values": samples_sha256(self.samples),
                    "signatures": jsonable([sample_signature(s) for s in self.samples]),
                },
                "dtype": str(self.dtype),
                "device_type": self.device.type,
                "process": _process_state(self.device.type),
                "environment": {k: jsonable(v) for k, v in env.items() if k not in ignored},
            }
            self._common = sha256_json(parts)
            _explain(self._common, parts)
        return self._common

    def key(self, backend: str, module: str = "", dynamic_axes: Mapping[str, Any] | None = None) -> str:
        """The key of ``backend`` built on ``module`` (``""``: the whole model) with ``dynamic_axes``."""
        return sha256_json(
            {
                "common": self.common(),
                "backend": _backend_descriptor(backend),
                "module": module,
                "dynamic_axes": jsonable(dynamic_axes or {}),
            }
        )


def work_key(spec: Any, backend_names: Sequence[str], keys: BuildKeys | None = None) -> str:
    """What must be equal for two specs to do the same work at the same speed: a PR's base and head
    with equal keys run the same code on the same weights and samples with the same backends.

    The build key's shared part (:meth:`BuildKeys.common`, the rule in
    :mod:`aitune_ci.store.build_inputs`), the spec's fields but the model's module name (the base's
    conftest is imported under another name), and each backend's name, class and options. What the
    build key does not cover, this does not either: ``--aitune-rebuild`` is the answer there too.
    ``keys``: the spec's :class:`BuildKeys` when the tune already made them (its build cache's), so
    the shared part, a digest of every weight, is not computed twice.
    """
    keys = keys or BuildKeys(spec.model, spec.dtype, spec.normalized_samples, spec.resolved_device)
    fields = spec_fields(spec)
    fields.pop("model_class", None)  # the class's qualname, structure and code are in common()
    return sha256_json(
        {
            "common": keys.common(),
            "spec": jsonable(fields),
            "backends": [_backend_descriptor(n) for n in sorted(set(backend_names) | {"eager"})],
        }
    )
