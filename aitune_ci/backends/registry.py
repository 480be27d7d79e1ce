"""Backends registered by name; built-in ones plus third-party ones from an entry-point group.

Modelled on ``torch/_dynamo/backends/registry.py``: duplicate names are rejected, third-party
backends come from the ``aitune_ci.backends`` entry-point group, loaded lazily and once. The
built-in ones are the modules of this package, found by scanning it: a new backend is a new
module, and nothing here lists it.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

import torch

from aitune_ci.backends.base import Backend
from aitune_ci.environment import environment_fingerprint
from aitune_ci.errors import BackendError
from aitune_ci.hints import did_you_mean

__all__ = [
    "BackendInfo",
    "backend_names",
    "backends",
    "builtin_modules",
    "fingerprint",
    "get_backend",
    "register_backend",
    "unknown_backend",
]

ENTRY_POINT_GROUP = "aitune_ci.backends"

#: Modules of this package that hold no backend; so do those whose names start with ``_``.
_NOT_BACKENDS = frozenset({"base", "registry"})
#: The built-in modules' order, which orders ``backend_names`` and so the default order backends
#: are tuned in (``first-wins`` takes the first good one). A module not named here comes after
#: these, by name: a new backend needs no entry.
_ORDER = ("eager", "inductor", "aoti", "cudagraphs", "torchao", "onnxruntime", "tensorrt", "torch_tensorrt")

_registry: dict[str, tuple[type[Backend], dict[str, Any]]] = {}
_loaded = False

B = TypeVar("B", bound=type[Backend])


def register_backend(name: str, **options: Any) -> Callable[[B], B]:
    """Class decorator: register ``cls`` under ``name``, instantiated with ``options``.

    Stack it to register variants of one class (e.g. inductor modes) under several names.
    """

    def decorator(cls: B) -> B:
        if name in _registry:
            existing = _registry[name][0]
            if existing is not cls or _registry[name][1] != options:
                raise BackendError(f"backend name {name!r} is already registered by {existing.__qualname__}")
        _registry[name] = (cls, dict(options))
        return cls

    return decorator


@cache
def builtin_modules() -> tuple[str, ...]:
    """The modules of this package that define backends, in import order (see ``_ORDER``)."""
    package = importlib.import_module(__package__)
    found = [
        m.name
        for m in pkgutil.iter_modules(package.__path__)
        if not m.name.startswith("_") and m.name not in _NOT_BACKENDS
    ]
    return tuple(sorted(found, key=lambda name: (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)))


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in builtin_modules():
        importlib.import_module(f"{__package__}.{mod}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break everyone else's run
            warnings.warn(f"aitune-ci: could not load backend plugin {ep.name!r} ({ep.value}): {exc}", stacklevel=2)


def backend_names() -> list[str]:
    """Every registered backend name: the built-in modules' in ``builtin_modules`` order, then third-party ones.

    Within a module, names keep their registration order. Ordering by module, not by import,
    keeps the list the same when some code imported one backend module before the registry loaded.
    """
    _ensure_loaded()
    rank = {f"{__package__}.{module}": i for i, module in enumerate(builtin_modules())}
    return sorted(_registry, key=lambda name: rank.get(_registry[name][0].__module__, len(rank)))


def unknown_backend(name: str) -> BackendError:
    """The error for a backend name nothing registered: the closest name, then every known one."""
    known = backend_names()
    return BackendError(f"unknown backend {name!r}{did_you_mean(name, known)}; known: {', '.join(known)}")


def get_backend(name: str) -> Backend:
    """A fresh instance of the backend registered as ``name``."""
    _ensure_loaded()
    try:
        cls, options = _registry[name]
    except KeyError:
        raise unknown_backend(name) from None
    backend = cls(**options)
    backend.name = name  # variants share a class but keep their registered name
    return backend


@dataclass(frozen=True)
class BackendInfo:
    """One row of ``ait.backends()``."""

    name: str
    available: bool
    reason: str
    precision: str
    ahead_of_time: bool
    description: str


def backends(device: torch.device | str | None = None) -> list[BackendInfo]:
    """Every backend with whether it can run on ``device`` here (default: CUDA if present, else CPU)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for name in backend_names():
        backend = get_backend(name)
        try:
            ok, reason = backend.available(device)
        except Exception as exc:  # an availability probe must never take the table down
            ok, reason = False, f"availability check raised {type(exc).__name__}: {exc}"
        rows.append(BackendInfo(name, ok, reason, backend.precision, backend.ahead_of_time, backend.describe()))
    return rows


def fingerprint(device: torch.device | str | None = None) -> dict[str, Any]:
    """The environment that results, baselines and artifacts record for ``device``.

    :func:`~aitune_ci.environment.environment_fingerprint` with the version of every library a
    registered backend declares (``Backend.libraries``), so a new backend's libraries are recorded
    and compared with no list to edit.
    """
    libraries = {lib for cls, _ in (_registry[name] for name in backend_names()) for lib in cls.libraries}
    return environment_fingerprint(device, libraries=sorted(libraries))
