"""The contract every backend implements, and the context a build receives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

import torch

from aitune_ci.spec import Sample

__all__ = ["Backend", "BuildContext", "Precision", "PRECISIONS"]

#: The numeric class a backend runs at; it picks the default accuracy gate.
Precision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


@dataclass(frozen=True)
class BuildContext:
    """What a backend needs to know to build, beyond the module and samples.

    Attributes:
        device: where the module and samples already live.
        dtype: the dtype the user asked the model to run at.
        dynamic_axes: detected or explicit dynamic dimensions, as
            ``{input_path: {dim_index: dim_name}}`` (input_path like ``args.0`` or
            ``kwargs.input_ids``); empty means static shapes.
        workdir: a private scratch folder for this build (payload files go here).
        options: the backend's own options (e.g. ``{"mode": "max-autotune-no-cudagraphs"}``).
    """

    device: torch.device
    dtype: torch.dtype
    workdir: Path
    dynamic_axes: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """One way to run a module faster (or as the reference).

    Subclasses set ``name`` and ``precision``, implement :meth:`available` and :meth:`build`, and
    optionally :meth:`save` / :meth:`load` so a built module can go into a ``.ait`` artifact and
    come back without recompiling. Optional dependencies are imported inside these methods only,
    so a CPU runner can import every backend module.
    """

    name: ClassVar[str]
    precision: ClassVar[Precision] = "fp32"
    #: Device types this backend can ever run on.
    device_types: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    #: True when ``build`` compiles ahead of time (its payload loads with no recompilation).
    ahead_of_time: ClassVar[bool] = False
    #: True when the saved payload is tied to the exact GPU / library versions it was built with.
    payload_is_device_specific: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        self.options: dict[str, Any] = dict(options)

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        """``(True, "")`` when this backend can run on ``device`` here, else ``(False, reason)``.

        The default checks ``device_types``; subclasses add their library checks (imported here).
        """
        device_type = torch.device(device).type
        if device_type not in self.device_types:
            return False, f"runs on {'/'.join(sorted(self.device_types))} only, not {device_type}"
        return True, ""

    @abstractmethod
    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        """Return a callable with the module's call signature that produces the same outputs.

        ``module`` is already on ``ctx.device`` in eval mode; it must not be modified in place
        (deep-copy it first if the backend mutates, as quantization does).
        """

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Write the built payload's files into ``outdir``; return JSON-able metadata for ``load``.

        Raises NotImplementedError where the backend has nothing to save beyond the weights.
        """
        raise NotImplementedError(f"backend {self.name!r} has no saveable payload")

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        """Rebuild the callable from files written by :meth:`save`, without recompiling where possible."""
        raise NotImplementedError(f"backend {self.name!r} cannot be loaded from an artifact")

    def describe(self) -> str:
        """The name plus any non-default options, for tables and logs."""
        if not self.options:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items())) + ")"
