"""TensorRT and Torch-TensorRT backends: shape profiles, export plumbing, honest unavailability.

The engine build/run tests are ``gpu`` tests that skip (via ``importorskip``, naming the missing
module) where TensorRT is absent.
"""

from __future__ import annotations

import copy
import importlib.util
import json

import pytest
import torch

from aitune_ci.backends import registry
from aitune_ci.backends import tensorrt as trt_backend
from aitune_ci.backends import torch_tensorrt as torch_trt_backend
from aitune_ci.backends._tensorrt_shapes import (
    ShapeProfile,
    check_shape_in_profile,
    export_sample_index,
    shape_profiles,
    tensor_inputs,
    torch_export_dims,
    torch_export_dynamic_shapes,
)
from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.tensorrt import check_engine_portable, export_onnx, torch_dtype_for_trt
from aitune_ci.errors import ArtifactError, BackendError

TRT_NAMES = ("tensorrt", "tensorrt-fp16")
TORCH_TRT_NAMES = ("torch-tensorrt", "torch-tensorrt-fp16")
BATCH = {"args.0": {0: "batch"}}


def _make(name: str):
    # backend_names()/get_backend() import every built-in backend module; build from the entry
    # these modules registered so this file does not depend on the others being present.
    cls, options = registry._registry[name]
    backend = cls(**options)
    backend.name = name
    return backend


def _batches(*sizes: int, features: int = 16) -> list[dict[str, tuple[int, ...]]]:
    return [{"args.0": (b, features)} for b in sizes]


# ---- shape_profiles -----------------------------------------------------------------------


def test_opt_is_the_median_sample_not_the_max():
    profiles = shape_profiles(_batches(2, 32, 8), BATCH)
    assert profiles["args.0"] == ShapeProfile(min=(2, 16), opt=(8, 16), max=(32, 16))


def test_opt_for_an_even_count_is_a_size_a_sample_really_had():
    profiles = shape_profiles(_batches(64, 1, 16, 4), BATCH)
    assert profiles["args.0"].opt == (4, 16)


def test_static_axes_have_equal_min_opt_max():
    profiles = shape_profiles(
        [{"args.0": (2, 16), "kwargs.mask": (2, 7)}, {"args.0": (9, 16), "kwargs.mask": (9, 7)}],
        {"args.0": {0: "batch"}, "kwargs.mask": {0: "batch"}},
    )
    assert profiles["args.0"] == ShapeProfile((2, 16), (2, 16), (9, 16))
    assert profiles["kwargs.mask"] == ShapeProfile((2, 7), (2, 7), (9, 7))


def test_inputs_without_dynamic_axes_are_static_profiles():
    profiles = shape_profiles([{"args.0": (4, 3, 8)}] * 3, {})
    assert profiles["args.0"] == ShapeProfile((4, 3, 8), (4, 3, 8), (4, 3, 8))
    assert profiles["args.0"].is_static


def test_dynamic_axis_with_a_single_sample_gives_min_opt_max_equal():
    profiles = shape_profiles(_batches(8), BATCH)
    assert profiles["args.0"] == ShapeProfile((8, 16), (8, 16), (8, 16))


def test_mismatched_ranks_raise_a_clear_error():
    with pytest.raises(BackendError, match=r"input args\.0 has different ranks across samples"):
        shape_profiles([{"args.0": (2, 16)}, {"args.0": (2, 16, 1)}], BATCH)


def test_static_axis_that_varies_is_rejected_with_the_fix():
    with pytest.raises(BackendError, match=r"dim 1 takes sizes \[16, 32\].*declare it in TuneSpec.dynamic_axes"):
        shape_profiles([{"args.0": (2, 16)}, {"args.0": (2, 32)}], BATCH)


def test_dynamic_axes_naming_an_unknown_input_is_rejected():
    with pytest.raises(BackendError, match=r"dynamic_axes names input 'kwargs\.x'"):
        shape_profiles(_batches(2, 4), {"kwargs.x": {0: "batch"}})


def test_dynamic_axes_naming_a_dim_beyond_the_rank_is_rejected():
    with pytest.raises(BackendError, match=r"dim 2 of args\.0, which has rank 2"):
        shape_profiles(_batches(2, 4), {"args.0": {2: "seq"}})


def test_samples_with_different_inputs_are_rejected():
    with pytest.raises(BackendError, match=r"sample 1 has different tensor inputs.*missing \['kwargs\.mask'\]"):
        shape_profiles([{"args.0": (2, 4), "kwargs.mask": (2,)}, {"args.0": (4, 4)}], BATCH)


def test_dim_indices_that_went_through_json_still_work():
    axes = json.loads(json.dumps(BATCH))  # {"args.0": {"0": "batch"}}
    assert shape_profiles(_batches(2, 6), axes)["args.0"] == ShapeProfile((2, 16), (2, 16), (6, 16))


def test_shape_profile_round_trips_through_json():
    profile = ShapeProfile((1, 3), (4, 3), (9, 3))
    assert ShapeProfile.from_json(json.loads(json.dumps(profile.to_json()))) == profile


