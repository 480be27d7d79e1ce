"""Reading a ``.ait`` zip without trusting it: every byte checked against the manifest before use."""

from __future__ import annotations

import contextlib
import hashlib
import os
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from aitune_ci.errors import ArtifactError
from aitune_ci.store.artifact.safety import (
    MANIFEST_NAME,
    ArtifactLimits,
    StreamGuard,
    check_central_directory,
    check_members_match,
    parse_manifest,
    rebuild_hint,
    validate_manifest,
)

__all__ = [
    "CHUNK",
    "LFS_POINTER_PREFIX",
    "WEIGHTS_MEMBER",
    "Archive",
    "artifact_sha256",
    "file_sha256",
    "inspect_artifact",
]

#: Where the model's state_dict lives inside the archive.
WEIGHTS_MEMBER = "weights/model.safetensors"
#: Bytes read or written at a time: members are streamed, never held whole in memory.
CHUNK = 1 << 20


#: How a Git LFS pointer file begins (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md):
#: what a checkout without LFS objects holds instead of the artifact.
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1"


def _fixture_of(path: Path) -> str | None:
    """The fixture an artifact's file name names (``tune_x.ait``), for the command that rebuilds it;
    None for any other name (``pyproject.toml`` named no fixture ``pyproject``)."""
    return path.stem if path.suffix == ".ait" and path.stem.startswith("tune_") else None


