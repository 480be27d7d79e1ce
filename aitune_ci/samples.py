"""Samples: the forms a user may give one call's inputs in, normalized to ``(args, kwargs)``."""

from __future__ import annotations

from typing import Any, Mapping

import torch

from aitune_ci.errors import SpecError

__all__ = ["Sample", "normalize_sample", "sample_signature"]

#: One call's inputs, normalized: positional args and keyword args.
Sample = tuple[tuple[Any, ...], dict[str, Any]]

_SAMPLE_FORMS = "a Tensor, a tuple of positional args, a dict of keyword args, or an (args_tuple, kwargs_dict) pair"


def normalize_sample(sample: Any, index: int = 0) -> Sample:
    """Turn any accepted sample form into ``(args, kwargs)``.

    A 2-tuple whose first item is a tuple and second a dict is read as ``(args, kwargs)``; wrap a
    genuine (tuple, dict) positional pair as ``((a, b), {})`` to pass it positionally.
    """
    if isinstance(sample, torch.Tensor):
        return (sample,), {}
    if isinstance(sample, dict):
        _check_keys(sample, index)
        return (), dict(sample)
    if isinstance(sample, list):
        raise SpecError(
            f"TuneSpec.samples[{index}] is a list; expected {_SAMPLE_FORMS}. Use a tuple for several positional args."
        )
    if isinstance(sample, tuple):
        if len(sample) == 2 and isinstance(sample[0], tuple) and isinstance(sample[1], dict):
            _check_keys(sample[1], index)
            return tuple(sample[0]), dict(sample[1])
        if not sample:
            raise SpecError(f"TuneSpec.samples[{index}] is an empty tuple; expected {_SAMPLE_FORMS}")
        return tuple(sample), {}
    raise SpecError(f"TuneSpec.samples[{index}] is a {type(sample).__name__}; expected {_SAMPLE_FORMS}")


def _check_keys(kwargs: Mapping[Any, Any], index: int) -> None:
    bad = [k for k in kwargs if not isinstance(k, str)]
    if bad:
        raise SpecError(f"TuneSpec.samples[{index}] has non-string keyword names {bad!r}")


def sample_signature(sample: Sample) -> list[dict[str, Any]]:
    """A JSON-able description of a sample's tensors: path, shape, dtype (non-tensors by type)."""
    args, kwargs = sample
    out: list[dict[str, Any]] = []

    def visit(path: str, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            out.append({"path": path, "shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")})
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{path}.{i}", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                visit(f"{path}.{k}", v)
        else:
            out.append({"path": path, "type": type(value).__name__, "value": repr(value)[:80]})

    for i, a in enumerate(args):
        visit(f"args.{i}", a)
    for k, v in kwargs.items():
        visit(f"kwargs.{k}", v)
    return out
