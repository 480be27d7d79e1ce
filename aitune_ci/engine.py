"""``ait.tune(spec)``: build every backend, validate it against eager, measure, and choose.

The engine is the only place that ties the pieces together; each piece (accuracy, measurement,
strategies, dynamic axes) is a module of its own that knows nothing about the others.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import inspect
import logging
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils import _pytree as pytree

from aitune_ci.accuracy import compare_outputs
from aitune_ci.backends import registry
from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.backends.inductor import compile_counters
from aitune_ci.compile_warmup import warm_compiler
from aitune_ci.digests import inputs_fingerprint
from aitune_ci.dynamic import BatchAxis, DynamicAxes, detect_batch_axis, detect_dynamic_axes, explicit_dynamic_axes
from aitune_ci.errors import BackendNotApplicable, SpecError
from aitune_ci.gpu_health import GpuMonitor
from aitune_ci.measure import MeasureConfig, Progress, measure
from aitune_ci.modules import CallableModule, capture_module_inputs, with_submodules_replaced
from aitune_ci.peak_memory import peak_call_bytes
from aitune_ci.result import MIXED, AccuracyReport, BackendResult, TaskMetricValue, TuneResult
from aitune_ci.samples import Sample, sample_signature
from aitune_ci.sanity import SanityConfig, SpeedClaim, implausible_speedups
from aitune_ci.spec import TuneSpec
from aitune_ci.status import BackendStatus
from aitune_ci.store.baseline import backend_key
from aitune_ci.strategies import SWEEP_MIN_GAIN, Selection, select, sweep_batch_sizes
from aitune_ci.task_metric_gates import TaskMetricGate
from aitune_ci.task_metrics import TaskMetric, TaskMetricError, score

__all__ = [
    "tune",
    "remeasure",
    "one_time_setup",
    "PartChoice",
    "Progress",
    "TuneRuntime",
    "default_backend_names",
    "MIXED",
]

log = logging.getLogger(__name__)

# Looser precision classes win when a backend's class and the spec's dtype disagree.
_LOOSENESS = {"fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3, "fp8": 4, "int8": 4}
_DTYPE_PRECISION = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp32"}


@dataclass
class TuneRuntime:
    """What a tune leaves in memory: the model, samples, and every built callable (for ``ait.save``)."""

    model: torch.nn.Module
    samples: list[Sample]
    dynamic_axes: DynamicAxes
    #: keyed by backend name (whole model) or ``submodule_path/backend_name`` (baseline.backend_key)
    backends: dict[str, Backend] = field(default_factory=dict)
    built: dict[str, Callable[..., Any]] = field(default_factory=dict)
    contexts: dict[str, BuildContext] = field(default_factory=dict)
    workdir: tempfile.TemporaryDirectory[str] | None = None
    #: submodule path -> winning backend, for module-level tuning (built under (path, name) keys)
    module_choice: dict[str, str] = field(default_factory=dict)
    gpu_health: dict[str, Any] = field(default_factory=dict)
    #: whole-model backend -> callable loaded from an artifact instead of built
    prebuilt: dict[str, Callable[..., Any]] = field(default_factory=dict)
    #: ``(backend, module path, module, ctx) -> loaded build or None``: the runner's build cache
    cached: Callable[[str, str, torch.nn.Module, BuildContext], Callable[..., Any] | None] | None = None
    measure_config: MeasureConfig | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class _Tuning:
    """What every step of one tune shares: the spec, where it runs, where builds go, whom to tell."""

    spec: TuneSpec
    device: torch.device
    workroot: Path
    runtime: TuneRuntime
    say: Progress
    #: digests of the weights and samples as given (``digests.inputs_fingerprint``)
    inputs: Mapping[str, str] = field(default_factory=dict)
    #: ``(backend, metric name, declared gate) -> gate`` with ``[tool.aitune.task_metrics]`` applied
    metric_gate: Callable[[str, str, TaskMetricGate], TaskMetricGate] | None = None
    sanity: SanityConfig = field(default_factory=SanityConfig)


@dataclass(frozen=True)
class PartChoice:
    """A backend for some of ``spec.modules``, decided before this tune, and who decided it.

    Choosing a part's backend costs a measurement per part; a caller that already knows the answer
    for the same work (``check.FixtureCheck``: a stored tune of it) spares it. The mixed model built
    from the choice is still validated and measured end to end.
    """

    choice: Mapping[str, str]
    #: where the choice came from, for the progress line (``"this runner's tune of the same work at 17:40 UTC"``)
    source: str


@dataclass(frozen=True)
class _Target:
    """What the backends are built on: the whole model or one submodule, with its inputs and references.

    Attributes:
        title: the progress lines' name for it (``small_cnn``, or ``small_cnn.encoder`` for a submodule).
        path: the submodule's path in the model; ``""`` for the whole model.
        reference: the fp32 eager output of each sample.
        fp64: the fp64 eager output of each sample, for the RMSE gate; ``None`` when unavailable.
    """

    title: str
    module: torch.nn.Module
    path: str
    samples: list[Sample]
    reference: list[Any]
    fp64: list[Any] | None
    dynamic_axes: DynamicAxes


def default_backend_names(device: torch.device) -> list[str]:
    """Every registered backend that is available on ``device`` (eager first)."""
    return [row.name for row in registry.backends(device) if row.available]


def _to_device(sample: Sample, device: torch.device, dtype: torch.dtype) -> Sample:
    def move(x: Any) -> Any:
        if isinstance(x, torch.Tensor):
            return x.to(device=device, dtype=dtype if x.is_floating_point() else x.dtype)
        return x

    args, kwargs = sample
    return tuple(pytree.tree_map(move, list(args))), pytree.tree_map(move, kwargs)


def _resize_batch(sample: Sample, batch: BatchAxis, size: int) -> Sample:
    """The sample with every batched tensor repeated/trimmed to ``size`` along the batch dim."""

    def resize(path: str, x: Any) -> Any:
        if path not in batch.paths or not isinstance(x, torch.Tensor):
            return x
        have = x.shape[batch.dim]
        reps = -(-size // have)
        tiled = x.repeat(*[reps if d == batch.dim else 1 for d in range(x.dim())])
        return tiled.narrow(batch.dim, 0, size).contiguous()

    args, kwargs = sample
    return (
        tuple(resize(f"args.{i}", a) for i, a in enumerate(args)),
        {k: resize(f"kwargs.{k}", v) for k, v in kwargs.items()},
    )


def _error_text(exc: BaseException) -> str:
    """The exception and where it came from, short enough for a table cell and a JSON file."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    text = f"{type(exc).__name__}: {exc}".strip()
    if len(text) > 1500:
        text = text[:1500] + " …"
    return text + where


