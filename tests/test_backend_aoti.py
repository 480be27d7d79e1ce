"""The AOTInductor backend: export + package once, load with no compile, output structure kept."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.utils._pytree as pytree

from aitune_ci.backends.aoti import (
    PACKAGE_FILE,
    AOTIBackend,
    AOTICompiled,
    compute_capability_problem,
    export_dynamic_shapes,
    probe_load,
)
from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.inductor import compile_counters
from aitune_ci.errors import BackendError

# torch's own pytree pickling warns about its deprecated LeafSpec; nothing here can act on it.
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")


class DictHead(torch.nn.Module):
    """The tiny MLP behind a keyword input and a nested dict output, as HF-style models have."""

    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor, *, scale: torch.Tensor) -> dict[str, object]:
        logits = self.body(x)
        return {"logits": logits, "extra": (logits * scale.unsqueeze(-1), logits.sum(-1))}


def _delta(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in compile_counters().items()}


def _ctx(tmp_path, dynamic_axes=None) -> BuildContext:
    return BuildContext(
        device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path, dynamic_axes=dynamic_axes or {}
    )


@pytest.fixture(scope="module")
def built_mlp(tiny_mlp, tiny_input, tmp_path_factory):
    torch.manual_seed(3)
    samples = [((tiny_input,), {}), ((torch.randn(7, 16),), {})]
    backend = AOTIBackend()
    before = compile_counters()
    built = backend.build(tiny_mlp, samples, _ctx(tmp_path_factory.mktemp("aoti"), {"args.0": {0: "batch"}}))
    return backend, built, _delta(before)


@pytest.fixture(scope="module")
def built_dict(tiny_mlp, tmp_path_factory):
    torch.manual_seed(4)
    model = DictHead(tiny_mlp).eval()
    samples = [((torch.randn(4, 16),), {"scale": torch.randn(4)}), ((torch.randn(6, 16),), {"scale": torch.randn(6)})]
    axes = {"args.0": {0: "batch"}, "kwargs.scale": {0: "batch"}}
    backend = AOTIBackend()
    return backend, model, backend.build(model, samples, _ctx(tmp_path_factory.mktemp("aoti-dict"), axes))


@pytest.mark.slow
def test_output_matches_eager(built_mlp, tiny_mlp, tiny_input):
    _, built, _ = built_mlp
    with torch.no_grad():
        torch.testing.assert_close(built(tiny_input), tiny_mlp(tiny_input), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_named_batch_dim_serves_sizes_never_seen(built_mlp, tiny_mlp):
    _, built, _ = built_mlp
    assert built.dim_mode == "named"
    for batch in (1, 16, 33):
        x = torch.randn(batch, 16)
        with torch.no_grad():
            torch.testing.assert_close(built(x), tiny_mlp(x), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_save_copies_the_package_and_load_does_not_compile(built_mlp, tiny_mlp, tmp_path):
    backend, built, build_delta = built_mlp
    assert build_delta["aoti_compiles"] == 1  # the counter sees a compile, so 0 below means none
    meta = backend.save(built, tmp_path)
    assert (tmp_path / PACKAGE_FILE).read_bytes() == built.package_path.read_bytes()
    assert meta["file"] == PACKAGE_FILE and meta["dim_mode"] == "named"
    assert meta["dynamic_axes"] == {"args.0": {"0": "batch"}}
    meta = json.loads(json.dumps(meta))  # as read back from manifest.json

    before = compile_counters()
    loaded = backend.load(tiny_mlp, tmp_path, meta, _ctx(tmp_path / "load"))
    x = torch.randn(5, 16)
    torch.testing.assert_close(loaded(x), built(x), atol=0, rtol=0)
    delta = _delta(before)
    assert delta["aoti_compiles"] == 0 and delta["inductor_codegen"] == 0 and delta["graphs_traced"] == 0, delta


@pytest.mark.slow
def test_dict_output_and_keyword_input_come_back_as_a_dict(built_dict):
    _, model, built = built_dict
    x, scale = torch.randn(3, 16), torch.randn(3)
    out = built(x, scale=scale)
    with torch.no_grad():
        expected = model(x, scale=scale)
    assert isinstance(out, dict) and list(out) == ["logits", "extra"]
    assert isinstance(out["extra"], tuple) and len(out["extra"]) == 2
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_loaded_package_restores_the_dict_structure_from_meta(built_dict, tmp_path):
    backend, model, built = built_dict
    meta = json.loads(json.dumps(backend.save(built, tmp_path)))
    assert meta["out_spec"] is not None
    loaded = backend.load(model, tmp_path, meta, _ctx(tmp_path / "load"))
    assert loaded.out_spec == built.out_spec
    x, scale = torch.randn(2, 16), torch.randn(2)
    torch.testing.assert_close(loaded(x, scale=scale), built(x, scale=scale), atol=0, rtol=0)


def test_flat_list_outputs_are_rebuilt_into_the_exported_structure(tmp_path):
    # Older torch returns an AOTI package's outputs as a flat list; the out_spec restores them.
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)
    spec = pytree.tree_structure({"logits": a, "extra": (b, c)})
    compiled = AOTICompiled(
        lambda *args, **kwargs: [a, b, c],
        package_path=tmp_path / PACKAGE_FILE,
        out_spec=spec,
        dynamic_axes={},
        dim_mode="static",
    )
    out = compiled()
    assert list(out) == ["logits", "extra"] and out["extra"][1] is c


def test_axes_sharing_a_name_share_one_export_dim():
    x, mask = torch.zeros(4, 3), torch.zeros(4)
    shapes = export_dynamic_shapes((x,), {"mask": mask}, {"args.0": {0: "batch"}, "kwargs.mask": {0: "batch"}})
    assert shapes[x][0] is shapes[mask][0]
    assert shapes[x][0].__name__ == "batch" and shapes[x][0].min == 1


def test_auto_fallback_uses_dim_auto_and_static_gives_none():
    x = torch.zeros(4, 3)
    assert export_dynamic_shapes((x,), {}, {}) is None
    shapes = export_dynamic_shapes((x,), {}, {"args.0": {-1: "seq-len"}}, auto=True)
    assert shapes[x] == {1: torch.export.Dim.AUTO}


class FixedBatch(torch.nn.Module):
    """Reshapes with a hard-coded batch of 4, so a dynamic batch axis cannot stay dynamic."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(4, 2, -1).sum(1)


