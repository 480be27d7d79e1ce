"""aitune-ci: tune PyTorch inference across backends, check it, measure it, and guard it in CI.

Public names are loaded lazily so that ``import aitune_ci`` (which pytest does for the plugin on
every run) costs nothing until something is used: torch is imported only then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aitune_ci.version import __version__

_EXPORTS = {
    "TuneSpec": "aitune_ci.spec",
    "Tolerance": "aitune_ci.tolerance",
    "TuneResult": "aitune_ci.result",
    "BackendResult": "aitune_ci.result",
    "tune": "aitune_ci.engine",
    "save": "aitune_ci.store.artifact",
    "load": "aitune_ci.store.artifact",
    "load_committed": "aitune_ci.store.artifact",
    "jit": "aitune_ci.jit",
    "tune_fixture": "aitune_ci.fixture",
    "AituneCIError": "aitune_ci.errors",
    "ArtifactError": "aitune_ci.errors",
    "BackendError": "aitune_ci.errors",
    "BackendUnavailable": "aitune_ci.errors",
    "DataFileError": "aitune_ci.errors",
    "SpecError": "aitune_ci.errors",
    "TaskMetric": "aitune_ci.task_metrics",
    "kl_divergence": "aitune_ci.task_metrics",
    "psnr": "aitune_ci.task_metrics",
    "top1_agreement": "aitune_ci.task_metrics",
}

__all__ = sorted([*_EXPORTS, "backends"]) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from aitune_ci.backends import backends
    from aitune_ci.engine import tune
    from aitune_ci.errors import (
        AituneCIError,
        ArtifactError,
        BackendError,
        BackendUnavailable,
        DataFileError,
        SpecError,
    )
    from aitune_ci.fixture import tune_fixture
    from aitune_ci.jit import jit
    from aitune_ci.result import BackendResult, TuneResult
    from aitune_ci.spec import TuneSpec
    from aitune_ci.store.artifact import load, load_committed, save
    from aitune_ci.task_metrics import TaskMetric, kl_divergence, psnr, top1_agreement
    from aitune_ci.tolerance import Tolerance


def __getattr__(name: str) -> Any:
    if name == "backends":  # a callable subpackage: see aitune_ci/backends/__init__.py
        return importlib.import_module("aitune_ci.backends")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aitune_ci' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
