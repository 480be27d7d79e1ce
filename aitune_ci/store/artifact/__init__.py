"""``ait.save`` / ``ait.load``: a tuned configuration as a ``.ait`` zip that loads without recompiling.

Layout of the archive (every member listed in the manifest with its sha256 and size)::

    manifest.json                 schema_version, spec summary, one entry per module, environment, members
    weights/model.safetensors     the model's state_dict (tied tensors stored once, aliases in the manifest)
    modules/<i>/...               what backend i's ``save`` wrote (.pt2, .onnx, compile-cache bytes, ...)

Loading takes the user's model instance (structure from code, weights and payloads from the file),
checks the archive (:mod:`aitune_ci.store.artifact.safety`) and the manifest before touching a payload,
extracts only into a fresh temporary folder, and never unpickles. Two payload kinds execute code
when used and are therefore loaded only from a *pinned* artifact (``expected_sha256``, which the
pytest plugin takes from the committed baseline) or with ``trusted=True``: AOTInductor packages
and TensorRT engines (native code: refused otherwise) and inductor's compile cache (pickled graphs:
skipped otherwise, so the first call compiles from scratch, with a warning).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import json
import os
import shutil
import tempfile
import warnings
import weakref
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch

from aitune_ci.atomic import atomic_write_stream
from aitune_ci.backends.base import Backend, BuildContext
from aitune_ci.errors import AituneCIError, ArtifactError
from aitune_ci.store.artifact.safety import (
    ARTIFACT_FORMAT,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    ArtifactLimits,
    StreamGuard,
    check_central_directory,
    check_member_name,
    check_members_match,
    describe_differences,
    environment_differences,
    format_manifest,
    missing_cpu_features,
    non_portable_differences,
    parse_manifest,
    rebuild_hint,
    sha256_json,
    validate_manifest,
)
from aitune_ci.version import __version__

__all__ = [
    "ArtifactInfo",
    "ArtifactLimits",
    "ArtifactWarning",
    "LoadedArtifact",
    "artifact_sha256",
    "find_reusable",
    "format_manifest",
    "inspect_artifact",
    "load",
    "save",
    "spec_hash",
]

WEIGHTS_MEMBER = "weights/model.safetensors"
_CHUNK = 1 << 20
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # byte-stable archives: equal content, equal file
# Environment fields left out of the spec hash: they differ between identical CI machines (or
# between the identical GPUs and CPU shares of one machine's xdist workers).
_VOLATILE_ENV = frozenset({"cpu_count", "cpus_usable", "gpu_index", "gpu_physical_index", "gpu_uuid"})


def _ignored_env(environment: Mapping[str, Any]) -> frozenset[str]:
    """Fields left out of the spec hash: the volatile ones, and on a GPU run the host CPU's
    instruction set, which its kernels do not depend on (a reuse across runner hosts stays valid)."""
    from aitune_ci.environment import CPU_RUN_FIELDS

    return _VOLATILE_ENV if environment.get("device_type") == "cpu" else _VOLATILE_ENV | set(CPU_RUN_FIELDS)



class ArtifactWarning(UserWarning):
    """An artifact loaded, but not as well as it could: another environment, or a skipped compile cache."""


@dataclass(frozen=True)
class ArtifactInfo:
    """What :func:`save` wrote.

    Attributes:
        path: the ``.ait`` file.
        sha256: the whole file's sha256 (record it in the baseline; pass it to ``load``).
        size_bytes: the file's size.
        fixture: the tuned spec's name.
        modules: module path -> backend (``""`` is the whole model).
        spec_hash: the hash :func:`find_reusable` matches on, or None when unknown.
    """

    path: Path
    sha256: str
    size_bytes: int
    fixture: str
    modules: Mapping[str, str]
    spec_hash: str | None


# --- hashing ----------------------------------------------------------------------------------


def _file_sha256(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def artifact_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a ``.ait`` file, as recorded in baselines.

    Raises:
        ArtifactError: the file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            return _file_sha256(fh)
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the artifact ({exc}); {rebuild_hint(Path(path).stem)}") from None


def _jsonable(value: Any) -> Any:
    """Plain JSON data with string keys (dim indices, dtypes and the like become strings)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _state_entries(model: torch.nn.Module, dtype: torch.dtype | None) -> list[list[Any]]:
    """``[name, shape, dtype]`` of every state tensor, floating ones at the dtype the model runs at."""
    entries = []
    for name, tensor in model.state_dict().items():
        run_dtype = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
        entries.append([name, list(tensor.shape), str(run_dtype).removeprefix("torch.")])
    return entries


def _structure_sha256(model: torch.nn.Module, entries: list[list[Any]]) -> str:
    """What must match between the model given to ``load`` and the one saved: module types and state."""
    modules = [[name, type(m).__qualname__] for name, m in model.named_modules()]
    return sha256_json({"modules": modules, "state": entries})


