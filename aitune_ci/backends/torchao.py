"""torchao quantization: int8 weight-only, int8 dynamic activation + weight, and fp8 where the GPU has it."""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.inductor import (
    COMPILE_CACHE_FILE,
    compile_counters,
    compile_isolated,
    ensure_something_compiled,
    fresh_artifact_recording,
    hot_load_compile_cache,
    payload_file,
)
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import BackendError, BackendNotApplicable, BackendUnavailable
from aitune_ci.samples import Sample
from aitune_ci.sanity import conversion_problem
from aitune_ci.setup_logs import setup_logs_at_debug

__all__ = ["RECIPES", "Recipe", "TorchAOBackend", "TorchAOCompiled", "converted_linear_layers"]

_INSTALL = "torchao is not installed: pip install 'aitune-ci[torchao]'"

# What torchao's ``set_inductor_config=True`` would set globally (in torchao <= 0.16 it also set
# torch.set_float32_matmul_precision("high"), which changes every fp32 matmul in the process,
# the eager reference included). We pass ``set_inductor_config=False`` and give these to our
# own torch.compile call only.
_INDUCTOR_OPTIONS = {
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "force_fuse_int_mm_with_mul": True,
}


@dataclass(frozen=True)
class Recipe:
    """One torchao quantization recipe: which config class, with which arguments.

    ``version=2`` selects the tensor-subclass implementation (``Int8Tensor``) present in both
    torchao 0.16 (where version 1 is the deprecated default) and 0.18 (where it is the only one).
    """

    config: str
    config_kwargs: Mapping[str, Any]
    precision: str
    needs_fp8_gpu: bool = False

    def make_config(self) -> Any:
        import torchao.quantization as tq

        return getattr(tq, self.config)(set_inductor_config=False, **self.config_kwargs)


RECIPES: dict[str, Recipe] = {
    "int8wo": Recipe("Int8WeightOnlyConfig", {"version": 2}, "int8"),
    "int8dq": Recipe("Int8DynamicActivationInt8WeightConfig", {"version": 2}, "int8"),
    "fp8": Recipe("Float8DynamicActivationFloat8WeightConfig", {}, "fp8", needs_fp8_gpu=True),
}


#: Loggers torchao's first import warns through on a CPU torch, which cannot load its CUDA kernels
#: ("Failed to load .../_C_mxfp8...so"), or with a newer torch (pytree's register_constant
#: deprecation) (``aitune_ci.setup_logs``). Kept as they are on a CUDA torch, where a kernel that
#: does not load is a torchao/torch mismatch worth seeing.
_IMPORT_LOGGERS = ("torchao", "torch.utils._pytree")


@functools.lru_cache(maxsize=1)
def _torchao_import_error() -> str | None:
    """None when torchao imports, else why not (cached: the import takes about a second)."""
    try:
        # on a CPU torch its CUDA kernels cannot matter; on a CUDA one, failing to load them can
        quiet = setup_logs_at_debug(*_IMPORT_LOGGERS) if torch.version.cuda is None else contextlib.nullcontext()
        with quiet:
            import torchao.quantization  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "torchao":
            return _INSTALL
        return f"torchao failed to import: {exc}"
    except Exception as exc:  # e.g. built for another torch version
        return f"torchao failed to import ({type(exc).__name__}: {exc}); install a torchao matching torch {torch.__version__}"
    return None


def _fp8_unsupported_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"fp8 needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper or newer), not {device.type}"
    if torch.version.cuda is None:
        return "fp8 needs an NVIDIA CUDA build of torch; this torch has no CUDA"
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        name = torch.cuda.get_device_name(device)
        return f"fp8 needs compute capability >= 8.9 (Ada, Hopper or newer); {name} has {major}.{minor}"
    return None


_QUANTIZED_DTYPES = frozenset(
    getattr(torch, n)
    for n in ("int8", "uint8", "int4", "uint4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz")
    if hasattr(torch, n)
)


def _is_quantized(weight: Any) -> bool:
    """quantize_ swaps a weight for a tensor subclass (Int8Tensor, Float8Tensor) or a quantized dtype."""
    if not isinstance(weight, torch.Tensor):
        return False
    return type(weight) not in (torch.Tensor, torch.nn.Parameter) or weight.dtype in _QUANTIZED_DTYPES


