"""The rules a ``.ait`` archive must pass before any byte of it is used: pure, no torch, no I/O.

``aitune_ci.store.artifact.archive`` reads archives; this module decides what is acceptable: member names,
member types, sizes and counts (from the central directory, and again while streaming), the manifest's
schema, the members it lists, and whether an artifact from another environment may be loaded here.
Every refusal is an :class:`~aitune_ci.errors.ArtifactError` whose message says what to do.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import stat
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aitune_ci.environment import compared_fields, cpu_differences
from aitune_ci.errors import ArtifactError

__all__ = [
    "ARTIFACT_FORMAT",
    "ArtifactLimits",
    "MANIFEST_NAME",
    "NON_PORTABLE_FIELDS",
    "SCHEMA_VERSION",
    "StreamGuard",
    "canonical_json",
    "check_central_directory",
    "check_member_name",
    "check_members_match",
    "describe_differences",
    "environment_differences",
    "missing_cpu_features",
    "format_manifest",
    "non_portable_differences",
    "parse_manifest",
    "payload_executes_code",
    "rebuild_hint",
    "sha256_json",
    "validate_manifest",
]

SCHEMA_VERSION = 1
ARTIFACT_FORMAT = "aitune-ci-artifact"
MANIFEST_NAME = "manifest.json"

#: Environment fields a device-specific payload (AOTInductor .so, TensorRT engine) cannot survive a change of.
NON_PORTABLE_FIELDS = ("hardware_key", "platform", "torch", "cuda", "tensorrt", "torch-tensorrt")


def _reported_fields(*envs: Mapping[str, Any]) -> list[str]:
    """Fields shown (and warned about) when an artifact comes from another environment: the compared
    ones, and the platform a payload was built for."""
    return ["platform", *compared_fields(*envs)]


_SHA256 = re.compile(r"[0-9a-f]{64}")
# One path component of a member name: no leading dot-only names, no separators, no controls.
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}")
_MAX_NAME = 512
_ALLOWED_COMPRESSION = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


@dataclass(frozen=True)
class ArtifactLimits:
    """Caps that stop a hostile archive before it fills the disk or memory.

    Attributes:
        max_members: members in the archive, manifest included.
        max_total_bytes: sum of uncompressed member sizes (checked from the central directory
            and again while streaming, so a header that lies about a size gains nothing).
        max_manifest_bytes: size of ``manifest.json``.
        max_archive_bytes: size of the ``.ait`` file itself.
    """

    max_members: int = 4096
    max_total_bytes: int = 64 * 2**30
    max_manifest_bytes: int = 8 * 2**20
    max_archive_bytes: int = 72 * 2**30


def rebuild_hint(fixture: str | None) -> str:
    """The command that rewrites an artifact (and the baseline that records its sha256)."""
    if not fixture:
        return (
            "artifacts are .aitune/artifacts/<hardware>/<fixture>.ait; rebuild one with "
            "`pytest --aitune --aitune-update --aitune-fixtures <fixture>`"
        )
    if not fixture.startswith("tune_"):  # saved from code (ait.save): its name is the result's, not a fixture's
        return f"rebuild it as it was made: `ait.save(ait.tune(...), path)` for {fixture!r}, on this machine"
    return f"rebuild it with `pytest --aitune --aitune-update --aitune-fixtures {fixture}`"


def canonical_json(value: Any) -> bytes:
    """Byte-stable JSON (sorted keys, no spaces): what hashes are computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=repr).encode()


def sha256_json(value: Any) -> str:
    """The sha256 of :func:`canonical_json`: equal data, equal digest."""
    return hashlib.sha256(canonical_json(value)).hexdigest()


# --- member names and the central directory ---------------------------------------------------


