"""TensorRT through ONNX, plus the availability and portability checks shared with Torch-TensorRT.

Nothing here that touches ``tensorrt`` runs without a CUDA GPU and TensorRT installed: it is
written against the TensorRT 10/11 Python API (name-based I/O, ``execute_async_v3``) and exercised
by the ``gpu`` tests. The parts that need neither (profiles and export shapes, in
``_tensorrt_shapes``; dtype mapping; the ONNX export) are unit-tested on the CPU.

Precision: TensorRT 11 removed weak typing (``BuilderFlag.FP16``) and every network is strongly
typed, so the fp16/bf16 variants export the ONNX graph from a half-precision copy of the module
and build a strongly typed network; inputs are cast at the boundary and outputs cast back to the
dtypes the eager module returns, so the built module is a drop-in replacement.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch
from torch.utils import _pytree as pytree

from aitune_ci.backends._tensorrt_shapes import (
    ShapeProfile,
    check_shape_in_profile,
    export_sample_index,
    shape_profiles,
    tensor_inputs,
    torch_export_dims,
    trt_tensor_name,
)
from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import ArtifactError, BackendError
from aitune_ci.samples import Sample

if TYPE_CHECKING:
    from torch.export import Dim

__all__ = [
    "HALF_DTYPES",
    "TRT_PRECISIONS",
    "TensorRTBackend",
    "TensorRTEngineModule",
    "check_engine_portable",
    "export_onnx",
    "gpu_fingerprint",
    "gpu_reason",
    "join_reasons",
    "library_reason",
    "torch_dtype_for_trt",
    "version_tuple",
]

#: Precision name -> the dtype a half-precision variant runs at.
HALF_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
TRT_PRECISIONS = ("fp32", "fp16", "bf16")

#: Oldest TensorRT with the name-based I/O API and strongly typed networks used here.
MIN_TENSORRT = (10, 0)
TENSORRT_INSTALL_HINT = "pip install 'aitune-ci[tensorrt]' on a machine with a CUDA GPU"


_TRT_TO_TORCH = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
    "UINT8": torch.uint8,
    "FP8": torch.float8_e4m3fn,
}


def torch_dtype_for_trt(trt_dtype_name: str) -> torch.dtype:
    """The torch dtype for a ``tensorrt.DataType`` name (``"FLOAT"``, ``"HALF"``, ...).

    Raises:
        BackendError: a TensorRT type with no torch tensor equivalent (INT4, FP4, E8M0).
    """
    name = trt_dtype_name.rsplit(".", 1)[-1].upper()
    try:
        return _TRT_TO_TORCH[name]
    except KeyError:
        raise BackendError(
            f"TensorRT engine I/O type {trt_dtype_name} has no torch equivalent; supported: {', '.join(_TRT_TO_TORCH)}"
        ) from None


def gpu_reason(device: torch.device, precision: str) -> str | None:
    """Why a TensorRT engine cannot run on ``device`` at ``precision`` (None: it can)."""
    if device.type != "cuda":
        return f"TensorRT needs a CUDA GPU (device is {device.type})"
    if not torch.cuda.is_available():
        return (
            f"TensorRT needs a CUDA GPU, but CUDA is not available to torch {torch.__version__} "
            f"(built with CUDA {torch.version.cuda})"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        return "this GPU has no native bf16 support"
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    """``(major, minor, patch)`` of a version string, for comparisons (``"10.3.0.post1"`` -> ``(10, 3, 0)``)."""
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def library_reason(module_name: str, minimum: tuple[int, ...], needs: str) -> tuple[Any | None, str | None]:
    """Import an optional TensorRT library: ``(module, None)``, or why it cannot be used here.

    Args:
        module_name: what to import (``tensorrt``, ``torch_tensorrt``).
        minimum: the oldest version that works; an older one is a reason.
        needs: what the reason says this backend needs (``TensorRT >= 10 (name-based I/O API)``).
    """
    if importlib.util.find_spec(module_name) is None:
        return None, f"{module_name} is not installed ({TENSORRT_INSTALL_HINT})"
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a broken install (missing libnvinfer, CUDA mismatch) must read clearly
        return None, f"{module_name} is installed but cannot be imported: {type(exc).__name__}: {exc}"
    if version_tuple(module.__version__) < minimum:
        return module, f"{module_name} {module.__version__} is too old; this backend needs {needs}"
    return module, None


def join_reasons(reasons: Sequence[str | None]) -> tuple[bool, str]:
    """``available``'s answer from the reasons found: ``(True, "")`` when there are none."""
    found = [r for r in reasons if r]
    return (False, "; ".join(found)) if found else (True, "")