def file_sha256(fh: IO[bytes]) -> str:
    """The sha256 of the rest of an open binary file, read in chunks."""
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def artifact_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a ``.ait`` file, as recorded in baselines.

    Raises:
        ArtifactError: the file cannot be read.
    """
    try:
        with open(path, "rb") as fh:
            return file_sha256(fh)
    except OSError as exc:
        raise ArtifactError(
            f"{path}: cannot read the artifact ({exc}); {rebuild_hint(_fixture_of(Path(path)))}"
        ) from None


class Archive:
    """An open, checked ``.ait``: the file's sha256, its central directory and validated manifest.

    Nothing is extracted until :meth:`verify` writes; every zipfile/OS surprise becomes an ArtifactError.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ArtifactLimits, expected_sha256: str | None) -> None:
        self.path = Path(path)
        self.source = str(path)
        self.limits = limits
        self.hint = rebuild_hint(_fixture_of(self.path))
        self._stack = contextlib.ExitStack()
        try:
            self._open(expected_sha256)
        except BaseException:
            self._stack.close()
            raise

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _open(self, expected_sha256: str | None) -> None:
        fh = self._open_file(expected_sha256)
        try:
            self.zip = self._stack.enter_context(zipfile.ZipFile(fh))
            infos = self.zip.infolist()
        except zipfile.BadZipFile as exc:
            fh.seek(0)
            if fh.read(64).lstrip().startswith(b"{"):  # runs, baselines and history lines are objects
                raise ArtifactError(
                    f"{self.source}: a JSON file (a run, baseline or history?), not a .ait archive: `aitune-ci "
                    "report` and `aitune-ci compare` read run files; artifacts are .aitune/artifacts/<hardware>/"
                    "<fixture>.ait"
                ) from None
            raise ArtifactError(
                f"{self.source}: not a complete .ait archive ({exc}); the file is truncated or corrupt "
                f"(an interrupted copy or a git LFS pointer?): {self.hint}"
            ) from None
        except Exception as exc:
            raise self._unreadable(exc) from None
        check_central_directory(infos, self.limits, self.source)
        self.infos = {info.filename: info for info in infos}
        self.manifest = self._read_manifest()
        self.hint = rebuild_hint(self.manifest["fixture"])
        check_members_match(self.manifest, self.infos, self.source)
        for name, entry in self.manifest["members"].items():
            if self.infos[name].file_size != entry["size"]:
                raise ArtifactError(
                    f"{self.source}: member {name!r} is {self.infos[name].file_size} bytes in the archive but "
                    f"{entry['size']} in the manifest; the file is corrupt: {self.hint}"
                )

    def _open_file(self, expected_sha256: str | None) -> IO[bytes]:
        """The file, open at its start, after its size and (where pinned) its sha256 were checked."""
        try:
            fh = self._stack.enter_context(open(self.path, "rb"))
            size = os.fstat(fh.fileno()).st_size
        except FileNotFoundError:
            raise ArtifactError(f"{self.source}: no such artifact; {self.hint}") from None
        except IsADirectoryError:
            raise ArtifactError(
                f"{self.source}: a folder, not a .ait file: artifacts are .aitune/artifacts/<hardware>/<fixture>.ait"
            ) from None
        except OSError as exc:
            raise ArtifactError(f"{self.source}: cannot read the artifact ({exc})") from None
        if size > self.limits.max_archive_bytes:
            raise ArtifactError(
                f"{self.source}: the file is {size} bytes, over the limit of {self.limits.max_archive_bytes} "
                "(ArtifactLimits.max_archive_bytes); refusing it"
            )
        self.size = size
        if fh.read(len(LFS_POINTER_PREFIX)) == LFS_POINTER_PREFIX:
            raise ArtifactError(
                f"{self.source}: a Git LFS pointer, not the artifact: fetch LFS objects here (`git lfs pull`, or "
                "`lfs: true` in actions/checkout)"
            )
        fh.seek(0)
        self.sha256 = file_sha256(fh)
        if expected_sha256 is not None and self.sha256 != expected_sha256.strip().lower():
            raise ArtifactError(
                f"{self.source}: sha256 is {self.sha256}, but the committed baseline records {expected_sha256}: the "
                f"artifact was changed or replaced after the baseline was written. Do not use it; {self.hint} "
                "(this rewrites the artifact and the baseline together)"
            )
        fh.seek(0)
        return fh

    def _read_manifest(self) -> dict[str, Any]:
        manifest_info = self.infos[MANIFEST_NAME]
        if manifest_info.file_size > self.limits.max_manifest_bytes:
            raise ArtifactError(
                f"{self.source}: {MANIFEST_NAME} is {manifest_info.file_size} bytes, over the limit of "
                f"{self.limits.max_manifest_bytes}; refusing it"
            )
        raw = bytearray()
        for chunk in self._stream(manifest_info, StreamGuard(self.limits, self.source)):
            raw += chunk
        return validate_manifest(parse_manifest(bytes(raw), self.source), self.source)

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
                    chunk = member.read(CHUNK)
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

    def _create(self, root: str, name: str) -> IO[bytes]:
        """A new file for member ``name`` under ``root``: never outside it, never through a link."""
        target = os.path.join(root, *name.split("/"))
        if os.path.commonpath([root, os.path.realpath(os.path.dirname(target))]) != root:
            raise ArtifactError(f"{self.source}: member {name!r} would land outside the extraction folder")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        return os.fdopen(os.open(target, flags, 0o600), "wb")

    def verify(self, write_to: Path | None = None) -> None:
        """Stream every listed member, checking its sha256; with ``write_to``, extract into that folder."""
        guard = StreamGuard(self.limits, self.source)
        root = os.path.realpath(write_to) if write_to is not None else None
        for name, entry in sorted(self.manifest["members"].items()):
            digest = hashlib.sha256()
            out = self._create(root, name) if root is not None else None
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


def module_backends(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """``{module path: backend}`` of a manifest's ``modules`` entries (``""`` is the whole model)."""
    return {entry["module"]: entry["backend"] for entry in entries}


def inspect_artifact(
    path: str | os.PathLike[str], *, verify: bool = True, limits: ArtifactLimits | None = None
) -> dict[str, Any]:
    """The validated manifest of a ``.ait`` file (for ``aitune-ci inspect`` and artifact reuse).

    Args:
        path: the artifact.
        verify: also stream every member and check its sha256 (nothing is written to disk).
        limits: caps on sizes and counts (default :class:`ArtifactLimits`).

    Raises:
        ArtifactError: the file is unsafe, corrupt, or of an unknown schema.
    """
    with Archive(path, limits or ArtifactLimits(), None) as archive:
        if verify:
            archive.verify()
        return archive.manifest
