"""Inference backends: one module per backend, all registered by name in ``registry``."""

from aitune_ci.backends.base import Backend, BuildContext, Precision
from aitune_ci.backends.registry import BackendInfo, backend_names, backends, get_backend, register_backend

__all__ = [
    "Backend",
    "BackendInfo",
    "BuildContext",
    "Precision",
    "backend_names",
    "backends",
    "get_backend",
    "register_backend",
]


class _CallableModule(__import__("types").ModuleType):
    """Lets ``aitune_ci.backends()`` list backends although ``aitune_ci.backends`` is this package.

    Python binds a subpackage as an attribute of its parent on import, so a function of the same
    name on ``aitune_ci`` would be overwritten; a callable package keeps ``ait.backends()`` working.
    """

    def __call__(self, device=None):  # type: ignore[no-untyped-def]
        return backends(device)


__import__("sys").modules[__name__].__class__ = _CallableModule
