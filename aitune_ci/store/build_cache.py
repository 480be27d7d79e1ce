"""The runner's build cache: each backend's built payload, loaded instead of rebuilt when its key matches.

A PR check rebuilds every backend of every fixture, although most PRs change nothing most models
depend on; on an H200 that was 50-70 s of ``aoti`` per check. So each build whose backend has a
payload worth keeping (an AOTInductor package, an ONNX graph, a TensorRT engine, inductor's compile
cache; not eager-family backends, which have nothing to build) is saved under the runner's cache
directory, keyed by its build key (:class:`~aitune_ci.store.artifact.hashing.BuildKeys`; the rule
of what the key covers is :mod:`aitune_ci.store.build_inputs`), and the next tune with the same
key loads it. The loaded build is validated against eager and measured like a fresh one.

Layout (not committed; the GitHub Action keeps it in ``actions/cache`` keyed on torch, CUDA and GPU)::

    <cache dir>/v1/<key[:2]>/<key>/entry.json     schema_version, key, backend, options, meta, files + sha256
    <cache dir>/v1/<key[:2]>/<key>/payload/...    what the backend's ``save`` wrote
    <cache dir>/tmp/                              entries being written
    <cache dir>/results/...                       update and relative-check results by work key (``store.result_cache``)

- Location: ``--aitune-cache-dir``, else ``$AITUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/aitune-ci/builds``
  (``~/.cache/aitune-ci/builds``); ``off`` turns the cache off.
- Writes are atomic: an entry is staged under ``tmp/`` and renamed into place; a reader sees a
  whole entry or none. Two processes storing one key: the first rename wins.
- Bounded: after each store the least recently used entries (``entry.json``'s mtime, touched on
  every load) are removed until the cache holds at most ``$AITUNE_CACHE_MAX_GB`` (default 20).
  Deleting the directory is always safe.
- A corrupt entry (unreadable manifest, wrong schema or key, a missing file, a sha256 mismatch, a
  payload its backend cannot load) is discarded with a progress line and the backend is built.
- Trust: entries hold native code and pickles, loaded without a pin. Only code that already runs
  on the runner can write them (a PR check runs the PR's code anyway); ``actions/cache`` keeps a
  PR branch's saves out of the default branch's scope.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from aitune_ci.atomic import locked
from aitune_ci.backends.base import Backend, BuildContext, Payload
from aitune_ci.backends.registry import get_backend
from aitune_ci.errors import AituneCIError
from aitune_ci.store.artifact.hashing import BuildKeys, jsonable
from aitune_ci.store.baseline import backend_key
from aitune_ci.version import __version__

__all__ = [
    "CACHE_SCHEMA_VERSION",
    "BuildCache",
    "CacheEntryError",
    "FixtureBuilds",
    "cacheable",
    "default_cache_dir",
    "resolve_cache_dir",
]

CACHE_SCHEMA_VERSION = 1
ENTRY_FILE = "entry.json"
_LAYOUT = f"v{CACHE_SCHEMA_VERSION}"
_DEFAULT_MAX_GB = 20.0
#: A staged write older than this belongs to a process that died: the next prune removes it.
_STALE_S = 24 * 3600.0
#: ``--aitune-cache-dir`` values that turn the cache off.
OFF = ("off", "none", "0", "false")


class CacheEntryError(AituneCIError):
    """A cache entry that cannot be used: it is discarded and the backend is built."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$AITUNE_CACHE_DIR``, else ``$XDG_CACHE_HOME/aitune-ci/builds``, else ``~/.cache/aitune-ci/builds``."""
    env = os.environ if environ is None else environ
    if env.get("AITUNE_CACHE_DIR"):
        return Path(env["AITUNE_CACHE_DIR"]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "aitune-ci" / "builds"


def resolve_cache_dir(option: str | os.PathLike[str] | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The cache directory an option value names (None: the default; ``off``: no cache, returns None)."""
    if option is None or str(option) == "":
        text = (os.environ if environ is None else environ).get("AITUNE_CACHE_DIR", "")
        return None if text.lower() in OFF else default_cache_dir(environ)
    if str(option).lower() in OFF:
        return None
    return Path(option).expanduser()


def cacheable(backend: Backend) -> bool:
    """Whether a backend's build is worth caching: it has a payload beyond the weights."""
    return backend.payload is not Payload.WEIGHTS


def _max_bytes(environ: Mapping[str, str] | None = None) -> int:
    text = (os.environ if environ is None else environ).get("AITUNE_CACHE_MAX_GB", "")
    try:
        gb = float(text) if text else _DEFAULT_MAX_GB
    except ValueError:
        gb = _DEFAULT_MAX_GB
    return int(max(gb, 0.0) * 1024**3)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link (instant; survives the entry's eviction), else copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


@dataclass(frozen=True)
class EntryInfo:
    """One entry as the pruner sees it."""

    key: str
    path: Path
    size_bytes: int
    last_used: float


class BuildCache:
    """Entries on disk under ``root``: load, store, discard and prune (see the module docstring)."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = _max_bytes() if max_bytes is None else max_bytes

    def entry_dir(self, key: str) -> Path:
        return self.root / _LAYOUT / key[:2] / key

    def has(self, key: str) -> bool:
        return (self.entry_dir(key) / ENTRY_FILE).is_file()

    # -- reading ---------------------------------------------------------------------------------
    def read_entry(self, key: str, backend: Backend) -> dict[str, Any]:
        """The checked ``entry.json`` of ``key``; raises CacheEntryError when it cannot be trusted."""
        folder = self.entry_dir(key)
        try:
            entry = json.loads((folder / ENTRY_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise CacheEntryError(f"its {ENTRY_FILE} cannot be read ({type(exc).__name__}: {exc})") from None
        if not isinstance(entry, dict) or entry.get("schema_version") != CACHE_SCHEMA_VERSION:
            raise CacheEntryError(f"its {ENTRY_FILE} is not schema_version {CACHE_SCHEMA_VERSION}")
        if entry.get("key") != key or entry.get("backend") != backend.name:
            raise CacheEntryError("it was written for another key or backend")
        if entry.get("options") != jsonable(backend.options) or not isinstance(entry.get("files"), dict):
            raise CacheEntryError("its backend options or file list do not match")
        for name, info in entry["files"].items():
            path = folder / "payload" / name
            if ".." in Path(name).parts or Path(name).is_absolute():
                raise CacheEntryError(f"it names a file outside the entry ({name!r})")
            if not path.is_file() or path.stat().st_size != info.get("size"):
                raise CacheEntryError(f"payload file {name!r} is missing or truncated")
            if _sha256(path) != info.get("sha256"):
                raise CacheEntryError(f"payload file {name!r} does not match its sha256")
        return entry

    def load(self, key: str, backend: Backend, module: torch.nn.Module, ctx: BuildContext) -> Callable[..., Any]:
        """Load ``key``'s payload with ``backend.load`` (files linked into ``ctx.workdir`` first)."""
        entry = self.read_entry(key, backend)
        folder = self.entry_dir(key) / "payload"
        local = ctx.workdir / "from-build-cache"
        for name in entry["files"]:
            _link_or_copy(folder / name, local / name)
        local.mkdir(parents=True, exist_ok=True)
        try:
            built = backend.load(module, local, entry["meta"] or {}, ctx)
        except Exception as exc:
            raise CacheEntryError(f"backend {backend.name!r} could not load it ({type(exc).__name__}: {exc})") from exc
        try:
            os.utime(self.entry_dir(key) / ENTRY_FILE)  # least recently used goes first
        except OSError:
            pass
        return built

    def discard(self, key: str) -> None:
        shutil.rmtree(self.entry_dir(key), ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------------
    def store(
        self, key: str, backend: Backend, built: Callable[..., Any], ctx: BuildContext, module: str, replace: bool
    ) -> int:
        """Save ``built`` under ``key`` atomically; returns its size in bytes (0: already there).

        ``replace``: a fresh build takes the place of an existing entry (``--aitune-rebuild``/update).
        Raises whatever ``backend.save`` raises.
        """
        final = self.entry_dir(key)
        if final.exists() and not replace:
            return 0
        stage = self.root / "tmp" / uuid.uuid4().hex
        payload = stage / "payload"
        payload.mkdir(parents=True)
        try:
            meta = backend.save(built, payload)
            meta = json.loads(json.dumps(meta, allow_nan=False)) if meta is not None else None
            files = {
                p.relative_to(payload).as_posix(): {"sha256": _sha256(p), "size": p.stat().st_size}
                for p in sorted(payload.rglob("*"))
                if p.is_file() and not p.is_symlink()
            }
            entry = {
                "schema_version": CACHE_SCHEMA_VERSION,
                "key": key,
                "backend": backend.name,
                "backend_class": f"{type(backend).__module__}.{type(backend).__qualname__}",
                "options": jsonable(backend.options),
                "module": module,
                "dynamic_axes": jsonable(ctx.dynamic_axes),
                "meta": meta,
                "files": files,
                "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "aitune_ci_version": __version__,
                "torch": torch.__version__,
            }
            (stage / ENTRY_FILE).write_text(json.dumps(entry, indent=2, sort_keys=True) + "\n")
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                old = self.root / "tmp" / f"old-{uuid.uuid4().hex}"
                try:
                    os.rename(final, old)
                except OSError:
                    pass
                else:
                    shutil.rmtree(old, ignore_errors=True)
            try:
                os.rename(stage, final)
            except OSError:  # another process stored the same key first: keep theirs
                return 0
            return sum(f["size"] for f in files.values())
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def entries(self) -> list[EntryInfo]:
        """Every complete entry, with its size and last use."""
        found = []
        for manifest in (self.root / _LAYOUT).glob(f"*/*/{ENTRY_FILE}"):
            try:
                data = json.loads(manifest.read_text())
                size = sum(int(f.get("size", 0)) for f in data.get("files", {}).values())
                found.append(EntryInfo(manifest.parent.name, manifest.parent, size, manifest.stat().st_mtime))
            except (OSError, ValueError, AttributeError, TypeError):
                found.append(EntryInfo(manifest.parent.name, manifest.parent, 0, 0.0))  # corrupt: first to go
        return found

    def prune(self, max_bytes: int | None = None) -> list[EntryInfo]:
        """Remove least recently used entries until at most ``max_bytes`` remain; returns those removed."""
        limit = self.max_bytes if max_bytes is None else max_bytes
        removed: list[EntryInfo] = []
        self.root.mkdir(parents=True, exist_ok=True)
        with locked(self.root / "prune"):
            for stale in (self.root / "tmp").glob("*"):  # left by a process killed mid-write
                try:
                    if time.time() - stale.stat().st_mtime > _STALE_S:
                        shutil.rmtree(stale, ignore_errors=True)
                except OSError:
                    pass
            entries = sorted(self.entries(), key=lambda e: e.last_used)
            total = sum(e.size_bytes for e in entries)
            for entry in entries:
                if total <= limit:
                    break
                shutil.rmtree(entry.path, ignore_errors=True)
                total -= entry.size_bytes
                removed.append(entry)
        return removed


@dataclass
class FixtureBuilds:
    """One tune's use of the build cache: the engine's ``cached`` callback, then :meth:`store_new`.

    The key of each backend is computed when the engine is about to build it (after the eager
    reference ran), whether or not the cache may be read, so a nightly that builds fresh stores
    its builds under exactly the keys a PR check will look up.

    Attributes:
        cache: the cache on disk.
        keys: the model's build keys.
        read: whether entries may be loaded (False under ``--aitune-rebuild`` and updates).
        progress: where lines go.
        label: how progress lines name the tune (``tune_x`` or ``base · tune_x``).
        allowed: ``(module path, backend)`` pairs that may be loaded; None: any. Relative mode gives
            the base only what the head loaded, so both sides of a pair come the same route.
    """

    cache: BuildCache
    keys: BuildKeys
    read: bool
    progress: Callable[[str], None]
    label: str
    allowed: frozenset[tuple[str, str]] | None = None
    #: (module path, backend) -> key of each cacheable backend the engine reached
    looked_up: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (module path, backend) of builds loaded from the cache
    loaded: set[tuple[str, str]] = field(default_factory=set)

    def __call__(self, name: str, path: str, module: torch.nn.Module, ctx: BuildContext) -> Callable[..., Any] | None:
        """The engine's hook: a loaded build of ``name`` on ``module``, or None to build it. Never raises."""
        try:
            backend = get_backend(name)
            if not cacheable(backend):
                return None
            key = self.keys.key(name, path, ctx.dynamic_axes)
        except Exception as exc:  # a key that cannot be computed means no reuse, not a failed tune
            self.progress(f"{self.label} · {name}: no build cache key ({type(exc).__name__}: {exc}); building")
            return None
        self.looked_up[(path, name)] = key
        if not self.read or (self.allowed is not None and (path, name) not in self.allowed) or not self.cache.has(key):
            return None
        try:
            built = self.cache.load(key, backend, module, ctx)
        except Exception as exc:  # corrupt or unloadable: discard, then build as if it were absent
            self.cache.discard(key)
            self.progress(
                f"{self.label} · {name}: build cache entry {key[:12]} is unusable ({exc}); discarded, building instead"
            )
            return None
        self.loaded.add((path, name))
        return built

    def store_new(self, runtime: Any) -> None:
        """Save every build of this tune that was built (not loaded) and ran; prune; one progress line."""
        if runtime is None:
            return
        t0, stored, total = time.perf_counter(), [], 0
        for (path, name), key in self.looked_up.items():
            if (path, name) in self.loaded:
                continue
            slot = backend_key(name, path)
            built, backend, ctx = runtime.built.get(slot), runtime.backends.get(slot), runtime.contexts.get(slot)
            if built is None or backend is None or ctx is None:
                continue  # a failed build never reaches runtime.built (an inaccurate one does, and is kept)
            try:
                size = self.cache.store(key, backend, built, ctx, path, replace=not self.read)
            except Exception as exc:  # a full disk or a backend that cannot save: the tune stands
                self.progress(f"{self.label} · {name}: not stored in the build cache ({type(exc).__name__}: {exc})")
                continue
            if size:
                stored.append(f"{path}/{name}" if path else name)
                total += size
        if not stored:
            return
        try:
            removed = self.cache.prune()
        except Exception as exc:
            removed = []
            self.progress(f"{self.label}: build cache not pruned ({type(exc).__name__}: {exc})")
        evicted = f"; evicted {len(removed)} least recently used" if removed else ""
        self.progress(
            f"{self.label}: stored {', '.join(stored)} in the build cache {self.cache.root} "
            f"({total / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s{evicted})"
        )