def check_member_name(name: str, source: object = "artifact") -> str:
    """Return ``name`` if it is a safe relative POSIX path inside the archive, else raise.

    Refused: empty names, absolute paths, drive letters and UNC prefixes, backslashes, ``.`` and
    ``..`` components, empty components (``a//b``), directory entries, control characters, and any
    component outside ``[A-Za-z0-9._+-]`` (which also rules out names that differ only in Unicode
    normalisation or case-folding tricks).
    """
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{source}: an archive member has an empty name; the file is corrupt or hostile")
    shown = ascii(name)[:120]
    if len(name) > _MAX_NAME:
        raise ArtifactError(f"{source}: member name {shown} is longer than {_MAX_NAME} characters; refusing it")
    if "\\" in name or name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise ArtifactError(
            f"{source}: member name {shown} is an absolute or Windows path; an artifact holds only relative "
            "paths inside itself. The file is corrupt or hostile: do not use it"
        )
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ArtifactError(
                f"{source}: member name {shown} has a {part or 'empty'!r} component (path traversal or a directory "
                "entry); the file is corrupt or hostile: do not use it"
            )
        if not _COMPONENT.fullmatch(part):
            raise ArtifactError(
                f"{source}: member name {shown} has characters outside [A-Za-z0-9._+-]; the file is corrupt "
                "or hostile: do not use it"
            )
    return name


def _member_type_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member is not a plain file (symlink, directory, device, encrypted, odd compression)."""
    if info.is_dir():
        return "is a directory entry"
    mode = info.external_attr >> 16
    if mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else f"a special file (mode {oct(mode)})"
        return f"is {kind}"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in _ALLOWED_COMPRESSION:
        return f"uses compression method {info.compress_type} (only stored and deflated are accepted)"
    return None


def check_central_directory(infos: Sequence[zipfile.ZipInfo], limits: ArtifactLimits, source: object) -> int:
    """Check every member's name, type and declared size; return the declared total in bytes.

    This runs before anything is extracted. Sizes are checked again while streaming
    (:class:`StreamGuard`), because a central directory can lie.
    """
    if len(infos) > limits.max_members:
        raise ArtifactError(
            f"{source}: the archive has {len(infos)} members, more than the limit of {limits.max_members}; "
            "refusing it (a zip bomb or not an aitune-ci artifact)"
        )
    seen: set[str] = set()
    total = 0
    for info in infos:
        name = check_member_name(info.filename, source)
        if name in seen:
            raise ArtifactError(f"{source}: member {name!r} appears twice; the file is corrupt or hostile")
        seen.add(name)
        problem = _member_type_problem(info)
        if problem:
            raise ArtifactError(f"{source}: member {name!r} {problem}; an artifact holds plain files only")
        if info.file_size < 0 or info.compress_size < 0:
            raise ArtifactError(f"{source}: member {name!r} declares a negative size; the file is corrupt")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArtifactError(
                f"{source}: members declare over {limits.max_total_bytes} bytes uncompressed (limit "
                f"ArtifactLimits.max_total_bytes); refusing a possible zip bomb"
            )
    if MANIFEST_NAME not in seen:
        raise ArtifactError(f"{source}: no {MANIFEST_NAME} in the archive; this is not an aitune-ci artifact")
    return total


class StreamGuard:
    """Counts bytes as a member streams out and refuses more than it declared or the total allows."""

    def __init__(self, limits: ArtifactLimits, source: object) -> None:
        self.limits = limits
        self.source = source
        self.total = 0

    def add(self, name: str, member_bytes: int, declared: int, chunk: int) -> None:
        """Account ``chunk`` more bytes of ``name`` (``member_bytes`` read so far including them)."""
        self.total += chunk
        if member_bytes > declared:
            raise ArtifactError(
                f"{self.source}: member {name!r} holds more bytes than its header declares ({declared}); "
                "refusing a lying archive (zip bomb or corruption)"
            )
        if self.total > self.limits.max_total_bytes:
            raise ArtifactError(
                f"{self.source}: uncompressed data exceeds {self.limits.max_total_bytes} bytes "
                "(ArtifactLimits.max_total_bytes); refusing a possible zip bomb"
            )


# --- the manifest -----------------------------------------------------------------------------


def parse_manifest(raw: bytes, source: object) -> Any:
    """Decode ``manifest.json`` bytes; bad UTF-8, bad JSON or absurd nesting is an ArtifactError."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ArtifactError(f"{source}: {MANIFEST_NAME} is not UTF-8 ({exc}); the file is corrupt") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ArtifactError(f"{source}: {MANIFEST_NAME} is not valid JSON ({detail}); the file is corrupt") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not allowed")


