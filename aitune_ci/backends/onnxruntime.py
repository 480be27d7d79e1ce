"""ONNX Runtime: export with torch's dynamo ONNX exporter, run in an InferenceSession through IOBinding."""

from __future__ import annotations

import importlib.util
import inspect
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import register_backend
from aitune_ci.errors import BackendError, BackendUnavailable
from aitune_ci.samples import Sample
from aitune_ci.setup_logs import setup_logs_at_debug

__all__ = ["OnnxRuntimeBackend", "OrtModule", "dynamic_shapes_for"]

_INSTALL = "pip install 'aitune-ci[onnx]'"
CPU_ONLY_REASON = (
    "onnxruntime has only CPU providers (install onnxruntime-gpu for CUDA runs); "
    "a CUDA run would copy every tensor to the host"
)
_MODEL_FILE = "model.onnx"
#: device types whose exporter and runtime this process has set up (``prepare_process``)
_PREPARED: set[str] = set()
_JSON_SCALARS = (bool, int, float, str)
#: Every export builds torch's ONNX op registry, which logs "torchvision is not installed. Skipping
#: torchvision::..." once per torchvision op where torchvision is absent (``aitune_ci.setup_logs``).
#: The export's own failure is an exception, reported as the build's error.
_EXPORT_LOGGERS = ("torch.onnx", "onnxscript")

# torch dtypes IOBinding.bind_input takes as numpy types (every onnxruntime version accepts those);
# bfloat16 has no numpy type and goes as its ONNX TensorProto number, which newer versions accept.
_NUMPY_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.uint8: "uint8",
    torch.bool: "bool_",
}
_ONNX_BFLOAT16 = 16


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """``torch.onnx.export(dynamo=True)`` then ``onnxruntime.InferenceSession`` (CPU or CUDA provider).

    Runs at fp32: the CUDA provider's TF32 is switched off, as torch's own fp32 matmuls are.
    IOBinding hands ORT the tensors' own memory and takes its outputs back through DLPack, so a
    CUDA run never copies through the host (and a CPU run costs what ``session.run`` does). The
    single-file ``.onnx`` is the payload: loading builds a new session from it, with no re-export.
    """

    name = "onnxruntime"
    precision = "fp32"
    payload = Payload.GRAPH
    libraries = ("onnxruntime", "onnxruntime-gpu", "onnx", "onnxscript")
    extra = "onnx"

    def available(self, device: torch.device | str = "cpu") -> tuple[bool, str]:
        ok, reason = super().available(device)
        if not ok:
            return ok, reason
        missing = [m for m in ("onnxruntime", "onnxscript", "onnx") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{', '.join(missing)} not installed: {_INSTALL}"
        if torch.device(device).type == "cuda":
            import onnxruntime

            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                return False, CPU_ONLY_REASON
        return True, ""

    def prepare_process(self, device: torch.device) -> float | None:
        """Export a one-layer model and run it in a session, once per process and device type: the
        first export imports onnx and onnxscript and builds torch's op registry. On this repo's 2-core
        CPU a CPU-sized ResNet-50's first build took 5.6-6.5 s against 3.0-4.5 s for the second, and
        3.6 s after this set-up (reports/first_build_probe_onnxruntime.md). A relative check's head
        builds first and was judged on it: build time 1.2 s -> 6.5 s beside another pytest worker."""
        if device.type in _PREPARED or not self.available(device)[0]:
            return None
        _PREPARED.add(device.type)
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="aitune-onnx-setup-") as tmp, torch.no_grad():
                tiny, x = torch.nn.Linear(2, 2).eval().to(device), torch.ones(1, 2, device=device)
                path = Path(tmp) / _MODEL_FILE
                with setup_logs_at_debug(*_EXPORT_LOGGERS):
                    torch.onnx.export(tiny, (x,), str(path), dynamo=True, external_data=False, verbose=False)
                OrtModule(path, _Signature.capture((x,), {}, tiny(x)), device)(x)
        except Exception:  # never fail a tune over its set-up; the build reports any real error
            return None
        return time.perf_counter() - t0

    def build(self, module: torch.nn.Module, samples: Sequence[Sample], ctx: BuildContext) -> OrtModule:
        ok, reason = self.available(ctx.device)
        if not ok:
            raise BackendUnavailable(self.name, reason)
        args, kwargs = _export_sample(samples)
        with torch.no_grad():
            eager_out = module(*args, **kwargs)
        path = Path(ctx.workdir) / _MODEL_FILE
        shapes = dynamic_shapes_for(module, args, kwargs, ctx.dynamic_axes) if ctx.dynamic_axes else None
        try:
            with setup_logs_at_debug(*_EXPORT_LOGGERS):
                torch.onnx.export(
                    module,
                    args,
                    str(path),
                    kwargs=kwargs,
                    dynamo=True,
                    dynamic_shapes=shapes,
                    external_data=False,
                    verbose=False,
                )
        except Exception as exc:
            raise BackendError(
                f"torch.onnx.export could not export {type(module).__name__}: {_root_cause(exc)} "
                "(torch.export must trace the whole forward: no data-dependent Python control flow, no unsupported ops; drop onnxruntime for this model or make it exportable)"
            ) from exc
        signature = _Signature.capture(args, kwargs, eager_out)
        built = OrtModule(path, signature, ctx.device)
        with torch.no_grad():
            for sample_args, sample_kwargs in samples:
                built(*sample_args, **sample_kwargs)
        return built

    def save(self, built: Callable[..., Any], outdir: Path) -> dict[str, Any]:
        """Copy the single-file ``.onnx``; the meta carries the input/output pytree structure."""
        if not isinstance(built, OrtModule):
            raise BackendError(f"onnxruntime can only save what its build returned, not {type(built).__name__}")
        shutil.copyfile(built.path, Path(outdir) / _MODEL_FILE)
        return {"file": _MODEL_FILE, **built.signature.to_json()}

    def load(self, module: torch.nn.Module, indir: Path, meta: Mapping[str, Any], ctx: BuildContext) -> OrtModule:
        """A new InferenceSession on the saved ``.onnx``: no re-export, ``module`` is not needed."""
        ok, reason = self.available(ctx.device)
        if not ok:
            raise BackendUnavailable(self.name, reason)
        file = meta.get("file", _MODEL_FILE)
        if not isinstance(file, str) or Path(file).name != file:
            raise BackendError(f"onnxruntime artifact names model file {file!r}; expected a plain file name")
        return OrtModule(Path(indir) / file, _Signature.from_json(meta), ctx.device)