def test_export_falls_back_to_auto_dims_when_the_model_fixes_a_named_axis():
    program, dim_mode = AOTIBackend().export(FixedBatch(), (torch.zeros(4, 6),), {}, {"args.0": {0: "batch"}})
    assert dim_mode == "auto"
    assert program.module()(torch.ones(4, 6)).shape == (4, 3)


def test_flags_say_ahead_of_time_and_device_specific():
    assert AOTIBackend.ahead_of_time and AOTIBackend.payload_is_device_specific
    ok, reason = AOTIBackend().available("cpu")
    assert ok, reason


def test_load_of_a_missing_package_says_to_rebuild(tiny_mlp, tmp_path):
    with pytest.raises(BackendError, match="rebuild"):
        AOTIBackend().load(tiny_mlp, tmp_path, {"file": PACKAGE_FILE}, _ctx(tmp_path))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (torch.cuda.is_available() is False)")
def test_cuda_package_builds_saves_and_loads(tiny_mlp, tmp_path):
    model = DictHead(type(tiny_mlp)()).cuda().eval()
    model.body.load_state_dict(tiny_mlp.state_dict())
    samples = [
        ((torch.randn(4, 16, device="cuda"),), {"scale": torch.randn(4, device="cuda")}),
        ((torch.randn(7, 16, device="cuda"),), {"scale": torch.randn(7, device="cuda")}),
    ]
    axes = {"args.0": {0: "batch"}, "kwargs.scale": {0: "batch"}}
    ctx = BuildContext(device=torch.device("cuda"), dtype=torch.float32, workdir=tmp_path, dynamic_axes=axes)
    backend = AOTIBackend()
    # On the lent H100 this crashed in the loader until packages were built with a compiler matching
    # the process's libstdc++ (aitune_ci/backends/_cxx_runtime.py); it must now build and load.
    built = backend.build(model, samples, ctx)
    meta = json.loads(json.dumps(backend.save(built, tmp_path / "artifact")))
    loaded = backend.load(model, tmp_path / "artifact", meta, ctx)
    x, scale = torch.randn(9, 16, device="cuda"), torch.randn(9, device="cuda")
    with torch.no_grad():
        expected = model(x, scale=scale)
    for fn in (built, loaded):
        out = fn(x, scale=scale)
        assert isinstance(out, dict)
        torch.testing.assert_close(out, expected, atol=1e-4, rtol=1e-4)


def test_the_probe_process_loads_a_real_package_without_building_cpu_isa_checks(built_mlp, tmp_path, monkeypatch):
    # torch's loader runs inductor's CPU ISA probe (a C++ test build per candidate ISA, written to
    # the inductor cache folder) only to word a warning; the probe process must not pay it.
    _, built, _ = built_mlp
    cache = tmp_path / "empty-inductor-cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(cache))
    probe_load(built.package_path, torch.device("cpu"))
    built_files = [p.name for p in cache.rglob("*") if p.suffix in (".so", ".o", ".cpp")] if cache.exists() else []
    assert built_files == []