def _loosest(precisions: Sequence[str]) -> str:
    return max(precisions, key=lambda p: _LOOSENESS.get(p, 0))


def _effective_precision(backend_precision: str, dtype: torch.dtype) -> str:
    return _loosest([backend_precision, _DTYPE_PRECISION.get(dtype, "fp32")])


def _reference_output(model: torch.nn.Module, sample: Sample, index: int, device: torch.device) -> Any:
    """The eager fp32 output of ``sample``; a sample the model cannot run is the spec's error, said
    as such (the first a new user met was a bare "mat1 and mat2 shapes cannot be multiplied")."""
    try:
        return _call(model, _to_device(sample, device, torch.float32))
    except Exception as exc:
        shapes = ", ".join(
            f"{s['path']}: {s['dtype']}{s['shape']}" if "shape" in s else f"{s['path']}: {s['type']}"
            for s in sample_signature(sample)
        )
        args, kwargs = sample
        hint = ""
        if kwargs and not args and isinstance(exc, TypeError) and not _binds(model, kwargs):
            hint = (
                ". A dict sample is passed as keyword arguments, model(**sample); for a forward() that "
                "takes one dict, give the sample as a one-element tuple: ({...},)"
            )
        raise SpecError(
            f"the eager model failed on samples[{index}] ({shapes or 'no arguments'}): {type(exc).__name__}: "
            f"{exc}. Check that each sample is what the model's forward() takes: a tensor, a tuple of "
            f"positional arguments, a dict of keyword arguments, or (args, kwargs){hint}"
        ) from exc


def _binds(model: torch.nn.Module, kwargs: Mapping[str, Any]) -> bool:
    """Whether ``model.forward`` takes ``kwargs`` as keyword arguments (True when it cannot be told):
    a TypeError from inside a forward that does take them is no sign of a dict meant whole."""
    try:
        inspect.signature(model.forward).bind(**kwargs)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def _fp64_reference(model: torch.nn.Module, samples: Sequence[Sample], device: torch.device) -> list[Any] | None:
    """fp64 outputs for the RMSE-ratio gate; None when the model cannot run in fp64 (it is optional)."""
    try:
        model64 = copy.deepcopy(model).to(torch.float64)
        with torch.inference_mode():
            return [model64(*a, **k) for a, k in (_to_device(s, device, torch.float64) for s in samples)]
    except Exception:
        return None


def _call(fn: Callable[..., Any], sample: Sample) -> Any:
    args, kwargs = sample
    with torch.inference_mode():
        return fn(*args, **kwargs)


def _bind(fn: Callable[..., Any], sample: Sample) -> Callable[[], Any]:
    args, kwargs = sample
    return lambda: fn(*args, **kwargs)