class _Check:
    """Typed access into the manifest; every surprise names the field and the fix."""

    def __init__(self, source: object, fixture: str | None) -> None:
        self.source = source
        self.fixture = fixture

    def fail(self, where: str, problem: str) -> ArtifactError:
        return ArtifactError(
            f"{self.source}: {MANIFEST_NAME} field {where or '(top level)'} {problem}; the artifact is corrupt or "
            f"was written by an incompatible aitune-ci: {rebuild_hint(self.fixture)}"
        )

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        kind: type | tuple[type, ...],
        where: str = "",
        *,
        nullable: bool = False,
    ) -> Any:
        """``data[key]``, which must be present and of ``kind`` (or null, where ``nullable``)."""
        path = f"{where}.{key}" if where else key
        if key not in data:
            raise self.fail(path, "is missing")
        value = data[key]
        if value is None and nullable:
            return None
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            raise self.fail(path, f"must be a number, not {value!r}")
        if not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.fail(path, f"must be {names}, not {type(value).__name__}")
        return value

    def str_map(self, value: Any, where: str) -> dict[str, str]:
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise self.fail(where, "must map strings to strings")
        return value


def validate_manifest(data: Any, source: object = "artifact") -> dict[str, Any]:
    """Check a decoded manifest against schema 1 and return it; raise ArtifactError otherwise.

    Checked: ``schema_version`` and ``format`` first (so an unknown version says so, rather than
    "field missing"), then every field's type, member names, sha256 syntax, that every module's
    files live under its own folder and are listed, that module paths are unique and not nested.
    """
    fixture = data.get("fixture") if isinstance(data, dict) and isinstance(data.get("fixture"), str) else None
    check = _Check(source, fixture)
    _check_header(check, data)
    members = _check_members(check, data)
    _check_model(check, data)
    _check_weights(check, data, members)
    _check_modules(check, data, members)
    return data


def _check_header(check: _Check, data: Any) -> None:
    """Schema version and format first, then the tune's top-level fields."""
    if not isinstance(data, dict):
        raise check.fail("", f"must be a JSON object, not {type(data).__name__}")
    version = data.get("schema_version")
    if type(version) is not int or version != SCHEMA_VERSION:  # True == 1 in Python: compare the type too
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        hint = "a newer aitune-ci wrote it: upgrade aitune-ci, or " if newer else ""
        raise ArtifactError(
            f"{check.source}: unknown artifact schema_version {version!r} (this aitune-ci reads {SCHEMA_VERSION}); "
            f"{hint}{rebuild_hint(check.fixture)}"
        )
    if data.get("format") != ARTIFACT_FORMAT:
        raise check.fail("format", f"must be {ARTIFACT_FORMAT!r}, not {data.get('format')!r}")
    check.get(data, "fixture", str)
    check.get(data, "created_at", str)
    check.get(data, "aitune_ci_version", str)
    check.get(data, "spec", dict)
    spec_hash = check.get(data, "spec_hash", str, nullable=True)
    if spec_hash is not None and not _SHA256.fullmatch(spec_hash):
        raise check.fail("spec_hash", "is not a sha256 hex digest")
    check.get(data, "strategy", str)
    check.get(data, "winner", str, nullable=True)
    env = check.get(data, "environment", dict)
    check.get(env, "hardware_key", str, "environment")
    check.get(data, "device", str)
    check.get(data, "dtype", str)
    check.get(data, "input_signature", list)
    _check_axes(check, check.get(data, "dynamic_axes", dict), "dynamic_axes")
    check.get(data, "batch_axis", int, nullable=True)


