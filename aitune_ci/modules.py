"""Module-level tuning helpers: capture the inputs submodules really receive, and swap them.

Capturing runs the model's own forward with hooks, so each submodule is tuned on exactly what
the model feeds it (shapes, dtypes, keyword args). Swapping never modifies the user's model: the
path to each replaced submodule is shallow-copied, so weights are shared, not duplicated.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Mapping, Sequence

import torch

from aitune_ci.errors import SpecError
from aitune_ci.samples import Sample, sample_signature

__all__ = ["CallableModule", "capture_module_inputs", "with_submodules_replaced"]


def _detach(value: Any) -> Any:
    """A copy of a captured input that keeps what dynamo guards on, inference-ness included.

    The capture runs under ``inference_mode``, where a plain clone is an inference tensor. A
    submodule that receives the model's own (normal) input would then be built and measured on an
    inference tensor while the mixed model passes it a normal one: dynamo guards on a tensor's
    dispatch keys, which differ between the two, so the mixed model could run another graph.
    """
    if isinstance(value, torch.Tensor):
        with torch.inference_mode(value.is_inference()):
            return value.detach().clone()
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    if isinstance(value, list):
        return [_detach(v) for v in value]
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    return value


def _structure(sample: Sample) -> list[tuple[str, Any]]:
    """What must not vary between calls: input paths, ranks and dtypes (sizes may vary)."""
    return [
        (leaf["path"], (len(leaf["shape"]), leaf["dtype"]) if "shape" in leaf else leaf.get("type"))
        for leaf in sample_signature(sample)
    ]


def capture_module_inputs(
    model: torch.nn.Module, samples: Sequence[Sample], paths: Sequence[str]
) -> dict[str, list[Sample]]:
    """The ``(args, kwargs)`` each submodule in ``paths`` receives while ``model`` runs ``samples``.

    Raises:
        SpecError: a path is not a submodule, a submodule is never called, or it is called with
            inputs whose structure (names, ranks, dtypes) varies, which one compiled artifact
            cannot serve. Several calls with the same structure (a shared block) are fine: all of
            them become samples.
    """
    named = dict(model.named_modules())
    captured: dict[str, list[Sample]] = {p: [] for p in paths}
    handles = []
    for path in paths:
        if path not in named or not path:
            raise SpecError(f"TuneSpec.modules: {type(model).__name__} has no submodule {path!r}")

        def hook(_mod: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], _p: str = path) -> None:
            captured[_p].append((_detach(tuple(args)), _detach(dict(kwargs))))

        handles.append(named[path].register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.inference_mode():
            for args, kwargs in samples:
                model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    for path, calls in captured.items():
        if not calls:
            raise SpecError(
                f"TuneSpec.modules: submodule {path!r} is never called when the model runs the samples "
                "(is it used only in training, or under a branch the samples do not take?)"
            )
        first = _structure(calls[0])
        for i, call in enumerate(calls[1:], start=1):
            if _structure(call) != first:
                raise SpecError(
                    f"TuneSpec.modules: submodule {path!r} is called with varying input structures "
                    f"(call 0: {first}; call {i}: {_structure(call)}); tune a submodule that always "
                    "receives the same inputs, or its parent"
                )
    return captured


class CallableModule(torch.nn.Module):
    """An ``nn.Module`` whose forward is a built backend callable (so it can sit in a module tree)."""

    def __init__(self, fn: Callable[..., Any], description: str = "") -> None:
        super().__init__()
        self._fn = fn
        self.description = description

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return self.description


def with_submodules_replaced(model: torch.nn.Module, replacements: Mapping[str, torch.nn.Module]) -> torch.nn.Module:
    """A copy of ``model`` with each dotted path replaced; only the modules along the paths are copied."""
    root = copy.copy(model)
    root._modules = dict(model._modules)  # type: ignore[assignment]
    for path, new in replacements.items():
        parts = path.split(".")
        parent = root
        for name in parts[:-1]:
            child = parent._modules[name]
            if child is None:
                raise SpecError(f"cannot replace {path!r}: {name!r} is None")
            fresh = copy.copy(child)
            fresh._modules = dict(child._modules)  # type: ignore[assignment]
            parent._modules[name] = fresh
            parent = fresh
        if parts[-1] not in parent._modules:
            raise SpecError(f"cannot replace {path!r}: no such submodule")
        parent._modules[parts[-1]] = new
    return root
