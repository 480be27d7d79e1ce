"""The .ait artifact: layout, integrity and safety checks, environments, trust, spec hash, reuse."""

from __future__ import annotations

import ast
import copy
import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
import torch

import aitune_ci as ait
from aitune_ci.backends.base import BuildContext
from aitune_ci.backends.registry import fingerprint, get_backend
from aitune_ci.engine import TuneRuntime
from aitune_ci.environment import CPU_FEATURES
from aitune_ci.errors import ArtifactError
from aitune_ci.measure import MeasureConfig
from aitune_ci.result import BackendResult, TuneResult
from aitune_ci.store.artifact import (
    WEIGHTS_MEMBER,
    ArtifactLimits,
    ArtifactWarning,
    LoadedArtifact,
    artifact_sha256,
    format_manifest,
    inspect_artifact,
    load,
    save,
    spec_hash,
)
from aitune_ci.store.artifact.safety import check_member_name
from aitune_ci.store.artifact.saving import save_for_load_timing

FAST = MeasureConfig(
    min_rounds=1, max_rounds=1, target_round_s=0.002, max_total_s=0.1, warmup_min_iters=1, warmup_max_s=0.02,
    bootstrap_resamples=20,
)  # fmt: skip


class TiedMLP(torch.nn.Module):
    """Input and output projections sharing one weight, as tied embeddings do."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(16, 16, bias=False)
        self.out = torch.nn.Linear(16, 16)
        self.out.weight = self.inp.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.inp(x)))


def _fresh(model: torch.nn.Module) -> torch.nn.Module:
    """A new instance of the model's class with different (random) weights: what a user passes to load."""
    torch.manual_seed(1234)
    return type(model)().eval()


def _spec(model: torch.nn.Module, tiny_input: torch.Tensor, **overrides) -> ait.TuneSpec:
    fields = dict(model=model, samples=[tiny_input, torch.ones(7, 16)], backends=["eager"], device="cpu")
    fields.update(overrides)
    return ait.TuneSpec(**fields)


@pytest.fixture(scope="module")
def tuned(tiny_mlp, tiny_input):
    spec = _spec(copy.deepcopy(tiny_mlp), tiny_input, name="tune_tiny")
    return spec, ait.tune(spec, measure_config=FAST, progress=None)


@pytest.fixture(scope="module")
def artifact(tuned, tmp_path_factory):
    spec, result = tuned
    path = tmp_path_factory.mktemp("art") / "tune_tiny.ait"
    return save(result, path, spec_hash=spec_hash(spec, ["eager"], result.environment))


def _members(path: Path) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(path) as zf:
        data = {n: zf.read(n) for n in zf.namelist()}
    return json.loads(data.pop("manifest.json")), data


def _write(path: Path, manifest: dict, members: dict[str, bytes], *, rehash: bool = True) -> Path:
    """Write an archive by hand; with ``rehash``, the manifest's member table is made to match."""
    if rehash:
        manifest["members"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in members.items()}
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _x() -> torch.Tensor:
    torch.manual_seed(5)
    return torch.randn(5, 16)


# --- layout ---------------------------------------------------------------------------------