def gpu_fingerprint(device: torch.device) -> dict[str, Any]:
    """GPU name and compute capability: a TensorRT engine only runs where these match."""
    props = torch.cuda.get_device_properties(device)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}"}


def check_engine_portable(meta: Mapping[str, Any], here: Mapping[str, Any], what: str) -> None:
    """Refuse an engine built on another GPU or library version: it would fail or run wrong.

    Raises:
        ArtifactError: naming every field that differs and how to rebuild.
    """
    diffs = [f"{k} {meta.get(k)!r} (here {here.get(k)!r})" for k in here if meta.get(k) != here.get(k)]
    if diffs:
        raise ArtifactError(
            f"this {what} was built with {', '.join(diffs)}; TensorRT engines are not portable across GPUs or "
            "TensorRT versions. Rebuild it on this machine (pytest --aitune --aitune-update)"
        )


def _output_dtypes_and_spec(module: torch.nn.Module, sample: Sample) -> tuple[list[torch.dtype], Any]:
    """Run the eager module once: its output leaves' dtypes and pytree structure."""
    args, kwargs = sample
    with torch.inference_mode():
        out = module(*args, **kwargs)
    leaves, spec = pytree.tree_flatten(out)
    for i, leaf in enumerate(leaves):
        if not isinstance(leaf, torch.Tensor):
            raise BackendError(
                f"output leaf {i} is a {type(leaf).__name__}; a TensorRT engine returns tensors only. "
                "Return only tensors from forward (or tune the submodule that does)"
            )
    return [leaf.dtype for leaf in leaves], spec


class _FlatInputs(torch.nn.Module):
    """Calls ``module`` from flat positional tensors, so ONNX input order is exactly ``paths``."""

    def __init__(self, module: torch.nn.Module, paths: Sequence[str]) -> None:
        super().__init__()
        self.module = module
        self.paths = list(paths)

    def forward(self, *flat: torch.Tensor) -> Any:
        args: list[torch.Tensor] = []
        kwargs: dict[str, torch.Tensor] = {}
        for path, tensor in zip(self.paths, flat, strict=True):
            kind, key = path.split(".", 1)
            if kind == "args":
                args.append(tensor)
            else:
                kwargs[key] = tensor
        return self.module(*args, **kwargs)


