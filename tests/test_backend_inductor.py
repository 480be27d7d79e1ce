"""The inductor backend: compiles in build, one graph for a batch sweep, cache saved and reloaded warm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch_state import changed, global_torch_state

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.inductor import (
    COMPILE_CACHE_FILE,
    InductorBackend,
    InductorCompiled,
    check_dynamic_axes,
    compile_counters,
    compile_isolated,
    iter_tensors,
)
from aitune_ci.errors import BackendError

DYNAMIC = {"args.0": {0: "batch"}}


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in compile_counters().items()}


@pytest.fixture(scope="module")
def built(tiny_mlp, tiny_input, tmp_path_factory):
    """One compile for the whole module: the tiny MLP with a dynamic batch, samples of batch 4 and 7.

    Also returns the process-global torch state the compile saw, which its cache keys hash.
    """
    torch.manual_seed(2)
    samples = [((tiny_input,), {}), ((torch.randn(7, 16),), {})]
    ctx = BuildContext(
        device=torch.device("cpu"),
        dtype=torch.float32,
        workdir=tmp_path_factory.mktemp("inductor"),
        dynamic_axes=DYNAMIC,
    )
    backend = InductorBackend()
    state = global_torch_state()
    before = compile_counters()
    runner = backend.build(tiny_mlp, samples, ctx)
    return backend, runner, ctx, _delta(before), state


@pytest.mark.slow
def test_output_matches_eager(built, tiny_mlp, tiny_input):
    _, runner, *_ = built
    with torch.no_grad():
        expected = tiny_mlp(tiny_input)
    torch.testing.assert_close(runner(tiny_input), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_build_compiles_one_dynamic_graph_for_both_batch_sizes(built):
    _, _, _, build_delta, _ = built
    # Two samples of batch 4 and 7: with the batch axis marked dynamic, dynamo traces one graph;
    # without it, the second size would trace a second graph (automatic dynamic shapes).
    assert build_delta["graphs_traced"] == 1


@pytest.mark.slow
def test_batch_sweep_after_build_traces_nothing_new(built, tiny_mlp):
    _, runner, *_ = built
    before = compile_counters()
    for batch in (2, 16, 33):
        x = torch.randn(batch, 16)
        with torch.no_grad():
            torch.testing.assert_close(runner(x), tiny_mlp(x), atol=1e-5, rtol=1e-5)
    assert _delta(before)["graphs_traced"] == 0


@pytest.mark.slow
def test_build_does_not_modify_the_module(built, tiny_mlp):
    assert type(tiny_mlp).__name__ == "TinyMLP"
    assert getattr(tiny_mlp, "_compiled_call_impl", None) is None
    assert not tiny_mlp.training


@pytest.mark.slow
def test_save_writes_cache_bytes_and_meta(built, tmp_path):
    backend, runner, *_ = built
    meta = backend.save(runner, tmp_path)
    payload = tmp_path / COMPILE_CACHE_FILE
    assert meta["file"] == COMPILE_CACHE_FILE
    assert payload.read_bytes() == runner.cache_artifacts
    assert meta["mode"] == "default"
    assert meta["dynamic_axes"] == {"args.0": {"0": "batch"}}
    assert meta["cache_artifacts"].get("inductor", 0) >= 1
    assert meta["cpu_threads"] == torch.get_num_threads()  # CPU cache keys hash it
    json.dumps(meta)  # metadata goes into manifest.json


@pytest.mark.slow
def test_load_in_same_process_gives_equal_outputs(built, tiny_mlp, tmp_path):
    backend, runner, ctx, *_ = built
    meta = backend.save(runner, tmp_path)
    loaded = backend.load(tiny_mlp, tmp_path, meta, ctx)
    assert isinstance(loaded, InductorCompiled)
    x = torch.randn(5, 16)
    torch.testing.assert_close(loaded(x), runner(x), atol=0, rtol=0)


@pytest.mark.slow
def test_load_under_another_thread_count_warns_that_the_first_call_compiles_from_scratch(built, tiny_mlp, tmp_path):
    backend, runner, ctx, *_ = built
    meta = backend.save(runner, tmp_path)
    other = dict(meta, cpu_threads=meta["cpu_threads"] + 1)
    with pytest.warns(UserWarning, match=rf"get_num_threads\(\) == {other['cpu_threads']}.*OMP_NUM_THREADS="):
        backend.load(tiny_mlp, tmp_path, other, ctx)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend.load(tiny_mlp, tmp_path, meta, ctx)
    assert not [w for w in caught if "get_num_threads" in str(w.message)]


_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    sys.path.insert(0, {tests_dir!r})
    from tiny_models import TinyMLP
    from torch_state import global_torch_state
    from aitune_ci.backends.base import BuildContext
    from aitune_ci.backends.inductor import InductorBackend, compile_counters

    work = Path({work!r})
    model = TinyMLP().eval()
    model.load_state_dict(torch.load(work / "weights.pt", weights_only=True))
    meta = json.loads((work / "meta.json").read_text())
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=work / "scratch")
    before = compile_counters()
    loaded = InductorBackend().load(model, work / "artifact", meta, ctx)
    diffs = []
    for batch in (3, 9):
        x = torch.randn(batch, 16)
        with torch.no_grad():
            diffs.append(float((loaded(x) - model(x)).abs().max()))
    delta = {{k: v - before[k] for k, v in compile_counters().items()}}
    print(json.dumps({{"delta": delta, "diffs": diffs, "state": global_torch_state()}}))
    """
)