@contextlib.contextmanager
def _health_watch(tuning: _Tuning, block: str) -> Iterator[None]:
    """Record GPU clocks/temperature/power/throttling while a measurement block runs (CUDA only)."""
    device = tuning.device
    if device.type != "cuda":
        yield
        return
    monitor = GpuMonitor(device_index=device.index if device.index is not None else torch.cuda.current_device()).start()
    try:
        yield
    finally:
        summary = monitor.stop()
        if summary is not None:
            tuning.runtime.gpu_health[block] = summary.to_json()
            if summary.throttled:
                reasons = ", ".join(summary.throttle_reasons)
                tuning.say(f"measurement block {block!r} ran THROTTLED ({reasons}): compare with care")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def tune(
    spec: TuneSpec,
    *,
    measure_config: MeasureConfig | None = None,
    progress: Progress | None = None,
    backends: Sequence[str] | None = None,
    prebuilt: Mapping[str, Callable[..., Any]] | None = None,
    cached: Callable[[str, str, torch.nn.Module, BuildContext], Callable[..., Any] | None] | None = None,
    metric_gate: Callable[[str, str, TaskMetricGate], TaskMetricGate] | None = None,
    sanity: SanityConfig | None = None,
    decided_parts: PartChoice | None = None,
) -> TuneResult:
    """Build, validate and measure every backend of ``spec``, then choose the winner.

    Args:
        spec: what to tune.
        measure_config: measurement budget and rounds (defaults suit a CI run).
        progress: called with one line per step; when ``None``, each line is logged at INFO on the
            ``aitune_ci.engine`` logger (the ``aitune-ci`` CLI and the pytest plugin show those).
        backends: overrides ``spec.backends`` (the plugin's ``--aitune-backends`` filter).
        prebuilt: backend name -> an already built callable (a reused artifact) to validate and
            measure instead of building.
        cached: asked before each build, with the module and the build context; returns a build
            loaded from the runner's build cache (``store.build_cache.FixtureBuilds``) or None.
        metric_gate: resolves the gate of each task metric per backend (the plugin applies
            ``[tool.aitune.task_metrics]``); default: each metric's declared gate.
        sanity: the implausible-speed-up check (``aitune_ci.sanity``); default 3x, nothing acknowledged.
        decided_parts: a backend decided before for some of ``spec.modules``: such a part builds
            only that backend and is not measured. A part it does not name, or whose backend is not
            among this tune's or does not work here, is tuned as usual.

    Returns:
        A TuneResult with one row per backend; backends that raise are recorded as FAILED with the
        error text and the tune goes on. ``result.runtime`` keeps the built callables for ``ait.save``.
    """
    say = progress or log.info
    started = time.perf_counter()
    device = spec.resolved_device
    measure_config = measure_config or MeasureConfig()
    names = _backend_order(spec, backends, device)
    inputs = inputs_fingerprint(spec.model, spec.dtype, spec.normalized_samples)  # before any conversion
    model, reference_model = _prepare_models(spec, device)
    samples = [_to_device(s, device, spec.dtype) for s in spec.normalized_samples]
    dynamic_axes, batch_axis = _input_axes(spec, samples)

    say(f"{spec.display_name}: {_backends(len(names))} on {device} ({', '.join(names)})")
    reference = [_reference_output(reference_model, s, i, device) for i, s in enumerate(spec.normalized_samples)]
    fp64 = _fp64_reference(reference_model, spec.normalized_samples, device)

    tmp = tempfile.TemporaryDirectory(prefix="aitune-")
    runtime = TuneRuntime(
        model=model,
        samples=samples,
        dynamic_axes=dynamic_axes,
        workdir=tmp,
        prebuilt=dict(prebuilt or {}),
        cached=cached,
        measure_config=measure_config,
        batch_size=batch_axis.base_size if batch_axis else None,
    )
    tuning = _Tuning(
        spec=spec,
        device=device,
        workroot=Path(tmp.name),
        runtime=runtime,
        say=say,
        inputs=inputs,
        metric_gate=metric_gate,
        sanity=sanity or SanityConfig(),
    )
    whole = _Target(spec.display_name, model, "", samples, reference, fp64, dynamic_axes)
    rows = _build_all(tuning, whole, names)

    module_rows: list[BackendResult] = []
    if spec.modules:
        sweeps = spec.strategy == "max-throughput" and batch_axis is not None
        module_rows = _tune_modules(tuning, names, sweeps=sweeps, decided=decided_parts)
        if runtime.module_choice:
            rows[MIXED] = _build_mixed(tuning, whole, module_rows)

    _measure_whole_model(tuning, rows)
    if spec.strategy == "max-throughput" and batch_axis is not None:
        _batch_sweep(tuning, rows, batch_axis)
    _flag_implausible(tuning, rows)

    selection = select(list(rows.values()), spec.strategy, order=names + ([MIXED] if MIXED in rows else []))
    say(f"{spec.display_name}: winner {selection.winner or '(none)'} — {selection.reason}")
    if MIXED in rows:
        say(f"{spec.display_name}: {_mixed_gain_text(selection.rows)}")
    return _result(tuning, selection, module_rows, batch_axis, started)


