"""Save -> load in a fresh process for every CPU backend: same outputs, and no fresh compile on load.

One tune of the tiny MLP covers every backend; one subprocess (empty inductor cache, nothing
shared with this process but the .ait files) loads them all, calls each once, and reports torch's
own compile events and every class an unpickler resolved during that load and call (through
Python's ``pickle.find_class`` audit event, which no import style can bypass).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import aitune_ci as ait
from aitune_ci.measure import MeasureConfig
from aitune_ci.store.artifact import save

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")]

FAST = MeasureConfig(
    min_rounds=1, max_rounds=1, target_round_s=0.002, max_total_s=0.1, warmup_min_iters=1, warmup_max_s=0.02,
    bootstrap_resamples=20,
)  # fmt: skip

#: Backends whose artifact holds everything: loading neither traces, exports nor compiles.
AHEAD_OF_TIME = ["eager", "eager-bf16", "aoti", "onnxruntime", "torchao-int8wo", "torchao-int8dq"]
#: Just-in-time backends: dynamo traces the Python again, but every compiled graph comes from the artifact.
FROM_COMPILE_CACHE = ["inductor", "inductor-max-autotune", "torchao-int8dq-compiled"]
#: Ahead-of-time payloads load first in the fresh process, before any inductor one runs the CPU ISA probe.
CPU_BACKENDS = AHEAD_OF_TIME + FROM_COMPILE_CACHE
#: Tune order: aoti compiles first, in the same process as the inductor backends after it. aoti once
#: leaked its config into inductor's cache key, so an inductor artifact built after it missed its own
#: cache on load; the compile-cache tests below hold every inductor payload built after aoti to
#: zero codegen on load (tests/test_backend_global_state.py guards every backend against such leaks).
TUNE_ORDER = [
    "eager",
    "eager-bf16",
    "aoti",
    "onnxruntime",
    "inductor",
    "inductor-max-autotune",
    "torchao-int8wo",
    "torchao-int8dq",
    "torchao-int8dq-compiled",
]

#: Events that mean work was done to produce code: a trace, an export, codegen, a C++ build, a cache miss.
COMPILE_EVENTS = (
    "stats.unique_graphs",
    "create_aot_dispatcher_function",
    "compile_fx_inner",
    "fx_codegen_and_compile",
    "AotCodeCompiler.compile",
    "compile_file",
    "inductor.fxgraph_cache_miss",
    "aot_autograd.autograd_cache_miss",
)

_LOADER = textwrap.dedent(
    """
    import json, sys, time, warnings
    sys.path.insert(0, {tests!r})
    import torch
    from torch._dynamo.utils import compilation_time_metrics, counters
    from safetensors.torch import load_file, save_file
    from tiny_models import TinyMLP
    import aitune_ci as ait

    jobs = json.loads({jobs!r})
    x = load_file({inputs!r})["x"].clone()  # aligned like any torch allocation: BLAS results depend on alignment
    unpickled = []
    sys.addaudithook(lambda event, args: unpickled.append(f"{{args[0]}}.{{args[1]}}") if event == "pickle.find_class" else None)

    def events():
        flat = {{f"{{k}}.{{n}}": v for k, c in counters.items() for n, v in c.items()}}
        flat.update({{k: len(v) for k, v in compilation_time_metrics.items()}})
        return flat

    # Nothing is paid up front: inductor's CPU ISA probe (C++ test builds) shows in the counts of
    # the load that runs it. torch's AOTInductor loader runs it only to word a warning, and aoti's
    # load skips it, so an aoti load must count no C++ build at all (on the lent H200 the probe had
    # made a resnet50 package's load take 46 s). The probe runs once per process, so this holds
    # only while aoti loads before any inductor payload: jobs come in CPU_BACKENDS order.

    report, outputs = {{}}, {{}}
    for job in jobs:
        model = TinyMLP()
        before, mark = events(), len(unpickled)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            loaded = ait.load(job["path"], model, expected_sha256=job["sha256"] if job["pinned"] else None)
            t1 = time.perf_counter()
            out = loaded(x)
            t2 = time.perf_counter()
        after = events()
        outputs[job["name"]] = out.contiguous()
        report[job["name"]] = {{
            "events": {{k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}},
            "unpickled": unpickled[mark:],
            "warnings": [str(w.message) for w in caught if "ArtifactWarning" in type(w.message).__name__],
            "load_s": t1 - t0,
            "first_call_s": t2 - t1,
        }}
    save_file(outputs, {outputs!r})
    print(json.dumps(report))
    """
)


def _load_in_fresh_process(tmp: Path, jobs: list[dict], x: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file, save_file

    save_file({"x": x}, str(tmp / "inputs.safetensors"))
    script = _LOADER.format(
        tests=str(Path(__file__).parent),
        jobs=json.dumps(jobs),
        inputs=str(tmp / "inputs.safetensors"),
        outputs=str(tmp / "outputs.safetensors"),
    )
    cache = tmp / "empty-inductor-cache"
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache), TRITON_CACHE_DIR=str(cache / "triton"))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), load_file(str(tmp / "outputs.safetensors"))


@pytest.fixture(scope="module")
def tuned(tiny_mlp, tiny_input):
    available = [row.name for row in ait.backends("cpu") if row.available]
    missing = [b for b in CPU_BACKENDS if b not in available]
    if missing:
        pytest.skip(f"backends unavailable here: {missing}")
    spec = ait.TuneSpec(
        model=copy.deepcopy(tiny_mlp),
        samples=[tiny_input, torch.randn(7, 16)],
        backends=TUNE_ORDER,
        device="cpu",
        name="tune_roundtrip",
    )
    result = ait.tune(spec, measure_config=FAST, progress=None)
    failed = {r.backend: r.error for r in result.backends if r.backend in CPU_BACKENDS and r.status != "ok"}
    assert not failed, failed
    return result


@pytest.fixture(scope="module")
def saved(tuned, tmp_path_factory):
    folder = tmp_path_factory.mktemp("roundtrip")
    return {name: save(tuned, folder / f"{name}.ait", backend=name) for name in CPU_BACKENDS}


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    torch.manual_seed(11)
    return torch.randn(5, 16)  # a batch size no sample had: the dynamic batch axis must hold


@pytest.fixture(scope="module")
def expected(tuned, x) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        return {name: tuned.runtime.built[name](x) for name in CPU_BACKENDS}


@pytest.fixture(scope="module")
def fresh_pinned(saved, x, tmp_path_factory):
    """Every backend loaded pinned (as the plugin loads a committed artifact) in one fresh process."""
    jobs = [{"name": n, "path": str(i.path), "sha256": i.sha256, "pinned": True} for n, i in saved.items()]
    return _load_in_fresh_process(tmp_path_factory.mktemp("fresh"), jobs, x)


@pytest.mark.parametrize("name", CPU_BACKENDS)
def test_fresh_process_load_gives_the_tuned_outputs_bit_for_bit(name, fresh_pinned, expected):
    _, outputs = fresh_pinned
    assert outputs[name].dtype == expected[name].dtype
    assert torch.equal(outputs[name], expected[name]), (outputs[name] - expected[name]).abs().max()


@pytest.mark.parametrize("name", AHEAD_OF_TIME)
def test_loading_an_ahead_of_time_payload_compiles_nothing(name, fresh_pinned):
    report, _ = fresh_pinned
    events = report[name]["events"]
    assert not {k: v for k, v in events.items() if k in COMPILE_EVENTS}, events


@pytest.mark.parametrize("name", FROM_COMPILE_CACHE)
def test_loading_an_inductor_payload_takes_every_graph_from_the_saved_cache(name, fresh_pinned):
    report, _ = fresh_pinned
    events = report[name]["events"]
    assert events.get("stats.unique_graphs", 0) == 1, events  # dynamo re-traces the Python: one graph
    assert events.get("fx_codegen_and_compile", 0) == 0, events  # ...but inductor generates nothing
    assert events.get("inductor.fxgraph_cache_miss", 0) == 0 and events.get("aot_autograd.autograd_cache_miss", 0) == 0
    assert events.get("inductor.fxgraph_cache_hit", 0) + events.get("aot_autograd.autograd_cache_hit", 0) >= 1, events


@pytest.mark.parametrize("name", AHEAD_OF_TIME)
def test_loading_unpickles_nothing(name, fresh_pinned):
    report, _ = fresh_pinned
    assert report[name]["unpickled"] == []


def test_the_inductor_compile_cache_is_pickles_which_is_why_it_needs_a_pin(fresh_pinned):
    """Documents why an unpinned artifact skips inductor's cache: using it unpickles compiled graphs."""
    report, _ = fresh_pinned
    assert report["inductor"]["unpickled"], "the FX graph cache no longer unpickles: the pin rule can be relaxed"