def test_a_cuda_package_from_another_compute_capability_is_named_and_same_or_unknown_passes():
    problem = compute_capability_problem({"AOTI_COMPUTE_CAPABILITY": "90"}, "100")
    assert problem == "the package was built for CUDA compute capability 90, and this GPU has 100"
    assert compute_capability_problem({"AOTI_COMPUTE_CAPABILITY": "90"}, "90") is None
    assert compute_capability_problem({"AOTI_DEVICE_KEY": "cuda"}, "90") is None  # not recorded
    assert compute_capability_problem({"AOTI_COMPUTE_CAPABILITY": "90"}, None) is None


class _StandInLoader:
    """Stands in for torch's ``AOTIModelPackageLoader``: there is no GPU here to load a CUDA package on."""

    made: list[tuple] = []

    @staticmethod
    def load_metadata_from_package(path, model_name):
        return {"AOTI_DEVICE_KEY": "cuda", "AOTI_COMPUTE_CAPABILITY": "80"}

    def __init__(self, *args):
        _StandInLoader.made.append(args)


@pytest.fixture
def stand_in_cuda_loader(monkeypatch):
    import torch._inductor.package.package as package

    import aitune_ci.backends.aoti as aoti

    _StandInLoader.made = []
    monkeypatch.setattr(torch._C._aoti, "AOTIModelPackageLoader", _StandInLoader)
    monkeypatch.setattr(package, "AOTICompiledModel", lambda loader: ("compiled", loader))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    return aoti


def test_a_cuda_package_from_another_compute_capability_loads_with_a_warning_naming_both(
    stand_in_cuda_loader, monkeypatch, tmp_path
):
    aoti = stand_in_cuda_loader
    monkeypatch.setattr(aoti, "_compute_capability", lambda device: "90")
    with pytest.warns(UserWarning, match=r"compute capability 80, and this GPU has 90 \(NVIDIA H200\).*Rebuild"):
        compiled, loader = aoti._load_package_here(tmp_path / "p.pt2", torch.device("cuda", 1))
    assert compiled == "compiled" and isinstance(loader, _StandInLoader)
    assert _StandInLoader.made == [(str(tmp_path / "p.pt2"), "model", False, 1, 1)]  # as aoti_load_package passes


def test_a_cuda_package_for_this_compute_capability_loads_quietly_on_the_default_device(
    stand_in_cuda_loader, monkeypatch, tmp_path
):
    aoti = stand_in_cuda_loader
    monkeypatch.setattr(aoti, "_compute_capability", lambda device: "80")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aoti._load_package_here(tmp_path / "p.pt2", torch.device("cuda"))
    assert _StandInLoader.made == [(str(tmp_path / "p.pt2"), "model", False, 1, -1)]


def test_a_torch_without_the_loader_class_falls_back_to_aoti_load_package_with_the_device_index(monkeypatch, tmp_path):
    import aitune_ci.backends.aoti as aoti

    calls = []
    monkeypatch.delattr(torch._C._aoti, "AOTIModelPackageLoader")
    monkeypatch.setattr(torch._inductor, "aoti_load_package", lambda path, **kw: calls.append((path, kw)) or "loaded")
    assert aoti._load_package_here(tmp_path / "p.pt2", torch.device("cuda", 1)) == "loaded"
    assert aoti._load_package_here(tmp_path / "p.pt2", torch.device("cpu")) == "loaded"
    assert calls == [(str(tmp_path / "p.pt2"), {"device_index": 1}), (str(tmp_path / "p.pt2"), {})]


def test_probe_turns_a_package_that_cannot_load_into_a_backend_error(tmp_path):
    bogus = tmp_path / PACKAGE_FILE
    bogus.write_bytes(b"not a zip archive")
    with pytest.raises(BackendError, match="AOTInductor package loader failed"):
        probe_load(bogus, torch.device("cpu"))


def test_a_loader_that_segfaults_becomes_a_backend_error_naming_the_signal_and_a_lead(tmp_path, monkeypatch):
    # The real crash (torch 2.11 on the lent H100) cannot happen on this machine: the probe's child
    # script is replaced by one that dies of SIGSEGV the same way, to test what the user is told.
    import aitune_ci.backends.aoti as aoti

    monkeypatch.setattr(aoti, "_PROBE", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)\n")
    with pytest.raises(
        BackendError, match=r"crashed \(SIGSEGV\).*built with \S+ \(libstdc\+\+ linked: \w+;.*AITUNE_AOTI_CXX"
    ):
        aoti.probe_load(tmp_path / PACKAGE_FILE, torch.device("cpu"))
