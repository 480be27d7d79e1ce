"""CUDA graphs by eager capture: record the module's kernels once per input signature, then replay.

Replay removes the per-kernel launch cost of Python and the dispatcher, which dominates small or
launch-bound models. Each graph reads static input buffers and writes static outputs: a call copies
its inputs in, replays, and returns clones (the next replay overwrites the static outputs). A new
input signature (shapes, dtypes, non-tensor values) captures a new graph; all graphs share one
memory pool, which is safe because replays run one after another on the caller's stream.

The module must be capturable: every input on the GPU, no host synchronisation (``.item()``,
``.cpu()``, data-dependent shapes) and no control flow that depends on tensor values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Hashable, Mapping, Sequence

import torch
import torch.utils._pytree as pytree

from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.backends.inductor import forward_signature, iter_tensors
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import BackendError
from aitune_ci.samples import Sample

__all__ = ["CUDAGraphsBackend", "CUDAGraphRunner", "input_key"]


def input_key(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Hashable:
    """What selects a captured graph: the input structure, tensor shapes/dtypes/devices, other values.

    Strides are left out on purpose: inputs are copied into the graph's own buffers, so a
    non-contiguous input replays the same graph.
    """
    leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
    parts: list[Hashable] = [str(spec)]
    for leaf in leaves:
        if isinstance(leaf, torch.Tensor):
            parts.append(("tensor", tuple(leaf.shape), leaf.dtype, leaf.device))
        else:
            try:
                hash(leaf)
                parts.append((type(leaf).__qualname__, leaf))
            except TypeError:
                parts.append((type(leaf).__qualname__, repr(leaf)))
    return tuple(parts)


class _Captured:
    """One CUDA graph with its static input buffers and static outputs."""

    def __init__(self, graph: torch.cuda.CUDAGraph, static_inputs: list[torch.Tensor], static_output: Any) -> None:
        self.graph = graph
        self.static_inputs = static_inputs
        self.static_output = static_output


class CUDAGraphRunner:
    """Callable like the module; captures a graph per new input signature, then replays it."""

    def __init__(self, module: torch.nn.Module, *, warmup: int = 3, signature: Any = None) -> None:
        self.module = module
        self.warmup = warmup
        self.graphs: dict[Hashable, _Captured] = {}
        self._pool: Any = None
        if signature is not None:
            self.__signature__ = signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        key = input_key(args, kwargs)
        captured = self.graphs.get(key)
        if captured is None:
            captured = self.capture(args, kwargs)
        with torch.no_grad():
            tensors = [leaf for leaf in pytree.tree_leaves((args, kwargs)) if isinstance(leaf, torch.Tensor)]
            for buffer, value in zip(captured.static_inputs, tensors, strict=True):
                buffer.copy_(value)
            captured.graph.replay()
            return pytree.tree_map_only(torch.Tensor, torch.clone, captured.static_output)

    def capture(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> _Captured:
        """Warm up on a side stream, then capture one graph for this input signature."""
        key = input_key(args, kwargs)
        for path, tensor in iter_tensors(args, kwargs):
            if tensor.device.type != "cuda":
                raise BackendError(
                    f"cudagraphs: input {path} is on {tensor.device}; every tensor input must be on the GPU "
                    "(a graph cannot capture host-to-device copies)"
                )
        leaves, spec = pytree.tree_flatten((tuple(args), dict(kwargs)))
        devices = {leaf.device for leaf in leaves if isinstance(leaf, torch.Tensor)}
        device = next(iter(devices)) if devices else torch.device("cuda", torch.cuda.current_device())
        # Normal (not inference) tensors: the buffers are written in place on every call, also
        # from outside inference_mode.
        with torch.inference_mode(False), torch.no_grad(), torch.cuda.device(device):
            static_leaves = [
                torch.empty_like(leaf).copy_(leaf) if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves
            ]
            static_inputs = [leaf for leaf in static_leaves if isinstance(leaf, torch.Tensor)]
            s_args, s_kwargs = pytree.tree_unflatten(static_leaves, spec)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(self.warmup):
                    self.module(*s_args, **s_kwargs)
                _check_no_host_sync(self.module, s_args, s_kwargs)
            torch.cuda.current_stream().wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=self._pool):
                    static_output = self.module(*s_args, **s_kwargs)
            except Exception as exc:
                _clear_rng_capture_state(device)
                shapes = [tuple(t.shape) for t in static_inputs]
                raise BackendError(
                    f"CUDA graph capture failed for inputs of shapes {shapes}: {type(exc).__name__}: {exc}. "
                    f"{_CAPTURE_ADVICE}"
                ) from exc
        captured = _Captured(graph, static_inputs, static_output)
        self.graphs[key] = captured
        return captured


_CAPTURE_ADVICE = (
    "A capturable module does not synchronise with the host (.item(), .cpu(), .tolist(), nonzero(), "
    "data-dependent shapes) and does not branch on tensor values; inductor-reduce-overhead handles "
    "such models by capturing only the parts between graph breaks."
)


def _check_no_host_sync(module: torch.nn.Module, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Run once more with CUDA's sync debug mode set to error, before any capture is attempted.

    A capture that fails on a host sync leaves torch's CUDA state half-captured (see
    :func:`_clear_rng_capture_state`); catching the sync in eager first avoids that for the
    commonest cause. Done after warm-up, so one-off lazy initialisation is not flagged.
    """
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        module(*args, **kwargs)
    except Exception as exc:
        raise BackendError(
            f"cudagraphs: the module synchronises with the host in forward ({type(exc).__name__}: {exc}), "
            f"which a CUDA graph cannot capture. {_CAPTURE_ADVICE}"
        ) from exc
    finally:
        torch.cuda.set_sync_debug_mode(previous)


