"""Eager PyTorch: the reference (fp32) and autocast half precision (fp16 / bf16)."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import torch

from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.backends.registry import register_backend
from aitune_ci.samples import Sample


@register_backend("eager")
class EagerBackend(Backend):
    """The model as written; every other backend is compared with it."""

    precision = "fp32"

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        return module


@register_backend("eager-fp16", dtype="float16")
@register_backend("eager-bf16", dtype="bfloat16")
class EagerHalfBackend(Backend):
    """Eager under ``torch.autocast`` at fp16 or bf16: the cheapest precision win, no compile."""

    def __init__(self, dtype: str = "float16") -> None:
        super().__init__(dtype=dtype)

    @property
    def precision(self) -> str:  # type: ignore[override]
        return "fp16" if self.options["dtype"] == "float16" else "bf16"

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        ok, reason = super().available(device)
        if not ok:
            return ok, reason
        device_type = torch.device(device).type
        if device_type == "cpu" and self.options["dtype"] == "float16":
            return False, "fp16 autocast on CPU is emulated and slower than fp32; use eager-bf16 on CPU"
        if device_type == "cuda" and self.options["dtype"] == "bfloat16" and not torch.cuda.is_bf16_supported():
            return False, "this GPU has no native bf16 support"
        return True, ""

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        dtype = getattr(torch, self.options["dtype"])
        device_type = ctx.device.type

        @functools.wraps(module.forward)
        def run(*args: Any, **kwargs: Any) -> Any:
            with torch.autocast(device_type=device_type, dtype=dtype):
                return module(*args, **kwargs)

        return run
