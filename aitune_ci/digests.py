"""Digests of what a tune's numbers depend on: the weights' values and the samples' values.

A baseline keeps both, so a later run can tell "the model or the samples changed" (a fixture
that draws random weights without a seed, an edited checkpoint) from "the backend got worse".
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from aitune_ci.samples import Sample

__all__ = ["inputs_fingerprint", "samples_sha256", "weights_sha256"]


def _update(digest: Any, tensor: torch.Tensor) -> None:
    try:
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    except (RuntimeError, TypeError):  # tensor subclasses: their shape and type stand in for the values
        digest.update(f"{type(tensor).__qualname__}{list(tensor.shape)}{tensor.dtype}".encode())


def weights_sha256(model: torch.nn.Module, dtype: torch.dtype | None) -> str:
    """A digest of the weights' values as they run (floating tensors cast to ``dtype``)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        digest.update(name.encode())
        _update(digest, t)
    return digest.hexdigest()


def samples_sha256(samples: Iterable[Sample]) -> str:
    """A digest of every sample's values: tensors by their bytes, anything else by its repr."""
    digest = hashlib.sha256()

    def visit(path: str, value: Any) -> None:
        digest.update(path.encode())
        if isinstance(value, torch.Tensor):
            digest.update(f"{list(value.shape)}{value.dtype}".encode())
            _update(digest, value)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{path}.{i}", v)
        elif isinstance(value, Mapping):
            for k in sorted(value, key=str):
                visit(f"{path}.{k}", value[k])
        else:
            digest.update(repr(value).encode())

    for index, (args, kwargs) in enumerate(samples):
        visit(f"{index}.args", args)
        visit(f"{index}.kwargs", kwargs)
    return digest.hexdigest()


def inputs_fingerprint(model: torch.nn.Module, dtype: torch.dtype | None, samples: Iterable[Sample]) -> dict[str, str]:
    """``{"weights": sha256, "samples": sha256}`` of a tune's model and samples."""
    return {"weights": weights_sha256(model, dtype), "samples": samples_sha256(samples)}