def _check_members(check: _Check, data: Mapping[str, Any]) -> dict[str, Any]:
    """``members``: safe names (never the manifest itself), each with a sha256 and a size; returned."""
    members = check.get(data, "members", dict)
    for name, entry in members.items():
        check_member_name(name, check.source)
        if name == MANIFEST_NAME:
            raise check.fail(f"members.{name}", "lists the manifest itself")
        entry = check.get(members, name, dict, "members")
        digest = check.get(entry, "sha256", str, f"members.{name}")
        if not _SHA256.fullmatch(digest):
            raise check.fail(f"members.{name}.sha256", "is not a lower-case sha256 hex digest")
        size = check.get(entry, "size", int, f"members.{name}")
        if size < 0:
            raise check.fail(f"members.{name}.size", "is negative")
    return members


def _check_model(check: _Check, data: Mapping[str, Any]) -> None:
    """``model``: its class, structure digest and ``[name, [dims...], dtype]`` per state tensor."""
    model = check.get(data, "model", dict)
    check.get(model, "class", str, "model")
    structure = check.get(model, "structure_sha256", str, "model")
    if not _SHA256.fullmatch(structure):
        raise check.fail("model.structure_sha256", "is not a sha256 hex digest")
    state = check.get(model, "state", list, "model")
    for i, item in enumerate(state):
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], list)
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in item[1])
            and isinstance(item[2], str)
        ):
            raise check.fail(f"model.state[{i}]", "must be [name, [dims...], dtype]")


def _check_weights(check: _Check, data: Mapping[str, Any], members: Mapping[str, Any]) -> None:
    """``weights``: a listed safetensors member and its tied-tensor aliases."""
    weights = check.get(data, "weights", dict)
    weights_file = check.get(weights, "file", str, "weights")
    if weights_file not in members:
        raise check.fail("weights.file", f"names {weights_file!r}, which is not a listed member")
    check.str_map(check.get(weights, "aliases", dict, "weights"), "weights.aliases")
    if weights.get("format") != "safetensors":
        raise check.fail("weights.format", f"must be 'safetensors', not {weights.get('format')!r}")


def _check_modules(check: _Check, data: Mapping[str, Any], members: Mapping[str, Any]) -> None:
    """``modules``: at least one entry, each valid, with unique folders and unique, non-nested paths."""
    modules = check.get(data, "modules", list)
    if not modules:
        raise check.fail("modules", "is empty (an artifact holds at least one module entry)")
    dirs: set[str] = set()
    paths = [_check_module_entry(check, f"modules[{i}]", entry, members, dirs) for i, entry in enumerate(modules)]
    if len(set(paths)) != len(paths):
        raise check.fail("modules", f"lists a module twice: {paths}")
    for a in paths:
        for b in paths:
            if a != b and (a == "" or b.startswith(a + ".")):
                raise check.fail(
                    "modules", f"nests module {b!r} inside {a or '(whole model)'!r}; entries must not overlap"
                )


def _check_module_entry(check: _Check, where: str, entry: Any, members: Mapping[str, Any], dirs: set[str]) -> str:
    """One ``modules[i]`` entry; its folder joins ``dirs``; returns its module path."""
    if not isinstance(entry, dict):
        raise check.fail(where, "must be an object")
    module = check.get(entry, "module", str, where)
    if module and not all(re.fullmatch(r"[A-Za-z_0-9]+", p) for p in module.split(".")):
        raise check.fail(f"{where}.module", f"{module!r} is not a dotted submodule path")
    check.get(entry, "backend", str, where)
    check.get(entry, "backend_class", str, where)
    check.get(entry, "options", dict, where)
    check.get(entry, "precision", str, where)
    for flag in ("ahead_of_time", "payload_is_device_specific", "executes_code"):
        check.get(entry, flag, bool, where)
    folder = check.get(entry, "dir", str, where)
    check_member_name(folder, check.source)
    if folder in dirs:
        raise check.fail(f"{where}.dir", f"{folder!r} is used by two modules")
    dirs.add(folder)
    files = check.get(entry, "files", list, where)
    for name in files:
        if not isinstance(name, str) or not name.startswith(folder + "/") or name not in members:
            raise check.fail(f"{where}.files", f"names {name!r}, which is not a listed member under {folder}/")
    check.get(entry, "meta", dict, where, nullable=True)
    _check_axes(check, check.get(entry, "dynamic_axes", dict, where), f"{where}.dynamic_axes")
    return module


