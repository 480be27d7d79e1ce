"""The build key (what a reused build depends on) and the runner's build cache on disk.

Real modules on disk (the user code the key must follow), a real onnxruntime export for the
cache's round trip, and one real AOTInductor compile (shared by the module's fixture) for the
speed-up that motivates the cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import get_backend
from aitune_ci.engine import tune
from aitune_ci.spec import TuneSpec
from aitune_ci.store.artifact.hashing import BuildKeys, work_key
from aitune_ci.store.build_cache import BuildCache, FixtureBuilds, resolve_cache_dir
from aitune_ci.store.build_inputs import relevant_env
from aitune_ci.tolerance import Tolerance

NET = """
import torch

from .helpers import act


class Net(torch.nn.Module):
    def __init__(self, fast=True):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)
        self.fast = fast

    def forward(self, x):
        return act(self.lin(x))
"""

HELPERS = """
import torch


def act(x):
    return torch.relu(x)
"""


def _package(root: Path, helpers: str = HELPERS) -> object:
    """Write the package under a fresh name (as the base's worktree copy gets one) and import it."""
    name = f"userpkg_{uuid.uuid4().hex[:8]}"
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("from .net import Net\n")
    (folder / "net.py").write_text(NET)
    (folder / "helpers.py").write_text(helpers)
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _key(package: object, backend: str = "onnxruntime", **kwargs: object) -> str:
    torch.manual_seed(0)
    model = package.Net(**kwargs).eval()
    samples = [((torch.ones(2, 8),), {})]
    return BuildKeys(model, torch.float32, samples, torch.device("cpu")).key(backend)


def test_the_same_code_under_other_module_names_and_paths_gets_the_same_key(tmp_path: Path) -> None:
    # The PR's base is imported from a git worktree under aitune_base.* names: content decides.
    assert _key(_package(tmp_path / "main")) == _key(_package(tmp_path / "worktree"))


def test_a_helper_in_another_user_module_is_part_of_the_key(tmp_path: Path) -> None:
    slower = HELPERS.replace("torch.relu(x)", "torch.relu(x) * 1.0")
    assert _key(_package(tmp_path / "a")) != _key(_package(tmp_path / "b", helpers=slower))


def test_comments_blank_lines_and_indentation_are_not_part_of_the_key_and_docstrings_are(tmp_path: Path) -> None:
    # A comment-only PR does the same work as its base: its builds and results are reused.
    commented = HELPERS.replace(
        "def act(x):\n    return torch.relu(x)",
        "# the activation\n\n\ndef act(x):  # pointwise\n        return torch.relu(x)  # no copy\n",
    )
    assert commented != HELPERS
    assert _key(_package(tmp_path / "a")) == _key(_package(tmp_path / "b", helpers=commented))
    documented = HELPERS.replace("def act(x):\n", 'def act(x):\n    """ReLU."""\n')
    assert _key(_package(tmp_path / "c")) != _key(_package(tmp_path / "d", helpers=documented))


def test_a_file_that_does_not_tokenize_is_taken_by_its_bytes() -> None:
    from aitune_ci.store.build_inputs import _code_digest

    broken = b"def act(x):\n    return (x\n"  # an unclosed bracket: tokenize raises at the end
    assert _code_digest("m.py", broken) != _code_digest("m.py", broken + b"# a comment\n")
    assert _code_digest("m.py", b"x = 1\n") == _code_digest("m.py", b"x = 1  # one\n")
    assert _code_digest("m.so", b"x = 1\n") != _code_digest("m.so", b"x = 1  # one\n")


def test_an_environment_variable_the_model_code_reads_is_part_of_the_key(tmp_path: Path, monkeypatch) -> None:
    reads = HELPERS.replace("torch.relu(x)", 'torch.relu(x) * float(os.environ.get("AITUNE_TEST_GAIN", "1"))')
    package = _package(tmp_path, helpers="import os\n" + reads)
    monkeypatch.delenv("AITUNE_TEST_GAIN", raising=False)
    key = _key(package)
    monkeypatch.setenv("AITUNE_TEST_GAIN", "2")
    assert _key(package) != key
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    monkeypatch.delenv("AITUNE_TEST_GAIN")
    assert _key(package) == key


def test_plain_attributes_backend_and_process_state_are_part_of_the_key(tmp_path: Path) -> None:
    package = _package(tmp_path)
    key = _key(package)
    assert _key(package, fast=False) != key  # a flag set by the fixture, not a weight
    assert _key(package, backend="aoti") != key
    from torch._inductor import config as inductor_config

    assert _key(package) == key  # importing the config changes nothing while it holds its defaults
    with inductor_config.patch(epilogue_fusion=not inductor_config.epilogue_fusion):
        assert _key(package) != key
    assert _key(package) == key
    precision = torch.get_float32_matmul_precision()
    matmul, mkldnn = torch.backends.cuda.matmul, torch.backends.mkldnn.matmul
    has_fp32_precision = hasattr(matmul, "fp32_precision")  # torch >= 2.9
    saved = (matmul.fp32_precision, mkldnn.fp32_precision) if has_fp32_precision else None
    torch.set_float32_matmul_precision("medium")
    try:
        assert _key(package) != key
    finally:
        # Setting the precision back leaves the fp32_precision settings "ieee" where they were "none"
        # (torch 2.13), so they are restored too: inductor's cache key hashes the CUDA one, and an
        # inductor build later in this process had then missed its own cache in a fresh process
        # (tests/test_artifact_roundtrip.py, run after this file in one process).
        torch.set_float32_matmul_precision(precision)
        if saved is not None:
            matmul.fp32_precision, mkldnn.fp32_precision = saved
    assert _key(package) == key
    if saved is None:
        pytest.skip(f"torch {torch.__version__} has no fp32_precision matmul setting (torch >= 2.9 has)")
    # That setting alone, the same precision either way, is another key, as it is another inductor cache key.
    matmul.fp32_precision = "ieee" if saved[0] != "ieee" else "none"
    try:
        assert _key(package) != key
    finally:
        matmul.fp32_precision = saved[0]
    assert _key(package) == key


def test_dynamic_axes_and_the_submodule_path_are_part_of_the_key(tmp_path: Path) -> None:
    torch.manual_seed(0)
    keys = BuildKeys(_package(tmp_path).Net().eval(), torch.float32, [((torch.ones(2, 8),), {})], torch.device("cpu"))
    plain = keys.key("onnxruntime")
    assert keys.key("onnxruntime", dynamic_axes={"args.0": {0: "batch"}}) != plain
    assert keys.key("onnxruntime", module="lin") != plain
    assert keys.key("onnxruntime") == plain


def _work(package: object, backends: tuple[str, ...] = ("eager", "onnxruntime"), **spec: object) -> str:
    torch.manual_seed(0)
    fields = {"samples": [torch.ones(2, 8)], "backends": list(backends), **spec}
    return work_key(TuneSpec(model=package.Net().eval(), **fields), list(backends))


def test_base_and_head_do_the_same_work_only_when_code_weights_samples_options_and_backends_agree(
    tmp_path: Path,
) -> None:
    # Relative mode skips timing the base where this key equals the head's (check._work_keys).
    package = _package(tmp_path / "main")
    key = _work(package)
    assert _work(_package(tmp_path / "worktree")) == key  # the base, imported under another name
    slower = HELPERS.replace("torch.relu(x)", "torch.relu(x) * 1.0")
    assert _work(_package(tmp_path / "changed", helpers=slower)) != key
    assert _work(package, samples=[torch.full((2, 8), 2.0)]) != key
    assert _work(package, backends=("eager", "inductor")) != key
    assert _work(package, tolerance=Tolerance(atol=1e-2, rtol=1e-2)) != key
    assert _work(package, dtype=torch.bfloat16) != key
    torch.manual_seed(1)
    other_weights = TuneSpec(model=package.Net().eval(), samples=[torch.ones(2, 8)], backends=["eager", "onnxruntime"])
    assert work_key(other_weights, ["eager", "onnxruntime"]) != key
    # The head passes its tune's build keys (shared digest already computed): the same key.
    torch.manual_seed(0)
    spec = TuneSpec(model=package.Net().eval(), samples=[torch.ones(2, 8)], backends=["eager", "onnxruntime"])
    keys = BuildKeys(spec.model, spec.dtype, spec.normalized_samples, spec.resolved_device)
    keys.common()
    assert work_key(spec, ["eager", "onnxruntime"], keys) == key


def test_relevant_env_keeps_what_compilers_read_and_drops_locations_logs_and_device_selection() -> None:
    env = {
        "TORCHINDUCTOR_MAX_AUTOTUNE": "1",
        "TORCHINDUCTOR_CACHE_DIR": "/tmp/x",
        "TORCH_LOGS": "+dynamo",
        "CUDA_VISIBLE_DEVICES": "1",
        "NVIDIA_TF32_OVERRIDE": "0",
        "CXX": "g++-12",
        "AITUNE_CACHE_DIR": "/c",
        "HOME": "/root",
        "PYTEST_XDIST_WORKER": "gw1",
    }
    assert relevant_env(env) == {"CXX": "g++-12", "NVIDIA_TF32_OVERRIDE": "0", "TORCHINDUCTOR_MAX_AUTOTUNE": "1"}


def test_the_cache_dir_option_env_and_off(tmp_path: Path) -> None:
    assert resolve_cache_dir(None, {"AITUNE_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert resolve_cache_dir(None, {"HOME": "/h"}) == Path.home() / ".cache" / "aitune-ci" / "builds"
    assert resolve_cache_dir("off", {}) is None
    assert resolve_cache_dir(None, {"AITUNE_CACHE_DIR": "off"}) is None
    assert resolve_cache_dir(str(tmp_path / "c"), {}) == tmp_path / "c"


# --- the cache on disk -----------------------------------------------------------------------


def _onnx_build(tmp_path: Path) -> tuple[object, torch.nn.Module, torch.Tensor, BuildContext]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU()).eval()
    x = torch.randn(2, 8)
    backend = get_backend("onnxruntime")
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path / "build")
    ctx.workdir.mkdir(parents=True)
    return backend.build(model, [((x,), {})], ctx), model, x, ctx


@pytest.fixture
def stored(tmp_path: Path) -> tuple[BuildCache, str, torch.nn.Module, torch.Tensor, BuildContext]:
    built, model, x, ctx = _onnx_build(tmp_path)
    cache = BuildCache(tmp_path / "cache")
    key = "ab" + "0" * 62
    assert cache.store(key, get_backend("onnxruntime"), built, ctx, "", replace=False) > 0
    return cache, key, model, x, ctx


def test_a_stored_build_loads_and_computes_the_same(stored, tmp_path: Path) -> None:
    cache, key, model, x, _ = stored
    entry = json.loads((cache.entry_dir(key) / "entry.json").read_text())
    assert entry["schema_version"] == 1 and entry["backend"] == "onnxruntime" and entry["key"] == key
    ctx = BuildContext(device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path / "load")
    loaded = cache.load(key, get_backend("onnxruntime"), model, ctx)
    torch.testing.assert_close(loaded(x), model(x))
    assert not list((cache.root / "tmp").iterdir())  # nothing half-written is left behind


def test_a_corrupt_entry_is_discarded_with_a_line_and_never_raises(stored, tmp_path: Path) -> None:
    cache, key, model, _, ctx = stored
    (cache.entry_dir(key) / "entry.json").write_text("{not json")
    lines: list[str] = []
    keys = _FixedKeys(key)
    builds = FixtureBuilds(cache, keys, read=True, progress=lines.append, label="tune_x")  # type: ignore[arg-type]

    assert builds("onnxruntime", "", model, ctx) is None

    assert lines == [
        f"tune_x · onnxruntime: build cache entry {key[:12]} is unusable (its entry.json cannot be read "
        "(JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 (char 1))); "
        "discarded, building instead"
    ]
    assert not cache.entry_dir(key).exists()


def test_the_least_recently_used_entries_go_first(stored, tmp_path: Path) -> None:
    cache, key, model, x, ctx = stored
    built, *_ = _onnx_build(tmp_path / "second")
    newer = "cd" + "0" * 62
    cache.store(newer, get_backend("onnxruntime"), built, ctx, "", replace=False)
    old = time.time() - 3600
    os.utime(cache.entry_dir(key) / "entry.json", (old, old))
    size = max(e.size_bytes for e in cache.entries())

    removed = cache.prune(max_bytes=size)

    assert [e.key for e in removed] == [key]
    assert cache.has(newer) and not cache.has(key)


class _FixedKeys:
    def __init__(self, key: str) -> None:
        self._key = key

    def key(self, backend: str, module: str = "", dynamic_axes: object = None) -> str:
        return self._key


# --- the reason it exists: one real AOTInductor compile, then a load ----------------------------


def test_a_warm_aoti_build_loads_many_times_faster_than_it_compiles(tmp_path: Path) -> None:
    def spec() -> TuneSpec:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 4))
        return TuneSpec(
            model=model, samples=[torch.randn(4, 16)], backends=["eager", "aoti"], device="cpu", strategy="min-latency"
        )

    def run(read: bool) -> tuple[object, list[str]]:
        s, lines = spec(), []
        builds = FixtureBuilds(
            BuildCache(tmp_path / "cache"),
            BuildKeys(s.model, s.dtype, s.normalized_samples, s.resolved_device),
            read=read,
            progress=lines.append,
            label="tune_mlp",
        )
        result = tune(s, cached=builds, progress=lines.append)
        builds.store_new(result.runtime)
        return result.backend("aoti"), lines

    cold, cold_lines = run(read=True)
    warm, warm_lines = run(read=True)

    assert cold.status == "ok" and cold.reused is None
    assert any("stored aoti in the build cache" in line for line in cold_lines)
    assert warm.status == "ok" and warm.reused == "cache"
    assert any("aoti: loaded from the build cache in" in line for line in warm_lines)
    assert not any("aoti: building" in line for line in warm_lines)
    assert warm.build_s < cold.build_s / 5, (cold.build_s, warm.build_s)


