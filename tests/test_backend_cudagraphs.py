"""The cudagraphs backend: unavailable without CUDA; on a GPU, one graph per input signature."""

from __future__ import annotations

import pytest
import torch

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.cudagraphs import CUDAGraphRunner, CUDAGraphsBackend, input_key
from aitune_ci.errors import BackendError

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")


def test_cpu_only_machine_reports_cuda_is_needed():
    if torch.cuda.is_available():
        ok, reason = CUDAGraphsBackend().available("cpu")
        assert not ok and "cuda only" in reason
    else:
        assert CUDAGraphsBackend().available("cuda") == (False, "needs CUDA (torch.cuda.is_available() is False)")


def test_build_on_cpu_is_refused(tiny_mlp, tiny_input, tmp_path):
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="cuda only"):
        CUDAGraphsBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)


def test_input_key_separates_shapes_and_values_but_not_strides():
    x = torch.zeros(4, 6)
    assert input_key((x,), {}) == input_key((torch.ones(4, 6),), {})
    assert input_key((x,), {}) == input_key((torch.zeros(6, 4).t(),), {})
    assert input_key((x,), {}) != input_key((torch.zeros(5, 6),), {})
    assert input_key((x,), {}) != input_key((x.half(),), {})
    assert input_key((x, 1), {}) != input_key((x, 2), {})
    assert input_key((x,), {"m": x}) != input_key((x, x), {})


def test_warmup_must_be_positive():
    with pytest.raises(BackendError, match="warmup"):
        CUDAGraphsBackend(warmup=0)


@pytest.mark.gpu
@needs_cuda
def test_replays_match_eager_and_capture_one_graph_per_batch_size(tiny_mlp, tmp_path):
    model = type(tiny_mlp)().cuda().eval()
    model.load_state_dict(tiny_mlp.state_dict())
    torch.manual_seed(5)
    samples = [((torch.randn(4, 16, device="cuda"),), {}), ((torch.randn(7, 16, device="cuda"),), {})]
    ctx = BuildContext(
        device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path, dynamic_axes={"args.0": {0: "batch"}}
    )
    backend = CUDAGraphsBackend()
    runner = backend.build(model, samples, ctx)
    assert isinstance(runner, CUDAGraphRunner) and len(runner.graphs) == 2
    with torch.no_grad():
        for (args, _), batch in zip(samples, (4, 7), strict=True):
            out = runner(*args)
            torch.testing.assert_close(out, model(*args), atol=1e-5, rtol=1e-5)
            assert out.shape == (batch, 8)
        # Outputs are clones: a later replay must not overwrite an earlier result.
        first = runner(samples[0][0][0])
        runner(torch.randn(4, 16, device="cuda"))
        torch.testing.assert_close(first, model(samples[0][0][0]), atol=1e-5, rtol=1e-5)
        # A new size captures a new graph on demand.
        x = torch.randn(16, 16, device="cuda")
        torch.testing.assert_close(runner(x), model(x), atol=1e-5, rtol=1e-5)
    assert len(runner.graphs) == 3


@pytest.mark.gpu
@needs_cuda
def test_save_and_load_recapture_and_give_equal_outputs(tiny_mlp, tmp_path):
    model = type(tiny_mlp)().cuda().eval()
    model.load_state_dict(tiny_mlp.state_dict())
    x = torch.randn(4, 16, device="cuda")
    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path)
    backend = CUDAGraphsBackend()
    runner = backend.build(model, [((x,), {})], ctx)
    meta = backend.save(runner, tmp_path)
    loaded = backend.load(model, tmp_path, meta, ctx)
    torch.testing.assert_close(loaded(x), runner(x), atol=0, rtol=0)


@pytest.mark.gpu
@needs_cuda
def test_cpu_input_is_refused_with_the_input_path(tiny_mlp, tmp_path):
    model = type(tiny_mlp)().cuda().eval()
    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="args.0 is on cpu"):
        CUDAGraphsBackend().build(model, [((torch.randn(4, 16),), {})], ctx)


@pytest.mark.gpu
@needs_cuda
def test_host_sync_in_forward_fails_capture_with_advice(tmp_path):
    class Syncs(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * float(x.sum().item())

    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="synchronise with the host"):
        CUDAGraphsBackend().build(Syncs(), [((torch.randn(4, device="cuda"),), {})], ctx)


@pytest.mark.gpu
@needs_cuda
def test_failed_capture_leaves_random_ops_and_later_captures_working(tiny_mlp, tmp_path):
    class SyncsOnlyWhileCapturing(torch.nn.Module):
        """Passes the eager sync check, then fails inside the capture itself."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.cuda.is_current_stream_capturing():
                x.sum().item()
            return x * 2

    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="capture failed"):
        CUDAGraphsBackend().build(SyncsOnlyWhileCapturing(), [((torch.randn(4, device="cuda"),), {})], ctx)
    # Without cleanup, torch leaves its CUDA generator marked as capturing and this raises
    # "Offset increment outside graph capture encountered unexpectedly".
    torch.rand(8, device="cuda")
    model = type(tiny_mlp)().cuda().eval()
    x = torch.randn(4, 16, device="cuda")
    runner = CUDAGraphsBackend().build(model, [((x,), {})], ctx)
    torch.testing.assert_close(runner(x), model(x), atol=1e-5, rtol=1e-5)
