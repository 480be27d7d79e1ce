"""Dynamic axes and the batch axis, detected from sample signatures (pure: no torch).

A dimension is dynamic when its size differs between samples. Dimensions whose sizes move
together across every sample (the batch dim of ``input_ids`` and ``attention_mask``, say) share
one name, so exporters see them as one symbol and keep the equality constraint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from aitune_ci.errors import SpecError

__all__ = ["DynamicAxes", "BatchAxis", "detect_dynamic_axes", "detect_batch_axis", "explicit_dynamic_axes"]

#: ``{input_path: {dim_index: dim_name}}``, input paths as in ``sample_signature`` (``args.0``).
DynamicAxes = dict[str, dict[int, str]]


@dataclass(frozen=True)
class BatchAxis:
    """Where the batch lives: ``dim`` of every input in ``paths`` (all of equal size per sample)."""

    dim: int
    paths: tuple[str, ...]
    sizes: tuple[int, ...] = field(default=())  # the batch size of each sample

    @property
    def base_size(self) -> int:
        return self.sizes[0] if self.sizes else 1


def _tensor_shapes(signatures: Sequence[Sequence[Mapping[str, Any]]]) -> dict[str, list[list[int]]]:
    """``{path: [shape in sample 0, shape in sample 1, ...]}`` for tensors present in every sample."""
    first = [leaf["path"] for leaf in signatures[0] if "shape" in leaf]
    shapes: dict[str, list[list[int]]] = {p: [] for p in first}
    for i, sig in enumerate(signatures):
        by_path = {leaf["path"]: leaf for leaf in sig}
        if set(p for p, leaf in by_path.items() if "shape" in leaf) != set(first):
            raise SpecError(
                f"TuneSpec.samples[{i}] has tensor inputs {sorted(p for p in by_path if 'shape' in by_path[p])}, "
                f"but samples[0] has {sorted(first)}; every sample must have the same inputs"
            )
        for p in first:
            shape = list(by_path[p]["shape"])
            if shapes[p] and len(shape) != len(shapes[p][0]):
                raise SpecError(
                    f"TuneSpec.samples[{i}] input {p} has rank {len(shape)} but samples[0] has rank "
                    f"{len(shapes[p][0])}; only sizes may vary between samples, not ranks"
                )
            shapes[p].append(shape)
    return shapes


def detect_dynamic_axes(signatures: Sequence[Sequence[Mapping[str, Any]]]) -> DynamicAxes:
    """Dims whose size varies across samples; co-varying dims share a name (``batch`` for dim 0)."""
    if len(signatures) < 2:
        return {}
    shapes = _tensor_shapes(signatures)
    groups: dict[tuple[int, ...], str] = {}
    out: DynamicAxes = {}
    for path, per_sample in shapes.items():
        for dim in range(len(per_sample[0])):
            sizes = tuple(s[dim] for s in per_sample)
            if len(set(sizes)) == 1:
                continue
            if sizes not in groups:
                groups[sizes] = "batch" if dim == 0 and "batch" not in groups.values() else f"d{len(groups)}"
            out.setdefault(path, {})[dim] = groups[sizes]
    return out


def detect_batch_axis(signatures: Sequence[Sequence[Mapping[str, Any]]]) -> BatchAxis | None:
    """Dim 0 of every tensor input, when those sizes agree within each sample; else None.

    With one sample this is a convention (dim 0 is the batch, as in nearly every model); with
    several, a dim-0 size that differs between samples confirms it.
    """
    shapes = _tensor_shapes(signatures)
    batched = [p for p, per_sample in shapes.items() if per_sample[0]]
    if not batched:
        return None
    sizes = []
    for i in range(len(signatures)):
        dim0 = {shapes[p][i][0] for p in batched}
        if len(dim0) != 1:
            return None
        sizes.append(dim0.pop())
    return BatchAxis(dim=0, paths=tuple(batched), sizes=tuple(sizes))


def explicit_dynamic_axes(value: Any, signatures: Sequence[Sequence[Mapping[str, Any]]]) -> DynamicAxes:
    """Validate a user's ``dynamic_axes``: ``{input_path: {dim: name}}`` or ``{input_path: [dims]}``."""
    if not isinstance(value, Mapping):
        raise SpecError(
            f"TuneSpec.dynamic_axes must be 'auto', None, or a dict like {{'args.0': {{0: 'batch'}}}}; got {value!r}"
        )
    shapes = _tensor_shapes(signatures)
    out: DynamicAxes = {}
    for path, dims in value.items():
        if path not in shapes:
            raise SpecError(
                f"TuneSpec.dynamic_axes names input {path!r}; the samples' tensor inputs are {sorted(shapes)}"
            )
        rank = len(shapes[path][0])
        named = dims if isinstance(dims, Mapping) else {d: f"{path.replace('.', '_')}_{d}" for d in dims}
        for d, name in named.items():
            if not isinstance(d, int) or not 0 <= d < rank:
                raise SpecError(f"TuneSpec.dynamic_axes[{path!r}]: dim {d!r} is not a dim of a rank-{rank} tensor")
            out.setdefault(path, {})[d] = str(name)
    return out