# --- relative mode: the base loads the nightly's committed artifact ------------------------------


def test_the_base_loads_the_nightlys_committed_artifact_pinned_by_its_baseline(tmp_path: Path) -> None:
    from aitune_ci.check import BaseSide, CheckOptions, FixtureCheck
    from aitune_ci.config import RepoConfig

    def spec(tolerance: Tolerance | None = None) -> TuneSpec:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU()).eval()
        return TuneSpec(
            model=model,
            samples=[torch.randn(4, 16)],
            backends=["eager", "onnxruntime"],
            device="cpu",
            strategy="one-backend",
            tolerance=tolerance,
        )

    def check(options: CheckOptions, head: TuneSpec, base: BaseSide | None = None) -> tuple[FixtureCheck, list[str]]:
        lines: list[str] = []
        names = ["eager", "onnxruntime"]
        fixture = FixtureCheck("tune_x", head, names, set(names), options, RepoConfig(), lines.append, base=base)
        fixture.run()
        assert fixture.error is None, fixture.error
        return fixture, lines

    nightly = tmp_path / "base-checkout" / ".aitune"  # what the base commit's checkout holds
    cache = str(tmp_path / "buildcache")
    check(CheckOptions(directory=nightly, update=True, measure_seconds=0.2, cache_dir=cache), spec())
    assert list(nightly.glob("artifacts/*/tune_x.ait"))
    # The PR loosens the tolerance: other work than the base's (so the base is tuned), same builds.
    looser = Tolerance(atol=1e-3, rtol=1e-3)

    # A head that builds gets a base that builds: a pair never mixes a loaded build with a fresh one.
    _, lines = check(
        CheckOptions(directory=tmp_path / "head" / ".aitune", measure_seconds=0.2, cache_dir="off"),
        spec(looser),
        base=BaseSide(spec(), "main (abc)", directory=nightly),
    )
    assert any(line.startswith("base · tune_x: tuned in") for line in lines), lines
    assert not any("committed artifact" in line for line in lines), lines

    # A head that loads its build (from the runner's build cache, which the nightly filled) gets a
    # base that loads the base's committed artifact.
    pr, lines = check(
        CheckOptions(directory=tmp_path / "head2" / ".aitune", measure_seconds=0.2, cache_dir=cache),
        spec(looser),
        base=BaseSide(spec(), "main (abc)", directory=nightly),
    )

    assert any(
        "onnxruntime loaded from the build cache" in line and line.startswith("tune_x: tuned in") for line in lines
    )
    assert "base · tune_x · onnxruntime: loading the nightly's committed artifact of the base" in lines
    assert any(
        line.startswith("base · tune_x: tuned in") and "onnxruntime loaded from the committed artifact" in line
        for line in lines
    ), lines
    assert pr.verdicts["onnxruntime"].mode == "relative"
    # The loaded build's payload lived in the load's temporary folder, so its load is timed on the
    # committed artifact it came from, not saved again (that failed: the folder was gone).
    assert not any("artifact load not timed" in line for line in lines), lines
    assert any(
        line.startswith("base · tune_x · onnxruntime: artifact loads in")
        and line.endswith("(the committed artifact it was loaded from)")
        for line in lines
    ), lines
