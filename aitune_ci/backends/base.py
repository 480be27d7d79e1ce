"""The contract every backend implements, and the context a build receives."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Sequence

import torch

from aitune_ci.samples import Sample

__all__ = ["Backend", "BuildContext", "Payload", "Precision", "PRECISIONS"]

#: The numeric class a backend runs at; it picks the default accuracy gate.
Precision = Literal["fp32", "tf32", "fp16", "bf16", "int8", "fp8"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "int8", "fp8")


class Payload(str, Enum):
    """What a backend saves into a ``.ait`` beyond the weights: the one fact its artifact rules follow.

    ``ahead_of_time``, ``executes_code`` and ``device_specific`` derive from it, so the artifact
    writer, the loader's safety checks and the paired A/B all read one declaration.
    """

    #: nothing: the model's own code runs at load (eager, CUDA graphs, a torchao recipe)
    WEIGHTS = "weights"
    #: a portable graph read as data (an ONNX file): compiled ahead of time, executes no code
    GRAPH = "graph"
    #: just-in-time compile-cache bytes (inductor's pickles): executes code, recompiles warm
    COMPILE_CACHE = "compile-cache"
    #: native code built for this GPU and these library versions (AOTInductor .so, TensorRT engine)
    NATIVE = "native"

    @property
    def ahead_of_time(self) -> bool:
        """The payload is the compiled computation itself: it loads with no compile."""
        return self in (Payload.GRAPH, Payload.NATIVE)

    @property
    def executes_code(self) -> bool:
        """Loading its files runs code from them (native code or pickles): only from a pinned or trusted artifact.

        A WEIGHTS backend writes no files; any it does write are unexplained, so they count as code.
        """
        return self is not Payload.GRAPH

    @property
    def device_specific(self) -> bool:
        """Tied to the exact GPU and library versions it was built with."""
        return self is Payload.NATIVE


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

    Subclasses set ``name``, ``precision`` and ``payload``, the libraries whose versions change
    their results and the pip extra that installs them, implement :meth:`available` and
    :meth:`build`, and optionally :meth:`save` / :meth:`load` so a built module can go into a
    ``.ait`` artifact and come back without recompiling. Everything else (the environment record,
    the artifact rules, the docs table) reads these declarations. Optional dependencies are
    imported inside these methods only, so a CPU runner can import every backend module.
    """

    name: ClassVar[str]
    precision: ClassVar[Precision] = "fp32"
    #: Device types this backend can ever run on.
    device_types: ClassVar[frozenset[str]] = frozenset({"cpu", "cuda"})
    #: What its ``.ait`` payload holds (see :class:`Payload`).
    payload: Payload = Payload.WEIGHTS
    #: Distributions (pip names) whose versions change this backend's speed or numbers: recorded
    #: in every result and compared with the baseline's.
    libraries: ClassVar[tuple[str, ...]] = ()
    #: The ``pip install 'aitune-ci[<extra>]'`` extra that brings ``libraries``; None when torch suffices.
    extra: ClassVar[str | None] = None

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

    @property
    def ahead_of_time(self) -> bool:
        """``build`` compiles ahead of time: its payload loads with no recompilation."""
        return self.payload.ahead_of_time

    @property
    def uses_inductor(self) -> bool:
        """``build`` runs inductor (torch.compile or AOTInductor): the engine pays the process's
        one-time compile setup before timing it (``aitune_ci.compile_warmup``)."""
        return False

    @property
    def compiles_cxx(self) -> bool:
        """``build`` compiles C++ on any device (AOTInductor's wrapper), so inductor probes the CPU's
        vector ISAs first; the engine has that done in the one-time setup (``aitune_ci.isa_probe``)."""
        return False

    def prepare_process(self, device: torch.device) -> float | None:
        """Pay this backend's one-time, per-process set-up (imports, registries) now, untimed, and
        return its seconds; None when there is none or it was paid. The engine calls it before the
        first build it times: a relative check builds the head first, which would pay it alone."""
        return None

    @property
    def loads_as_built(self) -> bool:
        """A load of the saved payload times like the fresh build, shown by an A/A: so a relative
        check's base may load it where the head rebuilt (``check.FixtureCheck._judge_against_base``)."""
        return False

    def cxx_compiler(self) -> str | None:
        """The C++ compiler ``build`` compiles with, None for torch's own; the ISA probe uses the same."""
        return None

    @property
    def payload_is_device_specific(self) -> bool:
        """The saved payload is tied to the exact GPU / library versions it was built with."""
        return self.payload.device_specific

    @property
    def payload_executes_code(self) -> bool:
        """Loading the payload runs code from the file (native code or pickles)."""
        return self.payload.executes_code

    def describe(self) -> str:
        """The name plus any non-default options, for tables and logs."""
        if not self.options:
            return self.name
        return f"{self.name}(" + ", ".join(f"{k}={v!r}" for k, v in sorted(self.options.items())) + ")"