# ---- runtime shape checks, export sample, dtype and portability ---------------------------


def test_shape_outside_the_profile_names_input_dim_and_range():
    profile = ShapeProfile((2, 16), (8, 16), (32, 16))
    check_shape_in_profile("args.0", (32, 16), profile)  # the edges are inside
    with pytest.raises(BackendError, match=r"input args\.0 .*dim 0 = 33 is outside the range \[2, 32\]"):
        check_shape_in_profile("args.0", (33, 16), profile)
    with pytest.raises(BackendError, match=r"built for rank 2"):
        check_shape_in_profile("args.0", (8, 16, 1), profile)


def test_export_traces_the_sample_with_the_largest_dynamic_dims():
    shapes = _batches(4, 32, 8)
    assert export_sample_index(shapes, shape_profiles(shapes, BATCH)) == 1


def test_dynamic_axis_that_never_exceeds_one_is_rejected_before_export():
    shapes = _batches(0, 1)
    with pytest.raises(BackendError, match=r"only takes sizes 0\.\.1.*at least 2"):
        export_sample_index(shapes, shape_profiles(shapes, BATCH))


def test_trt_dtype_names_map_to_torch_dtypes():
    assert torch_dtype_for_trt("HALF") is torch.float16
    assert torch_dtype_for_trt("DataType.BF16") is torch.bfloat16
    assert torch_dtype_for_trt("INT64") is torch.int64
    with pytest.raises(BackendError, match="INT4 has no torch equivalent"):
        torch_dtype_for_trt("INT4")


