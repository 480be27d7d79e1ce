"""Torch-TensorRT (dynamo): TensorRT engines inside a torch graph, saved as an ExportedProgram.

The flow is the one Torch-TensorRT documents for ahead-of-time use: ``torch.export.export`` with
``Dim`` ranges taken from the samples (one shared ``Dim`` per dim name, so equal axes stay
equal), ``torch_tensorrt.dynamo.compile`` with ``torch_tensorrt.Input(min/opt/max)`` per input,
``torch_tensorrt.save(..., output_format="exported_program")`` and ``torch_tensorrt.load``.

Precision: since Torch-TensorRT 2.10 networks are strongly typed and ``enabled_precisions`` is
rejected (2.13 removed it), so fp16/bf16 use Torch-TensorRT's rule-based autocast
(``enable_autocast=True, autocast_low_precision_type=...``), which keeps the model's I/O dtypes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from aitune_ci.backends._tensorrt_shapes import (
    ShapeProfile,
    export_sample_index,
    shape_profiles,
    tensor_inputs,
    torch_export_dims,
    torch_export_dynamic_shapes,
    trt_tensor_name,
)
from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import register_backend
from aitune_ci.backends.tensorrt import (
    HALF_DTYPES,
    TRT_PRECISIONS,
    check_engine_portable,
    gpu_fingerprint,
    gpu_reason,
    join_reasons,
    library_reason,
    version_tuple,
)
from aitune_ci.errors import ArtifactError, BackendError
from aitune_ci.samples import Sample

__all__ = ["MIN_TORCH_TENSORRT", "TorchTensorRTBackend", "TorchTensorRTModule"]

#: Oldest Torch-TensorRT with ``enable_autocast`` and ``save(..., dynamic_shapes=...)``.
MIN_TORCH_TENSORRT = (2, 11)


class TorchTensorRTModule(torch.nn.Module):
    """A Torch-TensorRT compiled graph plus what ``save`` needs to re-export it."""

    def __init__(
        self,
        compiled: torch.nn.Module,
        profiles: Mapping[str, ShapeProfile],
        meta: Mapping[str, Any],
        example: Sample | None = None,
        dynamic_shapes: Mapping[str, Any] | None = None,
        exported_program: Any = None,
    ) -> None:
        super().__init__()
        self.compiled = compiled
        self.profiles = dict(profiles)
        self.meta = dict(meta)
        self.example = example
        self.dynamic_shapes = dynamic_shapes
        #: Set when loaded from an artifact: saved again as is, with no retrace.
        self.exported_program = exported_program

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.compiled(*args, **kwargs)


def _torch_tensorrt_versions() -> dict[str, str]:
    import tensorrt
    import torch_tensorrt

    return {"torch_tensorrt": torch_tensorrt.__version__, "tensorrt": tensorrt.__version__}


@register_backend("torch-tensorrt", precision="fp32")
@register_backend("torch-tensorrt-fp16", precision="fp16")
class TorchTensorRTBackend(Backend):
    """``torch_tensorrt.dynamo.compile`` of a ``torch.export`` program; unsupported ops stay in torch.

    Options:
        precision: ``fp32`` (``disable_tf32=True``, so results stay at fp32 accuracy), ``fp16``
            or ``bf16`` (Torch-TensorRT autocast).
        min_block_size: smallest run of convertible ops given to TensorRT (Torch-TensorRT default 5).
        optimization_level: TensorRT builder optimization level 0-5.
        workspace_bytes: TensorRT workspace size limit.
    """

    device_types = frozenset({"cuda"})
    payload = Payload.NATIVE
    libraries = ("torch-tensorrt", "tensorrt")
    extra = "tensorrt"

    def __init__(
        self,
        precision: str = "fp32",
        min_block_size: int | None = None,
        optimization_level: int | None = None,
        workspace_bytes: int | None = None,
    ) -> None:
        if precision not in TRT_PRECISIONS:
            raise BackendError(f"Torch-TensorRT precision {precision!r} is not one of {', '.join(TRT_PRECISIONS)}")
        options: dict[str, Any] = {"precision": precision}
        for key, value in (
            ("min_block_size", min_block_size),
            ("optimization_level", optimization_level),
            ("workspace_bytes", workspace_bytes),
        ):
            if value is not None:
                options[key] = int(value)
        super().__init__(**options)

    @property
    def precision(self) -> str:  # type: ignore[override]
        return self.options["precision"]

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        minimum = ".".join(map(str, MIN_TORCH_TENSORRT))
        ttrt, lib_reason = library_reason(
            "torch_tensorrt",
            MIN_TORCH_TENSORRT,
            f"Torch-TensorRT >= {minimum} (strong typing with autocast, save with dynamic_shapes)",
        )
        if lib_reason is None and ttrt is not None:
            version = version_tuple(ttrt.__version__)
            if version[:2] != version_tuple(torch.__version__)[:2]:
                lib_reason = (
                    f"torch_tensorrt {ttrt.__version__} is built for torch {version[0]}.{version[1]}, "
                    f"but torch is {torch.__version__}; install the matching torch-tensorrt"
                )
        return join_reasons([lib_reason, gpu_reason(torch.device(device), self.precision)])

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        import torch_tensorrt

        samples_shapes = [{p: tuple(t.shape) for p, t in tensor_inputs(s).items()} for s in samples]
        profiles = shape_profiles(samples_shapes, ctx.dynamic_axes)
        example = samples[export_sample_index(samples_shapes, profiles)]
        dims = torch_export_dims(profiles, ctx.dynamic_axes)
        dynamic_shapes = torch_export_dynamic_shapes(module, example, dims)
        args, kwargs = example
        exported = torch.export.export(
            module, tuple(args), kwargs=dict(kwargs), dynamic_shapes=dynamic_shapes, strict=False
        )

        specs = {}
        for path, tensor in tensor_inputs(example).items():
            p = profiles[path]
            if p.is_static:
                specs[path] = torch_tensorrt.Input(shape=p.min, dtype=tensor.dtype, name=trt_tensor_name(path))
            else:
                specs[path] = torch_tensorrt.Input(
                    min_shape=p.min, opt_shape=p.opt, max_shape=p.max, dtype=tensor.dtype, name=trt_tensor_name(path)
                )
        settings: dict[str, Any] = {
            "arg_inputs": [specs[f"args.{i}"] for i in range(len(args))],
            "kwarg_inputs": {k: specs[f"kwargs.{k}"] for k in kwargs},
            "device": ctx.device,
            "disable_tf32": self.precision == "fp32",
        }
        if self.precision in HALF_DTYPES:
            settings["enable_autocast"] = True
            settings["autocast_low_precision_type"] = HALF_DTYPES[self.precision]
        if "min_block_size" in self.options:
            settings["min_block_size"] = self.options["min_block_size"]
        if "optimization_level" in self.options:
            settings["optimization_level"] = self.options["optimization_level"]
        if "workspace_bytes" in self.options:
            settings["workspace_size"] = self.options["workspace_bytes"]
        compiled = torch_tensorrt.dynamo.compile(exported, **settings)
        meta = {"precision": self.precision, **_torch_tensorrt_versions(), **gpu_fingerprint(ctx.device)}
        return TorchTensorRTModule(compiled, profiles, meta, example=example, dynamic_shapes=dynamic_shapes)

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        import torch_tensorrt

        if not isinstance(built, TorchTensorRTModule):
            raise BackendError(f"backend {self.name!r} cannot save a {type(built).__name__}")
        outdir.mkdir(parents=True, exist_ok=True)
        path = outdir / "model.ep"
        if built.exported_program is not None:
            torch_tensorrt.save(built.exported_program, str(path), output_format="exported_program")
        else:
            assert built.example is not None
            args, kwargs = built.example
            try:
                # retrace=True keeps the symbolic shapes, so the loaded program accepts every profiled size.
                torch_tensorrt.save(
                    built.compiled,
                    str(path),
                    output_format="exported_program",
                    arg_inputs=list(args),
                    kwarg_inputs=dict(kwargs),
                    dynamic_shapes=built.dynamic_shapes,
                    retrace=True,
                )
            except Exception as retrace_error:
                try:
                    torch_tensorrt.save(built.compiled, str(path), output_format="exported_program", retrace=False)
                except Exception as exc:
                    raise BackendError(
                        f"torch_tensorrt.save failed with retrace=True ({type(retrace_error).__name__}: "
                        f"{retrace_error}) and with retrace=False ({type(exc).__name__}: {exc})"
                    ) from exc
        return {
            "format": "torch-tensorrt-exported-program",
            "file": path.name,
            **built.meta,
            "profiles": {p: prof.to_json() for p, prof in built.profiles.items()},
        }

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        import torch_tensorrt

        if meta.get("format") != "torch-tensorrt-exported-program":
            raise ArtifactError(f"not a Torch-TensorRT payload (format {meta.get('format')!r})")
        check_engine_portable(
            meta, {**_torch_tensorrt_versions(), **gpu_fingerprint(ctx.device)}, "Torch-TensorRT program"
        )
        exported = torch_tensorrt.load(str(indir / meta["file"]))
        profiles = {p: ShapeProfile.from_json(v) for p, v in meta["profiles"].items()}
        keep = {k: meta[k] for k in ("precision", "torch_tensorrt", "tensorrt", "gpu", "compute_capability")}
        return TorchTensorRTModule(exported.module().to(ctx.device), profiles, keep, exported_program=exported)