def _result(
    tuning: _Tuning,
    selection: Selection,
    module_rows: list[BackendResult],
    batch_axis: BatchAxis | None,
    started: float,
) -> TuneResult:
    """The finished tune; ``started`` is its ``perf_counter`` start (for ``tune_s``)."""
    spec, runtime = tuning.spec, tuning.runtime
    return TuneResult(
        name=spec.display_name,
        strategy=spec.strategy,
        device=str(tuning.device),
        backends=tuple(selection.rows) + tuple(module_rows),
        winner=selection.winner,
        module_choice=dict(runtime.module_choice),
        gpu_health=dict(runtime.gpu_health),
        inputs=dict(tuning.inputs),
        winner_reason=selection.reason,
        environment=registry.fingerprint(tuning.device),
        spec=spec.summary(),
        batch_axis=batch_axis.dim if batch_axis else None,
        dynamic_axes={p: {str(d): n for d, n in dims.items()} for p, dims in runtime.dynamic_axes.items()},
        tune_s=time.perf_counter() - started,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        runtime=runtime,
    )


def _backend_order(spec: TuneSpec, backends: Sequence[str] | None, device: torch.device) -> list[str]:
    """The backends to build, eager first: it is the reference, always built and measured."""
    names = list(backends if backends is not None else (spec.backends or default_backend_names(device)))
    names = [n for n in names if n != MIXED]  # a result row, not a backend
    if "eager" in names:
        names.remove("eager")
    return ["eager", *names]