def _clear_rng_capture_state(device: torch.device) -> None:
    """Undo what a failed capture leaves behind in the device's default CUDA generator.

    When capture ends in an error, torch (2.11 at least) skips the generator's capture epilogue,
    so the generator stays marked as capturing and every later random op in the process raises
    "Offset increment outside graph capture encountered unexpectedly". A clone of its state
    (same seed and offset) is not marked; installing it lets the process go on.
    """
    try:
        generator = torch.cuda.default_generators[device.index if device.index is not None else 0]
        generator.graphsafe_set_state(generator.clone_state())
    except Exception:  # best effort: the capture error is what gets reported
        pass


@register_backend("cudagraphs")
class CUDAGraphsBackend(Backend):
    """Eager PyTorch captured into CUDA graphs, one per input signature.

    Options:
        warmup: eager iterations on a side stream before each capture (lazy init, cuBLAS
            workspaces and autotuning must happen outside the graph).
    """

    precision = "fp32"
    device_types = frozenset({"cuda"})

    def __init__(self, warmup: int = 3) -> None:
        if not isinstance(warmup, int) or warmup < 1:
            raise BackendError(f"cudagraphs option warmup must be an int >= 1, got {warmup!r}")
        super().__init__(**({} if warmup == 3 else {"warmup": warmup}))

    @property
    def warmup(self) -> int:
        return int(self.options.get("warmup", 3))

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        if not torch.cuda.is_available():
            return False, "needs CUDA (torch.cuda.is_available() is False)"
        return super().available(device)

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        """Capture and replay each sample once (a batch sweep captures more graphs on demand)."""
        if ctx.device.type != "cuda":
            raise BackendError(f"cudagraphs runs on cuda only, not {ctx.device}")
        runner = CUDAGraphRunner(module, warmup=self.warmup, signature=forward_signature(module))
        for args, kwargs in samples:
            runner(*args, **kwargs)
        return runner

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Nothing to write: graphs live in one process. ``load`` captures again on first use."""
        if not isinstance(built, CUDAGraphRunner):
            raise BackendError(f"backend {self.name!r} can only save what its own build returned, not {type(built)!r}")
        return {"warmup": built.warmup, "graphs": "captured again on first call of each input signature"}

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        """A runner with no graphs yet: capturing is not compiling, and takes milliseconds."""
        if not torch.cuda.is_available():
            raise BackendError("cudagraphs needs CUDA (torch.cuda.is_available() is False)")
        return CUDAGraphRunner(module, warmup=int(meta.get("warmup", self.warmup)), signature=forward_signature(module))
