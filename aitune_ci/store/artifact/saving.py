"""``ait.save``: stage a tune's weights and payloads, describe them in a manifest, zip them atomically."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from safetensors.torch import save_file

from aitune_ci.atomic import atomic_write_stream
from aitune_ci.errors import AituneCIError, ArtifactError
from aitune_ci.result import MIXED
from aitune_ci.samples import sample_signature
from aitune_ci.store.artifact.archive import CHUNK, WEIGHTS_MEMBER, artifact_sha256, file_sha256, module_backends
from aitune_ci.store.artifact.hashing import jsonable, spec_fields, state_entries, structure_sha256, tune_hash
from aitune_ci.store.artifact.safety import (
    ARTIFACT_FORMAT,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    check_member_name,
    payload_executes_code,
    validate_manifest,
)
from aitune_ci.store.baseline import backend_key
from aitune_ci.version import __version__

__all__ = ["ArtifactInfo", "save", "save_for_load_timing"]

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)  # byte-stable archives: equal content, equal file


@dataclass(frozen=True)
class ArtifactInfo:
    """What :func:`save` wrote.

    Attributes:
        path: the ``.ait`` file.
        sha256: the whole file's sha256 (record it in the baseline; pass it to ``load``).
        size_bytes: the file's size.
        fixture: the tuned spec's name.
        modules: module path -> backend (``""`` is the whole model).
        spec_hash: the spec hash recorded in the manifest (what artifact reuse matches on), or None
            when unknown.
    """

    path: Path
    sha256: str
    size_bytes: int
    fixture: str
    modules: Mapping[str, str]
    spec_hash: str | None


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
        spec_hash: the :func:`~aitune_ci.store.artifact.hashing.spec_hash` of the spec, recorded
            in the manifest for artifact reuse (computed here when the runtime keeps its spec as
            ``runtime.spec``).

    Raises:
        ArtifactError: nothing to save, the backend was not built, or a backend cannot save.
    """
    return _save(result, Path(path), backend, spec_hash, hash_spec=True)


def save_for_load_timing(result: Any, path: str | os.PathLike[str]) -> ArtifactInfo:
    """``result``'s winner as a ``.ait`` that a check writes only to time its load, then deletes.

    It loads as a committed artifact does (``load`` reads no spec hash), and costs less to write: no
    spec hash, a digest of every weight and of the user's code that only artifact reuse matches on.
    It is still fsynced: unsynced, its write-back would run during the timed load, or during the
    latency windows after it.

    Raises:
        ArtifactError: as :func:`save`.
    """
    return _save(result, Path(path), None, None, hash_spec=False)


def _save(result: Any, path: Path, backend: str | None, spec_hash: str | None, *, hash_spec: bool) -> ArtifactInfo:
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
    if spec_hash is None and hash_spec and getattr(runtime, "spec", None) is not None:
        names = [row.backend for row in result.backends if not row.module]
        spec_hash = tune_hash(runtime.model, dtype, spec_fields(runtime.spec), names, result.environment)

    with tempfile.TemporaryDirectory(prefix="aitune-save-") as tmp:
        stage = Path(tmp)
        aliases = _stage_weights(runtime.model, stage)
        modules = [
            _save_entry(result, runtime, index, module, name, stage) for index, (module, name) in enumerate(entries)
        ]
        files = [WEIGHTS_MEMBER] + [f for m in modules for f in m["files"]]
        manifest = _manifest(result, runtime, dtype, spec_hash, aliases, modules)
        manifest["members"] = {name: _member_sha(stage / name) for name in files}
        # Never write what load refuses.
        validate_manifest(json.loads(json.dumps(manifest)), "the manifest being written")
        atomic_write_stream(path, lambda fh: _write_zip(fh, stage, manifest, files))
    return ArtifactInfo(
        path=path,
        sha256=artifact_sha256(path),
        size_bytes=path.stat().st_size,
        fixture=result.name,
        modules=module_backends(modules),
        spec_hash=spec_hash,
    )


def _choose_entries(result: Any, backend: str | None) -> list[tuple[str, str]]:
    """``(module path, backend)`` pairs to save: the one asked for, else the winner.

    The per-module mixture only when it won: a tune with ``modules=[...]`` records each part's
    choice whether or not the mixture beat the whole-model backends, and an artifact that held the
    mixture under a whole-model winner's name ran other code than the verdicts had timed.
    """
    if backend is not None:
        return [("", backend)]
    if result.winner == MIXED:
        if not result.module_choice:
            raise ArtifactError(f"tune {result.name!r}: the mixed model won but no module choice was recorded")
        return sorted((str(m), str(b)) for m, b in result.module_choice.items())
    if result.winner is None:
        raise ArtifactError(
            f"tune {result.name!r} has no winner (every backend failed or was inaccurate), so there is nothing to "
            "save; pass backend=... to save a specific one"
        )
    return [("", result.winner)]


def _manifest(
    result: Any,
    runtime: Any,
    dtype: torch.dtype,
    spec_hash: str | None,
    aliases: Mapping[str, str],
    modules: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """Every manifest field but ``members`` (which needs the staged files' digests)."""
    state = state_entries(runtime.model, dtype)
    return {
        "schema_version": SCHEMA_VERSION,
        "format": ARTIFACT_FORMAT,
        "fixture": result.name,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "aitune_ci_version": __version__,
        "spec": jsonable(result.spec),
        "spec_hash": spec_hash,
        "strategy": result.strategy,
        "winner": result.winner,
        "device": result.device,
        "dtype": str(dtype).removeprefix("torch."),
        "input_signature": _input_signature(runtime, result),
        "dynamic_axes": jsonable(result.dynamic_axes),
        "batch_axis": result.batch_axis,
        "environment": jsonable(result.environment),
        "model": {
            "class": f"{type(runtime.model).__module__}.{type(runtime.model).__qualname__}",
            "structure_sha256": structure_sha256(runtime.model, state),
            "state": state,
        },
        "weights": {"file": WEIGHTS_MEMBER, "format": "safetensors", "aliases": dict(aliases)},
        "modules": list(modules),
    }


def _stage_weights(model: torch.nn.Module, stage: Path) -> dict[str, str]:
    """Write the model's weights as the archive's safetensors member; return the tied-tensor aliases."""
    (stage / "weights").mkdir()
    tensors, aliases = _weights_for_safetensors(model)
    save_file(tensors, str(stage / WEIGHTS_MEMBER), metadata={"format": "pt"})
    return aliases


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


def _input_signature(runtime: Any, result: Any) -> list[Any]:
    samples = getattr(runtime, "samples", None)
    if samples:
        return [sample_signature(s) for s in samples]
    return list(result.spec.get("samples", []))


def _save_entry(result: Any, runtime: Any, index: int, module: str, name: str, stage: Path) -> dict[str, Any]:
    """Stage one module's payload under ``modules/<index>/`` and return its manifest entry."""
    key = backend_key(name, module)
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
        "options": jsonable(backend.options),
        "precision": str(backend.precision),
        "ahead_of_time": bool(backend.ahead_of_time),
        "payload_is_device_specific": bool(backend.payload_is_device_specific),
        "executes_code": payload_executes_code(backend, files),
        "dir": folder,
        "files": files,
        "dynamic_axes": jsonable(axes),
        "meta": meta,
    }


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
        return {"sha256": file_sha256(fh), "size": path.stat().st_size}


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
                shutil.copyfileobj(src, dst, CHUNK)