@pytest.mark.slow
def test_load_in_fresh_process_with_empty_cache_compiles_from_saved_artifacts(built, tiny_mlp, tmp_path):
    """The real use: another machine/CI job, empty inductor cache, only the saved bytes.

    The cache keys hash process-global torch settings, so a miss here usually means the build
    process had one changed (a backend or an earlier test leaked it): the message lists them.
    """
    backend, runner, _, _, build_state = built
    meta = backend.save(runner, tmp_path / "artifact")
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    torch.save(tiny_mlp.state_dict(), tmp_path / "weights.pt")
    script = _LOAD_SCRIPT.format(tests_dir=str(Path(__file__).parent), work=str(tmp_path))
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "empty-cache"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    delta = result["delta"]
    state_diff = changed(build_state, result["state"])
    why = f"compile counters in the fresh process: {delta}\nglobal torch state, build process vs fresh process: {state_diff}"
    assert max(result["diffs"]) <= 1e-5
    assert delta["graphs_traced"] == 1  # one dynamic graph serves batch 3 and 9
    assert delta["inductor_codegen"] == 0, why  # nothing generated: every graph came from the artifact
    assert delta["fxgraph_cache_miss"] == 0 and delta["autograd_cache_miss"] == 0, why
    assert delta["fxgraph_cache_hit"] + delta["autograd_cache_hit"] >= 1, why


def test_reduce_overhead_is_unavailable_without_cuda_and_says_why():
    backend = InductorBackend(mode="reduce-overhead")
    ok, reason = backend.available("cpu")
    assert not ok
    if torch.cuda.is_available():
        assert "cuda only" in reason
    else:
        assert "needs CUDA (torch.cuda.is_available() is False)" in reason


def test_default_mode_is_available_on_cpu_with_a_compiler():
    ok, reason = InductorBackend().available("cpu")
    assert ok, reason


def test_variants_are_registered_with_their_modes():
    from aitune_ci.backends.registry import _registry

    assert _registry["inductor"] == (InductorBackend, {"mode": "default"})
    assert _registry["inductor-max-autotune"] == (InductorBackend, {"mode": "max-autotune-no-cudagraphs"})
    assert _registry["inductor-reduce-overhead"] == (InductorBackend, {"mode": "reduce-overhead"})


def test_unknown_mode_is_rejected_with_the_known_ones():
    with pytest.raises(BackendError, match="max-autotune-no-cudagraphs"):
        InductorBackend(mode="fastest")


def test_load_refuses_an_artifact_of_another_mode(tiny_mlp, tmp_path):
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="max-autotune-no-cudagraphs"):
        InductorBackend().load(tiny_mlp, tmp_path, {"mode": "max-autotune-no-cudagraphs", "file": None}, ctx)


def test_load_refuses_a_payload_name_outside_the_folder(tiny_mlp, tmp_path):
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    with pytest.raises(BackendError, match="not a plain file name"):
        InductorBackend().load(tiny_mlp, tmp_path, {"mode": "default", "file": "../secrets.bin"}, ctx)


def test_dynamic_axis_naming_a_missing_input_lists_the_real_ones():
    samples = [((torch.zeros(2, 3),), {"mask": torch.zeros(2)})]
    with pytest.raises(BackendError, match=r"args\.1.*args\.0, kwargs\.mask"):
        check_dynamic_axes(samples, {"args.1": {0: "batch"}})


def test_dynamic_axis_beyond_the_tensor_rank_is_an_error():
    samples = [((torch.zeros(2, 3),), {})]
    with pytest.raises(BackendError, match="dim 2"):
        check_dynamic_axes(samples, {"args.0": {2: "seq"}})


