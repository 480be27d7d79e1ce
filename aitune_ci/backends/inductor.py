"""TorchInductor through ``torch.compile``, with its compile cache saved so a reload compiles warm.

Inductor is a just-in-time backend: a saved artifact cannot skip compilation, but it can make it
cheap. ``build`` records the cache entries its compile produced (FX graph and AOTAutograd
entries) with ``torch.compiler.save_cache_artifacts``; ``load`` hot-loads them with
``torch.compiler.load_cache_artifacts`` and compiles again, which then hits the cache instead of
generating code. On CPU a hit still compiles the cached C++ source of each kernel once per
fresh cache directory; on CUDA the Triton kernels are bundled into the cache entry.

How recording behaves (torch 2.11-2.13): entries are recorded on cache hits as well as misses, so
a warm on-disk cache (``TORCHINDUCTOR_CACHE_DIR``) still yields a complete payload. The recorder
is process-wide and cumulative, so ``save_cache_artifacts()`` alone would return every model
compiled in the process; build records inside ``CacheArtifactManager.with_fresh_cache()`` to
keep one model's entries. A compile that dynamo skips records nothing, but none is skipped: each
build traces through its own code object (below), so a second build of the same module compiles
again, from the warm cache, and records its entries.

The cache keys hash process-global state besides the graph: the whole inductor and functorch
config, the default dtype, deterministic mode, matmul precision and, for CPU kernels, the torch
thread count. A load hits only where those match the build process. So no backend may leave such
a setting changed for the rest of the process (``aoti_compile_and_package`` writes
``aot_inductor.metadata`` in place; the aoti backend restores it), and a CPU build records its
thread count: loading under another one warns that the first call compiles from scratch.

Dynamic axes are passed to dynamo with ``torch._dynamo.maybe_mark_dynamic`` on the input tensors
of the first call (the hint lives on the tensor object), so one graph with a symbolic batch
serves a whole batch sweep. ``maybe_`` rather than ``mark_dynamic``: a model that really needs a
fixed size gets a specialised graph instead of a ConstraintViolation error. Later calls with
unmarked tensors of other sizes still hit the symbolic graph, whose guards accept any size >= 2.
Every other dim is static (``torch.compile(dynamic=False)``, which still honours the marks).

Each build compiles through a function with a code object of its own (:func:`compile_isolated`).
Dynamo keeps its graph cache, its recompile limit (8 graphs) and its automatic-dynamic memory per
code object, and ``torch.compile(module)`` of a ``torch.nn`` class (``Sequential``,
``TransformerEncoder``...) enters through one wrapper shared by every such module in the process.
Measured with torch 2.13: the 9th differently shaped model compiled that way ran eagerly, with
only a log line, and a model compiled after one of another rank got every dim symbolic (a part
tuned second then ran its dynamic-shape graph).
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import warnings
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterator, Mapping, Sequence

import torch

from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import BackendError
from aitune_ci.samples import Sample

__all__ = [
    "COMPILE_CACHE_FILE",
    "INDUCTOR_MODES",
    "InductorBackend",
    "InductorCompiled",
    "axes_from_json",
    "axes_to_json",
    "check_dynamic_axes",
    "compile_counters",
    "forward_signature",
    "inductor_toolchain",
    "iter_tensors",
    "ensure_something_compiled",
    "fresh_artifact_recording",
    "hot_load_compile_cache",
    "payload_file",
]

#: The payload file ``save`` writes: the bytes of ``torch.compiler.save_cache_artifacts()``.
COMPILE_CACHE_FILE = "compile_cache.bin"
#: ``torch.compile`` modes this backend accepts.
INDUCTOR_MODES = ("default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune")
_CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


# --- inputs and dynamic axes (pure; shared with the aoti backend) -----------------------------


def iter_tensors(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor of one call's inputs with its path (``args.0``, ``args.1.2``, ``kwargs.mask``).

    Paths follow :func:`aitune_ci.spec.sample_signature`, the form ``BuildContext.dynamic_axes`` uses.
    """

    def visit(path: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
        if isinstance(value, torch.Tensor):
            yield path, value
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                yield from visit(f"{path}.{i}", v)
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from visit(f"{path}.{k}", v)

    for i, a in enumerate(args):
        yield from visit(f"args.{i}", a)
    for k, v in kwargs.items():
        yield from visit(f"kwargs.{k}", v)


def check_dynamic_axes(samples: Sequence[Sample], dynamic_axes: Mapping[str, Mapping[int, str]]) -> None:
    """Raise BackendError when ``dynamic_axes`` names an input no sample has, or a dim it lacks."""
    seen: set[str] = set()
    for index, (args, kwargs) in enumerate(samples):
        for path, tensor in iter_tensors(args, kwargs):
            dims = dynamic_axes.get(path)
            if dims is None:
                continue
            seen.add(path)
            for dim in dims:
                if not isinstance(dim, int) or not -tensor.dim() <= dim < tensor.dim():
                    raise BackendError(
                        f"dynamic_axes[{path!r}] names dim {dim!r}, but {path} of sample {index} has "
                        f"shape {tuple(tensor.shape)}; give dim indices in range(0, {tensor.dim()})"
                    )
    missing = sorted(set(dynamic_axes) - seen)
    if missing:
        paths = sorted({p for args, kwargs in samples for p, _ in iter_tensors(args, kwargs)})
        raise BackendError(
            f"dynamic_axes names {', '.join(missing)}, which is no tensor input of the samples; "
            f"tensor inputs are: {', '.join(paths) or '(none)'}"
        )


def axes_to_json(dynamic_axes: Mapping[str, Mapping[int, str]]) -> dict[str, dict[str, str]]:
    """``dynamic_axes`` with string dim keys, as JSON stores them."""
    return {path: {str(dim): str(name) for dim, name in dims.items()} for path, dims in dynamic_axes.items()}


def axes_from_json(data: Mapping[str, Mapping[str, str]] | None) -> dict[str, dict[int, str]]:
    """Inverse of :func:`axes_to_json`."""
    return {path: {int(dim): name for dim, name in dims.items()} for path, dims in (data or {}).items()}


def _mark_dynamic(
    args: Sequence[Any], kwargs: Mapping[str, Any], dynamic_axes: Mapping[str, Mapping[int, str]]
) -> None:
    if not dynamic_axes:
        return
    for path, tensor in iter_tensors(args, kwargs):
        for dim in dynamic_axes.get(path, ()):
            if -tensor.dim() <= dim < tensor.dim():
                torch._dynamo.maybe_mark_dynamic(tensor, dim % tensor.dim())


# --- observability ---------------------------------------------------------------------------


def compile_counters() -> dict[str, int]:
    """A snapshot of torch's compile counters, to tell a real compile from a cache hit.

    Take one before and one after a call and subtract. Keys:
        ``graphs_traced``: FX graphs dynamo captured (0 new = dynamo reused in-memory code).
        ``fxgraph_cache_hit`` / ``fxgraph_cache_miss``: inductor FX graph cache lookups.
        ``autograd_cache_hit`` / ``autograd_cache_miss``: AOTAutograd cache lookups (a hit
            there skips the FX graph lookup entirely).
        ``inductor_codegen``: graphs inductor generated code for (misses and bypasses).
        ``aoti_compiles``: AOTInductor shared-library builds.
    """
    from torch._dynamo.utils import compilation_time_metrics, counters

    return {
        "graphs_traced": int(counters["stats"]["unique_graphs"]),
        "fxgraph_cache_hit": int(counters["inductor"]["fxgraph_cache_hit"]),
        "fxgraph_cache_miss": int(counters["inductor"]["fxgraph_cache_miss"]),
        "autograd_cache_hit": int(counters["aot_autograd"]["autograd_cache_hit"]),
        "autograd_cache_miss": int(counters["aot_autograd"]["autograd_cache_miss"]),
        "inductor_codegen": len(compilation_time_metrics.get("fx_codegen_and_compile", ())),
        "aoti_compiles": len(compilation_time_metrics.get("AotCodeCompiler.compile", ())),
    }


def inductor_toolchain(device: torch.device | str) -> tuple[bool, str]:
    """Whether inductor can generate code for ``device`` here: dynamo support, then C++ or Triton."""
    device_type = torch.device(device).type
    try:
        from torch._dynamo.eval_frame import is_dynamo_supported

        if not is_dynamo_supported():
            return False, "torch.compile is not supported by this Python / platform"
    except ImportError:  # older torch: let the compile itself decide
        pass
    if device_type == "cpu":
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler

            get_cpp_compiler()
        except Exception as exc:
            return False, f"no C++ compiler for inductor's CPU code ({exc}); install g++ or set CXX"
    elif device_type == "cuda":
        if not torch.cuda.is_available():
            return False, "needs CUDA (torch.cuda.is_available() is False)"
        from torch.utils._triton import has_triton

        if not has_triton():
            return False, "Triton is not installed or does not support this GPU (pip install triton)"
    return True, ""


# --- the built callable ----------------------------------------------------------------------


def fresh_artifact_recording() -> ContextManager[None]:
    """Record compile-cache artifacts apart from the process-wide list.

    ``save_cache_artifacts`` otherwise returns everything compiled in this process so far (other
    models included). Falls back to the process-wide list where torch lacks the hook.
    """
    try:
        from torch.compiler._cache import CacheArtifactManager

        return CacheArtifactManager.with_fresh_cache()
    except (ImportError, AttributeError):
        return contextlib.nullcontext()


class InductorCompiled:
    """A ``torch.compile``d module with a fixed call environment, callable like the module.

    Calls run under ``torch.inference_mode()`` so dynamo's global-state guard always sees the
    same mode (a model compiled under ``no_grad`` recompiles when called under
    ``inference_mode``). The first call marks its inputs' dynamic axes; in reduce-overhead mode
    every call starts a new CUDA-graph step and clones its outputs, which the next replay reuses.
    """

    def __init__(
        self,
        compiled: Callable[..., Any],
        *,
        mode: str,
        dynamic: bool | None,
        dynamic_axes: Mapping[str, Mapping[int, str]],
        signature: inspect.Signature | None = None,
    ) -> None:
        self.compiled = compiled
        self.mode = mode
        self.dynamic = dynamic
        self.dynamic_axes = {path: dict(dims) for path, dims in dynamic_axes.items()}
        #: Bytes from ``torch.compiler.save_cache_artifacts()`` recorded during build, or None.
        self.cache_artifacts: bytes | None = None
        #: ``{artifact_type: count}`` of what ``cache_artifacts`` holds.
        self.cache_info: dict[str, int] = {}
        #: ``torch.get_num_threads()`` of a CPU build, which CPU cache keys hash; None elsewhere.
        self.cpu_threads: int | None = None
        self._uses_cuda_graphs = mode in _CUDA_GRAPH_MODES
        self._mark_next_call = True
        if signature is not None:
            self.__signature__ = signature

    def prime(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Mark ``args``/``kwargs``' dynamic axes, then call: how build compiles each sample."""
        _mark_dynamic(args, kwargs, self.dynamic_axes)
        return self._run(args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._mark_next_call:
            out = self.prime(args, kwargs)
            self._mark_next_call = False
            return out
        return self._run(args, kwargs)

    def _run(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        with torch.inference_mode():
            if self._uses_cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            out = self.compiled(*args, **kwargs)
            if self._uses_cuda_graphs:
                out = torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, out)
        return out


def forward_signature(module: torch.nn.Module) -> inspect.Signature | None:
    """``module.forward``'s signature, so a built callable reports the module's (None if unknowable)."""
    try:
        return inspect.signature(module.forward)
    except (TypeError, ValueError):
        return None


_builds = itertools.count()


def compile_isolated(module: torch.nn.Module, **compile_kwargs: Any) -> Callable[..., Any]:
    """``torch.compile`` of a call-through to ``module`` whose code object belongs to this call alone.

    So this build's graphs, recompile limit and shape history are its own (see the module
    docstring); torch does the same for its own nested-call wrappers (``debug_force_nested_calls``).
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        return module(*args, **kwargs)

    call.__code__ = call.__code__.replace(co_name=f"aitune_build_{next(_builds)}")
    call.__name__ = call.__qualname__ = call.__code__.co_name
    return torch.compile(call, **compile_kwargs)


# --- the backend -----------------------------------------------------------------------------


@register_backend("inductor", mode="default")
@register_backend("inductor-max-autotune", mode="max-autotune-no-cudagraphs")
@register_backend("inductor-reduce-overhead", mode="reduce-overhead")
class InductorBackend(Backend):
    """``torch.compile(module, backend="inductor", mode=...)``; saves its compile cache.

    Options:
        mode: a ``torch.compile`` mode (see :data:`INDUCTOR_MODES`).
        dynamic: ``None`` (default): the build's dynamic axes are symbolic, every other dim is
            static; ``True``: every dim symbolic; ``False``: every dim static, axes ignored.
        fullgraph: fail the build on a graph break instead of running the breaks eagerly.
    """

    precision = "fp32"
    payload = Payload.COMPILE_CACHE
    libraries = ("triton",)

    def __init__(self, mode: str = "default", dynamic: bool | None = None, fullgraph: bool = False) -> None:
        if mode not in INDUCTOR_MODES:
            raise BackendError(f"inductor mode {mode!r} is unknown; expected one of {', '.join(INDUCTOR_MODES)}")
        options: dict[str, Any] = {"mode": mode}
        if dynamic is not None:
            options["dynamic"] = dynamic
        if fullgraph:
            options["fullgraph"] = fullgraph
        super().__init__(**options)

    @property
    def mode(self) -> str:
        return str(self.options["mode"])

    @property
    def uses_inductor(self) -> bool:
        return True

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        device_type = torch.device(device).type
        if self.mode in _CUDA_GRAPH_MODES:
            if not torch.cuda.is_available():
                return False, f"mode {self.mode!r} uses CUDA graphs: needs CUDA (torch.cuda.is_available() is False)"
            if device_type != "cuda":
                return False, f"mode {self.mode!r} uses CUDA graphs, which run on cuda only, not {device_type}"
        ok, reason = super().available(device)
        if not ok:
            return ok, reason
        return inductor_toolchain(device)

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> Callable[..., Any]:
        """Compile and run every sample once, so compile time and compile errors land in build."""
        check_dynamic_axes(samples, ctx.dynamic_axes)
        before = compile_counters()["graphs_traced"]
        runner = self._compile_and_record(module, samples, ctx.dynamic_axes)
        ensure_something_compiled(before, getattr(self, "name", f"inductor ({self.mode})"))
        if ctx.device.type == "cpu":
            runner.cpu_threads = torch.get_num_threads()
        return runner

    def _compile(self, module: torch.nn.Module, dynamic_axes: Mapping[str, Mapping[int, str]]) -> InductorCompiled:
        dynamic = self.options.get("dynamic")
        compiled = compile_isolated(
            module,
            backend="inductor",
            mode=self.mode,
            dynamic=bool(dynamic),  # None: static, except the axes marked on each first call
            fullgraph=bool(self.options.get("fullgraph", False)),
        )
        return InductorCompiled(
            compiled,
            mode=self.mode,
            dynamic=dynamic,
            dynamic_axes={} if dynamic is False else dynamic_axes,
            signature=forward_signature(module),
        )

    def _compile_and_record(
        self, module: torch.nn.Module, samples: Sequence[Sample], dynamic_axes: Mapping[str, Mapping[int, str]]
    ) -> InductorCompiled:
        runner = self._compile(module, dynamic_axes)
        # CUDA-graph modes record their graph on a later call than the compile; run twice there.
        repeats = 2 if runner._uses_cuda_graphs else 1
        with fresh_artifact_recording():
            for args, kwargs in samples:
                for _ in range(repeats):
                    runner.prime(args, kwargs)
            saved = torch.compiler.save_cache_artifacts()
        runner._mark_next_call = False
        if saved is not None:
            runner.cache_artifacts, info = saved
            runner.cache_info = {kind: len(keys) for kind, keys in info.artifacts.items() if keys}
        return runner

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Write ``compile_cache.bin``; the metadata says how to compile the same graphs again."""
        if not isinstance(built, InductorCompiled):
            raise BackendError(f"backend {self.name!r} can only save what its own build returned, not {type(built)!r}")
        file: str | None = None
        if built.cache_artifacts is not None:
            outdir.mkdir(parents=True, exist_ok=True)
            (outdir / COMPILE_CACHE_FILE).write_bytes(built.cache_artifacts)
            file = COMPILE_CACHE_FILE
        # No artifacts means inductor bypassed its cache (an uncacheable graph, or
        # TORCHINDUCTOR_FX_GRAPH_CACHE=0): the artifact stays loadable and compiles cold.
        return {
            "file": file,
            "mode": built.mode,
            "dynamic": built.dynamic,
            "dynamic_axes": axes_to_json(built.dynamic_axes),
            "cache_artifacts": dict(built.cache_info),
            "cpu_threads": built.cpu_threads,
            "torch": torch.__version__,
        }

    def load(
        self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext
    ) -> Callable[..., Any]:
        """Hot-load the saved cache, then compile lazily: the first call compiles from the cache.

        A cache that cannot be used here (another torch version, another GPU, another CPU thread
        count) is not an error: the first call then compiles from scratch, and a warning says so.
        """
        if meta.get("mode", self.mode) != self.mode:
            raise BackendError(
                f"this artifact was built with inductor mode {meta['mode']!r}, not {self.mode!r}; "
                f"load it with the backend registered for mode {meta['mode']!r}"
            )
        payload: bytes | None = None
        if meta.get("file") is not None:
            path = payload_file(indir, meta["file"])
            payload = hot_load_compile_cache(path, meta.get("torch"))
            _warn_if_thread_count_differs(path, meta.get("cpu_threads"))
        dynamic_axes = axes_from_json(meta["dynamic_axes"]) if "dynamic_axes" in meta else ctx.dynamic_axes
        runner = self._compile(module, dynamic_axes)
        runner.cache_artifacts = payload
        runner.cache_info = dict(meta.get("cache_artifacts", {}))
        runner.cpu_threads = meta.get("cpu_threads")
        return runner


def ensure_something_compiled(graphs_before: int, backend: str) -> None:
    """Fail a build in which dynamo captured no graph: its timings would be eager PyTorch's under another name."""
    if compile_counters()["graphs_traced"] > graphs_before:
        return
    disabled = os.environ.get("TORCH_COMPILE_DISABLE") or torch._dynamo.config.disable
    raise BackendError(
        f"{backend}: torch.compile ran the model without capturing a single graph, so this backend would be "
        "measured as eager PyTorch"
        + (
            " (torch.compile is disabled in this process: TORCH_COMPILE_DISABLE or torch._dynamo.config.disable)"
            if disabled
            else " (dynamo skipped the model's code: run with TORCH_LOGS=graph_breaks,recompiles to see why)"
        )
    )


def hot_load_compile_cache(path: Path, saved_by_torch: str | None) -> bytes:
    """Hand a saved compile cache to torch; warn (not fail) when torch cannot read it. Returns the bytes."""
    payload = path.read_bytes()
    if torch.compiler.load_cache_artifacts(payload) is None:
        warnings.warn(
            f"{path}: torch could not read these compile-cache artifacts (saved by torch "
            f"{saved_by_torch or '?'}, this is {torch.__version__}); the first call compiles from scratch",
            stacklevel=3,
        )
    return payload


def _warn_if_thread_count_differs(path: Path, built_threads: int | None) -> None:
    """Warn when a CPU build's thread count, which its cache keys hash, is not this process's."""
    from torch._inductor import config as inductor_config

    threads = torch.get_num_threads()
    if built_threads is None or built_threads == threads:
        return
    if inductor_config.cpp.threads >= 1 or inductor_config.cpp.dynamic_threads:
        return  # kernels do not specialise on torch's thread count, so neither do the keys
    warnings.warn(
        f"{path}: these compile-cache artifacts were built with torch.get_num_threads() == {built_threads}, "
        f"this process runs {threads}; inductor's CPU cache keys include the thread count, so the first "
        f"call compiles from scratch. Load it under torch.set_num_threads({built_threads}) "
        f"(or OMP_NUM_THREADS={built_threads}) to compile from the cache.",
        stacklevel=3,
    )


def payload_file(indir: Path, name: str) -> Path:
    """``indir / name``, refusing names that leave ``indir``; a missing file says what to do."""
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise BackendError(f"artifact metadata names payload file {name!r}, which is not a plain file name")
    path = indir / name
    if not path.is_file():
        raise BackendError(f"{path} is missing; the artifact is incomplete, rebuild it with --aitune-update")
    return path
