"""TuneSpec: what a user declares about one model, validated the moment it is built.

It names backends, so it sits above the backend registry and checks the names against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import torch

from aitune_ci.backends.registry import backend_names
from aitune_ci.errors import SpecError
from aitune_ci.hints import did_you_mean
from aitune_ci.samples import Sample, normalize_sample, sample_signature
from aitune_ci.task_metrics import TaskMetric, normalize_metrics
from aitune_ci.tolerance import Tolerance, ToleranceSpec

__all__ = ["STRATEGIES", "Strategy", "TuneSpec"]

Strategy = Literal["max-throughput", "min-latency", "first-wins", "one-backend"]
STRATEGIES: tuple[str, ...] = ("max-throughput", "min-latency", "first-wins", "one-backend")


@dataclass(frozen=True)
class TuneSpec:
    """A model to tune, its sample inputs, and how to choose among backends.

    Attributes:
        model: the eager ``torch.nn.Module`` (the reference; never modified in place).
        samples: one or more inputs (see :func:`normalize_sample` for the accepted forms).
            Samples of different shapes let dynamic axes be detected.
        backends: backend names to try; ``None`` means every registered backend that is
            available for the device. ``"eager"`` is always measured as the reference.
        strategy: how the winner is chosen (``max-throughput``, ``min-latency``, ``first-wins``,
            ``one-backend``).
        modules: dotted submodule paths to tune separately, or ``None`` for the whole model.
        dtype: the dtype the model and floating inputs run at.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when present).
        dynamic_axes: ``"auto"`` (detect from samples), ``None`` (static) or an explicit mapping.
        tolerance: ``None`` for per-precision defaults, a :class:`Tolerance`, or a mapping from
            output leaf path (globs allowed) to Tolerance.
        name: a display name; the pytest plugin uses the fixture name.
        max_batch: the largest batch the ``max-throughput`` sweep tries (default: 8x the first
            sample's batch, at most 1024); the sweep also stops when doubling gains < 5%.
        metric: task metrics scoring every backend's outputs against the eager reference: a
            function ``fn(outputs, reference, samples) -> float`` (named after it), an
            :class:`~aitune_ci.task_metrics.TaskMetric` (with its gate and tolerance), a list of
            them, or a dict of name -> either. See :mod:`aitune_ci.task_metrics`.
    """

    model: torch.nn.Module
    samples: Sequence[Any]
    backends: Sequence[str] | None = None
    strategy: Strategy = "min-latency"
    modules: Sequence[str] | None = None
    dtype: torch.dtype = torch.float32
    device: str = "auto"
    dynamic_axes: Any = "auto"
    tolerance: ToleranceSpec = None
    name: str | None = None
    max_batch: int | None = None
    metric: Any = None
    normalized_samples: tuple[Sample, ...] = field(init=False, repr=False, compare=False)
    task_metrics: tuple[TaskMetric, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, torch.nn.Module):
            raise SpecError(
                f"TuneSpec.model must be a torch.nn.Module, got {type(self.model).__name__}. "
                "Wrap a plain function in an nn.Module whose forward calls it."
            )
        if (
            isinstance(self.samples, (torch.Tensor, dict))
            or not isinstance(self.samples, Sequence)
            or isinstance(self.samples, (str, bytes))
        ):
            raise SpecError(
                f"TuneSpec.samples must be a list of samples, got {type(self.samples).__name__}; "
                "wrap a single input as samples=[x]"
            )
        if len(self.samples) == 0:
            raise SpecError(
                "TuneSpec.samples is empty; give at least one sample input, e.g. samples=[torch.randn(8, 16)]"
            )
        object.__setattr__(
            self, "normalized_samples", tuple(normalize_sample(s, i) for i, s in enumerate(self.samples))
        )
        if self.strategy not in STRATEGIES:
            raise SpecError(
                f"TuneSpec.strategy {self.strategy!r} is unknown{did_you_mean(str(self.strategy), STRATEGIES)}; "
                f"expected one of {', '.join(STRATEGIES)}"
            )
        if not isinstance(self.dtype, torch.dtype):
            raise SpecError(f"TuneSpec.dtype must be a torch.dtype such as torch.float32, got {self.dtype!r}")
        self._validate_device()
        self._validate_backends()
        if self.modules is not None:
            if isinstance(self.modules, str) or not all(isinstance(m, str) and m for m in self.modules):
                raise SpecError(f"TuneSpec.modules must be a list of dotted submodule names, got {self.modules!r}")
            names = dict(self.model.named_modules())
            for m in self.modules:
                if m not in names:
                    hint = did_you_mean(m, [n for n in names if n]) or _children(self.model)
                    raise SpecError(f"TuneSpec.modules: {type(self.model).__name__} has no submodule {m!r}{hint}")
        if not (self.tolerance is None or isinstance(self.tolerance, Tolerance)):
            if not isinstance(self.tolerance, Mapping) or not all(
                isinstance(k, str) and isinstance(v, Tolerance) for k, v in self.tolerance.items()
            ):
                raise SpecError(
                    "TuneSpec.tolerance must be None, an ait.Tolerance, or a dict of output path -> ait.Tolerance; "
                    f"got {self.tolerance!r}"
                )
        if self.max_batch is not None and (not isinstance(self.max_batch, int) or self.max_batch < 1):
            raise SpecError(f"TuneSpec.max_batch must be a positive int or None, got {self.max_batch!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise SpecError(f"TuneSpec.name must be a string, got {self.name!r}")
        object.__setattr__(self, "task_metrics", normalize_metrics(self.metric))

    def _validate_device(self) -> None:
        if not isinstance(self.device, (str, torch.device)):
            raise SpecError(f"TuneSpec.device must be a string such as 'cuda' or 'cpu', got {self.device!r}")
        device = str(self.device)
        if device == "auto":
            return
        try:
            parsed = torch.device(device)
        except RuntimeError as exc:
            raise SpecError(f"TuneSpec.device {device!r} is not a device torch knows: {exc}") from None
        if parsed.type == "cuda":
            if not torch.cuda.is_available():
                raise SpecError(
                    f"TuneSpec.device is {device!r} but CUDA is not available on this machine "
                    f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}). "
                    "Use device='auto' to fall back to the CPU, or run on a GPU runner."
                )
            if parsed.index is not None and parsed.index >= torch.cuda.device_count():
                raise SpecError(
                    f"TuneSpec.device is {device!r} but only {torch.cuda.device_count()} CUDA device(s) are visible"
                )
        elif parsed.type != "cpu":
            raise SpecError(f"TuneSpec.device {device!r} is not supported; use 'cpu', 'cuda', 'cuda:N' or 'auto'")

    def _validate_backends(self) -> None:
        if self.backends is None:
            return
        if isinstance(self.backends, str) or not isinstance(self.backends, Sequence):
            raise SpecError(f"TuneSpec.backends must be a list of backend names, got {self.backends!r}")
        known = backend_names()
        for b in self.backends:
            if not isinstance(b, str):
                raise SpecError(f"TuneSpec.backends must hold backend names (strings), got {b!r}")
            if b not in known:
                raise SpecError(
                    f"TuneSpec.backends: unknown backend {b!r}{did_you_mean(b, known)}. "
                    "Run `aitune-ci backends` to list them."
                )
        if len(set(self.backends)) != len(self.backends):
            raise SpecError(f"TuneSpec.backends lists a backend twice: {list(self.backends)!r}")

    @property
    def resolved_device(self) -> torch.device:
        """The device the tune runs on (``auto`` resolved)."""
        if str(self.device) == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def display_name(self) -> str:
        return self.name or type(self.model).__name__

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary for results, baselines and artifact manifests."""
        return {
            "name": self.display_name,
            "model_class": f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            "backends": list(self.backends) if self.backends is not None else None,
            "strategy": self.strategy,
            "modules": list(self.modules) if self.modules is not None else None,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.resolved_device),
            "samples": [sample_signature(s) for s in self.normalized_samples],
            "tolerance": _tolerance_json(self.tolerance),
            **({"metrics": [_metric_json(m) for m in self.task_metrics]} if self.task_metrics else {}),
        }


def _metric_json(m: TaskMetric) -> dict[str, Any]:
    return {
        "name": m.name,
        "higher_is_better": m.higher_is_better,
        **{
            k: v for k, v in (("minimum", m.minimum), ("maximum", m.maximum), ("max_drop", m.max_drop)) if v is not None
        },
    }


def _tolerance_json(tol: ToleranceSpec) -> Any:
    if tol is None:
        return None
    if isinstance(tol, Tolerance):
        return tol.to_json()
    return {k: v.to_json() for k, v in tol.items()}


def _children(model: torch.nn.Module) -> str:
    """``; its submodules are: backbone, head`` (its direct children, where a far miss offers no close name)."""
    names = [n for n, _ in model.named_children()]
    if not names:
        return "; it has no submodules"
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")
    return f"; its submodules are: {shown} (deeper ones by dotted path, e.g. {names[0]}.<child>)"