@dataclass(frozen=True)
class OnnxExport:
    """Where the ONNX file is and the names its inputs/outputs got."""

    path: Path
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def export_onnx(
    module: torch.nn.Module,
    sample: Sample,
    dims: Mapping[str, Mapping[int, Dim]],
    path: Path,
    n_outputs: int,
    half_dtype: torch.dtype | None = None,
) -> OnnxExport:
    """Export ``module`` to ONNX with ``torch.onnx.export(dynamo=True)``, inputs named after their paths.

    With ``half_dtype`` the export is of a half-precision copy (floating inputs cast too), so a
    strongly typed TensorRT network runs it at that precision. Runs on the CPU as well.
    """
    inputs = tensor_inputs(sample)
    paths = list(inputs)
    flat = list(inputs.values())
    if half_dtype is not None:
        module = copy.deepcopy(module).to(half_dtype)
        flat = [t.to(half_dtype) if t.is_floating_point() else t for t in flat]
    wrapper = _FlatInputs(module, paths).eval()
    input_names = tuple(trt_tensor_name(p) for p in paths)
    output_names = tuple(f"output_{i}" for i in range(n_outputs))
    dynamic_shapes = {"flat": tuple(dims.get(p) for p in paths)} if dims else None
    program = torch.onnx.export(
        wrapper,
        tuple(flat),
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        input_names=list(input_names),
        output_names=list(output_names),
        verbose=False,
    )
    got_inputs = tuple(v.name for v in program.model.graph.inputs)
    got_outputs = tuple(v.name for v in program.model.graph.outputs)
    if got_inputs != input_names:
        raise BackendError(
            f"the ONNX export has inputs {list(got_inputs)}, expected {list(input_names)}; torch.onnx.export "
            "changed the input signature, so the engine's inputs could not be matched to the call's"
        )
    if got_outputs != output_names:
        raise BackendError(f"the ONNX export has outputs {list(got_outputs)}, expected {list(output_names)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path))
    return OnnxExport(path, input_names, output_names)


# --------------------------------------------------------------------------------------------
# The backend (needs tensorrt and a CUDA GPU).
# --------------------------------------------------------------------------------------------


class TensorRTEngineModule(torch.nn.Module):
    """Runs a deserialized TensorRT engine with torch tensors as its I/O buffers.

    Uses TensorRT's name-based I/O API (``set_input_shape`` / ``set_tensor_address`` /
    ``execute_async_v3``) on the caller's CUDA stream; on the legacy default stream, which
    makes TensorRT synchronize, it enqueues on a side stream ordered with the caller's.
    """

    def __init__(
        self,
        engine: Any,
        device: torch.device,
        input_paths: Sequence[str],
        profiles: Mapping[str, ShapeProfile],
        output_dtypes: Sequence[torch.dtype],
        out_spec: Any,
        meta: Mapping[str, Any],
    ) -> None:
        super().__init__()
        import tensorrt as trt

        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context (out of GPU memory?)")
        self.device = device
        self.input_paths = list(input_paths)
        self.profiles = dict(profiles)
        self.output_dtypes = list(output_dtypes)
        self.out_spec = out_spec
        self.meta = dict(meta)
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = {n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT}
        self._input_names = [trt_tensor_name(p) for p in self.input_paths]
        self._output_names = [f"output_{i}" for i in range(len(self.output_dtypes))]
        if set(self._input_names) != inputs or set(self._output_names) != set(names) - inputs:
            raise BackendError(
                f"the TensorRT engine's I/O tensors {sorted(names)} do not match the expected inputs "
                f"{self._input_names} and outputs {self._output_names}"
            )
        self._input_dtypes = [torch_dtype_for_trt(engine.get_tensor_dtype(n).name) for n in self._input_names]
        self._engine_output_dtypes = [torch_dtype_for_trt(engine.get_tensor_dtype(n).name) for n in self._output_names]
        self._side_stream: torch.cuda.Stream | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        given = tensor_inputs((args, kwargs))
        if set(given) != set(self.input_paths):
            raise BackendError(f"called with inputs {list(given)}; the engine was built for {self.input_paths}")
        caller = torch.cuda.current_stream(self.device)
        on_default = caller == torch.cuda.default_stream(self.device)
        if on_default:
            if self._side_stream is None:
                self._side_stream = torch.cuda.Stream(self.device)
            stream = self._side_stream
            stream.wait_stream(caller)
        else:
            stream = caller
        keep_alive = []
        for path, name, dtype in zip(self.input_paths, self._input_names, self._input_dtypes, strict=True):
            tensor = given[path]
            check_shape_in_profile(path, tensor.shape, self.profiles[path])
            tensor = tensor.to(device=self.device, dtype=dtype).contiguous()
            if tensor.numel() == 0:  # TensorRT rejects a null address; any valid one will do
                tensor = torch.empty(1, dtype=dtype, device=self.device).as_strided(tensor.shape, tensor.stride())
            keep_alive.append(tensor)
            if not self.context.set_input_shape(name, tuple(tensor.shape)):
                raise BackendError(f"TensorRT rejected shape {list(tensor.shape)} for input {path}")
            self.context.set_tensor_address(name, tensor.data_ptr())
        outputs = []
        for name, dtype in zip(self._output_names, self._engine_output_dtypes, strict=True):
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(
                    f"output {name} has a data-dependent shape {shape}; this backend does not support it"
                )
            out = torch.empty(shape, dtype=dtype, device=self.device)
            outputs.append(out)
            bound = out if out.numel() else torch.empty(1, dtype=dtype, device=self.device)
            keep_alive.append(bound)
            self.context.set_tensor_address(name, bound.data_ptr())
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT execute_async_v3 failed; see the TensorRT log above")
        if on_default:
            caller.wait_stream(stream)
        outputs = [o if o.dtype == d else o.to(d) for o, d in zip(outputs, self.output_dtypes, strict=True)]
        return pytree.tree_unflatten(outputs, self.out_spec)


@register_backend("tensorrt", precision="fp32")
@register_backend("tensorrt-fp16", precision="fp16")
class TensorRTBackend(Backend):
    """TensorRT engine built from a ``torch.onnx.export(dynamo=True)`` graph, one optimization profile.

    Options:
        precision: ``fp32`` (TF32 disabled, so results stay at fp32 accuracy), ``fp16`` or ``bf16``.
        workspace_bytes: TensorRT workspace pool limit (default: TensorRT's, the GPU's memory).
        optimization_level: TensorRT builder optimization level 0-5 (default: TensorRT's, 3).
    """

    device_types = frozenset({"cuda"})
    payload = Payload.NATIVE
    libraries = ("tensorrt",)
    extra = "tensorrt"

    def __init__(
        self, precision: str = "fp32", workspace_bytes: int | None = None, optimization_level: int | None = None
    ) -> None:
        if precision not in TRT_PRECISIONS:
            raise BackendError(f"TensorRT precision {precision!r} is not one of {', '.join(TRT_PRECISIONS)}")
        options: dict[str, Any] = {"precision": precision}
        if workspace_bytes is not None:
            options["workspace_bytes"] = int(workspace_bytes)
        if optimization_level is not None:
            options["optimization_level"] = int(optimization_level)
        super().__init__(**options)

    @property
    def precision(self) -> str:  # type: ignore[override]
        return self.options["precision"]

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        _, lib_reason = library_reason("tensorrt", MIN_TENSORRT, "TensorRT >= 10 (name-based I/O API)")
        onnx_reason = None
        if importlib.util.find_spec("onnxscript") is None:
            onnx_reason = (
                "onnxscript is not installed (needed by torch.onnx.export(dynamo=True); pip install 'aitune-ci[onnx]')"
            )
        return join_reasons([lib_reason, onnx_reason, gpu_reason(torch.device(device), self.precision)])

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        import tensorrt as trt

        samples_shapes = [{p: tuple(t.shape) for p, t in tensor_inputs(s).items()} for s in samples]
        profiles = shape_profiles(samples_shapes, ctx.dynamic_axes)
        sample = samples[export_sample_index(samples_shapes, profiles)]
        output_dtypes, out_spec = _output_dtypes_and_spec(module, sample)
        dims = torch_export_dims(profiles, ctx.dynamic_axes)
        onnx = export_onnx(
            module, sample, dims, ctx.workdir / "model.onnx", len(output_dtypes), HALF_DTYPES.get(self.precision)
        )

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        # Strongly typed: layer precisions follow the ONNX graph (always on, and the only mode, in TRT 11).
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx.path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse the ONNX export: {errors}")
        config = builder.create_builder_config()
        if self.precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # TF32 is on by default and would loosen fp32 accuracy
        if "workspace_bytes" in self.options:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.options["workspace_bytes"])
        if "optimization_level" in self.options:
            config.builder_optimization_level = self.options["optimization_level"]
        profile = builder.create_optimization_profile()
        for path, name in zip(profiles, onnx.input_names, strict=True):
            p = profiles[path]
            profile.set_shape(name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise BackendError("TensorRT failed to build the engine; see the TensorRT log above")
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if engine is None:
            raise BackendError("TensorRT could not deserialize the engine it just built")
        meta = {
            "precision": self.precision,
            "tensorrt": trt.__version__,
            **gpu_fingerprint(ctx.device),
        }
        return TensorRTEngineModule(engine, ctx.device, list(profiles), profiles, output_dtypes, out_spec, meta)

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        if not isinstance(built, TensorRTEngineModule):
            raise BackendError(f"backend {self.name!r} cannot save a {type(built).__name__}")
        try:
            out_spec = pytree.treespec_dumps(built.out_spec)
        except Exception as exc:
            raise BackendError(f"the model's output structure cannot be saved as JSON: {exc}") from exc
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / "engine.plan").write_bytes(bytes(built.engine.serialize()))
        return {
            "format": "tensorrt-plan",
            "file": "engine.plan",
            **built.meta,
            "inputs": built.input_paths,
            "profiles": {p: built.profiles[p].to_json() for p in built.input_paths},
            "output_dtypes": [str(d).removeprefix("torch.") for d in built.output_dtypes],
            "out_spec": json.loads(out_spec),
        }

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        import tensorrt as trt

        if meta.get("format") != "tensorrt-plan":
            raise ArtifactError(f"not a TensorRT plan payload (format {meta.get('format')!r})")
        here = {"tensorrt": trt.__version__, **gpu_fingerprint(ctx.device)}
        check_engine_portable(meta, here, "TensorRT engine")
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine((indir / meta["file"]).read_bytes())
        if engine is None:
            raise ArtifactError(f"TensorRT could not deserialize {indir / meta['file']}; rebuild it on this machine")
        profiles = {p: ShapeProfile.from_json(v) for p, v in meta["profiles"].items()}
        output_dtypes = [getattr(torch, d) for d in meta["output_dtypes"]]
        out_spec = pytree.treespec_loads(json.dumps(meta["out_spec"]))
        keep = {k: meta[k] for k in ("precision", "tensorrt", "gpu", "compute_capability")}
        return TensorRTEngineModule(engine, ctx.device, meta["inputs"], profiles, output_dtypes, out_spec, keep)