def test_tensor_paths_follow_nested_args_and_kwargs():
    a, b, c = torch.zeros(1), torch.zeros(2), torch.zeros(3)
    paths = [p for p, _ in iter_tensors((a, [b, 5]), {"extra": {"c": c}})]
    assert paths == ["args.0", "args.1.0", "kwargs.extra.c"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_build_matches_eager_across_batch_sizes_and_reloads(mode, tiny_mlp, tmp_path):
    model = type(tiny_mlp)().cuda().eval()
    model.load_state_dict(tiny_mlp.state_dict())
    samples = [((torch.randn(4, 16, device="cuda"),), {}), ((torch.randn(7, 16, device="cuda"),), {})]
    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path, dynamic_axes=DYNAMIC)
    backend = InductorBackend(mode=mode)
    assert backend.available("cuda") == (True, "")
    runner = backend.build(model, samples, ctx)
    with torch.no_grad():
        for batch in (4, 7, 16):
            x = torch.randn(batch, 16, device="cuda")
            torch.testing.assert_close(runner(x), model(x), atol=1e-5, rtol=1e-5)
        first = runner(samples[0][0][0])
        runner(torch.randn(4, 16, device="cuda"))  # must not overwrite `first` (reduce-overhead clones)
        torch.testing.assert_close(first, model(samples[0][0][0]), atol=1e-5, rtol=1e-5)
    meta = backend.save(runner, tmp_path / "artifact")
    loaded = backend.load(model, tmp_path / "artifact", meta, ctx)
    x = torch.randn(5, 16, device="cuda")
    torch.testing.assert_close(loaded(x), runner(x), atol=1e-5, rtol=1e-5)


# ---- each build compiles through its own code object -------------------------------------------


class _Recorder:
    """A torch.compile backend that runs the graph eagerly and remembers each graph's inputs."""

    def __init__(self) -> None:
        self.graphs: list[list[object]] = []

    def __call__(self, gm, example_inputs):
        self.graphs.append(list(example_inputs))
        return gm.forward


def test_many_differently_shaped_models_each_get_a_compiled_graph():
    # torch.compile(module) of torch.nn classes shares one wrapper code object in the process,
    # and dynamo stops compiling a code object after 8 graphs (the 9th model runs eagerly).
    recorder = _Recorder()
    for width in range(12):
        model = nn.Sequential(nn.Linear(8 + width, 4))
        compile_isolated(model, backend=recorder, dynamic=False)(torch.randn(2, 8 + width))
    assert len(recorder.graphs) == 12


def test_a_build_after_a_model_of_another_rank_stays_static():
    recorder = _Recorder()
    compile_isolated(nn.Sequential(nn.Linear(8, 8)), backend=recorder, dynamic=False)(torch.randn(2, 5, 8))
    compile_isolated(nn.Sequential(nn.Conv2d(3, 4, 3)), backend=recorder, dynamic=False)(torch.randn(2, 3, 16, 16))
    assert len(recorder.graphs) == 2
    symbolic = [x for x in recorder.graphs[1] if isinstance(x, torch.SymInt)]
    shapes = [tuple(x.shape) for x in recorder.graphs[1] if isinstance(x, torch.Tensor)]
    assert not symbolic and (2, 3, 16, 16) in shapes


def test_static_build_keeps_its_marked_axes_dynamic_and_every_other_dim_static():
    recorder = _Recorder()
    fn = compile_isolated(nn.Linear(8, 4), backend=recorder, dynamic=False)
    x = torch.randn(3, 8)
    torch._dynamo.maybe_mark_dynamic(x, 0)
    fn(x)
    fn(torch.randn(5, 8))  # marked batch: the same graph
    assert len(recorder.graphs) == 1
    assert any(isinstance(v, torch.SymInt) for v in recorder.graphs[0])


def test_backend_build_after_a_model_of_another_rank_specialises_on_its_own_shapes(tmp_path):
    # With torch.compile(module), the second of two torch.nn Sequentials came out dynamic in every
    # dim (shape history shared through one wrapper): a new batch size then compiled nothing.
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    InductorBackend().build(nn.Sequential(nn.Linear(8, 8)).eval(), [((torch.randn(2, 5, 8),), {})], ctx)
    built = InductorBackend().build(nn.Sequential(nn.Linear(6, 4)).eval(), [((torch.randn(3, 6),), {})], ctx)
    before = compile_counters()["graphs_traced"]
    built(torch.randn(4, 6))  # no dynamic axis declared: a static graph must specialise anew
    assert compile_counters()["graphs_traced"] == before + 1


def test_building_the_same_module_twice_records_a_complete_payload_both_times(tiny_mlp, tiny_input, tmp_path):
    # Each build compiles through its own code object, so dynamo never hands the second build the
    # first one's in-memory code (which would record no cache entries and save an empty payload).
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    first = InductorBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)
    second = InductorBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)
    assert first.cache_artifacts and second.cache_artifacts
    assert second.cache_info == first.cache_info


def test_a_build_that_compiles_nothing_fails_instead_of_timing_eager_under_the_inductor_name(
    tiny_mlp, tiny_input, tmp_path
):
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path)
    with torch._dynamo.config.patch(disable=True):
        with pytest.raises(BackendError, match="without capturing a single graph.*disabled"):
            InductorBackend().build(tiny_mlp, [((tiny_input,), {})], ctx)