@pytest.mark.parametrize("name", ["inductor", "torchao-int8dq-compiled"])
def test_an_unpinned_compile_cache_artifact_skips_its_cache_unpickles_nothing_and_compiles(
    name, saved, x, expected, tmp_path
):
    info = saved[name]
    jobs = [{"name": name, "path": str(info.path), "sha256": info.sha256, "pinned": False}]
    report, outputs = _load_in_fresh_process(tmp_path, jobs, x)
    entry = report[name]
    assert any("skipping the compile cache" in w for w in entry["warnings"]), entry["warnings"]
    assert entry["unpickled"] == []
    assert entry["events"].get("fx_codegen_and_compile", 0) >= 1, entry["events"]  # compiled from scratch
    assert torch.equal(outputs[name], expected[name])


def test_a_compile_cache_from_a_cpu_with_other_features_is_skipped_and_the_model_compiles_here(
    saved, x, expected, tmp_path
):
    """Inductor's cache key names no CPU, so entries generated for AVX-512 would be taken as ours."""
    import zipfile

    from aitune_ci.store.artifact import artifact_sha256

    with zipfile.ZipFile(saved["inductor"].path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    manifest["environment"]["cpu_features"] = "avx2 fma avx512f avx512bw avx512dq avx512vl amx_tile"
    path = tmp_path / "other_cpu.ait"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    jobs = [{"name": "inductor", "path": str(path), "sha256": artifact_sha256(path), "pinned": True}]

    report, outputs = _load_in_fresh_process(tmp_path, jobs, x)

    entry = report["inductor"]
    assert any("generated on a CPU with other features" in w for w in entry["warnings"]), entry["warnings"]
    assert entry["unpickled"] == []
    assert entry["events"].get("fx_codegen_and_compile", 0) >= 1, entry["events"]  # compiled here
    assert torch.equal(outputs["inductor"], expected["inductor"])


def test_an_unpinned_aoti_artifact_is_refused_before_its_library_is_opened(saved, tiny_mlp):
    with pytest.raises(ait.ArtifactError, match="executable code"):
        ait.load(saved["aoti"].path, type(tiny_mlp)())


def test_manifest_records_each_backend_and_its_payload(saved):
    from aitune_ci.store.artifact import inspect_artifact

    files = {}
    for name, info in saved.items():
        manifest = inspect_artifact(info.path)
        (entry,) = manifest["modules"]
        assert entry["backend"] == name and entry["module"] == ""
        files[name] = [Path(f).name for f in entry["files"]]
    assert files["aoti"] == ["model.pt2"]
    assert files["onnxruntime"] == ["model.onnx"]
    assert files["inductor"] == ["compile_cache.bin"]
    assert files["torchao-int8wo"] == [] and files["eager"] == []