def _weights_sha256(model: torch.nn.Module, dtype: torch.dtype | None) -> str:
    """A digest of the weights' values as they run (floating tensors cast to ``dtype``)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        digest.update(name.encode())
        try:
            digest.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        except (RuntimeError, TypeError):  # tensor subclasses: their shape and type stand in for the values
            digest.update(f"{type(t).__qualname__}{list(t.shape)}{t.dtype}".encode())
    return digest.hexdigest()


def _backend_descriptor(name: str) -> dict[str, Any]:
    from aitune_ci.backends.registry import get_backend

    try:
        backend = get_backend(name)
    except AituneCIError:
        return {"name": name}
    cls = type(backend)
    return {"name": name, "class": f"{cls.__module__}.{cls.__qualname__}", "options": _jsonable(backend.options)}


def _spec_hash(
    model: torch.nn.Module,
    dtype: torch.dtype,
    fields: Mapping[str, Any],
    backend_names: Sequence[str],
    environment: Mapping[str, Any],
) -> str:
    entries = _state_entries(model, dtype)
    ignored = _ignored_env(environment)
    return sha256_json(
        {
            "aitune_ci": __version__,
            "artifact_schema": SCHEMA_VERSION,
            "model": {
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "structure": _structure_sha256(model, entries),
                "weights": _weights_sha256(model, dtype),
                "code": _code_sha256(model),
            },
            "spec": _jsonable(fields),
            "backends": [_backend_descriptor(n) for n in sorted(set(backend_names) | {"eager"})],
            "environment": {k: _jsonable(v) for k, v in environment.items() if k not in ignored},
        }
    )


def _code_sha256(model: torch.nn.Module) -> str:
    """A digest of the source of every module class in the tree (and their bases up to nn.Module).

    A PR that changes ``forward`` without changing structure or weights must not reuse yesterday's
    compiled artifact. Code outside these classes (helper functions they call) is not covered:
    ``--aitune-rebuild`` forces a build after such a change.
    """
    import inspect

    digest = hashlib.sha256()
    seen: set[type] = set()
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls in seen or cls.__module__.startswith("torch.") or cls is object:
                continue
            seen.add(cls)
            try:
                source = inspect.getsource(cls)
            except (OSError, TypeError):
                source = f"{cls.__module__}.{cls.__qualname__}"  # no source (C extension, REPL): name only
            digest.update(f"{cls.__module__}.{cls.__qualname__}\n{source}".encode())
    return digest.hexdigest()


def _spec_fields(spec: Any) -> dict[str, Any]:
    summary = dict(spec.summary())
    summary.pop("name", None)  # a renamed fixture reuses its artifact
    summary.pop("backends", None)  # covered by backend_names
    summary["dynamic_axes"] = _jsonable(spec.dynamic_axes)
    summary["max_batch"] = spec.max_batch
    return summary


def spec_hash(
    spec: Any, backend_names: Sequence[str] | None = None, environment: Mapping[str, Any] | None = None
) -> str:
    """The key under which a tune's artifact can be reused instead of rebuilt.

    Covers the model (class, module types, state tensor names/shapes/dtypes, a digest of the
    weights' values at the spec's dtype, so converting the model in place during the tune does
    not change it, and a digest of its module classes' source code), the sample signatures, dtype, device, strategy, modules, tolerance, dynamic
    axes, the backends tried (name, class and options; ``eager`` always included), the environment
    (hardware, torch and library versions) and the aitune-ci version.

    Args:
        spec: the :class:`~aitune_ci.spec.TuneSpec`.
        backend_names: the backends tuned (default: ``spec.backends``, else every one available).
        environment: default :func:`~aitune_ci.environment.environment_fingerprint` of the spec's device.
    """
    from aitune_ci.environment import environment_fingerprint

    device = spec.resolved_device
    if backend_names is None:
        if spec.backends is not None:
            backend_names = list(spec.backends)
        else:
            from aitune_ci.engine import default_backend_names

            backend_names = default_backend_names(device)
    env = environment if environment is not None else environment_fingerprint(device)
    return _spec_hash(spec.model, spec.dtype, _spec_fields(spec), list(backend_names), env)


# --- save -------------------------------------------------------------------------------------


def _backend_key(backend: str, module: str) -> str:
    """How a runtime keys a built callable: ``inductor``, or ``backbone/inductor`` for a submodule."""
    return f"{module}/{backend}" if module else backend


def _executes_code(backend: Backend, has_files: bool) -> bool:
    return has_files and backend.payload_executes_code


def _choose_entries(result: Any, backend: str | None) -> list[tuple[str, str]]:
    if backend is not None:
        return [("", backend)]
    if result.module_choice:
        return sorted((str(m), str(b)) for m, b in result.module_choice.items())
    if result.winner is None:
        raise ArtifactError(
            f"tune {result.name!r} has no winner (every backend failed or was inaccurate), so there is nothing to "
            "save; pass backend=... to save a specific one"
        )
    return [("", result.winner)]


def _weights_for_safetensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state_dict with tied tensors stored once (safetensors refuses shared storage).

    Returns the tensors to write and ``{alias: stored_name}``. Tensors that share storage without
    being identical (views of one buffer) are copied apart; loading writes each into its own slot.
    """
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        if type(t) is not torch.Tensor:
            raise ArtifactError(
                f"state tensor {name!r} is a {type(t).__name__}; artifacts store plain tensors. Save the model "
                "before quantizing it (quantizing backends re-apply their recipe on load)"
            )
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = t
    owners: dict[tuple[Any, int], list[str]] = {}
    for name, t in tensors.items():
        if t.numel():
            owners.setdefault((t.device, t.untyped_storage().data_ptr()), []).append(name)
    for names in owners.values():
        for name in names:
            t = tensors[name]
            if len(names) > 1 or t.untyped_storage().nbytes() != t.numel() * t.element_size():
                tensors[name] = t.clone()
    return {n: t.to("cpu").contiguous() for n, t in tensors.items()}, aliases


def _stage_files(folder: Path, root: Path) -> list[str]:
    """Member names of every file under ``folder`` (relative to ``root``); symlinks are refused."""
    names = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ArtifactError(
                f"a backend wrote a symbolic link {path.name!r} into its payload; artifacts hold plain files"
            )
        if path.is_file():
            names.append(check_member_name(path.relative_to(root).as_posix(), "payload"))
    return names


def _member_sha(path: Path) -> dict[str, Any]:
    with open(path, "rb") as fh:
        return {"sha256": _file_sha256(fh), "size": path.stat().st_size}


def save(
    result: Any,
    path: str | os.PathLike[str],
    *,
    backend: str | None = None,
    spec_hash: str | None = None,
) -> ArtifactInfo:
    """Write ``result``'s tuned configuration to ``path`` as a ``.ait`` archive, atomically.

    Args:
        result: a :class:`~aitune_ci.result.TuneResult` fresh from ``ait.tune`` (its ``runtime``
            holds the built callables; a result read back from JSON cannot be saved).
        path: the ``.ait`` file to write; its folder is created. Readers see the old file or the
            new one, never a mix.
        backend: the backend to save for the whole model (default: the winner, or the per-module
            mixture in ``result.module_choice``).
        spec_hash: the :func:`spec_hash` of the spec, recorded for :func:`find_reusable` (computed
            here when the runtime keeps its spec as ``runtime.spec``).

    Raises:
        ArtifactError: nothing to save, the backend was not built, or a backend cannot save.
    """
    runtime = getattr(result, "runtime", None)
    if runtime is None:
        raise ArtifactError(
            f"tune {result.name!r} has no in-memory runtime (it was read from JSON, or its modules were released); "
            "call ait.save right after ait.tune"
        )
    entries = _choose_entries(result, backend)
    dtype = getattr(torch, str(result.spec.get("dtype", "float32")), torch.float32)
    if not isinstance(dtype, torch.dtype):
        dtype = torch.float32
    if spec_hash is None and getattr(runtime, "spec", None) is not None:
        names = [row.backend for row in result.backends if not row.module]
        spec_hash = _spec_hash(runtime.model, dtype, _spec_fields(runtime.spec), names, result.environment)

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="aitune-save-") as tmp:
        stage = Path(tmp)
        (stage / "weights").mkdir()
        tensors, aliases = _weights_for_safetensors(runtime.model)
        from safetensors.torch import save_file

        save_file(tensors, str(stage / WEIGHTS_MEMBER), metadata={"format": "pt"})
        del tensors
        modules = [
            _save_entry(result, runtime, index, module, name, stage) for index, (module, name) in enumerate(entries)
        ]
        files = [WEIGHTS_MEMBER] + [f for m in modules for f in m["files"]]
        entries_state = _state_entries(runtime.model, dtype)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "format": ARTIFACT_FORMAT,
            "fixture": result.name,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "aitune_ci_version": __version__,
            "spec": _jsonable(result.spec),
            "spec_hash": spec_hash,
            "strategy": result.strategy,
            "winner": result.winner,
            "device": result.device,
            "dtype": str(dtype).removeprefix("torch."),
            "input_signature": _input_signature(runtime, result),
            "dynamic_axes": _jsonable(result.dynamic_axes),
            "batch_axis": result.batch_axis,
            "environment": _jsonable(result.environment),
            "model": {
                "class": f"{type(runtime.model).__module__}.{type(runtime.model).__qualname__}",
                "structure_sha256": _structure_sha256(runtime.model, entries_state),
                "state": entries_state,
            },
            "weights": {"file": WEIGHTS_MEMBER, "format": "safetensors", "aliases": aliases},
            "modules": modules,
            "members": {name: _member_sha(stage / name) for name in files},
        }
        validate_manifest(
            json.loads(json.dumps(manifest)), "the manifest being written"
        )  # never write what load refuses
        atomic_write_stream(path, lambda fh: _write_zip(fh, stage, manifest, files))
    sha = artifact_sha256(path)
    return ArtifactInfo(
        path=path,
        sha256=sha,
        size_bytes=path.stat().st_size,
        fixture=result.name,
        modules={m["module"]: m["backend"] for m in modules},
        spec_hash=spec_hash,
    )


