"""Shape profiles and ``torch.export`` dims from the samples: what both TensorRT backends build from.

A TensorRT engine is built for one min/opt/max range per input, taken from the shapes the samples
really have; ``torch.export`` needs the same ranges as ``Dim`` objects. The shape logic is pure and
unit-tested on the CPU; the torch-side helpers run on the CPU too.
"""

from __future__ import annotations

import inspect
import re
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple, Sequence

import torch

from aitune_ci.errors import BackendError
from aitune_ci.samples import Sample

if TYPE_CHECKING:
    from torch.export import Dim

__all__ = [
    "ShapeProfile",
    "check_shape_in_profile",
    "export_sample_index",
    "shape_profiles",
    "tensor_inputs",
    "torch_export_dims",
    "torch_export_dynamic_shapes",
    "trt_tensor_name",
]

Shape = tuple[int, ...]


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
