"""torchao backends on the CPU: int8 quantization is accurate, leaves the user's model alone, and reloads exactly."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

pytest.importorskip("torchao", reason="torchao is not installed: pip install 'aitune-ci[torchao]'")

from aitune_ci.backends.base import BuildContext  # noqa: E402
from aitune_ci.backends.torchao import TorchAOBackend  # noqa: E402
from aitune_ci.errors import BackendError, BackendUnavailable  # noqa: E402

CPU = torch.device("cpu")
DYNAMIC_BATCH = {"args.0": {0: "batch"}}


def ctx(tmp_path, dynamic_axes=None) -> BuildContext:
    return BuildContext(device=CPU, dtype=torch.float32, workdir=tmp_path, dynamic_axes=dynamic_axes or {})


def samples_of(*batches: int) -> list:
    torch.manual_seed(2)
    return [((torch.randn(b, 16),), {}) for b in batches]


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.flatten().double(), b.flatten().double(), dim=0).item()


@pytest.fixture(scope="module", params=["int8wo", "int8dq"])
def built(request, tiny_mlp, tmp_path_factory):
    """(backend, quantized callable, state_dict copy taken before the build) for each int8 recipe."""
    before = {k: v.clone() for k, v in tiny_mlp.state_dict().items()}
    backend = TorchAOBackend(recipe=request.param)
    tmp = tmp_path_factory.mktemp(request.param)
    return backend, backend.build(tiny_mlp, samples_of(4, 7), ctx(tmp, DYNAMIC_BATCH)), before


def test_int8_output_is_close_to_eager(built, tiny_mlp, tiny_input):
    backend, quantized, _ = built
    with torch.no_grad():
        out, ref = quantized(tiny_input), tiny_mlp(tiny_input)
    assert not torch.equal(out, ref), "the module was not quantized at all"
    assert cosine(out, ref) > 0.99
    assert backend.precision == "int8"


def test_build_does_not_modify_the_users_module(built, tiny_mlp):
    _, quantized, before = built
    after = tiny_mlp.state_dict()
    assert set(after) == set(before)
    for key, value in before.items():
        assert type(after[key]) is torch.Tensor, f"{key} became {type(after[key]).__name__}"
        assert torch.equal(after[key], value), key
    assert type(quantized.fc1.weight) is not torch.nn.Parameter


def test_batch_size_not_in_samples_runs(built, tiny_mlp):
    _, quantized, _ = built
    x = torch.randn(3, 16)
    with torch.no_grad():
        out, ref = quantized(x), tiny_mlp(x)
    assert out.shape == (3, 8)
    assert cosine(out, ref) > 0.99


def test_saved_recipe_reapplied_on_load_is_bitwise_equal(built, tiny_mlp, tiny_input, tmp_path):
    backend, quantized, _ = built
    meta = backend.save(quantized, tmp_path)
    assert list(tmp_path.iterdir()) == [], "torchao writes no payload: the artifact layer saves the weights"
    loaded = TorchAOBackend().load(tiny_mlp, tmp_path, meta, ctx(tmp_path))
    with torch.no_grad():
        assert torch.equal(loaded(tiny_input), quantized(tiny_input))
    assert meta["config"] == backend.recipe.config


def test_load_refuses_an_unknown_recipe(tiny_mlp, tmp_path):
    meta = {"recipe": "int8wo", "config": "SomethingElseConfig", "config_kwargs": {"version": 2}}
    with pytest.raises(BackendError, match="SomethingElseConfig"):
        TorchAOBackend().load(tiny_mlp, tmp_path, meta, ctx(tmp_path))


def test_model_without_linear_layers_fails_to_build(tmp_path):
    model = torch.nn.Sequential(torch.nn.ReLU()).eval()
    with pytest.raises(BackendError, match="quantized no layer"):
        TorchAOBackend(recipe="int8dq").build(model, samples_of(4), ctx(tmp_path))


def test_fp8_is_unavailable_on_cpu_with_reason():
    ok, reason = TorchAOBackend(recipe="fp8").available("cpu")
    assert not ok
    assert "compute capability >= 8.9" in reason


def test_fp8_build_on_cpu_raises_unavailable(tiny_mlp, tmp_path):
    with pytest.raises(BackendUnavailable, match="8.9"):
        TorchAOBackend(recipe="fp8").build(tiny_mlp, samples_of(4), ctx(tmp_path))


def test_variants_have_their_precision_and_name():
    assert TorchAOBackend(recipe="fp8").precision == "fp8"
    assert TorchAOBackend(recipe="int8dq", compile=True).name == "torchao-int8dq-compiled"
    assert TorchAOBackend(recipe="int8wo").available("cpu") == (True, "")


def test_unknown_recipe_is_rejected():
    with pytest.raises(BackendError, match="int8wo"):
        TorchAOBackend(recipe="int4")


@pytest.mark.slow
def test_compiled_int8dq_matches_eager_int8dq_on_a_new_batch(tiny_mlp, tmp_path):
    eager_q = TorchAOBackend(recipe="int8dq").build(tiny_mlp, samples_of(4), ctx(tmp_path))
    compiled = TorchAOBackend(recipe="int8dq", compile=True).build(
        tiny_mlp, samples_of(4, 7), ctx(tmp_path, DYNAMIC_BATCH)
    )
    x = torch.randn(3, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager_q(x), atol=1e-4, rtol=1e-4)


def test_a_compiled_build_that_compiles_nothing_fails_instead_of_timing_eager(tiny_mlp, tmp_path):
    with torch._dynamo.config.patch(disable=True):
        with pytest.raises(BackendError, match="without capturing a single graph"):
            TorchAOBackend(recipe="int8dq", compile=True).build(tiny_mlp, samples_of(4), ctx(tmp_path))


def test_torchaos_import_warnings_stay_out_of_the_output():
    """On a CPU torch, torchao's first import warned "Failed to load .../_C_mxfp8...so" (and torch's
    pytree a deprecation) on stderr, before `aitune-ci backends` printed its table."""
    code = "from aitune_ci.backends.torchao import _torchao_import_error as e; print(e())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "Failed to load" not in done.stderr and "register_constant" not in done.stderr, done.stderr