def converted_linear_layers(module: torch.nn.Module) -> tuple[int, int]:
    """``(converted, total)``: the nn.Linear layers of ``module`` whose weight is quantized, and all of them.

    torchao's configs target nn.Linear (its default ``filter_fn``), so these are the layers that
    should have changed.
    """
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    return sum(_is_quantized(getattr(m, "weight", None)) for m in linears), len(linears)


class TorchAOCompiled:
    """A compiled quantized module, callable like the module, with the compile-cache bytes its build recorded.

    Calls run under ``torch.inference_mode()``, so dynamo's grad-mode guard sees one mode whether
    the caller is the build, the accuracy check, the timer or the user (each other mode would
    compile the model again).
    """

    def __init__(self, compiled: Callable[..., Any]) -> None:
        self.compiled = compiled
        #: Bytes from ``torch.compiler.save_cache_artifacts()`` recorded during build, or None.
        self.cache_artifacts: bytes | None = None
        #: ``{artifact_type: count}`` of what ``cache_artifacts`` holds.
        self.cache_info: dict[str, int] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return self.compiled(*args, **kwargs)


@register_backend("torchao-int8wo", recipe="int8wo")
@register_backend("torchao-int8dq", recipe="int8dq")
@register_backend("torchao-int8dq-compiled", recipe="int8dq", compile=True)
@register_backend("torchao-fp8", recipe="fp8")
@register_backend("torchao-fp8-compiled", recipe="fp8", compile=True)
class TorchAOBackend(Backend):
    """``torchao.quantization.quantize_`` applied to a copy of the module's Linear layers.

    The plain variants run the quantized module eagerly. torchao's speed comes from torch.compile
    fusing the dequantize into the matmul, but compiling takes tens of seconds per model on a CPU,
    so only ``torchao-int8dq-compiled`` (and ``torchao-fp8-compiled``, GPU only) pay for it.

    Saving stores the recipe, not the quantized tensors: the artifact layer saves the *original*
    weights as safetensors and :meth:`load` re-applies ``quantize_`` to them. That is exact, bit for
    bit, because quantizing is a deterministic function of the weights (for one torchao version;
    the artifact's environment fingerprint records which). A compiled variant also saves the
    inductor compile-cache entries its build recorded, as the inductor backend does, so a load
    compiles from that cache instead of generating code again; those bytes are pickles, so the
    artifact layer uses them only for a pinned artifact.

    Args:
        recipe: ``"int8wo"``, ``"int8dq"`` or ``"fp8"`` (see :data:`RECIPES`).
        compile: run the quantized module under ``torch.compile`` (default mode), with torchao's
            recommended inductor options scoped to this compile.
    """

    libraries = ("torchao", "triton")
    extra = "torchao"

    def __init__(self, recipe: str = "int8wo", compile: bool = False) -> None:
        if recipe not in RECIPES:
            raise BackendError(f"unknown torchao recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
        super().__init__(recipe=recipe, compile=compile)
        self.name = f"torchao-{recipe}" + ("-compiled" if compile else "")

    @property
    def recipe(self) -> Recipe:
        return RECIPES[self.options["recipe"]]

    @property
    def precision(self) -> str:  # type: ignore[override]
        return self.recipe.precision

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        ok, reason = super().available(device)
        if not ok:
            return ok, reason
        error = _torchao_import_error()
        if error is not None:
            return False, error
        if self.recipe.needs_fp8_gpu:
            fp8_reason = _fp8_unsupported_reason(torch.device(device))
            if fp8_reason is not None:
                return False, fp8_reason
        return True, ""

    @property
    def uses_inductor(self) -> bool:
        return bool(self.options["compile"])

    @property
    def payload(self) -> Payload:  # type: ignore[override]
        """A compiled variant saves inductor's compile cache; a plain one only a recipe (data)."""
        return Payload.COMPILE_CACHE if self.options["compile"] else Payload.WEIGHTS

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        quantized = self._quantize(module, ctx.device)
        if not self.options["compile"]:
            with torch.no_grad():
                for args, kwargs in samples:
                    quantized(*args, **kwargs)
            return quantized
        runner = TorchAOCompiled(compile_isolated(quantized, dynamic=False, options=dict(_INDUCTOR_OPTIONS)))
        before = compile_counters()["graphs_traced"]
        with fresh_artifact_recording():
            for i, (args, kwargs) in enumerate(samples):
                if i == 0:
                    # Compile the first graph with the known dynamic dims already symbolic, so
                    # the second sample does not trigger a recompile.
                    args, kwargs = _mark_dynamic(args, kwargs, ctx.dynamic_axes)
                runner(*args, **kwargs)
            saved = torch.compiler.save_cache_artifacts()
        ensure_something_compiled(before, self.name)
        if saved is not None:
            runner.cache_artifacts, info = saved
            runner.cache_info = {kind: len(keys) for kind, keys in info.artifacts.items() if keys}
        return runner

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Nothing but the recipe: the artifact layer saves the original weights."""
        import torchao

        recipe = self.recipe
        file: str | None = None
        cache_info: dict[str, int] = {}
        if isinstance(built, TorchAOCompiled) and built.cache_artifacts is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            (outdir / COMPILE_CACHE_FILE).write_bytes(built.cache_artifacts)
            file, cache_info = COMPILE_CACHE_FILE, dict(built.cache_info)
        return {
            "payload": "torchao recipe re-applied on load" + (", with inductor's compile cache" if file else ""),
            "recipe": self.options["recipe"],
            "config": recipe.config,
            "config_kwargs": dict(recipe.config_kwargs),
            "compile": bool(self.options["compile"]),
            "file": file,
            "cache_artifacts": cache_info,
            "torch": torch.__version__,
            "torchao_version": getattr(torchao, "__version__", "unknown"),
        }

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        """Re-apply the saved recipe to a copy of ``module`` (which holds the original weights)."""
        name = meta.get("recipe")
        known = RECIPES.get(name) if isinstance(name, str) else None
        if (
            known is None
            or known.config != meta.get("config")
            or dict(known.config_kwargs) != dict(meta.get("config_kwargs") or {})
        ):
            recipes = ", ".join(f"{k}={r.config}{dict(r.config_kwargs)}" for k, r in RECIPES.items())
            raise BackendError(
                f"artifact asks for torchao recipe {name!r} with {meta.get('config')!r}{meta.get('config_kwargs')!r}, "
                f"which this aitune-ci does not apply (it knows {recipes}); "
                "re-run the tune with --aitune-update to rebuild the artifact"
            )
        backend = TorchAOBackend(recipe=name, compile=bool(meta.get("compile", False)))
        quantized = backend._quantize(module, ctx.device)
        if not backend.options["compile"]:
            return quantized
        if meta.get("file"):
            hot_load_compile_cache(payload_file(indir, meta["file"]), meta.get("torch"))
        return TorchAOCompiled(compile_isolated(quantized, dynamic=False, options=dict(_INDUCTOR_OPTIONS)))

    def _quantize(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        ok, reason = self.available(device)
        if not ok:
            raise BackendUnavailable(self.name, reason)
        from torchao.quantization import quantize_

        quantized = copy.deepcopy(module)
        quantize_(quantized, self.recipe.make_config())
        converted, total = converted_linear_layers(quantized)
        problem = conversion_problem(self.name, converted, total, model=type(module).__name__)
        if problem is not None:
            message = (
                f"{problem} (torchao's {self.recipe.config} applies to nn.Linear layers only; "
                "fp8 also needs both dims to be multiples of 16)"
            )
            if total == 0:  # nothing of its kind to work on; layers it skipped are a failure to see
                model = type(module).__name__
                raise BackendNotApplicable(
                    message, reason=f"{model} has no nn.Linear layer, the only kind {self.name} quantizes"
                )
            raise BackendError(message)
        return quantized.eval()


def _mark_dynamic(
    args: tuple[Any, ...], kwargs: dict[str, Any], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Aliases of the top-level input tensors with their dynamic dims marked (the user's stay untouched)."""

    def alias(path: str, value: Any) -> Any:
        dims = dynamic_axes.get(path)
        if not dims or not isinstance(value, torch.Tensor):
            return value
        view = value.detach()
        for dim in dims:
            torch._dynamo.maybe_mark_dynamic(view, int(dim))
        return view

    return (
        tuple(alias(f"args.{i}", a) for i, a in enumerate(args)),
        {k: alias(f"kwargs.{k}", v) for k, v in kwargs.items()},
    )