def _check_axes(check: _Check, axes: Mapping[str, Any], where: str) -> None:
    """``{input_path: {dim: name}}`` with integer dim keys, as JSON stores dynamic axes."""
    for path, dims in axes.items():
        dims = check.str_map(dims, f"{where}.{path}")
        if not all(re.fullmatch(r"-?\d{1,4}", d) for d in dims):
            raise check.fail(f"{where}.{path}", "must have integer dim keys")


def check_members_match(manifest: Mapping[str, Any], names: Iterable[str], source: object) -> None:
    """The archive holds exactly the manifest plus the members it lists: nothing missing, nothing extra."""
    present = set(names) - {MANIFEST_NAME}
    listed = set(manifest["members"])
    fixture = manifest.get("fixture")
    if listed - present:
        raise ArtifactError(
            f"{source}: members {sorted(listed - present)} are listed in the manifest but missing from the archive; "
            f"the file is truncated or corrupt: {rebuild_hint(fixture)}"
        )
    if present - listed:
        raise ArtifactError(
            f"{source}: members {sorted(present - listed)} are in the archive but not in the manifest (so their "
            f"sha256 cannot be checked); refusing it: {rebuild_hint(fixture)}"
        )


# --- payloads ---------------------------------------------------------------------------------


def payload_executes_code(backend: Any, files: Sequence[str]) -> bool:
    """Loading this backend's saved ``files`` runs code from them (native code or pickles).

    Such a payload is used only from a pinned or trusted artifact. ``backend`` is a
    :class:`~aitune_ci.backends.base.Backend`; its ``payload_executes_code`` derives from its ``payload``.
    """
    return bool(files) and bool(backend.payload_executes_code)


# --- environments -----------------------------------------------------------------------------