def test_engine_from_another_gpu_or_tensorrt_is_refused_with_the_fix():
    here = {"tensorrt": "10.13.3", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    check_engine_portable(dict(here), here, "TensorRT engine")
    built = {**here, "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    with pytest.raises(ArtifactError, match=r"gpu 'NVIDIA A100-SXM4-80GB' \(here 'NVIDIA H100.*--aitune-update"):
        check_engine_portable(built, here, "TensorRT engine")


# ---- torch.export / ONNX plumbing (real, on the CPU) --------------------------------------


class _TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 4)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * mask.unsqueeze(-1)


def test_non_tensor_input_is_rejected_with_the_fix():
    with pytest.raises(BackendError, match=r"input kwargs\.flag is a bool; TensorRT backends take tensor inputs only"):
        tensor_inputs(((torch.ones(2),), {"flag": True}))


def test_axes_sharing_a_name_share_one_export_dim_and_trace_dynamic():
    model = _TwoInputs().eval()
    samples = [((torch.randn(b, 16),), {"mask": torch.ones(b)}) for b in (3, 9, 5)]
    axes = {"args.0": {0: "batch"}, "kwargs.mask": {0: "batch"}}
    shapes = [{p: tuple(t.shape) for p, t in tensor_inputs(s).items()} for s in samples]
    profiles = shape_profiles(shapes, axes)
    dims = torch_export_dims(profiles, axes)
    assert dims["args.0"][0] is dims["kwargs.mask"][0]

    sample = samples[export_sample_index(shapes, profiles)]
    dynamic_shapes = torch_export_dynamic_shapes(model, sample, dims)
    assert set(dynamic_shapes) == {"x", "mask"}
    exported = torch.export.export(model, sample[0], kwargs=sample[1], dynamic_shapes=dynamic_shapes, strict=False)
    (constraint,) = exported.range_constraints.values()
    assert (constraint.lower, constraint.upper) == (3, 9)
    out = exported.module()(torch.randn(4, 16), mask=torch.ones(4))
    assert out.shape == (4, 4)


def test_static_samples_export_without_dynamic_shapes(tiny_mlp, tiny_input):
    assert torch_export_dynamic_shapes(tiny_mlp, ((tiny_input,), {}), {}) is None


def test_onnx_export_names_inputs_by_path_and_runs_at_an_unseen_batch(tiny_mlp, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    samples = [((torch.randn(b, 16),), {}) for b in (2, 8)]
    shapes = [{"args.0": tuple(s[0][0].shape)} for s in samples]
    dims = torch_export_dims(shape_profiles(shapes, BATCH), BATCH)
    onnx = export_onnx(tiny_mlp, samples[1], dims, tmp_path / "model.onnx", n_outputs=1)
    assert (onnx.input_names, onnx.output_names) == (("args_0",), ("output_0",))

    session = ort.InferenceSession(str(onnx.path), providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    assert onnx_input.shape[0] == "batch" and onnx_input.shape[1] == 16
    x = torch.randn(5, 16)
    (got,) = session.run(None, {"args_0": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), tiny_mlp(x).detach(), atol=1e-5, rtol=1e-5)


def test_half_onnx_export_has_half_inputs_and_outputs(tiny_mlp, tiny_input, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = export_onnx(tiny_mlp, ((tiny_input,), {}), {}, tmp_path / "m.onnx", n_outputs=1, half_dtype=torch.float16)
    session = ort.InferenceSession(str(onnx.path), providers=["CPUExecutionProvider"])
    assert [i.type for i in session.get_inputs()] == ["tensor(float16)"]
    assert [o.type for o in session.get_outputs()] == ["tensor(float16)"]
    assert next(tiny_mlp.parameters()).dtype is torch.float32  # the user's module is untouched


# ---- registration and availability --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "precision"),
    [
        ("tensorrt", trt_backend.TensorRTBackend, "fp32"),
        ("tensorrt-fp16", trt_backend.TensorRTBackend, "fp16"),
        ("torch-tensorrt", torch_trt_backend.TorchTensorRTBackend, "fp32"),
        ("torch-tensorrt-fp16", torch_trt_backend.TorchTensorRTBackend, "fp16"),
    ],
)
def test_backends_are_registered_as_device_specific_ahead_of_time(name, cls, precision):
    backend = _make(name)
    assert type(backend) is cls
    assert backend.precision == precision
    assert backend.ahead_of_time and backend.payload_is_device_specific


@pytest.mark.parametrize("cls", [trt_backend.TensorRTBackend, torch_trt_backend.TorchTensorRTBackend])
def test_unknown_precision_is_rejected(cls):
    with pytest.raises(BackendError, match="precision 'int8' is not one of fp32, fp16, bf16"):
        cls(precision="int8")


@pytest.mark.parametrize(
    ("name", "module"), [(n, "tensorrt") for n in TRT_NAMES] + [(n, "torch_tensorrt") for n in TORCH_TRT_NAMES]
)
def test_unavailable_on_cpu_names_what_is_missing(name, module):
    ok, reason = _make(name).available("cpu")
    assert not ok
    assert "TensorRT needs a CUDA GPU (device is cpu)" in reason
    if importlib.util.find_spec(module) is None:
        assert f"{module} is not installed (pip install 'aitune-ci[tensorrt]' on a machine with a CUDA GPU)" in reason


@pytest.mark.parametrize(
    ("name", "module"), [(n, "tensorrt") for n in TRT_NAMES] + [(n, "torch_tensorrt") for n in TORCH_TRT_NAMES]
)
def test_unavailable_on_cuda_without_the_library_says_how_to_install(name, module):
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    ok, reason = _make(name).available("cuda")
    assert not ok
    assert reason.startswith(f"{module} is not installed (pip install 'aitune-ci[tensorrt]'")


# ---- real builds (GPU with TensorRT only) -------------------------------------------------


def _gpu_context(tmp_path) -> BuildContext:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path / "work", dynamic_axes=BATCH)


def _build_check_save_load(name, tiny_mlp, tmp_path, atol):
    ctx = _gpu_context(tmp_path)
    backend = _make(name)
    ok, reason = backend.available(ctx.device)
    assert ok, reason
    model = copy.deepcopy(tiny_mlp).to(ctx.device)
    samples = [((torch.randn(b, 16, device=ctx.device),), {}) for b in (2, 16, 8)]
    built = backend.build(model, samples, ctx)
    x = torch.randn(5, 16, device=ctx.device)  # unseen, inside the profile
    with torch.inference_mode():
        expected = model(x)
    got = built(x)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=atol, rtol=atol)

    meta = backend.save(built, tmp_path / "payload")
    loaded = backend.load(model, tmp_path / "payload", json.loads(json.dumps(meta)), ctx)
    torch.testing.assert_close(loaded(x), got, atol=atol, rtol=atol)
    assert meta["profiles"]["args.0"] == {"min": [2, 16], "opt": [8, 16], "max": [16, 16]}


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "atol"), [("tensorrt", 1e-4), ("tensorrt-fp16", 2e-2)])
def test_tensorrt_builds_tiny_mlp_that_matches_eager_and_reloads(name, atol, tiny_mlp, tmp_path):
    pytest.importorskip("tensorrt")
    _build_check_save_load(name, tiny_mlp, tmp_path, atol)


@pytest.mark.gpu
@pytest.mark.parametrize(("name", "atol"), [("torch-tensorrt", 1e-4), ("torch-tensorrt-fp16", 2e-2)])
def test_torch_tensorrt_builds_tiny_mlp_that_matches_eager_and_reloads(name, atol, tiny_mlp, tmp_path):
    pytest.importorskip("torch_tensorrt")
    _build_check_save_load(name, tiny_mlp, tmp_path, atol)


@pytest.mark.gpu
def test_tensorrt_engine_rejects_a_batch_outside_the_profile(tiny_mlp, tmp_path):
    pytest.importorskip("tensorrt")
    ctx = _gpu_context(tmp_path)
    model = copy.deepcopy(tiny_mlp).to(ctx.device)
    samples = [((torch.randn(b, 16, device=ctx.device),), {}) for b in (2, 8)]
    built = _make("tensorrt").build(model, samples, ctx)
    with pytest.raises(BackendError, match=r"dim 0 = 9 is outside the range \[2, 8\]"):
        built(torch.randn(9, 16, device=ctx.device))
