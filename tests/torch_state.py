"""Process-global torch settings that a backend's build must leave as it found them.

Inductor's FX-graph and AOTAutograd cache keys hash the whole inductor and functorch config, the
CPU thread count, the default dtype, deterministic mode and the matmul settings. A build that
changes one of them for the rest of the process (even by mutating a config dict in place, as
``aoti_compile_and_package`` does with ``aot_inductor.metadata``) gives every later compile in
the process a cache key that a clean process never computes: the compile cache an inductor
build saves then misses when a fresh process loads it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["changed", "global_torch_state"]


def _config_modules() -> dict[str, Any]:
    import torch._dynamo.config
    import torch._functorch.config
    import torch._inductor.config

    modules = {
        "inductor": torch._inductor.config,
        "dynamo": torch._dynamo.config,
        "functorch": torch._functorch.config,
    }
    compiler_config = getattr(torch.compiler, "config", None)
    if compiler_config is not None:
        modules["compiler"] = compiler_config
    return modules


def _settings() -> dict[str, Callable[[], Any]]:
    """Getters of the non-config globals, each read on its own (some are missing on some builds)."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    return {
        "torch.get_float32_matmul_precision": torch.get_float32_matmul_precision,
        "torch.get_num_threads": torch.get_num_threads,
        "torch.get_num_interop_threads": torch.get_num_interop_threads,
        "torch.get_default_dtype": torch.get_default_dtype,
        "torch.is_grad_enabled": torch.is_grad_enabled,
        "torch.is_inference_mode_enabled": torch.is_inference_mode_enabled,
        "torch.are_deterministic_algorithms_enabled": torch.are_deterministic_algorithms_enabled,
        "torch.is_deterministic_algorithms_warn_only_enabled": torch.is_deterministic_algorithms_warn_only_enabled,
        "torch.is_autocast_enabled(cpu)": lambda: torch.is_autocast_enabled("cpu"),
        "torch.get_autocast_dtype(cpu)": lambda: torch.get_autocast_dtype("cpu"),
        "torch.backends.cuda.matmul.allow_tf32": lambda: matmul.allow_tf32,
        "torch.backends.cuda.matmul.fp32_precision": lambda: matmul.fp32_precision,
        "torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction": lambda: (
            matmul.allow_fp16_reduced_precision_reduction
        ),
        "torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction": lambda: (
            matmul.allow_bf16_reduced_precision_reduction
        ),
        "torch.backends.cudnn.enabled": lambda: cudnn.enabled,
        "torch.backends.cudnn.allow_tf32": lambda: cudnn.allow_tf32,
        "torch.backends.cudnn.benchmark": lambda: cudnn.benchmark,
        "torch.backends.cudnn.deterministic": lambda: cudnn.deterministic,
        "torch.backends.mkldnn.enabled": lambda: torch.backends.mkldnn.enabled,
    }


def _stable_repr(value: Any) -> str:
    """``repr`` with sets sorted, so two processes (other string hash seeds) print one value alike."""
    if isinstance(value, (set, frozenset)):
        if not value:
            return f"{type(value).__name__}()"
        return "{" + ", ".join(sorted(_stable_repr(v) for v in value)) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_stable_repr(k)}: {_stable_repr(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_stable_repr(v) for v in value) + "]"
    if isinstance(value, tuple) and type(value) is tuple:
        return "(" + ", ".join(_stable_repr(v) for v in value) + (",)" if len(value) == 1 else ")")
    return repr(value)


def global_torch_state() -> dict[str, str]:
    """Every process-global torch setting above as ``{name: repr(value)}``.

    Config entries are named ``<module>.<key>`` (``inductor.aot_inductor.metadata``). Values are
    turned into their repr at once, so a container mutated in place later still compares unequal,
    and sets are sorted, so the state of two processes can be compared too.
    """
    state: dict[str, str] = {}
    for prefix, module in _config_modules().items():
        for key, value in module.get_config_copy().items():
            state[f"{prefix}.{key}"] = _stable_repr(value)
    for name, getter in _settings().items():
        try:
            state[name] = _stable_repr(getter())
        except (AttributeError, RuntimeError, TypeError):  # not in this torch build
            continue
    return state


def changed(before: dict[str, str], after: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """``{name: (before, after)}`` for every setting whose value differs (None where absent)."""
    return {
        name: (before.get(name), after.get(name))
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    }