def environment_differences(recorded: Mapping[str, Any], here: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Reported fields that differ, as ``{field: (artifact's, here)}``.

    Where the payload runs on the CPU, its instruction set too (``cpu_differences``); a CPU payload
    built where ``cpu_features`` held more than here is refused (``missing_cpu_features``).
    """
    reported = _reported_fields(recorded, here)
    differences = {k: (recorded.get(k), here.get(k)) for k in reported if recorded.get(k) != here.get(k)}
    differences.update(cpu_differences(recorded, here))
    return differences


def missing_cpu_features(recorded: Any, here: Any) -> list[str]:
    """The CPU features the artifact's machine had and this one lacks ([] when either is unknown).

    Compiled CPU code needs every feature it was built for (inductor emits AVX-512 or AMX code
    where the CPU has them), and runs on any CPU that has more.
    """
    if not isinstance(recorded, str) or not isinstance(here, str):
        return []
    return sorted(set(recorded.split()) - set(here.split()))


def non_portable_differences(differences: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """The differences a device-specific payload cannot be loaded across.

    A change of CPU features counts only when this CPU lacks one the artifact's had.
    """
    blocking = {k: v for k, v in differences.items() if k in NON_PORTABLE_FIELDS}
    if "cpu_features" in differences and missing_cpu_features(*differences["cpu_features"]):
        blocking["cpu_features"] = differences["cpu_features"]
    return blocking


def describe_differences(differences: Mapping[str, tuple[Any, Any]]) -> str:
    """``torch: artifact 2.11.0, here 2.13.0; hardware_key: ...`` for error and warning text."""
    return "; ".join(f"{k}: artifact {a!r}, here {b!r}" for k, (a, b) in differences.items())


# --- display ----------------------------------------------------------------------------------


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n, 1024)), 4)
    return f"{n / 1024**exp:.1f} {'BKMGT'[exp]}{'iB' if exp else ''}"


def input_lines(manifest: Mapping[str, Any]) -> list[str]:
    """``sample 0: x float32[2, 8]`` per sample the artifact was validated on (``inspect`` and call errors show them)."""
    lines = []
    for i, signature in enumerate(manifest["input_signature"]):
        parts = []
        for leaf in signature if isinstance(signature, list) else []:
            if isinstance(leaf, dict) and "shape" in leaf:
                parts.append(f"{leaf.get('path')} {leaf.get('dtype')}{list(leaf['shape'])}")
            elif isinstance(leaf, dict):
                parts.append(f"{leaf.get('path')} {leaf.get('type')}={leaf.get('value')}")
        lines.append(f"sample {i}: {', '.join(parts) or '(none)'}")
    return lines


def format_manifest(manifest: Mapping[str, Any], *, sha256: str | None = None, path: object = None) -> str:
    """A validated manifest as readable text, for ``aitune-ci inspect FILE.ait``."""
    lines: list[str] = []
    title = str(path) if path is not None else manifest["fixture"]
    lines.append(f"{title}")
    lines.append(
        f"  fixture        {manifest['fixture']}  (artifact schema {manifest['schema_version']}, "
        f"aitune-ci {manifest['aitune_ci_version']}, created {manifest['created_at']})"
    )
    if sha256:
        lines.append(f"  sha256         {sha256}")
    model = manifest["model"]
    lines.append(
        f"  model          {model['class']}  ({len(model['state'])} tensors, {manifest['dtype']} on {manifest['device']})"
    )
    for i, text in enumerate(input_lines(manifest)):
        lines.append(f"  {'inputs' if i == 0 else '':<14} {text}")
    axes = manifest["dynamic_axes"]
    if axes:
        text = "; ".join(f"{p} dim {d}={n}" for p, dims in axes.items() for d, n in dims.items())
        lines.append(f"  dynamic axes   {text}")
    else:
        lines.append("  dynamic axes   none (static shapes)")
    members = manifest["members"]
    lines.append("  modules")
    for entry in manifest["modules"]:
        traits = [entry["precision"], "ahead-of-time" if entry["ahead_of_time"] else "just-in-time"]
        if entry["payload_is_device_specific"]:
            traits.append("device-specific")
        if entry["executes_code"]:
            traits.append("holds executable code")
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(entry["options"].items()))
        name = entry["module"] or "(whole model)"
        lines.append(f"    {name:<18} {entry['backend']}{f'({options})' if options else ''}  [{', '.join(traits)}]")
        for f in entry["files"]:
            lines.append(f"      {f}  {_size(members[f]['size'])}")
        if entry.get("meta") is None:
            lines.append("      (no payload: built again from the weights on load, nothing to compile)")
        elif not entry["files"]:
            meta = json.dumps(entry["meta"], sort_keys=True)
            lines.append(f"      (no files; re-applied on load from: {meta[:150]}{'…' if len(meta) > 150 else ''})")
    weights = manifest["weights"]
    aliases = f", {len(weights['aliases'])} tied" if weights["aliases"] else ""
    lines.append(f"  weights        {weights['file']}  {_size(members[weights['file']]['size'])}{aliases}")
    env = manifest["environment"]
    shown = [f"{k}={env[k]}" for k in _reported_fields(env) if env.get(k) is not None]
    lines.append(f"  environment    {'  '.join(shown)}")
    total = sum(m["size"] for m in members.values())
    lines.append(
        f"  members        {len(members)} file{'s' if len(members) != 1 else ''}, {_size(total)} uncompressed, each with its sha256"
    )
    lines.append(f"  spec hash      {manifest.get('spec_hash') or '(none)'}")
    return "\n".join(lines)
