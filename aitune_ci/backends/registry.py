"""Backends registered by name; built-in ones plus third-party ones from an entry-point group.

Modelled on ``torch/_dynamo/backends/registry.py``: duplicate names are rejected, third-party
backends come from the ``aitune_ci.backends`` entry-point group, loaded lazily and once.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable, TypeVar

import torch

from aitune_ci.backends.base import Backend
from aitune_ci.errors import BackendError

__all__ = ["BackendInfo", "backend_names", "backends", "get_backend", "register_backend"]

ENTRY_POINT_GROUP = "aitune_ci.backends"

# One module per built-in backend; importing one registers its names.
_BUILTIN_MODULES = (
    "eager",
    "inductor",
    "aoti",
    "cudagraphs",
    "torchao",
    "onnxruntime",
    "torch_tensorrt",
    "tensorrt",
)

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


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _BUILTIN_MODULES:
        importlib.import_module(f"aitune_ci.backends.{mod}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken plugin must not break everyone else's run
            import warnings

            warnings.warn(f"aitune-ci: could not load backend plugin {ep.name!r} ({ep.value}): {exc}", stacklevel=2)


def backend_names() -> list[str]:
    """Every registered backend name, in registration order."""
    _ensure_loaded()
    return list(_registry)


def get_backend(name: str) -> Backend:
    """A fresh instance of the backend registered as ``name``."""
    _ensure_loaded()
    try:
        cls, options = _registry[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, list(_registry), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise BackendError(f"unknown backend {name!r}{hint}; known: {', '.join(_registry)}") from None
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