def _prepare_models(spec: TuneSpec, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model to tune (in the spec's dtype) and the fp32 model whose outputs are the reference."""
    model = spec.model.eval().to(device)
    if spec.dtype == torch.float32:
        return model, model
    reference_model = copy.deepcopy(model).to(torch.float32)
    return model.to(spec.dtype), reference_model


def _input_axes(spec: TuneSpec, samples: Sequence[Sample]) -> tuple[DynamicAxes, BatchAxis | None]:
    """The dynamic axes ahead-of-time backends are built with, and the batch axis (None if there is none)."""
    signatures = [sample_signature(s) for s in samples]
    if spec.dynamic_axes == "auto":
        dynamic_axes = detect_dynamic_axes(signatures)
    elif spec.dynamic_axes is None:
        dynamic_axes = {}
    else:
        dynamic_axes = explicit_dynamic_axes(spec.dynamic_axes, signatures)
    batch_axis = detect_batch_axis(signatures)
    if spec.strategy == "max-throughput" and batch_axis is not None:
        # The sweep calls every backend at other batch sizes: ahead-of-time backends must be built
        # with a dynamic batch dim, or they would be rebuilt (or fail) at every size.
        _make_batch_dynamic(dynamic_axes, batch_axis)
    return dynamic_axes, batch_axis


def _make_batch_dynamic(dynamic_axes: DynamicAxes, batch_axis: BatchAxis) -> None:
    for path in batch_axis.paths:
        dynamic_axes.setdefault(path, {}).setdefault(batch_axis.dim, "batch")


def _build_all(tuning: _Tuning, target: _Target, names: Sequence[str]) -> dict[str, BackendResult]:
    """Build and validate every backend on ``target``, in order; one row each."""
    rows: dict[str, BackendResult] = {}
    for index, name in enumerate(names, start=1):
        rows[name] = _build_and_validate(tuning, target, name, label=f"[{index}/{len(names)}] {target.title} · {name}")
    return rows


def _build_and_validate(tuning: _Tuning, target: _Target, name: str, label: str) -> BackendResult:
    """Build one backend on ``target`` and validate it on every sample; never raises.

    A usable build is stored in ``tuning.runtime`` (under ``name`` for the whole model, under
    ``path/name`` for a submodule, as ``baseline.backend_key``).
    """
    spec, runtime, say = tuning.spec, tuning.runtime, tuning.say
    try:
        backend = registry.get_backend(name)
    except Exception as exc:
        return BackendResult(backend=name, status=BackendStatus.FAILED, module=target.path, error=_error_text(exc))
    precision = _effective_precision(str(backend.precision), spec.dtype)
    base = BackendResult(
        backend=name,
        status=BackendStatus.FAILED,
        precision=precision,
        description=backend.describe(),
        module=target.path,
    )
    ok, reason = backend.available(tuning.device)
    if not ok:
        say(f"{label}: unavailable — {reason}")
        return replace(base, status=BackendStatus.UNAVAILABLE, error=reason)

    workdir = tuning.workroot / (f"{target.path}--{name}" if target.path else name)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(
        device=tuning.device,
        dtype=spec.dtype,
        workdir=workdir,
        dynamic_axes=target.dynamic_axes,
        options=backend.options,
    )
    counters_before = _compile_counters()
    t0 = time.perf_counter()
    reused, source = _reuse(runtime, name, target, ctx)
    if reused is None:
        if _set_up(tuning, backend):
            counters_before, t0 = _compile_counters(), time.perf_counter()
        say(f"{label}: building…")
    try:
        built = reused if reused is not None else backend.build(target.module, target.samples, ctx)
        outputs = [_call(built, s) for s in target.samples]
        if tuning.device.type == "cuda":
            torch.cuda.synchronize(tuning.device)
    except Exception as exc:
        if isinstance(exc, BackendNotApplicable) and target.path:
            say(f"{label}: not applicable to this part — {exc.reason}")
            return replace(
                base,
                status=BackendStatus.UNAVAILABLE,
                build_s=time.perf_counter() - t0,
                error=f"not applicable to this part: {exc.reason}",
            )
        say(f"{label}: FAILED after {time.perf_counter() - t0:.1f} s — {_error_text(exc)}")
        return replace(base, build_s=time.perf_counter() - t0, error=_error_text(exc))
    build_s = time.perf_counter() - t0
    base = replace(base, build_cache="reused" if reused is not None else _build_cache(counters_before))
    try:
        report = compare_outputs(target.reference, outputs, precision, spec.tolerance, fp64_reference=target.fp64)
    except Exception as exc:
        say(f"{label}: FAILED validating outputs — {_error_text(exc)}")
        return replace(base, build_s=build_s, error=f"validation: {_error_text(exc)}")
    try:
        scores = _task_metrics(tuning, target, name, outputs)
    except TaskMetricError as exc:
        say(f"{label}: FAILED — {exc}")
        return replace(base, build_s=build_s, accuracy=report, error=str(exc))
    key = backend_key(name, target.path)
    runtime.backends[key] = backend
    runtime.built[key] = built
    runtime.contexts[key] = ctx
    if reused is not None:
        base = replace(base, description=f"{base.description} ({_DESCRIBED[source]})", reused=source)
    say(
        f"{label}: {f'loaded from {_REUSED[source]}' if reused is not None else 'built'} in {build_s:.1f} s, "
        f"{_accuracy_text(report)}" + _scores_text(scores)
    )
    base = replace(base, peak_memory_bytes=_peak_memory(built, target.samples[0], tuning.device))
    return _validated(base, report, build_s, scores)


#: ``BackendResult.reused`` -> how progress lines say it.
_REUSED = {"artifact": "the committed artifact", "cache": "the build cache"}
#: ... and how the row's description says it.
_DESCRIBED = {"artifact": "reused artifact", "cache": "from the build cache"}


def _reuse(runtime: TuneRuntime, name: str, target: _Target, ctx: BuildContext) -> tuple[Any, str]:
    """A build to use instead of building, and where from: the committed artifact (whole model), or the build cache."""
    reused = None if target.path else runtime.prebuilt.get(name)
    if reused is not None:
        return reused, "artifact"
    if runtime.cached is not None:
        reused = runtime.cached(name, target.path, target.module, ctx)
    return reused, "cache"


def _set_up(tuning: _Tuning, backend: Backend) -> bool:
    """Pay the process's one-time set-up for ``backend`` before its build is timed; True when any
    ran now. Only builds need it: a loaded build's time is never compared."""
    lines = one_time_setup(backend, tuning.device)
    for line in lines:
        tuning.say(line)
    return bool(lines)


def one_time_setup(backend: Backend, device: torch.device) -> list[str]:
    """Pay what the first build of ``backend`` in this process on ``device`` would pay beyond its
    model, now: inductor's set-up (``compile_warmup``, with the CPU ISA probe where the build
    compiles C++) and the backend's own (``Backend.prepare_process``). A line for each that ran."""
    lines = []
    if backend.uses_inductor:
        cxx, compiler = _cxx_toolchain(backend, device)
        setup = warm_compiler(device, cxx=cxx, compiler=compiler)
        if setup is not None:
            lines.append(setup.describe())
    seconds = backend.prepare_process(device)
    if seconds is not None:
        lines.append(
            f"{backend.name} set up in {seconds:.1f} s (imports, exporter; once per process, in no build's time)"
        )
    return lines


def _cxx_toolchain(backend: Backend, device: torch.device) -> tuple[bool, str | None]:
    """Whether ``backend``'s build compiles C++ (AOTInductor anywhere, inductor on the CPU), and with
    which compiler (None: torch's own). A compiler that cannot be chosen is the build's to report."""
    if not (backend.compiles_cxx or device.type == "cpu"):
        return False, None
    try:
        return True, backend.cxx_compiler()
    except Exception:
        return False, None


def _compile_counters() -> dict[str, int] | None:
    """torch's compile counters; empty while dynamo is not imported (nothing compiled yet), None if unreadable."""
    if "torch._dynamo.utils" not in sys.modules:
        return {}  # importing dynamo only to read zeros would cost every eager-only run its import

    try:
        return compile_counters()
    except Exception:  # a torch without these counters: the cache state is then unknown
        return None


def _build_cache(before: Mapping[str, int] | None) -> str | None:
    """How a build met the compile caches: cold (generated code), warm (only cache hits) or none.

    Build times are only comparable between builds in the same state (``verdict.metrics``).
    """
    after = _compile_counters()
    if before is None or after is None:
        return None
    moved = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    if any(moved.get(k, 0) > 0 for k in ("inductor_codegen", "aoti_compiles", "fxgraph_cache_miss")):
        return "cold"
    if moved.get("fxgraph_cache_hit", 0) > 0 or moved.get("autograd_cache_hit", 0) > 0:
        return "warm"
    return "none"


def _peak_memory(built: Callable[..., Any], sample: Sample, device: torch.device) -> int | None:
    """Peak memory of one call on the first sample (``aitune_ci.peak_memory``); None if it cannot be read."""
    try:
        with torch.inference_mode():
            return peak_call_bytes(_bind(built, sample), device)
    except Exception:  # measuring must never turn a working backend into a failed one
        return None


def _accuracy_text(report: AccuracyReport) -> str:
    return f"accuracy {'ok' if report.passed else 'FAILED'} ({report.summary()})"


def _scores_text(scores: Sequence[TaskMetricValue]) -> str:
    return "".join(f", {m.name} {m.value:.4g}{'' if m.passed else ' FAILED'}" for m in scores)


def _task_metrics(
    tuning: _Tuning, target: _Target, backend: str, outputs: Sequence[Any]
) -> tuple[TaskMetricValue, ...]:
    """The spec's task metrics on one whole-model build (submodules have no task to score); may raise TaskMetricError."""
    spec = tuning.spec
    if target.path or not spec.task_metrics:
        return ()
    resolve = tuning.metric_gate

    def gate(m: TaskMetric) -> TaskMetricGate:
        return resolve(backend, m.name, m.gate) if resolve is not None else m.gate

    return score(
        spec.task_metrics, outputs, target.reference, target.samples, where=f"{spec.display_name}[{backend}]", gate=gate
    )


def _validated(
    row: BackendResult, report: AccuracyReport, build_s: float, scores: tuple[TaskMetricValue, ...] = ()
) -> BackendResult:
    """The row of a build that ran: OK when accurate and every task metric within its gate, else
    INACCURATE (still measured, never chosen)."""
    failed = [m.reason for m in scores if not m.passed]
    passed = report.passed and not failed
    reason = "; ".join(([report.reason] if not report.passed and report.reason else []) + failed)
    return replace(
        row,
        status=BackendStatus.OK if passed else BackendStatus.INACCURATE,
        build_s=build_s,
        accuracy=report,
        error=None if passed else (reason or report.reason),
        task_metrics=scores,
    )


def _measure_whole_model(tuning: _Tuning, rows: dict[str, BackendResult]) -> None:
    """Latency of every whole-model build that ran, in interleaved rounds (GPU health watched)."""
    runtime, say, title = tuning.runtime, tuning.say, tuning.spec.display_name
    measured = {n: fn for n, fn in runtime.built.items() if n in rows and rows[n].status.ran}
    if not measured:
        return
    say(f"{title}: measuring {_backends(len(measured))} in interleaved rounds")
    t0 = time.perf_counter()
    fns = {n: _bind(fn, runtime.samples[0]) for n, fn in measured.items()}
    with _health_watch(tuning, "main"):
        stats = measure(fns, tuning.device, runtime.measure_config, batch_size=runtime.batch_size, on_progress=say)
    for n, s in stats.items():
        rows[n] = replace(rows[n], latency=s)
    say(f"{title}: measured in {time.perf_counter() - t0:.1f} s")


def _tune_modules(
    tuning: _Tuning, names: Sequence[str], *, sweeps: bool, decided: PartChoice | None = None
) -> list[BackendResult]:
    """Tune each submodule on the inputs it really receives; choose the fastest accurate backend each
    (or take the one ``decided`` names).

    Submodules always use min-latency: a batch sweep per submodule would not say anything about
    the whole model's throughput, which the mixed model's own end-to-end row measures. ``sweeps``
    (the whole model gets a batch sweep) still builds them with a dynamic batch dim.
    """
    spec, runtime = tuning.spec, tuning.runtime
    captured = capture_module_inputs(runtime.model, runtime.samples, list(spec.modules or ()))
    named = dict(runtime.model.named_modules())
    out: list[BackendResult] = []
    for path, calls in captured.items():
        target = _submodule_target(tuning, path, named[path], calls, sweeps=sweeps)
        chosen = decided.choice.get(path) if decided is not None else None
        if chosen is None or chosen not in names:
            out.extend(_choose_for_submodule(tuning, target, names))
            continue
        assert decided is not None
        row = _build_and_validate(tuning, target, chosen, label=f"[1/1] {target.title} · {chosen}")
        if row.status is BackendStatus.OK:  # built and accurate (``usable`` also asks for a latency)
            out.append(_as_decided(tuning, target, row, decided.source))
            continue
        tuning.say(
            f"{target.title}: {chosen}, chosen by {decided.source}, does not work here ({row.status}); choosing again"
        )
        out.extend(_choose_for_submodule(tuning, target, names, built={chosen: row}))
    return out


def _as_decided(tuning: _Tuning, target: _Target, row: BackendResult, source: str) -> BackendResult:
    """Record ``row``'s backend as ``target``'s choice, unmeasured, saying who chose it."""
    tuning.runtime.module_choice[target.path] = row.backend
    reason = f"chosen by {source}, not measured again"
    tuning.say(f"{target.title}: {row.backend} — {reason}")
    return replace(row, selected=True, selection_note=f"selected: {reason}")


def _submodule_target(
    tuning: _Tuning, path: str, submodule: torch.nn.Module, calls: list[Sample], *, sweeps: bool
) -> _Target:
    """A submodule with the calls it received, their eager outputs and the axes detected on them."""
    signatures = [sample_signature(c) for c in calls]
    axes = detect_dynamic_axes(signatures)
    sub_batch = detect_batch_axis(signatures)
    if sweeps and sub_batch is not None:
        _make_batch_dynamic(axes, sub_batch)
    reference = [_call(submodule, c) for c in calls]
    fp64 = _fp64_reference(submodule, calls, tuning.device) if tuning.spec.dtype == torch.float32 else None
    return _Target(f"{tuning.spec.display_name}.{path}", submodule, path, calls, reference, fp64, axes)


def _choose_for_submodule(
    tuning: _Tuning, target: _Target, names: Sequence[str], built: Mapping[str, BackendResult] | None = None
) -> list[BackendResult]:
    """Build, validate and measure every backend on one submodule; record the fastest accurate one.
    ``built``: rows of backends already built on it, not built again."""
    runtime = tuning.runtime
    built = built or {}
    fresh = _build_all(tuning, target, [n for n in names if n not in built])
    rows = {n: built[n] if n in built else fresh[n] for n in names}
    fns = {
        n: _bind(runtime.built[backend_key(n, target.path)], target.samples[0]) for n, r in rows.items() if r.status.ran
    }
    if fns:
        tuning.say(f"{target.title}: measuring {_backends(len(fns))} in interleaved rounds")
        for n, s in measure(fns, tuning.device, runtime.measure_config).items():
            rows[n] = replace(rows[n], latency=s)
    selection = select(list(rows.values()), "min-latency")
    if selection.winner is not None:
        runtime.module_choice[target.path] = selection.winner
    tuning.say(f"{target.title}: chose {selection.winner or '(none)'} — {selection.reason}")
    return list(selection.rows)


def _build_mixed(tuning: _Tuning, whole: _Target, module_rows: list[BackendResult]) -> BackendResult:
    """Swap each submodule's winner into (a shallow copy of) the model; validate it end to end."""
    runtime, title = tuning.runtime, tuning.spec.display_name
    choice = runtime.module_choice
    description = ", ".join(f"{p}={b}" for p, b in choice.items())
    precision = _loosest([r.precision for r in module_rows if r.selected] or ["fp32"])
    base = BackendResult(backend=MIXED, status=BackendStatus.FAILED, precision=precision, description=description)
    t0 = time.perf_counter()
    try:
        mixed = with_submodules_replaced(
            whole.module,
            {p: CallableModule(runtime.built[backend_key(b, p)], f"{b}") for p, b in choice.items()},
        )
        outputs = [_call(mixed, s) for s in whole.samples]
        report = compare_outputs(whole.reference, outputs, precision, tuning.spec.tolerance, fp64_reference=whole.fp64)
    except Exception as exc:
        tuning.say(f"{title} · mixed: FAILED — {_error_text(exc)}")
        return replace(base, error=_error_text(exc))
    try:
        scores = _task_metrics(tuning, whole, MIXED, outputs)
    except TaskMetricError as exc:
        tuning.say(f"{title} · mixed: FAILED — {exc}")
        return replace(base, accuracy=report, error=str(exc))
    build_s = sum(r.build_s or 0.0 for r in module_rows if r.selected) + (time.perf_counter() - t0)
    runtime.built[MIXED] = mixed
    tuning.say(f"{title} · mixed ({description}): {_accuracy_text(report)}{_scores_text(scores)}")
    state = _mixed_build_state([r for r in module_rows if r.selected])
    return replace(_validated(base, report, build_s, scores), build_cache=state)


def _mixed_build_state(parts: Sequence[BackendResult]) -> str | None:
    """How the mixed model's build met the compile caches: as its parts' builds did. ``reused`` when
    a part was loaded rather than built; ``cold`` or ``warm`` when every part that met a compile cache
    met it so (``none`` when none did); None when cold and warm parts mix, or a part's state is
    unknown. Its build time sums the parts', so without a state a loaded mix read as compile-time
    drift beside a built one, and with one state for a cold and a warm part a second cold part
    would read as a build-time regression."""
    states = {r.reused and "reused" or r.build_cache for r in parts}
    if not states or None in states:
        return None
    if "reused" in states:
        return "reused"
    built = states - {"none"}  # a part that touched no compile cache (eager) is like any other
    if len(built) > 1:
        return None  # cold and warm parts: the sum of their build times compares with no single state
    return built.pop() if built else "none"


def _flag_implausible(tuning: _Tuning, rows: dict[str, BackendResult]) -> None:
    """Flag for review a backend far faster than every other and less accurate (``aitune_ci.sanity``).

    Only whole-model, accurate, measured backends take part; the mixed model is left out (it is
    built from the others). A flagged backend is never selected; an acknowledged one is not flagged.
    """
    config = tuning.sanity
    claims = []
    for name, r in rows.items():
        if name == MIXED or not r.usable or r.latency is None:
            continue
        worst = r.accuracy.worst if r.accuracy is not None else None
        sqnr, cosine = (worst.sqnr_db, worst.cosine) if worst is not None else (None, None)
        claims.append(SpeedClaim(name, r.latency.median_ms, sqnr, cosine))
    flagged = implausible_speedups(claims, config.max_speedup, sqnr_ceiling_db=config.sqnr_ceiling_db)
    for name, reason in flagged.items():
        if name in config.accepted:
            tuning.say(f"{tuning.spec.display_name} · {name}: implausible speed-up acknowledged in [tool.aitune]")
            continue
        tuning.say(f"{tuning.spec.display_name} · {name}: flagged for review — {reason}")
        rows[name] = replace(rows[name], review=reason)


def _mixed_gain_text(rows: Sequence[BackendResult]) -> str:
    mixed = next((r for r in rows if r.backend == MIXED and r.latency), None)
    singles = [r for r in rows if r.backend != MIXED and r.usable]
    if mixed is None or not singles:
        return "mixed model not measured"
    best = min(singles, key=lambda r: r.latency.median_ms)  # type: ignore[union-attr]
    gain = best.latency.median_ms / mixed.latency.median_ms  # type: ignore[union-attr]
    return f"mixed model is {gain:.2f}x the speed of the best whole-model backend ({best.backend})"


def _batch_sweep(tuning: _Tuning, rows: dict[str, BackendResult], batch_axis: BatchAxis) -> None:
    """Throughput at powers of two on the batch axis, until doubling gains < 5% or memory runs out."""
    spec, runtime = tuning.spec, tuning.runtime
    base = batch_axis.base_size
    cap = spec.max_batch or min(max(base * 8, 8), 1024)
    active = [n for n, r in rows.items() if r.usable and n in runtime.built]
    sweeps: dict[str, list[Any]] = {n: [] for n in active}
    for size in sweep_batch_sizes(base, cap):
        if not active:
            break
        fns = _callables_at(tuning, active, _resize_batch(runtime.samples[0], batch_axis, size), size)
        if not fns:
            break
        tuning.say(f"{spec.display_name}: batch {size}: measuring {', '.join(fns)}")
        with _health_watch(tuning, f"batch {size}"):
            stats = measure(fns, tuning.device, runtime.measure_config, batch_size=size)
        for n, s in stats.items():
            previous = sweeps[n][-1] if sweeps[n] else None
            sweeps[n].append(s)
            if previous is not None and previous.throughput and s.throughput:
                if s.throughput < previous.throughput * (1 + SWEEP_MIN_GAIN):
                    active.remove(n)
    for n, sweep in sweeps.items():
        rows[n] = replace(rows[n], sweep=tuple(sweep))


def _callables_at(tuning: _Tuning, active: list[str], sample: Sample, size: int) -> dict[str, Callable[[], Any]]:
    """Each active backend bound to ``sample``, called once first; one that raises leaves ``active``."""
    fns = {}
    for n in list(active):
        try:
            _call(tuning.runtime.built[n], sample)  # first call at a new shape: compile/allocate outside timing
            fns[n] = _bind(tuning.runtime.built[n], sample)
        except Exception as exc:
            why = "out of memory" if _is_oom(exc) else _error_text(exc)
            tuning.say(f"{tuning.spec.display_name} · {n}: batch sweep stops before {size} ({why})")
            active.remove(n)
            if tuning.device.type == "cuda":
                torch.cuda.empty_cache()
    return fns


def remeasure(result: TuneResult, backend: str) -> BackendResult:
    """Measure ``backend`` of a finished tune again (interleaved with eager), for confirmations.

    Needs ``result.runtime`` (the built callables); returns the backend's row with new latency.
    """
    runtime: TuneRuntime | None = result.runtime
    row = result.backend(backend)
    if runtime is None or row is None or backend not in runtime.built:
        raise ValueError(f"cannot re-measure {backend!r}: its built module is no longer in memory")
    names = [backend] + (["eager"] if backend != "eager" and "eager" in runtime.built else [])
    fns = {n: _bind(runtime.built[n], runtime.samples[0]) for n in names}
    stats = measure(fns, torch.device(result.device), runtime.measure_config, batch_size=runtime.batch_size)
    return replace(row, latency=stats[backend])


def _backends(n: int) -> str:
    return f"{n} backend" + ("" if n == 1 else "s")
