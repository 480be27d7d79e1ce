"""Hostile and broken .ait files, made here by the hundred: each ends in an ArtifactError, never a crash.

Every case is loaded with extraction redirected into a sandbox folder; after each case the sandbox
must be empty again (nothing left behind on failure) and no file may appear outside it (no
traversal, no absolute path, no write beside the artifact).
"""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import random
import stat
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import aitune_ci as ait
from aitune_ci.errors import ArtifactError
from aitune_ci.measure import MeasureConfig
from aitune_ci.store.artifact import WEIGHTS_MEMBER, ArtifactLimits, load, save

FAST = MeasureConfig(
    min_rounds=1, max_rounds=1, target_round_s=0.002, max_total_s=0.1, warmup_min_iters=1, warmup_max_s=0.02,
    bootstrap_resamples=20,
)  # fmt: skip
SEED = 20261125
#: Names that would land outside the extraction folder (or anywhere absolute) if ever written.
ESCAPES = [
    "../escaped", "../../escaped", "a/../../escaped", "/tmp/aitune-fuzz-escaped", "C:/escaped", "C:escaped",
    "\\\\host\\share\\escaped", "..\\escaped", "a\\..\\..\\escaped", "./escaped", "a/./b", "a//b", "a/",
    "~/escaped", "..", ".", "modules/0/../../../escaped", "\u202eescaped", "escaped\x7f",
]  # fmt: skip
#: Manifest fields that may be null.
NULLABLE = {"spec_hash", "batch_axis", "winner"}
# Header fields: (name, offset in the local header, offset in the central header, size).
FIELDS = {"flags": (6, 8, 2), "method": (8, 10, 2), "crc": (14, 16, 4), "csize": (18, 20, 4), "usize": (22, 24, 4)}


@pytest.fixture(scope="module")
def original(tiny_mlp, tiny_input, tmp_path_factory):
    """A genuine eager artifact of the tiny MLP, its bytes, manifest, members and reference output."""
    spec = ait.TuneSpec(
        model=copy.deepcopy(tiny_mlp), samples=[tiny_input], backends=["eager"], device="cpu", name="tune_fuzz"
    )
    result = ait.tune(spec, measure_config=FAST, progress=None)
    info = save(result, tmp_path_factory.mktemp("orig") / "tune_fuzz.ait")
    with zipfile.ZipFile(info.path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    x = torch.randn(3, 16)
    with torch.inference_mode():
        reference = result.runtime.built["eager"](x)
    return {
        "bytes": info.path.read_bytes(),
        "manifest": manifest,
        "members": members,
        "x": x,
        "out": reference,
        "sha": info.sha256,
    }


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """Redirect every temporary folder into tmp_path/sandbox; yield a checker run after each case."""
    box = tmp_path / "sandbox"
    box.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(box))
    cases = tmp_path / "cases"
    cases.mkdir()

    def check() -> None:
        assert list(box.iterdir()) == [], "extraction left files behind"
        for name in ("escaped", "aitune-fuzz-escaped"):
            for root in (tmp_path, tmp_path.parent, Path("/tmp"), Path.cwd()):
                assert not (root / name).exists(), root / name
        assert all(p.suffix == ".ait" for p in cases.iterdir()), "load wrote beside the artifact"

    check.cases = cases  # type: ignore[attr-defined]
    return check


def _manifest_json(manifest: dict) -> bytes:
    return json.dumps(manifest).encode()


def _rehash(manifest: dict, members: dict[str, bytes]) -> dict:
    manifest = copy.deepcopy(manifest)
    manifest["members"] = {n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in members.items()}
    return manifest


def _zip(
    manifest: dict | bytes, members: dict[str, bytes], *, extra: Callable[[zipfile.ZipFile], None] | None = None
) -> bytes:
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("manifest.json", manifest if isinstance(manifest, bytes) else _manifest_json(manifest))
        for name, data in members.items():
            zf.writestr(name, data)
        if extra is not None:
            extra(zf)
    return buffer.getvalue()


def _patch(data: bytes, member: str, field: str, value: int) -> bytes:
    """Set a header field of ``member`` to ``value`` in both its local and its central header."""
    out = bytearray(data)
    local_at, central_at, size = FIELDS[field]
    for signature, field_at, name_len_at, header in (
        (b"PK\x03\x04", local_at, 26, 30),
        (b"PK\x01\x02", central_at, 28, 46),
    ):
        at = out.find(signature)
        while at >= 0:
            length = int.from_bytes(out[at + name_len_at : at + name_len_at + 2], "little")
            if out[at + header : at + header + length] == member.encode():
                out[at + field_at : at + field_at + size] = value.to_bytes(size, "little")
            at = out.find(signature, at + 4)
    return bytes(out)


