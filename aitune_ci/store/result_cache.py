"""The runner's result cache: tune results by work key, so that a check does not tune the same work twice.

In relative mode a fixture whose base does the same work as its head passes untimed (``check``),
yet its head was still tuned: on an H200, 24 s of a 50 s PR check that changed no model went to
loading builds, checking them against eager and timing them, for numbers nothing judged. When
this runner has already tuned that very work (the nightly, or an earlier run of the PR), its
result answers for the head: the work key covers what a build key covers (the rule in
:mod:`aitune_ci.store.build_inputs`, environment included) plus the spec's options and every
backend, so the earlier run built, validated and timed the same code on the same inputs here.
A stored-mode check whose baseline's latest update did its work is answered the same way.
``--aitune-rebuild`` tunes anyway.

Layout, beside the build cache (same directory, same ``--aitune-cache-dir`` / ``off``)::

    <cache dir>/results/v1/<key[:2]>/<key>.json   schema_version, key, fixture, stored_at, aitune_ci, result

- Writes are atomic (:mod:`aitune_ci.atomic`); a reader sees a whole entry or none.
- Bounded: after each store, the oldest entries beyond :data:`MAX_ENTRIES` go (a few kB each).
- An entry that cannot be trusted (unreadable, another schema or key, a result that does not
  parse) raises :class:`~aitune_ci.store.build_cache.CacheEntryError`; the caller discards it and tunes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import replace
from pathlib import Path

from aitune_ci.atomic import atomic_write_text, locked
from aitune_ci.errors import DataFileError
from aitune_ci.result import TuneResult
from aitune_ci.store.build_cache import CacheEntryError
from aitune_ci.version import __version__

__all__ = ["MAX_ENTRIES", "RESULT_CACHE_SCHEMA_VERSION", "ResultCache"]

RESULT_CACHE_SCHEMA_VERSION = 1
#: Entries kept: far more fixtures than a repo has, each a few kB.
MAX_ENTRIES = 5000


class ResultCache:
    """Tune results on disk under ``<root>/results``, by work key (see the module docstring)."""

    def __init__(self, root: Path, max_entries: int = MAX_ENTRIES) -> None:
        self.root = Path(root) / "results" / f"v{RESULT_CACHE_SCHEMA_VERSION}"
        self.max_entries = max_entries

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def read(self, key: str) -> TuneResult | None:
        """The result stored for ``key``, None when there is none; CacheEntryError when it cannot be trusted."""
        path = self.path(key)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheEntryError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
        try:
            entry = json.loads(text)
        except ValueError as exc:
            raise CacheEntryError(f"{path} is not JSON ({exc})") from None
        if not isinstance(entry, dict) or entry.get("schema_version") != RESULT_CACHE_SCHEMA_VERSION:
            raise CacheEntryError(f"{path} is not schema_version {RESULT_CACHE_SCHEMA_VERSION}")
        if entry.get("key") != key:
            raise CacheEntryError(f"{path} was written for another key")
        try:
            return TuneResult.from_json(entry.get("result"), source=path)
        except DataFileError as exc:
            raise CacheEntryError(str(exc)) from None

    def store(self, key: str, result: TuneResult) -> Path:
        """Write ``result`` (without its in-process objects) under ``key``, then drop the oldest beyond the bound."""
        path = self.path(key)
        entry = {
            "schema_version": RESULT_CACHE_SCHEMA_VERSION,
            "key": key,
            "fixture": result.name,
            "stored_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "aitune_ci": __version__,
            "result": replace(result, runtime=None).to_json(),
        }
        atomic_write_text(path, json.dumps(entry, indent=1, sort_keys=True) + "\n")
        self.prune()
        return path

    def discard(self, key: str) -> None:
        try:
            self.path(key).unlink()
        except OSError:
            pass

    def prune(self) -> list[Path]:
        """Remove the oldest entries (by mtime) beyond ``max_entries``; returns the removed paths."""
        entries = list(self.root.glob("*/*.json"))
        if len(entries) <= self.max_entries:
            return []
        with locked(self.root / "prune"):

            def mtime(p: Path) -> float:
                try:
                    return p.stat().st_mtime
                except OSError:
                    return 0.0

            entries = sorted(self.root.glob("*/*.json"), key=mtime)
            removed = entries[: max(len(entries) - self.max_entries, 0)]
            for p in removed:
                try:
                    os.unlink(p)
                except OSError:
                    pass
        return removed
