"""Accuracy tolerances: what a user may override, per output leaf or for all of them."""

from __future__ import annotations

import fnmatch
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

__all__ = ["Tolerance", "ToleranceSpec", "resolve_tolerance"]


@dataclass(frozen=True)
class Tolerance:
    """Gates for one output leaf. ``None`` fields fall back to the precision's default.

    A leaf is close when ``allclose(atol, rtol)`` holds, *or* its fp64-RMSE ratio is within
    ``max_rmse_ratio``, *or* its SQNR reaches ``close_sqnr_db`` (half precisions: rounding error
    judged against the whole tensor, where a few elements near zero break any elementwise rtol).
    Quantized precisions gate on ``min_sqnr_db`` and ``min_cosine`` instead, which must hold
    in addition. NaN/Inf where the reference is finite always fails, whatever the tolerance.
    """

    atol: float | None = None
    rtol: float | None = None
    max_rmse_ratio: float | None = None
    min_sqnr_db: float | None = None
    min_cosine: float | None = None
    close_sqnr_db: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise TypeError(f"Tolerance.{f.name} must be a number or None, got {value!r}")
            if value is not None and f.name in ("atol", "rtol", "max_rmse_ratio") and value < 0:
                raise ValueError(f"Tolerance.{f.name} must be >= 0, got {value!r}")

    def merged_over(self, default: Tolerance) -> Tolerance:
        """This tolerance with its unset fields taken from ``default``."""
        return Tolerance(
            **{
                f.name: (getattr(self, f.name) if getattr(self, f.name) is not None else getattr(default, f.name))
                for f in fields(self)
            }
        )

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Tolerance:
        return cls(**{k: data[k] for k in (f.name for f in fields(cls)) if k in data})


#: What ``TuneSpec.tolerance`` accepts: one Tolerance for every leaf, or a mapping from leaf path
#: (glob patterns allowed, e.g. ``"past_key_values.*"``; ``"*"`` is the fallback) to a Tolerance.
ToleranceSpec = Tolerance | Mapping[str, Tolerance] | None


def resolve_tolerance(spec: ToleranceSpec, leaf_path: str) -> Tolerance:
    """The user's tolerance for ``leaf_path``: exact key first, then the longest matching glob."""
    if spec is None:
        return Tolerance()
    if isinstance(spec, Tolerance):
        return spec
    if leaf_path in spec:
        return spec[leaf_path]
    matches = [pattern for pattern in spec if fnmatch.fnmatchcase(leaf_path, pattern)]
    if not matches:
        return Tolerance()
    return spec[max(matches, key=lambda p: (len(p.replace("*", "")), len(p)))]