def _input_signature(runtime: Any, result: Any) -> list[Any]:
    from aitune_ci.samples import sample_signature

    samples = getattr(runtime, "samples", None)
    if samples:
        return [sample_signature(s) for s in samples]
    return list(result.spec.get("samples", []))


def _save_entry(result: Any, runtime: Any, index: int, module: str, name: str, stage: Path) -> dict[str, Any]:
    key = _backend_key(name, module)
    built = runtime.built.get(key)
    backend = runtime.backends.get(key)
    ctx = runtime.contexts.get(key)
    if built is None or backend is None:
        row = result.backend(name, module)
        why = f" (status {row.status}: {row.error})" if row is not None else " (it was not in the tune)"
        raise ArtifactError(f"backend {name!r} for {module or 'the whole model'} was not built{why}; nothing to save")
    folder = f"modules/{index}"
    outdir = stage / folder
    outdir.mkdir(parents=True)
    try:
        meta: dict[str, Any] | None = backend.save(built, outdir)
    except NotImplementedError:
        meta = None  # eager and friends: nothing beyond the weights, rebuilt on load
    except AituneCIError as exc:
        raise ArtifactError(f"backend {name!r} could not save its payload: {exc}") from exc
    if meta is not None:
        try:
            meta = json.loads(json.dumps(meta, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"backend {name!r} returned metadata that is not plain JSON ({exc})") from None
    files = _stage_files(outdir, stage)
    axes = ctx.dynamic_axes if ctx is not None else {}
    return {
        "module": module,
        "backend": name,
        "backend_class": f"{type(backend).__module__}.{type(backend).__qualname__}",
        "options": _jsonable(backend.options),
        "precision": str(backend.precision),
        "ahead_of_time": bool(backend.ahead_of_time),
        "payload_is_device_specific": bool(backend.payload_is_device_specific),
        "executes_code": _executes_code(backend, bool(files)),
        "dir": folder,
        "files": files,
        "dynamic_axes": _jsonable(axes),
        "meta": meta,
    }


def _write_zip(fh: IO[bytes], stage: Path, manifest: Mapping[str, Any], files: Sequence[str]) -> None:
    with zipfile.ZipFile(fh, "w", allowZip64=True) as zf:
        info = zipfile.ZipInfo(MANIFEST_NAME, date_time=_FIXED_DATE)
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n")
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_STORED  # payloads are mostly incompressible; stored loads fastest
            source = stage / name
            with open(source, "rb") as src, zf.open(info, "w", force_zip64=source.stat().st_size > 2**31) as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


# --- reading archives -------------------------------------------------------------------------


class _Archive:
    """An open, checked ``.ait``: the file's sha256, its central directory and validated manifest.

    Nothing is extracted until :meth:`extract`; every zipfile/OS surprise becomes an ArtifactError.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ArtifactLimits, expected_sha256: str | None) -> None:
        self.path = Path(path)
        self.source = str(path)
        self.limits = limits
        self.hint = rebuild_hint(self.path.stem)
        self._stack = contextlib.ExitStack()
        try:
            self._open(expected_sha256)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> _Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self, expected_sha256: str | None) -> None:
        try:
            fh = self._stack.enter_context(open(self.path, "rb"))
            size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            raise ArtifactError(f"{self.source}: no such artifact; {self.hint}") from None
        except OSError as exc:
            raise ArtifactError(f"{self.source}: cannot read the artifact ({exc})") from None
        if size > self.limits.max_archive_bytes:
            raise ArtifactError(
                f"{self.source}: the file is {size} bytes, over the limit of {self.limits.max_archive_bytes} "
                "(ArtifactLimits.max_archive_bytes); refusing it"
            )
        self.size = size
        self.sha256 = _file_sha256(fh)
        if expected_sha256 is not None and self.sha256 != expected_sha256.strip().lower():
            raise ArtifactError(
                f"{self.source}: sha256 is {self.sha256}, but the committed baseline records {expected_sha256}: the "
                f"artifact was changed or replaced after the baseline was written. Do not use it; {self.hint} "
                "(this rewrites the artifact and the baseline together)"
            )
        fh.seek(0)
        try:
            self.zip = self._stack.enter_context(zipfile.ZipFile(fh))
            infos = self.zip.infolist()
        except zipfile.BadZipFile as exc:
            raise ArtifactError(
                f"{self.source}: not a complete .ait archive ({exc}); the file is truncated or corrupt "
                f"(an interrupted copy or a git LFS pointer?): {self.hint}"
            ) from None
        except Exception as exc:
            raise self._unreadable(exc) from None
        check_central_directory(infos, self.limits, self.source)
        self.infos = {info.filename: info for info in infos}
        manifest_info = self.infos[MANIFEST_NAME]
        if manifest_info.file_size > self.limits.max_manifest_bytes:
            raise ArtifactError(
                f"{self.source}: {MANIFEST_NAME} is {manifest_info.file_size} bytes, over the limit of "
                f"{self.limits.max_manifest_bytes}; refusing it"
            )
        raw = bytearray()
        for chunk in self._stream(manifest_info, StreamGuard(self.limits, self.source)):
            raw += chunk
        self.manifest = validate_manifest(parse_manifest(bytes(raw), self.source), self.source)
        self.hint = rebuild_hint(self.manifest["fixture"])
        check_members_match(self.manifest, self.infos, self.source)
        for name, entry in self.manifest["members"].items():
            if self.infos[name].file_size != entry["size"]:
                raise ArtifactError(
                    f"{self.source}: member {name!r} is {self.infos[name].file_size} bytes in the archive but "
                    f"{entry['size']} in the manifest; the file is corrupt: {self.hint}"
                )

    def _unreadable(self, exc: BaseException) -> ArtifactError:
        return ArtifactError(
            f"{self.source}: the archive cannot be read ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
            f"{self.hint}"
        )

    def _stream(self, info: zipfile.ZipInfo, guard: StreamGuard) -> Iterator[bytes]:
        """The member's bytes in chunks, counted against its declared size and the total cap."""
        read = 0
        try:
            with self.zip.open(info) as member:
                while True:
                    chunk = member.read(_CHUNK)
                    if not chunk:
                        break
                    read += len(chunk)
                    guard.add(info.filename, read, info.file_size, len(chunk))
                    yield chunk
        except ArtifactError:
            raise
        except Exception as exc:
            raise self._unreadable(exc) from None
        if read != info.file_size:
            raise ArtifactError(
                f"{self.source}: member {info.filename!r} holds {read} bytes but declares {info.file_size}; "
                f"the file is corrupt: {self.hint}"
            )

    def verify(self, write_to: Path | None = None) -> None:
        """Stream every listed member, checking its sha256; with ``write_to``, extract into that folder."""
        guard = StreamGuard(self.limits, self.source)
        root = os.path.realpath(write_to) if write_to is not None else None
        for name, entry in sorted(self.manifest["members"].items()):
            digest = hashlib.sha256()
            out: IO[bytes] | None = None
            if root is not None:
                target = os.path.join(root, *name.split("/"))
                if os.path.commonpath([root, os.path.realpath(os.path.dirname(target))]) != root:
                    raise ArtifactError(f"{self.source}: member {name!r} would land outside the extraction folder")
                os.makedirs(os.path.dirname(target), exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
                out = os.fdopen(os.open(target, flags, 0o600), "wb")
            try:
                for chunk in self._stream(self.infos[name], guard):
                    digest.update(chunk)
                    if out is not None:
                        out.write(chunk)
            finally:
                if out is not None:
                    out.close()
            if digest.hexdigest() != entry["sha256"]:
                raise ArtifactError(
                    f"{self.source}: member {name!r} has sha256 {digest.hexdigest()}, but the manifest records "
                    f"{entry['sha256']}; the artifact is corrupt or was tampered with: {self.hint}"
                )


def inspect_artifact(
    path: str | os.PathLike[str], *, verify: bool = True, limits: ArtifactLimits | None = None
) -> dict[str, Any]:
    """The validated manifest of a ``.ait`` file (for ``aitune-ci inspect`` and :func:`find_reusable`).

    Args:
        path: the artifact.
        verify: also stream every member and check its sha256 (nothing is written to disk).
        limits: caps on sizes and counts (default :class:`ArtifactLimits`).

    Raises:
        ArtifactError: the file is unsafe, corrupt, or of an unknown schema.
    """
    with _Archive(path, limits or ArtifactLimits(), None) as archive:
        if verify:
            archive.verify()
        return archive.manifest


def find_reusable(directory: str | os.PathLike[str], spec_hash: str) -> Path | None:
    """A ``.ait`` in ``directory`` (not recursive) whose manifest records ``spec_hash``, newest first.

    Only manifests are read here; :func:`load` verifies the rest. Unreadable files are skipped.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    candidates = sorted(folder.glob("*.ait"), key=lambda p: p.stat().st_mtime, reverse=True)
    for candidate in candidates:
        try:
            manifest = inspect_artifact(candidate, verify=False)
        except ArtifactError:
            continue
        if manifest.get("spec_hash") == spec_hash:
            return candidate
    return None


# --- load -------------------------------------------------------------------------------------


class _CallableModule(torch.nn.Module):
    """An ``nn.Module`` around a loaded callable, so it can replace a submodule of a mixture."""

    def __init__(self, fn: Callable[..., Any], backend: str) -> None:
        super().__init__()
        self._fn = fn
        self.backend = backend

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"


class LoadedArtifact(torch.nn.Module):
    """What :func:`load` returns: call it like the tuned model.

    Calls run under ``torch.inference_mode()``, as the tune validated and measured them.

    Attributes:
        model: the user's model holding the artifact's weights (for a mixture, a copy of its module
            tree sharing those weights, with the tuned submodules swapped in).
        manifest: the validated manifest.
        sha256: the artifact file's sha256.
        backends: module path -> backend (``""`` is the whole model).
    """

    def __init__(
        self,
        run: Callable[..., Any],
        model: torch.nn.Module,
        manifest: Mapping[str, Any],
        sha256: str,
        path: Path,
        workdir: Path,
    ) -> None:
        super().__init__()
        self.model = model
        self.manifest = dict(manifest)
        self.sha256 = sha256
        self.path = path
        self.backends = {e["module"]: e["backend"] for e in manifest["modules"]}
        self.__dict__["_run"] = run  # not a registered submodule: .to() must not touch a compiled payload
        # Payload files (ONNX, .pt2) stay on disk while the module lives, and go with it.
        self.__dict__["_cleanup"] = weakref.finalize(self, shutil.rmtree, str(workdir), ignore_errors=True)

    @property
    def runner(self) -> Callable[..., Any]:
        """The loaded callable itself, without this wrapper's per-call ``inference_mode``.

        A paired A/B timing calls this and a fresh build the same way, so the wrapper's own
        overhead (microseconds, but a large share of a tiny model's latency) is not measured.
        """
        return self.__dict__["_run"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.inference_mode():
            return self.__dict__["_run"](*args, **kwargs)

    def extra_repr(self) -> str:
        mix = ", ".join(f"{m or '(whole model)'}: {b}" for m, b in self.backends.items())
        return f"{self.manifest['fixture']} [{mix}] sha256={self.sha256[:12]}"


def _resolve_device(requested: torch.device | str | None, manifest: Mapping[str, Any], source: str) -> torch.device:
    text = str(requested) if requested is not None else manifest["device"]
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError) as exc:
        raise ArtifactError(f"{source}: device {text!r} is not a device torch knows ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ArtifactError(
            f"{source}: the artifact was built for {manifest['device']} but CUDA is not available here; pass "
            "device='cpu' to load it on the CPU (possible only for portable backends such as onnxruntime or eager)"
        )
    return device


def _resolve_dtype(manifest: Mapping[str, Any], source: str) -> torch.dtype:
    dtype = getattr(torch, manifest["dtype"], None)
    if not isinstance(dtype, torch.dtype):
        raise ArtifactError(f"{source}: manifest dtype {manifest['dtype']!r} is not a torch dtype")
    return dtype


def _plan_entries(
    archive: _Archive, device: torch.device, here: Mapping[str, Any], allow_code: bool
) -> list[tuple[dict[str, Any], Backend, bool]]:
    """Per module entry: the backend here, and whether its payload is used. Raises before extraction."""
    from aitune_ci.backends.registry import get_backend

    manifest, source = archive.manifest, archive.source
    differences = environment_differences(manifest["environment"], here)
    plan = []
    warned_env = False
    for entry in manifest["modules"]:
        name, what = entry["backend"], entry["module"] or "the whole model"
        try:
            backend = get_backend(name)
        except AituneCIError as exc:
            raise ArtifactError(
                f"{source}: {what} uses backend {name!r}, which is not registered here ({exc}); install the package "
                f"that provides it, or {archive.hint}"
            ) from None
        if _jsonable(backend.options) != entry["options"]:
            raise ArtifactError(
                f"{source}: {what} was built with backend {name!r} options {entry['options']}, but this aitune-ci "
                f"registers {name!r} with {_jsonable(backend.options)}; {archive.hint}"
            )
        ok, reason = backend.available(device)
        if not ok:
            raise ArtifactError(f"{source}: {what} needs backend {name!r}, which cannot run on {device} here: {reason}")
        device_specific = entry["payload_is_device_specific"] or backend.payload_is_device_specific
        blocking = non_portable_differences(differences)
        if device_specific and entry["files"] and blocking:
            lacking = missing_cpu_features(*blocking["cpu_features"]) if "cpu_features" in blocking else []
            why = f"; this CPU lacks {', '.join(lacking)}, so its code would die of an illegal instruction" if lacking else ""
            raise ArtifactError(
                f"{source}: {what} uses backend {name!r}, whose payload is compiled for one device and library "
                f"build, and this artifact comes from another environment ({describe_differences(blocking)}{why}). "
                f"Artifact environment: {json.dumps(manifest['environment'], sort_keys=True)}. "
                f"This environment: {json.dumps(_jsonable(here), sort_keys=True)}. Rebuild it here: {archive.hint}"
            )
        if differences and not warned_env:
            warned_env = True
            warnings.warn(
                ArtifactWarning(
                    f"{source}: built in another environment ({describe_differences(differences)}); its payloads are "
                    "portable so it loads, but its latency and numerics may differ from the baseline's"
                ),
                stacklevel=3,
            )
        use_payload = True
        if (entry["executes_code"] or _executes_code(backend, bool(entry["files"]))) and not allow_code:
            if entry["ahead_of_time"]:
                raise ArtifactError(
                    f"{source}: {what} uses backend {name!r}, whose payload is executable code (a compiled library "
                    "or engine), and the artifact is not pinned. Pass expected_sha256=<the artifact_sha256 of your "
                    "committed baseline> (the pytest plugin does), or trusted=True if you built this file yourself"
                )
            use_payload = False
            warnings.warn(
                ArtifactWarning(
                    f"{source}: skipping the compile cache of {what} ({name}): it holds pickled compiled graphs and "
                    "the artifact is not pinned, so the first call compiles from scratch. Pass expected_sha256=<the "
                    "artifact_sha256 of your committed baseline> or trusted=True to use it"
                ),
                stacklevel=3,
            )
        elif device.type == "cpu" and entry["files"] and not entry["ahead_of_time"] and "cpu_features" in differences:
            # Inductor generates CPU kernels for the vector ISA it finds, but its cache key (torch
            # 2.13's CacheBase.get_system) names no CPU: another CPU's entries would be taken as ours.
            use_payload = False
            warnings.warn(
                ArtifactWarning(
                    f"{source}: skipping the compile cache of {what} ({name}): its kernels were generated on a CPU "
                    f"with other features ({describe_differences({'cpu_features': differences['cpu_features']})}), "
                    "and inductor's cache does not tell CPUs apart, so the first call compiles here"
                ),
                stacklevel=3,
            )
        plan.append((entry, backend, use_payload))
    return plan


def _load_weights(model: torch.nn.Module, file: Path, manifest: Mapping[str, Any], source: str, hint: str) -> None:
    from safetensors.torch import load_file

    try:
        state = load_file(str(file), device="cpu")
    except Exception as exc:  # a consistent manifest around a bad file: still a refusal, not a crash
        raise ArtifactError(f"{source}: the weights cannot be read ({type(exc).__name__}: {exc}); {hint}") from None
    for alias, stored in manifest["weights"]["aliases"].items():
        if stored not in state:
            raise ArtifactError(f"{source}: weight alias {alias!r} points to {stored!r}, which is not stored; {hint}")
        state[alias] = state[stored]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{source}: the weights do not fit the model ({exc}); {hint}") from None


def _check_structure(model: torch.nn.Module, manifest: Mapping[str, Any], dtype: torch.dtype, source: str) -> None:
    entries = _state_entries(model, dtype)
    if _structure_sha256(model, entries) == manifest["model"]["structure_sha256"]:
        return
    saved = {e[0]: e for e in manifest["model"]["state"]}
    have = {e[0]: e for e in entries}
    problems = [f"missing {n!r}" for n in saved if n not in have][:3]
    problems += [f"unexpected {n!r}" for n in have if n not in saved][:3]
    problems += [
        f"{n!r} is {have[n][2]}{have[n][1]} here, {saved[n][2]}{saved[n][1]} in the artifact"
        for n in have
        if n in saved and have[n] != saved[n]
    ][:3]
    detail = "; ".join(problems) or "the submodule types differ"
    raise ArtifactError(
        f"{source}: the model passed to load is not the one this artifact was built for "
        f"(given {type(model).__module__}.{type(model).__qualname__}, built for {manifest['model']['class']}: "
        f"{detail}). Pass an instance of the tuned "
        f"model class, or {rebuild_hint(manifest['fixture'])}"
    )


def _swap_submodule(root: torch.nn.Module, path: str, new: torch.nn.Module) -> torch.nn.Module:
    """``root`` with the submodule at ``path`` replaced, copying only the modules along the path.

    Parameters and every other submodule stay shared, so the user's model is not modified.
    """
    head, _, rest = path.partition(".")
    clone = copy.copy(root)
    clone._modules = dict(root._modules)
    if head not in root._modules:
        raise ArtifactError(f"the model has no submodule {path!r}")
    clone._modules[head] = new if not rest else _swap_submodule(root._modules[head], rest, new)
    return clone


def load(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    *,
    expected_sha256: str | None = None,
    device: torch.device | str | None = None,
    trusted: bool = False,
    limits: ArtifactLimits | None = None,
) -> LoadedArtifact:
    """Load a ``.ait`` artifact onto ``model`` and return a ready-to-call module.

    ``model`` supplies the structure (an instance of the tuned model's class); the artifact supplies
    the weights (written into ``model`` in place, moved to the device and dtype) and each module's
    backend payload, loaded with no recompilation where the backend allows it.

    Args:
        path: the ``.ait`` file.
        model: an instance of the model the artifact was built for.
        expected_sha256: the sha256 the committed baseline records; the file must match it. A
            pinned artifact may also load payloads that execute code (see the module docstring).
        device: where to run (default: the device it was built for).
        trusted: load payloads that execute code without a pin (only for files you built yourself).
        limits: caps on archive sizes and counts (default :class:`ArtifactLimits`).

    Raises:
        ArtifactError: for every refusal (unsafe or corrupt archive, sha256 mismatch, unknown
            schema, another environment for a device-specific payload, a model that does not fit,
            a backend that cannot run here); the message says what to do.
    """
    if not isinstance(model, torch.nn.Module):
        raise ArtifactError(
            f"load needs the model instance (an nn.Module) the artifact was built for, got {type(model).__name__}"
        )
    limits = limits or ArtifactLimits()
    from aitune_ci.environment import environment_fingerprint

    with _Archive(path, limits, expected_sha256) as archive:
        manifest, source = archive.manifest, archive.source
        device_ = _resolve_device(device, manifest, source)
        dtype = _resolve_dtype(manifest, source)
        plan = _plan_entries(archive, device_, environment_fingerprint(device_), expected_sha256 is not None or trusted)
        root = Path(tempfile.mkdtemp(prefix="aitune-ait-"))
        try:
            archive.verify(write_to=root / "members")
            model.eval().to(device_)
            if dtype != torch.float32:
                model.to(dtype)
            _check_structure(model, manifest, dtype, source)
            _load_weights(model, root / "members" / WEIGHTS_MEMBER, manifest, source, archive.hint)
            loaded = {
                entry["module"]: _load_entry(entry, backend, use, model, root, device_, dtype, archive)
                for entry, backend, use in plan
            }
            if "" in loaded:
                run, runner_model = loaded[""], model
            else:
                runner_model = model
                backends = {e["module"]: e["backend"] for e in manifest["modules"]}
                for module, fn in loaded.items():
                    replacement = fn if isinstance(fn, torch.nn.Module) else _CallableModule(fn, backends[module])
                    runner_model = _swap_submodule(runner_model, module, replacement)
                run = runner_model
            return LoadedArtifact(run, runner_model, manifest, archive.sha256, Path(path), root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise


def _load_entry(
    entry: Mapping[str, Any],
    backend: Backend,
    use_payload: bool,
    model: torch.nn.Module,
    root: Path,
    device: torch.device,
    dtype: torch.dtype,
    archive: _Archive,
) -> Callable[..., Any]:
    name, what = entry["backend"], entry["module"] or "the whole model"
    try:
        module = model.get_submodule(entry["module"]) if entry["module"] else model
    except AttributeError:
        raise ArtifactError(
            f"{archive.source}: the model has no submodule {entry['module']!r} (tuned with {name}); {archive.hint}"
        ) from None
    indir = root / "members" / entry["dir"]
    indir.mkdir(parents=True, exist_ok=True)
    scratch = root / "scratch" / entry["dir"]
    scratch.mkdir(parents=True, exist_ok=True)
    axes = {p: {int(d): n for d, n in dims.items()} for p, dims in entry["dynamic_axes"].items()}
    ctx = BuildContext(device=device, dtype=dtype, workdir=scratch, dynamic_axes=axes, options=backend.options)
    try:
        if entry["meta"] is None:
            return backend.build(module, [], ctx)  # no payload: an eager-family backend, nothing to compile
        meta = dict(entry["meta"])
        if not use_payload:
            meta["file"] = None
        return backend.load(module, indir, meta, ctx)
    except ArtifactError:
        raise
    except Exception as exc:
        raise ArtifactError(
            f"{archive.source}: backend {name!r} could not load the payload of {what} ({type(exc).__name__}: {exc}); "
            f"{archive.hint}"
        ) from exc