def _attempt(data: bytes, original: dict, sandbox, case: str, *, may_load: bool, **kwargs) -> None:
    """Load ``data``: it must raise ArtifactError, or (``may_load``) give the original's exact output."""
    path = sandbox.cases / f"{case}.ait"
    path.write_bytes(data)
    torch.manual_seed(99)
    model = type_of_model(original)()
    try:
        loaded = load(path, model, **kwargs)
    except ArtifactError as exc:
        assert str(exc), case
    else:
        assert may_load, f"{case}: a broken artifact loaded"
        assert torch.equal(loaded(original["x"]), original["out"]), f"{case}: loaded, but computes something else"
        del loaded
        gc.collect()  # its extraction folder goes with it
    finally:
        path.unlink()
    sandbox()


def type_of_model(original: dict) -> type:
    from tiny_models import TinyMLP

    return TinyMLP


# --- truncation and bit rot ---------------------------------------------------------------------


def test_every_truncation_is_refused(original, sandbox):
    data = original["bytes"]
    cuts = sorted({*range(0, len(data), max(1, len(data) // 60)), *range(len(data) - 30, len(data))})
    assert len(cuts) >= 80
    for cut in cuts:
        _attempt(data[:cut], original, sandbox, f"cut{cut}", may_load=False)


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_random_byte_flips_are_refused_or_harmless(original, sandbox, pinned):
    """Pinned, any change is refused (the file's sha256); unpinned, a change may only hit fields nothing reads."""
    rng = random.Random(SEED + pinned)
    data = original["bytes"]
    for i in range(150):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] ^= 1 << rng.randrange(8)
        expected = original["sha"] if pinned else None
        _attempt(bytes(mutated), original, sandbox, f"flip{i}", may_load=not pinned, expected_sha256=expected)


def test_random_byte_flips_inside_the_payloads_are_always_caught(original, sandbox):
    """Flips in member data (not headers) are caught by the CRC or the manifest's sha256, even unpinned."""
    rng = random.Random(SEED)
    data = original["bytes"]
    start = data.find(original["members"][WEIGHTS_MEMBER][:64])
    assert start > 0
    span = len(original["members"][WEIGHTS_MEMBER])
    for i in range(60):
        mutated = bytearray(data)
        mutated[start + rng.randrange(span)] ^= 1 << rng.randrange(8)
        _attempt(bytes(mutated), original, sandbox, f"payload{i}", may_load=False)


# --- hostile names and member types -------------------------------------------------------------


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "unlisted"])
def test_traversal_absolute_and_odd_names_are_refused(original, sandbox, listed):
    for i, name in enumerate(ESCAPES):
        members = {**original["members"], name: b"owned"}
        manifest = _rehash(original["manifest"], members) if listed else original["manifest"]
        _attempt(_zip(manifest, members), original, sandbox, f"name{i}", may_load=False)


def test_names_smuggled_into_module_entries_are_refused(original, sandbox):
    for i, name in enumerate(ESCAPES):
        manifest = copy.deepcopy(original["manifest"])
        manifest["modules"][0]["dir"] = name
        _attempt(_zip(manifest, original["members"]), original, sandbox, f"dir{i}", may_load=False)
        manifest = copy.deepcopy(original["manifest"])
        manifest["weights"]["file"] = name
        _attempt(_zip(manifest, original["members"]), original, sandbox, f"weights{i}", may_load=False)


def test_payload_file_names_in_backend_metadata_cannot_leave_the_folder(original, sandbox):
    for i, (backend, name) in enumerate([(b, n) for b in ("onnxruntime", "inductor") for n in ESCAPES[:8]]):
        manifest = copy.deepcopy(original["manifest"])
        entry = manifest["modules"][0]
        options = {"onnxruntime": {}, "inductor": {"mode": "default"}}[backend]
        entry.update(backend=backend, options=options, meta={"file": name, "mode": "default"})
        _attempt(_zip(manifest, original["members"]), original, sandbox, f"meta{i}", may_load=False, trusted=True)


def test_special_member_types_are_refused(original, sandbox):
    def member(mode: int, name: str = "modules/0/special", flags: int = 0) -> Callable[[zipfile.ZipFile], None]:
        def add(zf: zipfile.ZipFile) -> None:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.flag_bits |= flags
            zf.writestr(info, b"/etc/passwd")

        return add

    kinds = {
        "symlink": member(stat.S_IFLNK | 0o777),
        "fifo": member(stat.S_IFIFO | 0o644),
        "device": member(stat.S_IFCHR | 0o644),
        "directory": member(stat.S_IFDIR | 0o755, "modules/0/dir/"),
        "socket": member(stat.S_IFSOCK | 0o644),
    }
    for kind, add in kinds.items():
        _attempt(_zip(original["manifest"], original["members"], extra=add), original, sandbox, kind, may_load=False)


def test_duplicate_members_are_refused(original, sandbox):
    def duplicate(zf: zipfile.ZipFile) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
            zf.writestr(WEIGHTS_MEMBER, b"shadow")

    _attempt(_zip(original["manifest"], original["members"], extra=duplicate), original, sandbox, "dup", may_load=False)


@pytest.mark.parametrize(
    ("field", "value"),
    [("method", 99), ("method", 12), ("method", 14), ("flags", 0x1), ("flags", 0x41), ("crc", 0), ("csize", 0), ("csize", 2**32 - 1),
     ("usize", 0), ("usize", 16), ("usize", 2**32 - 1), ("usize", 2**31)],
)  # fmt: skip
def test_lying_or_unsupported_headers_are_refused(original, sandbox, field, value):
    for member in (WEIGHTS_MEMBER, "manifest.json"):
        data = _patch(original["bytes"], member, field, value)
        _attempt(
            data, original, sandbox, f"{field}{value}", may_load=True
        )  # refused, or harmless: sha256 vouches for the data


# --- bombs --------------------------------------------------------------------------------------


def test_zip_bombs_are_refused_before_they_inflate(original, sandbox):
    limits = ArtifactLimits(max_total_bytes=2**20, max_members=64, max_manifest_bytes=64 * 1024)
    zeros = bytes(8 * 2**20)
    big = {**original["members"], "modules/0/zeros.bin": zeros}
    cases = {
        "declared": _zip(_rehash(original["manifest"], big), big),
        "unlisted": _zip(original["manifest"], big),
        "many": _zip(original["manifest"], {**original["members"], **{f"modules/0/f{i}": b"" for i in range(100)}}),
        "manifest": _zip(b" " * (65 * 1024) + _manifest_json(original["manifest"]), original["members"]),
    }
    for case, data in cases.items():
        _attempt(data, original, sandbox, case, may_load=False, limits=limits)


def test_a_deflate_bomb_behind_an_understated_header_is_stopped_while_streaming(original, sandbox):
    """The central directory claims 100 bytes; the stream would inflate to 8 MiB: refused, nothing big written."""
    import io

    members = {**original["members"], "modules/0/zeros.bin": bytes(8 * 2**20)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("manifest.json", _manifest_json(_rehash(original["manifest"], members)))
        for name, data in members.items():
            zf.writestr(name, data)
    data = _patch(buffer.getvalue(), "modules/0/zeros.bin", "usize", 100)
    _attempt(data, original, sandbox, "stream-bomb", may_load=False, limits=ArtifactLimits(max_total_bytes=2**20))


# --- manifests ------------------------------------------------------------------------------------


def _manifest_mutations(manifest: dict) -> list[tuple[str, bytes | dict]]:
    """Broken manifests: each top-level field removed or retyped, plus targeted lies."""
    out: list[tuple[str, bytes | dict]] = []
    for key in manifest:
        broken = copy.deepcopy(manifest)
        del broken[key]
        out.append((f"del-{key}", broken))
        for bad in (None, 7, "x", [], {}, True):
            valid = type(bad) is type(manifest[key]) or (bad is None and key in NULLABLE)
            if valid or (key == "batch_axis" and type(bad) is int):
                continue
            broken = copy.deepcopy(manifest)
            broken[key] = bad
            out.append((f"type-{key}-{type(bad).__name__}", broken))

    def variant(name: str, change: Callable[[dict], None]) -> None:
        broken = copy.deepcopy(manifest)
        change(broken)
        out.append((name, broken))

    weights = WEIGHTS_MEMBER
    variant("sha-wrong", lambda m: m["members"][weights].update(sha256="0" * 64))
    variant("sha-upper", lambda m: m["members"][weights].update(sha256=m["members"][weights]["sha256"].upper()))
    variant("size-wrong", lambda m: m["members"][weights].update(size=m["members"][weights]["size"] + 1))
    variant("size-negative", lambda m: m["members"][weights].update(size=-1))
    variant("member-missing", lambda m: m["members"].update({"modules/0/ghost.bin": {"sha256": "0" * 64, "size": 0}}))
    variant("member-unlisted", lambda m: m["members"].clear())
    variant("lists-manifest", lambda m: m["members"].update({"manifest.json": {"sha256": "0" * 64, "size": 1}}))
    variant("no-modules", lambda m: m.update(modules=[]))
    variant("module-not-object", lambda m: m.update(modules=["eager"]))
    variant("module-twice", lambda m: m.update(modules=[m["modules"][0], {**m["modules"][0], "dir": "modules/1"}]))
    variant(
        "module-nested",
        lambda m: m.update(
            modules=[{**m["modules"][0], "module": "fc1"}, {**m["modules"][0], "module": "fc1.x", "dir": "modules/1"}]
        ),
    )
    variant(
        "module-whole-and-part",
        lambda m: m.update(modules=[m["modules"][0], {**m["modules"][0], "module": "fc1", "dir": "modules/1"}]),
    )
    variant("module-bad-path", lambda m: m["modules"][0].update(module="fc1/../x"))
    variant("module-missing-sub", lambda m: m["modules"][0].update(module="nope"))
    variant("module-file-elsewhere", lambda m: m["modules"][0].update(files=[weights]))
    variant("backend-unknown", lambda m: m["modules"][0].update(backend="warp-drive"))
    variant("backend-options", lambda m: m["modules"][0].update(options={"mode": "max-autotune"}))
    variant("backend-unavailable", lambda m: m["modules"][0].update(backend="cudagraphs", options={}))
    variant("flag-not-bool", lambda m: m["modules"][0].update(executes_code="no"))
    variant("schema-2", lambda m: m.update(schema_version=2))
    variant("schema-0", lambda m: m.update(schema_version=0))
    variant("schema-str", lambda m: m.update(schema_version="1"))
    variant("schema-bool", lambda m: m.update(schema_version=True))
    variant("format", lambda m: m.update(format="zip"))
    variant("dtype", lambda m: m.update(dtype="float128"))
    variant("dtype-attr", lambda m: m.update(dtype="nn"))
    variant("device", lambda m: m.update(device="tpu:0"))
    variant(
        "device-cuda", lambda m: m.update(device="cuda") if not torch.cuda.is_available() else m.update(device="mps")
    )
    variant("axes-key", lambda m: m.update(dynamic_axes={"args.0": {"batch": "0"}}))
    variant("state-shape", lambda m: m["model"]["state"][0].__setitem__(1, [-1]))
    variant("structure", lambda m: m["model"].update(structure_sha256="f" * 64))
    variant("alias-dangling", lambda m: m["weights"]["aliases"].update({"fc1.weight": "nowhere"}))
    variant("alias-type", lambda m: m["weights"].update(aliases=["fc1.weight"]))
    variant("env-no-key", lambda m: m["environment"].pop("hardware_key"))
    variant("spec-hash", lambda m: m.update(spec_hash="xyz"))
    text = json.dumps(manifest)
    raw = [
        ("not-json", b"{"),
        ("empty", b""),
        ("array", b"[]"),
        ("string", b'"manifest"'),
        ("nan", (text[:-1] + ', "extra": NaN}').encode()),
        ("infinity", (text[:-1] + ', "extra": -Infinity}').encode()),
        ("deep", b"[" * 100_000 + b"]" * 100_000),
        ("not-utf8", b"\xff\xfe" + text.encode("utf-16-le")),
        ("truncated", text[: len(text) // 2].encode()),
    ]
    return out + raw


def test_broken_manifests_are_refused(original, sandbox):
    cases = _manifest_mutations(original["manifest"])
    assert len(cases) >= 100
    for name, manifest in cases:
        _attempt(_zip(manifest, original["members"]), original, sandbox, f"manifest-{name}", may_load=False)


def test_consistent_archives_around_bad_weights_are_refused(original, sandbox):
    from safetensors.torch import save as save_safetensors

    good = original["members"][WEIGHTS_MEMBER]
    cases = {
        "garbage": b"\x00" * 64,
        "huge-header": (2**40).to_bytes(8, "little") + b"{}",
        "header-lies": len(b'{"a":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}').to_bytes(8, "little")
        + b'{"a":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}',
        "truncated": good[: len(good) // 2],
        "wrong-names": save_safetensors({"other": torch.zeros(3)}),
        "wrong-shape": save_safetensors(
            {k: torch.zeros(1) for k in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
        ),
        "empty": save_safetensors({}),
    }
    for name, weights in cases.items():
        members = {**original["members"], WEIGHTS_MEMBER: weights}
        _attempt(
            _zip(_rehash(original["manifest"], members), members), original, sandbox, f"weights-{name}", may_load=False
        )


def test_the_untouched_original_still_loads_in_the_sandbox(original, sandbox):
    """The control: the harness itself does not turn a good artifact into an error."""
    path = sandbox.cases / "good.ait"
    path.write_bytes(original["bytes"])
    loaded = load(path, type_of_model(original)(), expected_sha256=original["sha"])
    assert torch.equal(loaded(original["x"]), original["out"])
    assert len(list(Path(tempfile.gettempdir()).iterdir())) == 1  # its extraction folder, inside the sandbox
    del loaded
    path.unlink()
    sandbox()