class _Signature:
    """How call arguments map to ONNX inputs and ONNX outputs back to the module's output pytree.

    The exporter turns the tensor leaves of ``(args, kwargs)``, flattened in the order they were
    given, into graph inputs in that order; non-tensor leaves are baked into the graph as constants.
    """

    def __init__(
        self,
        in_spec: pytree.TreeSpec,
        kwarg_order: list[str],
        tensor_inputs: list[int],
        constant_inputs: dict[int, str],
        out_spec: pytree.TreeSpec,
        constant_outputs: dict[int, Any],
    ) -> None:
        self.in_spec = in_spec
        self.tensor_inputs = tensor_inputs
        self.constant_inputs = constant_inputs
        self.out_spec = out_spec
        self.constant_outputs = constant_outputs
        self.kwarg_order = kwarg_order
        self.num_outputs = out_spec.num_leaves - len(constant_outputs)

    @classmethod
    def capture(cls, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> _Signature:
        in_leaves, in_spec = pytree.tree_flatten((args, kwargs))
        out_leaves, out_spec = pytree.tree_flatten(output)
        constant_outputs = {}
        for i, leaf in enumerate(out_leaves):
            if isinstance(leaf, torch.Tensor):
                continue
            if leaf is not None and not isinstance(leaf, _JSON_SCALARS):
                raise BackendError(
                    f"output leaf {i} is a {type(leaf).__name__}; an ONNX graph returns only tensors "
                    "(and plain scalars can be restored), so onnxruntime cannot reproduce this output"
                )
            constant_outputs[i] = leaf
        return cls(
            in_spec,
            list(kwargs),
            [i for i, leaf in enumerate(in_leaves) if isinstance(leaf, torch.Tensor)],
            {i: repr(leaf) for i, leaf in enumerate(in_leaves) if not isinstance(leaf, torch.Tensor)},
            out_spec,
            constant_outputs,
        )

    def to_json(self) -> dict[str, Any]:
        try:
            in_spec, out_spec = pytree.treespec_dumps(self.in_spec), pytree.treespec_dumps(self.out_spec)
        except Exception as exc:
            raise BackendError(
                f"cannot serialize the model's input/output structure ({exc}); register custom container "
                "types with torch.utils._pytree.register_pytree_node(..., serialized_type_name=...)"
            ) from exc
        return {
            "in_spec": in_spec,
            "kwarg_order": self.kwarg_order,
            "out_spec": out_spec,
            "tensor_inputs": self.tensor_inputs,
            "constant_inputs": {str(k): v for k, v in self.constant_inputs.items()},
            "constant_outputs": {str(k): v for k, v in self.constant_outputs.items()},
        }

    @classmethod
    def from_json(cls, meta: Mapping[str, Any]) -> _Signature:
        try:
            return cls(
                pytree.treespec_loads(meta["in_spec"]),
                [str(k) for k in meta["kwarg_order"]],
                [int(i) for i in meta["tensor_inputs"]],
                {int(k): str(v) for k, v in meta["constant_inputs"].items()},
                pytree.treespec_loads(meta["out_spec"]),
                {int(k): v for k, v in meta["constant_outputs"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackendError(f"onnxruntime artifact metadata is incomplete or corrupt ({exc!r})") from exc

    def input_tensors(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
        """The call's tensors in graph-input order; raises if the call differs from the export."""
        if set(kwargs) == set(self.kwarg_order):
            kwargs = {k: kwargs[k] for k in self.kwarg_order}
        leaves, spec = pytree.tree_flatten((args, kwargs))
        if spec != self.in_spec:
            raise ValueError(
                f"onnxruntime: the call's inputs have structure {spec}, but the model was exported with "
                f"{self.in_spec}; an ONNX graph takes exactly the inputs it was exported with"
            )
        for i, expected in self.constant_inputs.items():
            if repr(leaves[i]) != expected:
                raise ValueError(
                    f"onnxruntime: non-tensor input {i} is {leaves[i]!r}, but the graph was exported with "
                    f"{expected} baked in as a constant; export again with this value"
                )
        return [leaves[i] for i in self.tensor_inputs]

    def outputs(self, tensors: list[torch.Tensor]) -> Any:
        it = iter(tensors)
        leaves = [
            self.constant_outputs[i] if i in self.constant_outputs else next(it)
            for i in range(self.out_spec.num_leaves)
        ]
        return pytree.tree_unflatten(leaves, self.out_spec)


class OrtModule:
    """A ready ONNX Runtime session with the module's call signature and output structure."""

    def __init__(self, path: Path, signature: _Signature, device: torch.device) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.signature = signature
        self.device = torch.device(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: ORT warns about every node it leaves on the CPU
        # ORT's intra-op threads spin after each run by default; interleaved with other backends on
        # the same cores, that spinning would steal time from whichever backend runs next and bias
        # the comparison. Off, each backend's block is timed on quiet cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.device = torch.device("cuda", index)
            # ORT computes on torch's stream, so it reads inputs only after torch has written them.
            self._stream = torch.cuda.current_stream(self.device)
            provider: Any = (
                "CUDAExecutionProvider",
                {"device_id": str(index), "user_compute_stream": str(self._stream.cuda_stream), "use_tf32": "0"},
            )
            self._ort_device = ("cuda", index)
        else:
            self._stream = None
            provider = "CPUExecutionProvider"
            self._ort_device = ("cpu", 0)
            # Each session owns a private intra-op pool, and a small model's latency hangs on the core
            # its worker sits on: two sessions of one .onnx timed side by side came out 0.56x-0.84x with
            # tight CIs when their workers sat on different cores (bench/ort_aa_bias.py). On one thread
            # every op runs on the caller's thread, so an old artifact and a fresh build differ only in
            # their graphs: the paired A/B is centred.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(self.path), options, providers=[provider])
        wanted = provider[0] if isinstance(provider, tuple) else provider
        if wanted not in self.session.get_providers():
            raise BackendError(
                f"onnxruntime could not start {wanted} (it fell back to {self.session.get_providers()}); "
                "check that onnxruntime-gpu matches this machine's CUDA and cuDNN"
            )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        if len(self.input_names) != len(signature.tensor_inputs):
            raise BackendError(
                f"the ONNX graph has {len(self.input_names)} inputs but the call has "
                f"{len(signature.tensor_inputs)} tensors; the exporter dropped or added inputs it should not have"
            )
        if len(self.output_names) != signature.num_outputs:
            raise BackendError(
                f"the ONNX graph has {len(self.output_names)} outputs but the module returns "
                f"{signature.num_outputs} tensors"
            )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tensors = [t.to(self.device).contiguous() for t in self.signature.input_tensors(args, kwargs)]
        if self._stream is not None and torch.cuda.current_stream(self.device) != self._stream:
            torch.cuda.current_stream(self.device).synchronize()
        device_type, device_id = self._ort_device
        binding = self.session.io_binding()
        for name, tensor in zip(self.input_names, tensors, strict=True):
            binding.bind_input(
                name, device_type, device_id, _element_type(tensor.dtype), tuple(tensor.shape), tensor.data_ptr()
            )
        for name in self.output_names:
            binding.bind_output(name, device_type, device_id)
        self.session.run_with_iobinding(binding)  # returns once the outputs are ready (ORT syncs its stream)
        return self.signature.outputs([_to_torch(v, self.device) for v in binding.get_outputs()])

    def __repr__(self) -> str:
        return f"OrtModule({self.path.name}, device={self.device}, providers={self.session.get_providers()})"


def _element_type(dtype: torch.dtype) -> Any:
    if dtype == torch.bfloat16:
        return _ONNX_BFLOAT16
    try:
        name = _NUMPY_NAMES[dtype]
    except KeyError:
        raise ValueError(f"onnxruntime: inputs of dtype {dtype} are not supported") from None
    import numpy

    return getattr(numpy, name)


def _to_torch(value: Any, device: torch.device) -> torch.Tensor:
    if hasattr(value, "__dlpack__"):  # onnxruntime >= 1.2x: zero-copy, on the device it was computed on
        return torch.from_dlpack(value)
    raw = getattr(value, "_ortvalue", None)
    if hasattr(raw, "to_dlpack"):
        return torch.from_dlpack(raw.to_dlpack())
    return torch.from_numpy(value.numpy()).to(device)  # an old onnxruntime: through the host


def _export_sample(samples: Sequence[Sample]) -> Sample:
    """The sample with the most elements: its dynamic dims are least likely to be 0 or 1 (which export specializes)."""

    def size(sample: Sample) -> int:
        return sum(leaf.numel() for leaf in pytree.tree_leaves(sample) if isinstance(leaf, torch.Tensor))

    if not samples:
        raise BackendError("onnxruntime needs at least one sample to export the model")
    return max(samples, key=size)


def dynamic_shapes_for(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    dynamic_axes: Mapping[str, Mapping[int, str]],
) -> dict[str, Any]:
    """``torch.export`` dynamic_shapes (keyed by forward's parameter names) for aitune's dynamic axes.

    Every dynamic dim is ``Dim.DYNAMIC``: export works out which dims are equal itself, and fails
    loudly if the model's code pins a dim the samples say varies.
    """
    from torch.export import Dim

    used: set[str] = set()

    def spec(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            dims = dynamic_axes.get(path)
            if not dims:
                return None
            used.add(path)
            return {int(d): Dim.DYNAMIC for d in dims}
        if isinstance(value, list):
            return [spec(v, f"{path}.{i}") for i, v in enumerate(value)]
        if isinstance(value, tuple):
            return tuple(spec(v, f"{path}.{i}") for i, v in enumerate(value))
        if isinstance(value, dict):
            return {k: spec(v, f"{path}.{k}") for k, v in value.items()}
        return None

    params = inspect.signature(module.forward).parameters.values()
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    var_args = next((p.name for p in params if p.kind == p.VAR_POSITIONAL), None)
    var_kwargs = next((p.name for p in params if p.kind == p.VAR_KEYWORD), None)
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    shapes: dict[str, Any] = {}
    extra_args: list[Any] = []
    for i, value in enumerate(args):
        if i < len(positional):
            shapes[positional[i]] = spec(value, f"args.{i}")
        else:
            extra_args.append(spec(value, f"args.{i}"))
    if extra_args and var_args is not None:
        shapes[var_args] = tuple(extra_args)
    for key, value in kwargs.items():
        if key in named:
            shapes[key] = spec(value, f"kwargs.{key}")
        elif var_kwargs is not None:
            shapes.setdefault(var_kwargs, {})[key] = spec(value, f"kwargs.{key}")
    unknown = sorted(set(dynamic_axes) - used)
    if unknown:
        raise BackendError(
            f"dynamic axes name inputs {unknown} that are not tensors of this sample; "
            f"the sample's tensors are {_tensor_paths(args, kwargs)}"
        )
    return shapes


def _tensor_paths(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[str]:
    paths = []
    for keypath, leaf in pytree.tree_flatten_with_path((args, dict(kwargs)))[0]:
        if isinstance(leaf, torch.Tensor):
            parts = ["args" if keypath[0].idx == 0 else "kwargs"]
            parts += [str(getattr(k, "idx", getattr(k, "key", k))) for k in keypath[1:]]
            paths.append(".".join(parts))
    return paths


def _root_cause(exc: BaseException) -> str:
    """``Type: first line`` of the innermost cause: the exporter's own wrapper says only "step 1/3 failed"."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else '(no message)'}"
