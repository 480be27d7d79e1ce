"""Crash-safe file writes and cross-process locks: every on-disk write of aitune-ci goes through here.

A reader never sees a half-written file: the new content goes to a temporary file in the same
directory, is fsync'ed, and replaces the old file with one ``os.replace`` (atomic on POSIX and
Windows). ``locked`` serialises writers (pytest-xdist workers, parallel CI jobs) on ``<path>.lock``
so that a read-modify-write of one file never loses another process's update.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Callable

from filelock import FileLock, Timeout

from aitune_ci.errors import AituneCIError

__all__ = [
    "LockTimeout",
    "atomic_write_bytes",
    "atomic_write_stream",
    "atomic_write_text",
    "ensure_gitignore",
    "locked",
]

#: How long ``locked`` waits by default. Locks are released by the OS when their holder dies, so
#: waiting this long means another live process is writing, not that a stale lock is left behind.
DEFAULT_LOCK_TIMEOUT_S = 120.0

#: What ``ensure_gitignore`` writes: lock files and temporaries must never be committed.
_GITIGNORE = "# written by aitune-ci: lock files and unfinished temporary writes\n*.lock\n.*.tmp\n"


class LockTimeout(AituneCIError, TimeoutError):
    """Another process held a file lock for longer than the timeout."""


def atomic_write_stream(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Replace ``path`` with what ``write`` streams into a file object; readers never see a mix.

    The parent directory is created when missing. A new file gets mode 0644; an existing file keeps
    its mode. On any error the temporary file is removed and the old file is left as it was.
    ``write`` gets a binary file opened for writing and reading (a zip writer may seek back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a mix."""
    atomic_write_stream(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """``atomic_write_bytes`` for text; newlines are written as given (no platform translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: str | os.PathLike[str], timeout: float = DEFAULT_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``<path>.lock`` for the duration of the block.

    Use it around a read-modify-write of ``path``. The lock file stays on disk after release
    (deleting it would race with a waiting process); ``ensure_gitignore`` keeps it out of git.

    Raises:
        LockTimeout: the lock was not acquired within ``timeout`` seconds.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    lock = FileLock(str(lock_path), timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise LockTimeout(
            f"{lock_path}: another process has held this lock for over {timeout:g} s. "
            "Wait for the other aitune-ci run to finish, or raise the timeout."
        ) from None
    try:
        yield
    finally:
        lock.release()


def ensure_gitignore(directory: str | os.PathLike[str]) -> None:
    """Create ``directory/.gitignore`` ignoring ``*.lock`` and temporaries, unless one exists.

    An existing ``.gitignore`` is the user's and is never modified.
    """
    target = Path(directory) / ".gitignore"
    if target.exists():
        return
    with locked(target):
        if not target.exists():
            atomic_write_text(target, _GITIGNORE)
