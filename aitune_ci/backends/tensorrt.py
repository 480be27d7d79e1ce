"""TensorRT through ONNX, plus the shape-profile logic shared with the Torch-TensorRT backend.

TensorRT cannot be installed on the machines this project is developed on, so nothing here that
touches ``tensorrt`` runs in the default test suite; it is written against the TensorRT 10/11
Python API (name-based I/O, ``execute_async_v3``) and exercised by the ``gpu`` tests. The pure
parts (profiles, export shapes, dtype mapping) are unit-tested on the CPU.

Precision: TensorRT 11 removed weak typing (``BuilderFlag.FP16``) and every network is strongly
typed, so the fp16/bf16 variants export the ONNX graph from a half-precision copy of the module
and build a strongly typed network; inputs are cast at the boundary and outputs cast back to the
dtypes the eager module returns, so the built module is a drop-in replacement.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Sequence

import torch

from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import ArtifactError, BackendError
from aitune_ci.samples import Sample

if TYPE_CHECKING:
    from torch.export import Dim

__all__ = [
    "HALF_DTYPES",
    "ShapeProfile",
    "TensorRTBackend",
    "TensorRTEngineModule",
    "check_shape_in_profile",
    "export_sample_index",
    "shape_profiles",
    "tensor_inputs",
    "torch_dtype_for_trt",
    "torch_export_dims",
    "torch_export_dynamic_shapes",
]

Shape = tuple[int, ...]

#: Precision name -> the dtype a half-precision variant runs at.
HALF_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}
TRT_PRECISIONS = ("fp32", "fp16", "bf16")

#: Oldest TensorRT with the name-based I/O API and strongly typed networks used here.
MIN_TENSORRT = (10, 0)
TENSORRT_INSTALL_HINT = "pip install 'aitune-ci[tensorrt]' on a machine with a CUDA GPU"


class ShapeProfile(NamedTuple):
    """One input's TensorRT optimization profile: the shapes it is built for and tuned at."""

    min: Shape
    opt: Shape
    max: Shape

    @property
    def is_static(self) -> bool:
        return self.min == self.max

    def to_json(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[int]]) -> ShapeProfile:
        return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))


# --------------------------------------------------------------------------------------------
# Pure shape logic (no torch): unit-tested in milliseconds.
# --------------------------------------------------------------------------------------------