def test_save_writes_manifest_weights_and_a_sha256_for_every_member(artifact, tuned):
    manifest, members = _members(artifact.path)
    assert manifest["schema_version"] == 1
    assert manifest["fixture"] == "tune_tiny"
    assert [(m["module"], m["backend"]) for m in manifest["modules"]] == [("", "eager")]
    assert set(manifest["members"]) == set(members) == {WEIGHTS_MEMBER}
    for name, data in members.items():
        assert manifest["members"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    from safetensors.torch import load as load_safetensors

    weights = load_safetensors(members[WEIGHTS_MEMBER])
    for name, tensor in tuned[1].runtime.model.state_dict().items():
        assert torch.equal(weights[name], tensor)
    assert manifest["input_signature"][1] == [{"path": "args.0", "shape": [7, 16], "dtype": "float32"}]
    assert manifest["dynamic_axes"] == {"args.0": {"0": "batch"}}
    assert manifest["environment"]["torch"] == torch.__version__
    assert artifact.sha256 == hashlib.sha256(artifact.path.read_bytes()).hexdigest() == artifact_sha256(artifact.path)


def test_load_gives_a_module_with_the_tuned_outputs_bit_for_bit(artifact, tuned, tiny_mlp):
    model = _fresh(tiny_mlp)
    loaded = load(artifact.path, model, expected_sha256=artifact.sha256)
    assert isinstance(loaded, LoadedArtifact) and isinstance(loaded, torch.nn.Module)
    x = _x()
    assert torch.equal(loaded(x), tuned[1].runtime.built["eager"](x))
    assert loaded.backends == {"": "eager"}
    assert loaded.sha256 == artifact.sha256


def test_an_artifact_for_load_timing_loads_the_same_without_a_spec_hash(artifact, tuned, tiny_mlp, tmp_path):
    # A check writes one only to time its load: the spec hash (a digest of every weight and of the
    # user's code, matched only for reuse) buys nothing there.
    scratch = save_for_load_timing(tuned[1], tmp_path / "tune_tiny.ait")

    manifest, members = _members(scratch.path)
    assert manifest["spec_hash"] is None and _members(artifact.path)[0]["spec_hash"] == artifact.spec_hash
    assert members == _members(artifact.path)[1]
    loaded = load(scratch.path, _fresh(tiny_mlp), expected_sha256=scratch.sha256)
    assert torch.equal(loaded(_x()), tuned[1].runtime.built["eager"](_x()))


def test_tied_weights_are_stored_once_and_come_back_tied(tiny_input, tmp_path):
    torch.manual_seed(0)
    model = TiedMLP().eval()
    result = ait.tune(_spec(model, tiny_input), measure_config=FAST, progress=None)
    info = save(result, tmp_path / "tied.ait")
    manifest, members = _members(info.path)
    assert manifest["weights"]["aliases"] == {"out.weight": "inp.weight"}
    from safetensors.torch import load as load_safetensors

    assert set(load_safetensors(members[WEIGHTS_MEMBER])) == {"inp.weight", "out.bias"}
    fresh = _fresh(model)
    loaded = load(info.path, fresh)
    x = _x()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert fresh.out.weight is fresh.inp.weight


def test_a_failed_save_leaves_the_previous_artifact_and_no_temporary_file(tuned, tmp_path):
    _, result = tuned
    target = tmp_path / "keep.ait"
    target.write_bytes(b"previous artifact")
    broken = copy.copy(result.runtime)
    broken.model = TiedMLP()  # a state tensor that is a subclass cannot be stored: save refuses mid-way
    broken.model.register_buffer("odd", torch.zeros(1).as_subclass(_OddTensor))
    with pytest.raises(ArtifactError, match="plain tensors"):
        save(_with_runtime(result, broken), target)
    assert target.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.ait"]


class _OddTensor(torch.Tensor):
    pass


def _with_runtime(result: TuneResult, runtime: TuneRuntime) -> TuneResult:
    import dataclasses

    return dataclasses.replace(result, runtime=runtime)


def test_save_of_a_result_read_from_json_says_to_save_right_after_tune(tuned, tmp_path):
    result = TuneResult.from_json(tuned[1].to_json())
    with pytest.raises(ArtifactError, match="right after ait.tune"):
        save(result, tmp_path / "x.ait")


def test_save_of_a_backend_that_was_not_built_names_its_status(tuned, tmp_path):
    with pytest.raises(ArtifactError, match="'onnxruntime'.*was not built"):
        save(tuned[1], tmp_path / "x.ait", backend="onnxruntime")


# --- integrity ------------------------------------------------------------------------------


def test_a_sha256_other_than_the_baselines_is_refused_with_both_and_the_update_command(artifact, tiny_mlp):
    recorded = "0" * 64
    with pytest.raises(ArtifactError) as err:
        load(artifact.path, _fresh(tiny_mlp), expected_sha256=recorded)
    text = str(err.value)
    assert artifact.sha256 in text and recorded in text
    assert "pytest --aitune --aitune-update --aitune-fixtures tune_tiny" in text


def test_unknown_schema_version_says_to_upgrade_or_rebuild(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    manifest["schema_version"] = 2
    path = _write(tmp_path / "v2.ait", manifest, members)
    with pytest.raises(
        ArtifactError,
        match=r"schema_version 2 .*reads 1.*upgrade aitune-ci.*--aitune-update --aitune-fixtures tune_tiny",
    ):
        load(path, _fresh(tiny_mlp))


@pytest.mark.parametrize("keep", [0, 10, 100, 0.5, -22])
def test_a_truncated_file_is_a_clear_error(artifact, tiny_mlp, tmp_path, keep):
    data = artifact.path.read_bytes()
    cut = int(len(data) * keep) if isinstance(keep, float) else (keep if keep >= 0 else len(data) + keep)
    path = tmp_path / "cut.ait"
    path.write_bytes(data[:cut])
    with pytest.raises(ArtifactError, match="truncated or corrupt"):
        load(path, _fresh(tiny_mlp))


@pytest.mark.parametrize("pinned", [False, True])
def test_an_lfs_pointer_or_a_folder_is_called_what_it_is(artifact, tiny_mlp, tmp_path, pinned):
    """Both read "truncated or corrupt" (and a pinned pointer, "changed or replaced"), with no fix."""
    pointer = tmp_path / "tune_tiny.ait"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:" + "a" * 64 + "\nsize 1234\n")
    pin = artifact.sha256 if pinned else None
    with pytest.raises(ArtifactError, match=r"a Git LFS pointer, not the artifact: .*git lfs pull"):
        load(pointer, _fresh(tiny_mlp), expected_sha256=pin)
    with pytest.raises(ArtifactError, match=r"a folder, not a \.ait file"):
        load(tmp_path, _fresh(tiny_mlp))


def test_an_artifact_saved_from_code_is_not_rebuilt_as_a_fixture():
    from aitune_ci.store.artifact.safety import rebuild_hint

    assert rebuild_hint("tune_tiny") == "rebuild it with `pytest --aitune --aitune-update --aitune-fixtures tune_tiny`"
    assert "--aitune-fixtures" not in rebuild_hint("MLP") and "ait.save(ait.tune(...), path)" in rebuild_hint("MLP")


def test_a_call_the_backend_refuses_says_what_the_artifact_was_built_for(artifact, tiny_mlp, tiny_input):
    """Backends answer a wrong input in their own words (onnxruntime's "Unexpected input data type", a
    C++ frame from a package); the error keeps its type and gains what the artifact expects."""
    served = load(artifact.path, _fresh(tiny_mlp))
    wrong = torch.zeros(*tiny_input.shape[:-1], tiny_input.shape[-1] + 3)
    with pytest.raises(RuntimeError) as err:
        served(wrong)
    note = "\n".join(getattr(err.value, "__notes__", []))
    assert "aitune-ci: this artifact (tune_tiny [(whole model): eager]" in note
    assert "sample 0: " in note and f"float32{list(tiny_input.shape)}" in note, note
    assert "a call with another dtype, rank, device or keyword fails in the backend" in note
    assert torch.equal(served(tiny_input), served(tiny_input))  # a good call is untouched


def test_a_missing_file_says_how_to_rebuild_it(tiny_mlp, tmp_path):
    with pytest.raises(ArtifactError, match="no such artifact.*--aitune-update --aitune-fixtures tune_gone"):
        load(tmp_path / "tune_gone.ait", _fresh(tiny_mlp))


def test_a_file_not_named_as_an_artifact_names_no_fixture(tiny_mlp, tmp_path):
    """``aitune-ci inspect pyproject.toml`` suggested ``--aitune-fixtures pyproject``."""
    path = tmp_path / "pyproject.toml"
    path.write_text("[tool.aitune]\n")
    with pytest.raises(
        ArtifactError, match=r"\.aitune/artifacts/<hardware>/<fixture>\.ait.*--aitune-fixtures <fixture>"
    ):
        inspect_artifact(path)
    run = tmp_path / "run.json"
    run.write_text('{"schema_version": 1, "results": []}')
    with pytest.raises(ArtifactError, match=r"run.json: a JSON file \(a run, baseline or history\?\), not a \.ait"):
        inspect_artifact(run)
    with pytest.raises(ArtifactError, match=r"no such artifact; artifacts are"):
        load(tmp_path / "typo.ait", _fresh(tiny_mlp))


def test_a_member_whose_bytes_differ_from_its_sha256_is_refused(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    weights = bytearray(members[WEIGHTS_MEMBER])
    weights[-1] ^= 0xFF
    members[WEIGHTS_MEMBER] = bytes(weights)
    path = _write(tmp_path / "tampered.ait", manifest, members, rehash=False)
    with pytest.raises(ArtifactError, match=r"weights/model.safetensors.*sha256.*tampered"):
        load(path, _fresh(tiny_mlp))


def test_a_member_missing_from_the_manifest_is_refused(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    path = _write(tmp_path / "extra.ait", manifest, members)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("modules/9/extra.bin", b"unlisted")
    with pytest.raises(ArtifactError, match="not in the manifest"):
        load(path, _fresh(tiny_mlp))


# --- safety ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["../evil", "a/../../evil", "/etc/passwd", "C:/x", "c:evil", "\\\\server\\share", "a\\b", "a//b", "./a", "a/",
     "", "..", "a/.", "evil\x00.txt", "é", ".hidden", "a" * 600],
)  # fmt: skip
def test_unsafe_member_names_are_refused(name):
    with pytest.raises(ArtifactError):
        check_member_name(name)


@pytest.mark.parametrize("name", ["manifest.json", "weights/model.safetensors", "modules/0/model.pt2", "a/b-c_d+e.f"])
def test_ordinary_member_names_pass(name):
    assert check_member_name(name) == name


def test_a_traversal_member_is_refused_and_nothing_is_written_outside(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    members["../../escaped.txt"] = b"owned"
    path = _write(tmp_path / "t.ait", manifest, members)
    with pytest.raises(ArtifactError, match="path traversal"):
        load(path, _fresh(tiny_mlp))
    assert not (tmp_path.parent.parent / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_a_symlink_member_is_refused(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    path = _write(tmp_path / "link.ait", manifest, members)
    with zipfile.ZipFile(path, "a") as zf:
        info = zipfile.ZipInfo("modules/0/link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="symbolic link"):
        load(path, _fresh(tiny_mlp))


def test_a_zip_bomb_is_refused_from_its_declared_sizes(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    members["modules/0/zeros.bin"] = bytes(4 * 2**20)  # deflates to a few KiB
    path = tmp_path / "bomb.ait"
    _write(path, manifest, members)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:  # rewrite compressed
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(ArtifactError, match="zip bomb"):
        load(path, _fresh(tiny_mlp), limits=ArtifactLimits(max_total_bytes=2**20))


def _patch_uncompressed_size(data: bytearray, name: str, size: int) -> int:
    """Rewrite ``name``'s uncompressed size in its local and central headers; return how many were patched."""
    patched = 0
    # (signature, offset of the size field, offset of the name-length field, header length)
    for signature, size_at, name_len_at, header in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        at = data.find(signature)
        while at >= 0:
            length = int.from_bytes(data[at + name_len_at : at + name_len_at + 2], "little")
            if data[at + header : at + header + length] == name.encode():
                data[at + size_at : at + size_at + 4] = size.to_bytes(4, "little")
                patched += 1
            at = data.find(signature, at + 4)
    return patched


def test_a_header_that_understates_a_size_gains_nothing(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    path = _write(tmp_path / "liar.ait", manifest, members)
    manifest["members"][WEIGHTS_MEMBER]["size"] = 16  # the manifest lies along with the headers
    data = bytearray(_write(tmp_path / "liar.ait", manifest, members, rehash=False).read_bytes())
    assert _patch_uncompressed_size(data, WEIGHTS_MEMBER, 16) == 2
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="more bytes than its header declares|corrupt"):
        load(path, _fresh(tiny_mlp))


def test_too_many_members_are_refused(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    for i in range(40):
        members[f"modules/0/f{i}"] = b"x"
    path = _write(tmp_path / "many.ait", manifest, members)
    with pytest.raises(ArtifactError, match="more than the limit of 32"):
        load(path, _fresh(tiny_mlp), limits=ArtifactLimits(max_members=32))


def test_loading_code_holds_no_pickle_and_no_unsafe_torch_load():
    """Static check of every artifact module: no pickle/dill/marshal, torch.load only with weights_only=True."""
    import aitune_ci.store.artifact as artifact_package

    files = sorted(Path(artifact_package.__file__).parent.rglob("*.py"))
    assert len(files) > 2, files
    for file in files:
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not {n.split(".")[0] for n in names if n} & {
                    "pickle",
                    "dill",
                    "marshal",
                    "shelve",
                    "cloudpickle",
                }
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                owner = ast.unparse(node.func.value)
                if owner == "torch":
                    kw = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert kw.get("weights_only") == "True", ast.unparse(node)


# --- model and environment ------------------------------------------------------------------


def test_a_model_of_another_shape_is_refused_with_the_difference(artifact):
    from tiny_models import TinyMLP

    with pytest.raises(
        ArtifactError, match=r"'fc1.weight' is float32\[64, 16\] here, float32\[32, 16\] in the artifact"
    ):
        load(artifact.path, TinyMLP(d_hidden=64))


def _as_aoti(manifest: dict, members: dict[str, bytes]) -> None:
    """Dress the eager entry up as an AOTInductor one (its package is junk: it must never be reached)."""
    entry = manifest["modules"][0]
    entry.update(
        backend="aoti", options={}, ahead_of_time=True, payload_is_device_specific=True, executes_code=True,
        files=["modules/0/model.pt2"], meta={"file": "model.pt2", "dynamic_axes": {}, "dim_mode": "static"},
    )  # fmt: skip
    members["modules/0/model.pt2"] = b"not really a package"


def test_a_device_specific_payload_from_another_gpu_and_torch_is_refused_with_both_environments(
    artifact, tiny_mlp, tmp_path
):
    manifest, members = _members(artifact.path)
    _as_aoti(manifest, members)
    manifest["environment"].update(hardware_key="NVIDIA-H100-80GB-HBM3", torch="2.11.0+cu130", cuda="13.0")
    path = _write(tmp_path / "gpu.ait", manifest, members)
    with pytest.raises(ArtifactError) as err:
        load(path, _fresh(tiny_mlp), trusted=True)
    text = str(err.value)
    assert "'aoti'" in text and "compiled for one device" in text
    assert "NVIDIA-H100-80GB-HBM3" in text and torch.__version__ in text and "2.11.0+cu130" in text
    assert f"`aitune-ci inspect {path}` shows the environment it was built in" in text
    assert "--aitune-update --aitune-fixtures tune_tiny" in text
    assert len(text) < 800, text  # the differences and the fix, not two whole environments (1,341 characters)


def test_a_cpu_package_built_for_features_this_cpu_lacks_is_refused_before_it_runs(artifact, tiny_mlp, tmp_path):
    """One hardware key, two instruction sets: clouds name both CPUs "AMD EPYC", and an AOTInductor
    package built where AVX-512 exists dies of SIGILL (taking pytest with it) where it does not."""
    manifest, members = _members(artifact.path)
    _as_aoti(manifest, members)
    here = (manifest["environment"]["cpu_features"] or "").split()
    lacking = sorted(f for f in CPU_FEATURES if f not in here)
    manifest["environment"]["cpu_features"] = " ".join(here + lacking)
    path = _write(tmp_path / "avx512.ait", manifest, members)
    with pytest.raises(ArtifactError) as err:
        load(path, _fresh(tiny_mlp), trusted=True)
    text = str(err.value)
    assert f"this CPU lacks {', '.join(lacking)}, so its code would die of an illegal instruction" in text
    assert "compiled for one device" in text and "--aitune-update --aitune-fixtures tune_tiny" in text


def test_a_portable_payload_from_a_cpu_with_other_features_loads_with_a_warning(artifact, tuned, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    manifest["environment"].update(cpu_features="avx512f avx512_bf16 sve2", cpu_capability="AVX512-elsewhere")
    path = _write(tmp_path / "other_cpu.ait", manifest, members)
    with pytest.warns(
        ArtifactWarning, match=r"cpu_capability: artifact 'AVX512-elsewhere', here .*cpu_features: artifact"
    ):
        loaded = load(path, _fresh(tiny_mlp))
    x = _x()
    assert torch.equal(loaded(x), tuned[1].runtime.built["eager"](x))


def test_a_portable_payload_from_another_torch_loads_with_a_warning(artifact, tuned, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    manifest["environment"].update(torch="2.99.0", hardware_key="NVIDIA-H100-80GB-HBM3")
    path = _write(tmp_path / "other.ait", manifest, members)
    with pytest.warns(
        ArtifactWarning, match=r"torch: artifact '2.99.0', here '" + torch.__version__.replace("+", r"\+")
    ):
        loaded = load(path, _fresh(tiny_mlp))
    x = _x()
    assert torch.equal(loaded(x), tuned[1].runtime.built["eager"](x))


def test_executable_payload_needs_a_pin_or_trust(artifact, tiny_mlp, tmp_path):
    manifest, members = _members(artifact.path)
    _as_aoti(manifest, members)
    path = _write(tmp_path / "code.ait", manifest, members)
    with pytest.raises(ArtifactError, match="executable code.*expected_sha256"):
        load(path, _fresh(tiny_mlp))
    # Pinned, the checks pass and the (junk) package reaches the AOTInductor loader, which fails cleanly.
    with pytest.raises(ArtifactError, match="backend 'aoti' could not load the payload"):
        load(path, _fresh(tiny_mlp), expected_sha256=artifact_sha256(path))


def test_a_failed_load_leaves_no_extracted_files(artifact, tiny_mlp, tmp_path, monkeypatch):
    import tempfile

    sandbox = tmp_path / "tmp"
    sandbox.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sandbox))
    manifest, members = _members(artifact.path)
    _as_aoti(manifest, members)
    path = _write(tmp_path / "code.ait", manifest, members)
    with pytest.raises(ArtifactError):
        load(path, _fresh(tiny_mlp), trusted=True)
    assert list(sandbox.iterdir()) == []


# --- inspect, spec hash, reuse --------------------------------------------------------------


def test_inspect_returns_the_validated_manifest_and_format_prints_it(artifact):
    manifest = inspect_artifact(artifact.path)
    text = format_manifest(manifest, sha256=artifact.sha256, path=artifact.path)
    assert manifest["modules"][0]["backend"] == "eager"
    for expected in ("tune_tiny", artifact.sha256, "(whole model)", "eager", "args.0 float32[4, 16]", "dim 0=batch",
                     f"torch={torch.__version__}", WEIGHTS_MEMBER, "1 file,"):  # fmt: skip
        assert expected in text, expected


def test_spec_hash_is_stable_and_moves_with_what_changes_the_build(tiny_mlp, tiny_input):
    from tiny_models import TinyMLP

    env = {"hardware_key": "cpu-x", "torch": "2.13.0", "cpu_count": 2}
    base = _spec(copy.deepcopy(tiny_mlp), tiny_input, name="a")
    h = spec_hash(base, ["eager"], env)
    assert spec_hash(_spec(copy.deepcopy(tiny_mlp), tiny_input, name="b"), ["eager"], env) == h  # renaming: same
    assert spec_hash(base, ["eager"], {**env, "cpu_count": 64}) == h  # same hardware, bigger runner: same
    other_card = {**env, "gpu_index": 0, "gpu_physical_index": "1", "gpu_uuid": "GPU-67e0b991", "cpus_usable": 16}
    assert spec_hash(base, ["eager"], other_card) == h  # the twin GPU and CPU share of another xdist worker: same
    other_weights = copy.deepcopy(tiny_mlp)
    with torch.no_grad():
        other_weights.fc1.bias.add_(1)
    changed = {
        "torch version": spec_hash(base, ["eager"], {**env, "torch": "2.14.0"}),
        "backends": spec_hash(base, ["eager", "inductor"], env),
        "parameter shapes": spec_hash(_spec(TinyMLP(d_hidden=64), tiny_input), ["eager"], env),
        "sample signature": spec_hash(_spec(copy.deepcopy(tiny_mlp), torch.randn(3, 16)), ["eager"], env),
        "weights": spec_hash(_spec(other_weights, tiny_input), ["eager"], env),
        "strategy": spec_hash(_spec(copy.deepcopy(tiny_mlp), tiny_input, strategy="first-wins"), ["eager"], env),
    }
    for what, value in changed.items():
        assert value is True or (isinstance(value, str) and value != h), what


def test_spec_hash_moves_with_the_cpus_instruction_set_only_where_the_model_runs_on_the_cpu(tiny_mlp, tiny_input):
    spec = _spec(copy.deepcopy(tiny_mlp), tiny_input)
    for device_type, moves in (("cpu", True), ("cuda", False)):
        env = {
            "hardware_key": "x",
            "device_type": device_type,
            "cpu_capability": "AVX512",
            "cpu_features": "avx2 avx512f",
        }
        other_host = {**env, "cpu_capability": "AVX2", "cpu_features": "avx2"}
        assert (spec_hash(spec, ["eager"], env) != spec_hash(spec, ["eager"], other_host)) is moves, device_type


def test_spec_hash_ignores_the_in_place_dtype_conversion_of_a_tune(tiny_mlp, tiny_input):
    model = copy.deepcopy(tiny_mlp)
    spec = _spec(model, tiny_input, dtype=torch.bfloat16)
    before = spec_hash(spec, ["eager"], {"torch": "x"})
    model.to(torch.bfloat16)  # what ait.tune does to spec.model
    assert spec_hash(spec, ["eager"], {"torch": "x"}) == before


def test_the_manifest_records_the_spec_hash_that_reuse_matches_on(artifact, tmp_path):
    """Reuse reads only the manifest and compares its spec hash; a broken file is an ArtifactError, not a crash."""
    assert artifact.spec_hash is not None
    assert inspect_artifact(artifact.path, verify=False)["spec_hash"] == artifact.spec_hash
    broken = tmp_path / "broken.ait"
    broken.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ArtifactError):
        inspect_artifact(broken, verify=False)


# --- module mixtures --------------------------------------------------------------------------


def _hand_built_result(model, tmp_path, entries, *, name: str, winner: str, module_choice) -> TuneResult:
    """A TuneResult as ``ait.tune`` leaves it, built by hand: ``entries`` is ``(module, backend)``
    pairs ("" for the whole model), each built for real on the tiny MLP's input at that module."""
    runtime = TuneRuntime(model=model, samples=[((_x(),), {})], dynamic_axes={})
    rows = []
    for module, backend_name in entries:
        backend = get_backend(backend_name)
        ok, reason = backend.available("cpu")
        if not ok:
            pytest.skip(f"{backend_name}: {reason}")
        ctx = BuildContext(
            device=torch.device("cpu"),
            dtype=torch.float32,
            workdir=tmp_path / f"{module or 'whole'}-{backend_name}",
            options=backend.options,
        )
        target = model.get_submodule(module) if module else model
        sample = torch.randn(4, 32 if module == "fc2" else 16)
        key = f"{module}/{backend_name}" if module else backend_name
        runtime.built[key] = backend.build(target, [((sample,), {})], ctx)
        runtime.backends[key], runtime.contexts[key] = backend, ctx
        rows.append(BackendResult(backend=backend_name, status="ok", module=module))
    return TuneResult(
        name=name, strategy="min-latency", device="cpu", backends=tuple(rows), winner=winner, winner_reason="",
        environment=fingerprint("cpu"), spec={"dtype": "float32"}, module_choice=module_choice, runtime=runtime,
    )  # fmt: skip


def test_a_module_mixture_comes_back_as_the_same_mixture(tiny_mlp, tmp_path):
    """fc1 on eager-bf16 (rebuilt on load) and fc2 on torchao int8 (recipe re-applied): the mixed model."""
    model = copy.deepcopy(tiny_mlp)
    x = _x()
    choice = {"fc1": "eager-bf16", "fc2": "torchao-int8wo"}
    result = _hand_built_result(model, tmp_path, choice.items(), name="tune_mix", winner="mixed", module_choice=choice)
    runtime = result.runtime
    info = save(result, tmp_path / "mix.ait")
    assert info.modules == {"fc1": "eager-bf16", "fc2": "torchao-int8wo"}
    with torch.inference_mode():
        expected = runtime.built["fc2/torchao-int8wo"](model.act(runtime.built["fc1/eager-bf16"](x)))
    user_model = _fresh(tiny_mlp)
    loaded = load(info.path, user_model)
    assert torch.equal(loaded(x), expected)
    assert (
        type(user_model.fc1) is torch.nn.Linear and type(user_model.fc2) is torch.nn.Linear
    )  # the user's tree is intact
    assert loaded.backends == {"fc1": "eager-bf16", "fc2": "torchao-int8wo"}
    assert "fc2: torchao-int8wo" in repr(loaded)


def test_a_whole_model_winner_is_saved_although_submodules_were_tuned(tiny_mlp, tmp_path):
    """With modules=[...] each part's choice is recorded whether or not the mixture won. When a
    whole-model backend won, the artifact holds that backend: it once held the losing mixture
    under the winner's name, so a PR's base timed the mixture as "inductor" (IMPROVED -12% on
    unchanged code, examples/gpu-repo on this CPU)."""
    model = copy.deepcopy(tiny_mlp)
    x = _x()
    choice = {"fc1": "eager-bf16", "fc2": "eager"}
    entries = [("", "eager"), *choice.items()]
    result = _hand_built_result(model, tmp_path, entries, name="tune_whole", winner="eager", module_choice=choice)
    info = save(result, tmp_path / "whole.ait")
    assert info.modules == {"": "eager"}
    loaded = load(info.path, _fresh(tiny_mlp))
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))  # fp32 eager, not the bf16 fc1 of the mixture


def test_format_manifest_reads_a_stream_written_manifest(artifact):
    with zipfile.ZipFile(io.BytesIO(artifact.path.read_bytes())) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert "tune_tiny" in format_manifest(manifest)
