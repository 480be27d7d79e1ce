"""onnxruntime backend on the CPU: exported graphs match eager, keep the call signature and outputs, and reload."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'aitune-ci[onnx]'")
pytest.importorskip("onnxscript", reason="onnxscript is not installed: pip install 'aitune-ci[onnx]'")

from aitune_ci.backends.base import BuildContext  # noqa: E402
from aitune_ci.backends.onnxruntime import CPU_ONLY_REASON, OnnxRuntimeBackend, OrtModule  # noqa: E402
from aitune_ci.errors import BackendError  # noqa: E402

CPU = torch.device("cpu")


def ctx(tmp_path, dynamic_axes=None) -> BuildContext:
    return BuildContext(device=CPU, dtype=torch.float32, workdir=tmp_path, dynamic_axes=dynamic_axes or {})


class KwargsDictModel(torch.nn.Module):
    """Keyword-only inputs (one a non-tensor), a nested dict/tuple output."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(16, 8)

    def forward(self, *, features: torch.Tensor, mask: torch.Tensor, scale: float = 1.0) -> dict:
        y = self.proj(features) * scale
        return {"logits": y + mask, "extra": (y.sum(-1), mask * 2)}


class DataDependentModel(torch.nn.Module):
    """Python control flow on a tensor's value: torch.export cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


@pytest.fixture(scope="module")
def mlp_ort(tiny_mlp, tmp_path_factory):
    """tiny_mlp built with samples of batch 4 and 7 and a dynamic batch axis; the state_dict from before."""
    before = {k: v.clone() for k, v in tiny_mlp.state_dict().items()}
    torch.manual_seed(3)
    samples = [((torch.randn(4, 16),), {}), ((torch.randn(7, 16),), {})]
    tmp = tmp_path_factory.mktemp("ort-mlp")
    return OnnxRuntimeBackend().build(tiny_mlp, samples, ctx(tmp, {"args.0": {0: "batch"}})), before


@pytest.fixture(scope="module")
def kwargs_model_ort(tmp_path_factory):
    torch.manual_seed(4)
    model = KwargsDictModel().eval()
    samples = [((), {"features": torch.randn(b, 16), "mask": torch.randn(b, 8), "scale": 3.0}) for b in (5, 6)]
    dynamic = {"kwargs.features": {0: "batch"}, "kwargs.mask": {0: "batch"}}
    return model, OnnxRuntimeBackend().build(model, samples, ctx(tmp_path_factory.mktemp("ort-kw"), dynamic))


def test_output_matches_eager_at_fp32(mlp_ort, tiny_mlp, tiny_input):
    built, _ = mlp_ort
    with torch.no_grad():
        torch.testing.assert_close(built(tiny_input), tiny_mlp(tiny_input), atol=1e-5, rtol=1e-5)
    assert isinstance(built, OrtModule)


def test_build_does_not_modify_the_users_module(mlp_ort, tiny_mlp):
    _, before = mlp_ort
    after = tiny_mlp.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    assert not tiny_mlp.training


def test_dynamic_batch_runs_a_size_not_in_samples(mlp_ort, tiny_mlp):
    built, _ = mlp_ort
    x = torch.randn(3, 16)
    out = built(x)
    assert out.shape == (3, 8)
    with torch.no_grad():
        torch.testing.assert_close(out, tiny_mlp(x), atol=1e-5, rtol=1e-5)


def test_static_export_rejects_another_batch(tiny_mlp, tmp_path):
    built = OnnxRuntimeBackend().build(tiny_mlp, [((torch.randn(4, 16),), {})], ctx(tmp_path))
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        built(torch.randn(3, 16))


def test_kwargs_only_model_restores_dict_output_structure(kwargs_model_ort):
    model, built = kwargs_model_ort
    # Keyword order differs from the export's: inputs are matched by name, not position.
    inputs = {"scale": 3.0, "mask": torch.randn(2, 8), "features": torch.randn(2, 16)}
    out = built(**inputs)
    with torch.no_grad():
        ref = model(**inputs)
    assert set(out) == {"logits", "extra"}
    assert isinstance(out["extra"], tuple) and len(out["extra"]) == 2
    assert out["logits"].shape == (2, 8), "batch 2 was in no sample: the keyword inputs' batch axis is dynamic"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_non_tensor_input_differing_from_export_is_an_error(kwargs_model_ort):
    _, built = kwargs_model_ort
    with pytest.raises(ValueError, match="baked in"):
        built(features=torch.randn(5, 16), mask=torch.randn(5, 8), scale=2.0)


def test_save_then_load_gives_the_same_outputs(mlp_ort, tiny_mlp, tiny_input, tmp_path):
    built, _ = mlp_ort
    meta = OnnxRuntimeBackend().save(built, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
    loaded = OnnxRuntimeBackend().load(tiny_mlp, tmp_path, meta, ctx(tmp_path))
    torch.testing.assert_close(loaded(tiny_input), built(tiny_input), atol=1e-6, rtol=1e-6)
    assert loaded(torch.randn(3, 16)).shape == (3, 8), "dynamic batch survives the round trip"


def test_save_then_load_restores_nested_output_structure(kwargs_model_ort, tmp_path):
    model, built = kwargs_model_ort
    meta = OnnxRuntimeBackend().save(built, tmp_path)
    loaded = OnnxRuntimeBackend().load(model, tmp_path, meta, ctx(tmp_path))
    inputs = {"features": torch.randn(5, 16), "mask": torch.randn(5, 8), "scale": 3.0}
    torch.testing.assert_close(loaded(**inputs), built(**inputs))


def test_unexportable_model_fails_build_with_clear_error(tmp_path):
    with pytest.raises(BackendError, match="torch.onnx.export could not export DataDependentModel"):
        OnnxRuntimeBackend().build(DataDependentModel().eval(), [((torch.randn(4, 16),), {})], ctx(tmp_path))


def test_dynamic_axis_naming_a_missing_input_is_an_error(tiny_mlp, tmp_path):
    with pytest.raises(BackendError, match="kwargs.mask"):
        OnnxRuntimeBackend().build(tiny_mlp, [((torch.randn(4, 16),), {})], ctx(tmp_path, {"kwargs.mask": {0: "b"}}))


def test_cuda_is_unavailable_with_cpu_only_onnxruntime():
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    assert OnnxRuntimeBackend().available("cuda") == (False, CPU_ONLY_REASON)
    assert OnnxRuntimeBackend().available("cpu") == (True, "")


def test_the_exporters_first_use_in_a_process_is_paid_before_the_build_is_timed(monkeypatch, tiny_mlp, tiny_input):
    # The first export imports onnx and onnxscript and builds torch's op registry: seconds that a
    # relative check's head (built first) paid alone, and was once judged on as a build-time regression.
    import aitune_ci as ait
    from aitune_ci.backends import onnxruntime as ort_backend
    from aitune_ci.measure import MeasureConfig

    monkeypatch.setattr(ort_backend, "_PREPARED", set())
    fast = MeasureConfig(max_total_s=0.1, min_rounds=2, warmup_min_iters=2, warmup_max_s=0.1)
    spec = ait.TuneSpec(model=tiny_mlp, samples=[tiny_input], backends=["onnxruntime"], device="cpu", name="tiny")
    lines: list[str] = []

    ait.tune(spec, measure_config=fast, progress=lines.append)

    set_up = [i for i, line in enumerate(lines) if "onnxruntime set up in" in line]
    building = [i for i, line in enumerate(lines) if "tiny · onnxruntime: building" in line]
    assert len(set_up) == 1 and building and set_up[0] < building[0], lines
    assert "once per process, in no build's time" in lines[set_up[0]]

    lines.clear()
    ait.tune(spec, measure_config=fast, progress=lines.append)
    assert not [line for line in lines if "set up in" in line]  # once per process


def test_the_exporters_op_registry_lines_stay_at_debug(tiny_mlp, tiny_input, tmp_path, caplog):
    """Every export logged "torchvision is not installed. Skipping torchvision::..." (one per op)
    into a failing item's captured log, where torchvision is absent."""
    import importlib.util
    import logging

    if importlib.util.find_spec("torchvision") is not None:
        pytest.skip("torchvision is installed here: the exporter has nothing to skip")
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    with caplog.at_level(logging.DEBUG):
        OnnxRuntimeBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and "torchvision" in r.getMessage()]
    assert not loud, loud[:3]
    assert any("Skipping torchvision::" in r.getMessage() for r in caplog.records if r.name == "aitune_ci.setup_logs")