def shape_profiles(
    samples_shapes: Sequence[Mapping[str, Sequence[int]]],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> dict[str, ShapeProfile]:
    """Min/opt/max shapes per input, from the shapes the samples really have.

    A dynamic axis gets min = the smallest size seen, max = the largest, and opt = the median
    size (the lower median, so it is a size a sample really had): TensorRT tunes its kernels for
    opt, and the typical sample is a better target than the largest one. Every other axis must
    have one size across all samples.

    Args:
        samples_shapes: one ``{input_path: shape}`` mapping per sample (``args.0``, ``kwargs.x``).
        dynamic_axes: ``{input_path: {dim_index: dim_name}}``; empty means all static.

    Returns:
        ``{input_path: ShapeProfile(min, opt, max)}`` for every input, in the first sample's order.

    Raises:
        BackendError: no samples, inputs that differ between samples, ranks that differ, a
            dynamic axis that names an unknown input or a dim beyond the rank, or a static axis
            whose size varies.
    """
    if not samples_shapes:
        raise BackendError("no samples to build a TensorRT shape profile from; give at least one sample")
    paths = list(samples_shapes[0])
    for i, shapes in enumerate(samples_shapes[1:], start=1):
        if set(shapes) != set(paths):
            missing = sorted(set(paths) - set(shapes))
            extra = sorted(set(shapes) - set(paths))
            raise BackendError(
                f"sample {i} has different tensor inputs than sample 0 (missing {missing}, extra {extra}); "
                "every sample must pass the same inputs"
            )
    dynamic_axes = _int_axes(dynamic_axes)
    for path in dynamic_axes:
        if path not in paths:
            raise BackendError(f"dynamic_axes names input {path!r}, but the samples' tensor inputs are {paths}")

    profiles: dict[str, ShapeProfile] = {}
    for path in paths:
        shapes = [tuple(int(d) for d in s[path]) for s in samples_shapes]
        ranks = {len(s) for s in shapes}
        if len(ranks) != 1:
            raise BackendError(
                f"input {path} has different ranks across samples ({', '.join(str(list(s)) for s in shapes)}); "
                "TensorRT needs one rank per input"
            )
        rank = ranks.pop()
        axes = dynamic_axes.get(path, {})
        for dim in axes:
            if not 0 <= dim < rank:
                raise BackendError(f"dynamic_axes names dim {dim} of {path}, which has rank {rank}")
        lo, opt, hi = [], [], []
        for dim in range(rank):
            sizes = sorted(s[dim] for s in shapes)
            if dim not in axes and sizes[0] != sizes[-1]:
                raise BackendError(
                    f"input {path} dim {dim} takes sizes {sorted(set(sizes))} across samples but is not a dynamic "
                    "axis; declare it in TuneSpec.dynamic_axes or give samples of one shape"
                )
            lo.append(sizes[0])
            opt.append(sizes[(len(sizes) - 1) // 2])
            hi.append(sizes[-1])
        profiles[path] = ShapeProfile(tuple(lo), tuple(opt), tuple(hi))
    return profiles


def _int_axes(dynamic_axes: Mapping[str, Mapping[Any, str]]) -> dict[str, dict[int, str]]:
    """Dim indices as ints (a JSON round trip turns them into strings)."""
    return {path: {int(dim): name for dim, name in axes.items()} for path, axes in dynamic_axes.items()}


def check_shape_in_profile(path: str, shape: Sequence[int], profile: ShapeProfile) -> None:
    """Raise a clear error when a call's input shape is outside the built profile.

    Raises:
        BackendError: rank differs, or a dimension is below min or above max.
    """
    shape = tuple(int(d) for d in shape)
    if len(shape) != len(profile.min):
        raise BackendError(
            f"input {path} has shape {list(shape)} but the engine was built for rank {len(profile.min)} "
            f"(min {list(profile.min)}, max {list(profile.max)})"
        )
    for dim, (size, lo, hi) in enumerate(zip(shape, profile.min, profile.max, strict=True)):
        if not lo <= size <= hi:
            raise BackendError(
                f"input {path} has shape {list(shape)}: dim {dim} = {size} is outside the range [{lo}, {hi}] the "
                "TensorRT engine was built for from the samples; add a sample of this size and rebuild"
            )


def export_sample_index(
    samples_shapes: Sequence[Mapping[str, Sequence[int]]], profiles: Mapping[str, ShapeProfile]
) -> int:
    """The sample to trace with: the one with the largest dynamic dimensions.

    ``torch.export`` specializes a dimension whose example size is 0 or 1, so tracing at the
    largest sizes keeps every dynamic axis symbolic.

    Raises:
        BackendError: a dynamic axis never exceeds size 1, so it cannot be traced as dynamic.
    """
    for path, p in profiles.items():
        for dim, (lo, hi) in enumerate(zip(p.min, p.max, strict=True)):
            if lo != hi and hi < 2:
                raise BackendError(
                    f"input {path} dim {dim} only takes sizes {lo}..{hi}; torch.export cannot trace a dynamic "
                    "dimension from examples of size 0 or 1. Add a sample where it is at least 2"
                )

    def dynamic_volume(i: int) -> int:
        return sum(
            int(samples_shapes[i][path][dim])
            for path, p in profiles.items()
            for dim in range(len(p.min))
            if p.min[dim] != p.max[dim]
        )

    return max(range(len(samples_shapes)), key=lambda i: (dynamic_volume(i), -i))


def _dim_symbol(name: str) -> str:
    """A valid Python identifier for ``torch.export.Dim`` from a user's dim name."""
    symbol = re.sub(r"\W", "_", name)
    return symbol if symbol and not symbol[0].isdigit() else f"d_{symbol}"


def trt_tensor_name(path: str) -> str:
    """The ONNX/TensorRT tensor name for an input path (``args.0`` -> ``args_0``)."""
    return re.sub(r"\W", "_", path)


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


# --------------------------------------------------------------------------------------------
# torch-side helpers (run on the CPU too).
# --------------------------------------------------------------------------------------------


def tensor_inputs(sample: Sample) -> dict[str, torch.Tensor]:
    """``{input_path: tensor}`` for one sample, args first, then kwargs.

    Raises:
        BackendError: an input that is not a tensor (TensorRT engines take tensors only).
    """
    args, kwargs = sample
    out: dict[str, torch.Tensor] = {}
    for path, value in [(f"args.{i}", a) for i, a in enumerate(args)] + [(f"kwargs.{k}", v) for k, v in kwargs.items()]:
        if not isinstance(value, torch.Tensor):
            raise BackendError(
                f"input {path} is a {type(value).__name__}; TensorRT backends take tensor inputs only. "
                "Wrap the model so constants are bound inside forward and only tensors are passed"
            )
        out[path] = value
    return out


def torch_export_dims(
    profiles: Mapping[str, ShapeProfile], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> dict[str, dict[int, Dim]]:
    """``{input_path: {dim: torch.export.Dim}}`` for the axes that really vary.

    Axes with the same name share one ``Dim`` (so torch.export keeps them equal, e.g. the batch
    of ``input_ids`` and ``attention_mask``), spanning the union of their ranges. A declared
    dynamic axis that took a single size stays static.
    """
    from torch.export import Dim

    dynamic_axes = _int_axes(dynamic_axes)
    ranges: dict[str, tuple[int, int]] = {}
    for path, axes in dynamic_axes.items():
        p = profiles[path]
        for dim, name in axes.items():
            if p.min[dim] == p.max[dim]:
                continue
            lo, hi = ranges.get(name, (p.min[dim], p.max[dim]))
            ranges[name] = (min(lo, p.min[dim]), max(hi, p.max[dim]))
    dims = {name: Dim(_dim_symbol(name), min=lo, max=hi) for name, (lo, hi) in ranges.items()}
    out: dict[str, dict[int, Dim]] = {}
    for path, axes in dynamic_axes.items():
        per_path = {
            dim: dims[name]
            for dim, name in axes.items()
            if name in dims and profiles[path].min[dim] != profiles[path].max[dim]
        }
        if per_path:
            out[path] = per_path
    return out


def torch_export_dynamic_shapes(
    module: torch.nn.Module, sample: Sample, dims: Mapping[str, Mapping[int, Dim]]
) -> dict[str, Any] | None:
    """The ``dynamic_shapes`` argument of ``torch.export.export`` for ``module(*args, **kwargs)``.

    Keyed by the forward parameter names, as ``torch.export`` binds them; ``None`` when static.
    """
    if not dims:
        return None
    args, kwargs = sample
    spec_by_id = {id(t): dims.get(path) for path, t in tensor_inputs(sample).items()}
    bound = inspect.signature(module.forward).bind(*args, **kwargs)

    def spec(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return spec_by_id.get(id(value))
        if isinstance(value, tuple):  # *args
            return tuple(spec(v) for v in value)
        if isinstance(value, dict):  # **kwargs
            return {k: spec(v) for k, v in value.items()}
        return None

    return {name: spec(value) for name, value in bound.arguments.items()}


def cuda_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"TensorRT needs a CUDA GPU (device is {device.type})"
    if not torch.cuda.is_available():
        return (
            f"TensorRT needs a CUDA GPU, but CUDA is not available to torch {torch.__version__} "
            f"(built with CUDA {torch.version.cuda})"
        )
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


def import_reason(module_name: str, hint: str) -> tuple[Any | None, str | None]:
    """Import an optional library; on failure, the reason naming what is missing."""
    if importlib.util.find_spec(module_name) is None:
        return None, f"{module_name} is not installed ({hint})"
    try:
        return importlib.import_module(module_name), None
    except Exception as exc:  # a broken install (missing libnvinfer, CUDA mismatch) must read clearly
        return None, f"{module_name} is installed but cannot be imported: {type(exc).__name__}: {exc}"


def join_reasons(reasons: Sequence[str | None]) -> tuple[bool, str]:
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
    from torch.utils import _pytree as pytree

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
        from torch.utils import _pytree as pytree

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
        device = torch.device(device)
        trt, lib_reason = import_reason("tensorrt", TENSORRT_INSTALL_HINT)
        if trt is not None and version_tuple(trt.__version__) < MIN_TENSORRT:
            lib_reason = (
                f"tensorrt {trt.__version__} is too old; this backend needs TensorRT >= 10 (name-based I/O API)"
            )
        onnx_reason = None
        if importlib.util.find_spec("onnxscript") is None:
            onnx_reason = (
                "onnxscript is not installed (needed by torch.onnx.export(dynamo=True); pip install 'aitune-ci[onnx]')"
            )
        gpu_reason = cuda_reason(device)
        bf16_reason = None
        if gpu_reason is None and self.precision == "bf16" and not torch.cuda.is_bf16_supported():
            bf16_reason = "this GPU has no native bf16 support"
        return join_reasons([lib_reason, onnx_reason, gpu_reason, bf16_reason])

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
        from torch.utils import _pytree as pytree

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
        from torch.utils import _pytree as pytree

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
