"""``ait.tune(spec)``: build every backend, validate it against eager, measure, and choose.

The engine is the only place that ties the pieces together; each piece (accuracy, measurement,
strategies, dynamic axes) is a module of its own that knows nothing about the others.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
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
from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.backends.registry import get_backend
from aitune_ci.dynamic import BatchAxis, DynamicAxes, detect_batch_axis, detect_dynamic_axes, explicit_dynamic_axes
from aitune_ci.environment import environment_fingerprint
from aitune_ci.gpu_health import GpuMonitor
from aitune_ci.measure import MeasureConfig, measure
from aitune_ci.modules import CallableModule, capture_module_inputs, with_submodules_replaced
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.samples import Sample, sample_signature
from aitune_ci.spec import TuneSpec
from aitune_ci.store.baseline import backend_key
from aitune_ci.strategies import SWEEP_MIN_GAIN, select, sweep_batch_sizes

__all__ = ["tune", "remeasure", "Progress", "TuneRuntime", "default_backend_names", "MIXED"]

#: The row name of the model with each tuned submodule's winner swapped in.
MIXED = "mixed"

Progress = Callable[[str], None]

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
    measure_config: MeasureConfig | None = None
    batch_size: int | None = None


def _stderr_progress(message: str) -> None:
    print(f"[aitune] {message}", file=sys.stderr, flush=True)


def default_backend_names(device: torch.device) -> list[str]:
    """Every registered backend that is available on ``device`` (eager first)."""
    from aitune_ci.backends.registry import backends

    return [row.name for row in backends(device) if row.available]


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


def _effective_precision(backend_precision: str, dtype: torch.dtype) -> str:
    spec_precision = _DTYPE_PRECISION.get(dtype, "fp32")
    return max(backend_precision, spec_precision, key=lambda p: _LOOSENESS.get(p, 0))


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
def _health_watch(device: torch.device, runtime: TuneRuntime, block: str, say: Progress) -> Iterator[None]:
    """Record GPU clocks/temperature/power/throttling while a measurement block runs (CUDA only)."""
    if device.type != "cuda":
        yield
        return
    monitor = GpuMonitor(device_index=device.index if device.index is not None else torch.cuda.current_device()).start()
    try:
        yield
    finally:
        summary = monitor.stop()
        if summary is not None:
            runtime.gpu_health[block] = summary.to_json()
            if summary.throttled:
                say(f"measurement block {block!r} ran THROTTLED ({', '.join(summary.throttle_reasons)}): compare with care")


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def tune(
    spec: TuneSpec,
    *,
    measure_config: MeasureConfig | None = None,
    progress: Progress | None = _stderr_progress,
    backends: Sequence[str] | None = None,
    prebuilt: Mapping[str, Callable[..., Any]] | None = None,
) -> TuneResult:
    """Build, validate and measure every backend of ``spec``, then choose the winner.

    Args:
        spec: what to tune.
        measure_config: measurement budget and rounds (defaults suit a CI run).
        progress: called with one line per step (``None`` for silence).
        backends: overrides ``spec.backends`` (the plugin's ``--aitune-backends`` filter).
        prebuilt: backend name -> an already built callable (a reused artifact) to validate and
            measure instead of building.

    Returns:
        A TuneResult with one row per backend; backends that raise are recorded as FAILED with the
        error text and the tune goes on. ``result.runtime`` keeps the built callables for ``ait.save``.
    """
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    device = spec.resolved_device
    measure_config = measure_config or MeasureConfig()
    names = list(backends if backends is not None else (spec.backends or default_backend_names(device)))
    names = [n for n in names if n != MIXED]  # a result row, not a backend
    if "eager" in names:
        names.remove("eager")
    names.insert(0, "eager")  # the reference is always built and measured first

    model = spec.model.eval().to(device)
    if spec.dtype != torch.float32:
        reference_model = copy.deepcopy(model).to(torch.float32)
        model = model.to(spec.dtype)
    else:
        reference_model = model
    samples = [_to_device(s, device, spec.dtype) for s in spec.normalized_samples]
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
        for path in batch_axis.paths:
            dynamic_axes.setdefault(path, {}).setdefault(batch_axis.dim, "batch")

    say(f"{spec.display_name}: {len(names)} backends on {device} ({', '.join(names)})")
    reference_samples = [_to_device(s, device, torch.float32) for s in spec.normalized_samples]
    reference = [_call(reference_model, s) for s in reference_samples]
    fp64 = _fp64_reference(reference_model, spec.normalized_samples, device)

    tmp = tempfile.TemporaryDirectory(prefix="aitune-")
    runtime = TuneRuntime(model=model, samples=samples, dynamic_axes=dynamic_axes, workdir=tmp)
    runtime.batch_size = batch_axis.base_size if batch_axis else None
    runtime.measure_config = measure_config
    runtime.prebuilt = dict(prebuilt or {})
    rows: dict[str, BackendResult] = {}
    for index, name in enumerate(names, start=1):
        label = f"[{index}/{len(names)}] {spec.display_name} · {name}"
        rows[name] = _build_and_validate(
            label, name, "", spec, model, samples, reference, fp64, dynamic_axes, device, Path(tmp.name), runtime, say
        )

    module_rows: list[BackendResult] = []
    if spec.modules:
        module_rows = _tune_modules(spec, names, model, samples, rows, device, Path(tmp.name), runtime, say, batch_axis)
        if runtime.module_choice:
            rows[MIXED] = _build_mixed(spec, model, samples, reference, fp64, module_rows, runtime, say)

    measured = {n: fn for n, fn in runtime.built.items() if n in rows and rows[n].status in ("ok", "inaccurate")}
    if measured:
        say(f"{spec.display_name}: measuring {len(measured)} backends in interleaved rounds")
        t0 = time.perf_counter()
        fns = {n: _bind(fn, samples[0]) for n, fn in measured.items()}
        with _health_watch(device, runtime, "main", say):
            stats = measure(fns, device, measure_config, batch_size=runtime.batch_size, on_progress=say)
        for n, s in stats.items():
            rows[n] = _replace_row(rows[n], latency=s)
        say(f"{spec.display_name}: measured in {time.perf_counter() - t0:.1f} s")

    if spec.strategy == "max-throughput" and batch_axis is not None:
        _batch_sweep(spec, rows, runtime, batch_axis, device, measure_config, say)

    selection = select(list(rows.values()), spec.strategy, order=names + ([MIXED] if MIXED in rows else []))
    say(f"{spec.display_name}: winner {selection.winner or '(none)'} — {selection.reason}")
    if MIXED in rows:
        say(f"{spec.display_name}: {_mixed_gain_text(selection.rows)}")
    return TuneResult(
        name=spec.display_name,
        strategy=spec.strategy,
        device=str(device),
        backends=tuple(selection.rows) + tuple(module_rows),
        winner=selection.winner,
        module_choice=dict(runtime.module_choice),
        gpu_health=dict(runtime.gpu_health),
        winner_reason=selection.reason,
        environment=environment_fingerprint(device),
        spec=spec.summary(),
        batch_axis=batch_axis.dim if batch_axis else None,
        dynamic_axes={p: {str(d): n for d, n in dims.items()} for p, dims in dynamic_axes.items()},
        tune_s=time.perf_counter() - started,
        created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        runtime=runtime,
    )


def _replace_row(row: BackendResult, **changes: Any) -> BackendResult:
    return replace(row, **changes)


def _build_and_validate(
    label: str,
    name: str,
    module_path: str,
    spec: TuneSpec,
    module: torch.nn.Module,
    samples: list[Sample],
    reference: list[Any],
    fp64: list[Any] | None,
    dynamic_axes: DynamicAxes,
    device: torch.device,
    workroot: Path,
    runtime: TuneRuntime,
    say: Progress,
) -> BackendResult:
    """Build one backend on ``module`` and validate it on every sample; never raises.

    A usable build is stored in ``runtime`` (under ``name`` for the whole model, under
    ``module_path/name`` for a submodule, as ``baseline.backend_key``).
    """
    try:
        backend = get_backend(name)
    except Exception as exc:
        return BackendResult(backend=name, status="failed", module=module_path, error=_error_text(exc))
    precision = _effective_precision(str(backend.precision), spec.dtype)
    base = BackendResult(backend=name, status="failed", precision=precision, description=backend.describe(), module=module_path)
    ok, reason = backend.available(device)
    if not ok:
        say(f"{label}: unavailable — {reason}")
        return _replace_row(base, status="unavailable", error=reason)

    workdir = workroot / (f"{module_path}--{name}" if module_path else name)
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(device=device, dtype=spec.dtype, workdir=workdir, dynamic_axes=dynamic_axes, options=backend.options)
    reused = None if module_path else runtime.prebuilt.get(name)
    say(f"{label}: {'reusing the committed artifact' if reused is not None else 'building'}…")
    t0 = time.perf_counter()
    try:
        built = reused if reused is not None else backend.build(module, samples, ctx)
        outputs = [_call(built, s) for s in samples]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:
        say(f"{label}: FAILED after {time.perf_counter() - t0:.1f} s — {_error_text(exc)}")
        return _replace_row(base, build_s=time.perf_counter() - t0, error=_error_text(exc))
    build_s = time.perf_counter() - t0
    try:
        report = compare_outputs(reference, outputs, precision, spec.tolerance, fp64_reference=fp64)
    except Exception as exc:
        say(f"{label}: FAILED validating outputs — {_error_text(exc)}")
        return _replace_row(base, build_s=build_s, error=f"validation: {_error_text(exc)}")
    key = backend_key(name, module_path)
    runtime.backends[key] = backend
    runtime.built[key] = built
    runtime.contexts[key] = ctx
    status = "ok" if report.passed else "inaccurate"
    if reused is not None:
        base = _replace_row(base, description=f"{base.description} (reused artifact)")
    say(f"{label}: {'reused' if reused is not None else 'built'} in {build_s:.1f} s, accuracy {'ok' if report.passed else 'FAILED'} ({report.summary()})")
    return _replace_row(base, status=status, build_s=build_s, accuracy=report, error=None if report.passed else report.reason)


def _tune_modules(
    spec: TuneSpec,
    names: list[str],
    model: torch.nn.Module,
    samples: list[Sample],
    whole_rows: dict[str, BackendResult],
    device: torch.device,
    workroot: Path,
    runtime: TuneRuntime,
    say: Progress,
    batch_axis: BatchAxis | None,
) -> list[BackendResult]:
    """Tune each submodule on the inputs it really receives; choose the fastest accurate backend each.

    Submodules always use min-latency: a batch sweep per submodule would not say anything about
    the whole model's throughput, which the mixed model's own end-to-end row measures.
    """
    captured = capture_module_inputs(model, samples, list(spec.modules or ()))
    named = dict(model.named_modules())
    out: list[BackendResult] = []
    for path, calls in captured.items():
        submodule = named[path]
        signatures = [sample_signature(c) for c in calls]
        axes = detect_dynamic_axes(signatures)
        sub_batch = detect_batch_axis(signatures)
        if spec.strategy == "max-throughput" and batch_axis is not None and sub_batch is not None:
            for p in sub_batch.paths:
                axes.setdefault(p, {}).setdefault(sub_batch.dim, "batch")
        reference = [_call(submodule, c) for c in calls]
        fp64 = _fp64_reference(submodule, calls, device) if spec.dtype == torch.float32 else None
        rows: dict[str, BackendResult] = {}
        for index, name in enumerate(names, start=1):
            label = f"[{index}/{len(names)}] {spec.display_name}.{path} · {name}"
            rows[name] = _build_and_validate(
                label, name, path, spec, submodule, calls, reference, fp64, axes, device, workroot, runtime, say
            )
        fns = {
            n: _bind(runtime.built[backend_key(n, path)], calls[0])
            for n, r in rows.items()
            if r.status in ("ok", "inaccurate")
        }
        if fns:
            say(f"{spec.display_name}.{path}: measuring {len(fns)} backends in interleaved rounds")
            for n, s in measure(fns, device, runtime.measure_config).items():
                rows[n] = _replace_row(rows[n], latency=s)
        selection = select(list(rows.values()), "min-latency")
        if selection.winner is not None:
            runtime.module_choice[path] = selection.winner
        say(f"{spec.display_name}.{path}: chose {selection.winner or '(none)'} — {selection.reason}")
        out.extend(selection.rows)
    return out


def _build_mixed(
    spec: TuneSpec,
    model: torch.nn.Module,
    samples: list[Sample],
    reference: list[Any],
    fp64: list[Any] | None,
    module_rows: list[BackendResult],
    runtime: TuneRuntime,
    say: Progress,
) -> BackendResult:
    """Swap each submodule's winner into (a shallow copy of) the model; validate it end to end."""
    choice = runtime.module_choice
    description = ", ".join(f"{p}={b}" for p, b in choice.items())
    precisions = [r.precision for r in module_rows if r.selected]
    precision = max(precisions or ["fp32"], key=lambda p: _LOOSENESS.get(p, 0))
    base = BackendResult(backend=MIXED, status="failed", precision=precision, description=description)
    t0 = time.perf_counter()
    try:
        mixed = with_submodules_replaced(
            model,
            {p: CallableModule(runtime.built[backend_key(b, p)], f"{b}") for p, b in choice.items()},
        )
        outputs = [_call(mixed, s) for s in samples]
        report = compare_outputs(reference, outputs, precision, spec.tolerance, fp64_reference=fp64)
    except Exception as exc:
        say(f"{spec.display_name} · mixed: FAILED — {_error_text(exc)}")
        return _replace_row(base, error=_error_text(exc))
    build_s = sum(r.build_s or 0.0 for r in module_rows if r.selected) + (time.perf_counter() - t0)
    runtime.built[MIXED] = mixed
    say(f"{spec.display_name} · mixed ({description}): accuracy {'ok' if report.passed else 'FAILED'} ({report.summary()})")
    return _replace_row(
        base,
        status="ok" if report.passed else "inaccurate",
        build_s=build_s,
        accuracy=report,
        error=None if report.passed else report.reason,
    )


def _mixed_gain_text(rows: Sequence[BackendResult]) -> str:
    mixed = next((r for r in rows if r.backend == MIXED and r.latency), None)
    singles = [r for r in rows if r.backend != MIXED and r.usable]
    if mixed is None or not singles:
        return "mixed model not measured"
    best = min(singles, key=lambda r: r.latency.median_ms)  # type: ignore[union-attr]
    gain = best.latency.median_ms / mixed.latency.median_ms  # type: ignore[union-attr]
    return f"mixed model is {gain:.2f}x the speed of the best whole-model backend ({best.backend})"


def _batch_sweep(
    spec: TuneSpec,
    rows: dict[str, BackendResult],
    runtime: TuneRuntime,
    batch_axis: BatchAxis,
    device: torch.device,
    config: MeasureConfig,
    say: Progress,
) -> None:
    """Throughput at powers of two on the batch axis, until doubling gains < 5% or memory runs out."""
    base = batch_axis.base_size
    cap = spec.max_batch or min(max(base * 8, 8), 1024)
    active = [n for n, r in rows.items() if r.usable and n in runtime.built]
    sweeps: dict[str, list[Any]] = {n: [] for n in active}
    for size in sweep_batch_sizes(base, cap):
        if not active:
            break
        sample = _resize_batch(runtime.samples[0], batch_axis, size)
        fns = {}
        for n in list(active):
            try:
                _call(runtime.built[n], sample)  # first call at a new shape: compile/allocate outside timing
                fns[n] = _bind(runtime.built[n], sample)
            except Exception as exc:
                why = "out of memory" if _is_oom(exc) else _error_text(exc)
                say(f"{spec.display_name} · {n}: batch sweep stops before {size} ({why})")
                active.remove(n)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        if not fns:
            break
        say(f"{spec.display_name}: batch {size}: measuring {', '.join(fns)}")
        with _health_watch(device, runtime, f"batch {size}", say):
            stats = measure(fns, device, config, batch_size=size)
        for n, s in stats.items():
            previous = sweeps[n][-1] if sweeps[n] else None
            sweeps[n].append(s)
            if previous is not None and previous.throughput and s.throughput:
                if s.throughput < previous.throughput * (1 + SWEEP_MIN_GAIN):
                    active.remove(n)
    for n, sweep in sweeps.items():
        rows[n] = _replace_row(rows[n], sweep=tuple(sweep))


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
    return _replace_row(row, latency=stats[backend])
