"""Warnings raised while aitune tunes, tallied: deduplicated with counts, summarised in one line.

A tune imports and runs other people's code (torch, torchvision, transformers), whose warnings the
user can neither fix nor silence in their tests. So the pytest plugin catches them (see
``aitune_ci.plugin.quiet``) and this module keeps the tally: each distinct warning once, with how
often it was raised, which package raised it, and in which phase. Plain data: no pytest, no torch.

Counts merge by phase. Every xdist worker and every shard collects (evaluates) the same tune
fixtures, so a warning raised at ``collection`` is the same warning in each process: the merge
keeps the largest count. A fixture is tuned in one process only, so ``tuning`` counts add up.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "COLLECTION",
    "CaughtWarning",
    "TUNING",
    "WarningTally",
    "by_package",
    "detail_lines",
    "merge_warnings",
    "package_of",
    "summary_line",
    "warnings_from_json",
]

#: Raised while a tune fixture was evaluated (at collection) or before any check ran.
COLLECTION = "collection"
#: Raised while a check ran: building, validating, measuring, and the fixture's teardown.
TUNING = "tuning"
_PHASES = (COLLECTION, TUNING)

#: Longer messages are cut (a warning that prints a whole graph would bloat every report).
MESSAGE_MAX = 1000
#: Distinct messages kept per source line; beyond it, one line's varying messages (an address, a
#: shape) are counted under one entry, so a warning in a hot loop cannot grow the tally without bound.
MESSAGES_PER_LINE = 5
_OTHERS = "(and other messages from this line)"


@dataclass(frozen=True)
class CaughtWarning:
    """One distinct warning and how often it was raised.

    Attributes:
        category: the warning class's name, e.g. ``DeprecationWarning``.
        message: its text (at most ``MESSAGE_MAX`` characters).
        filename: where it was raised, relative to the package's parent (``torch/jit/_script.py``).
        lineno: the line in ``filename``.
        package: the top-level package (or module) that raised it: ``torch``, ``aitune_ci``.
        phase: ``collection`` or ``tuning``.
        count: how many times it was raised (as the warning filters let it through).
        fixtures: the tune fixtures whose checks raised it (none at collection).
    """

    category: str
    message: str
    filename: str
    lineno: int
    package: str
    phase: str
    count: int
    fixtures: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str, str, str, int]:
        return (self.phase, self.category, self.message, self.filename, self.lineno)

    @property
    def where(self) -> str:
        return f"{self.filename}:{self.lineno}"

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "message": self.message,
            "filename": self.filename,
            "lineno": self.lineno,
            "package": self.package,
            "phase": self.phase,
            "count": self.count,
            "fixtures": list(self.fixtures),
        }

    @classmethod
    def from_json(cls, data: Any) -> CaughtWarning:
        """Read one entry of a run JSON's ``warnings`` list.

        Raises:
            ValueError: a field is missing or of the wrong type (the message names it).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a warning must be a JSON object, found {type(data).__name__}")
        for name, kind in (("category", str), ("message", str), ("filename", str), ("package", str), ("phase", str)):
            if not isinstance(data.get(name), kind):
                raise ValueError(f"warning field {name!r} must be a string, found {data.get(name)!r}")
        for name in ("lineno", "count"):
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"warning field {name!r} must be a whole number >= 0, found {value!r}")
        if data["phase"] not in _PHASES:
            raise ValueError(f"warning field 'phase' must be one of {', '.join(_PHASES)}, found {data['phase']!r}")
        fixtures = data.get("fixtures", [])
        if not isinstance(fixtures, list) or not all(isinstance(f, str) for f in fixtures):
            raise ValueError(f"warning field 'fixtures' must be a list of names, found {fixtures!r}")
        return cls(
            category=data["category"],
            message=data["message"],
            filename=data["filename"],
            lineno=data["lineno"],
            package=data["package"],
            phase=data["phase"],
            count=data["count"],
            fixtures=tuple(fixtures),
        )


def warnings_from_json(items: Any) -> list[CaughtWarning]:
    """A run JSON's ``warnings`` list (absent in runs written before it existed: empty).

    Raises:
        ValueError: ``items`` is not a list, or an entry is malformed.
    """
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"'warnings' must be a list, found {type(items).__name__}")
    return [CaughtWarning.from_json(item) for item in items]


class WarningTally:
    """The distinct warnings of one process's run, counted as they are raised.

    ``add`` is called for every warning raised, also inside a measured loop, so it only bumps
    counters; the ``CaughtWarning`` records are built when asked for.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str, str, str, int], int] = {}
        self._packages: dict[tuple[str, str, str, str, int], str] = {}
        self._fixtures: dict[tuple[str, str, str, str, int], set[str]] = {}
        self._messages_per_line: dict[tuple[str, str, str, int], int] = {}

    def add(
        self,
        *,
        category: str,
        message: str,
        filename: str,
        lineno: int,
        package: str,
        phase: str,
        fixture: str | None = None,
    ) -> None:
        """Count one raised warning."""
        if len(message) > MESSAGE_MAX:
            message = message[: MESSAGE_MAX - 1] + "…"
        key = (phase, category, message, filename, lineno)
        if key not in self._counts:
            line = (phase, category, filename, lineno)
            if self._messages_per_line.get(line, 0) >= MESSAGES_PER_LINE:
                key = (phase, category, _OTHERS, filename, lineno)
            else:
                self._messages_per_line[line] = self._messages_per_line.get(line, 0) + 1
            if key not in self._counts:
                self._counts[key], self._packages[key], self._fixtures[key] = 0, package, set()
        self._counts[key] += 1
        if fixture:
            self._fixtures[key].add(fixture)

    def absorb(self, others: Iterable[CaughtWarning]) -> None:
        """Merge another process's warnings (an xdist worker's) into this tally, by phase (see the module)."""
        merged = merge_warnings([self.entries(), list(others)])
        self._counts = {w.key: w.count for w in merged}
        self._packages = {w.key: w.package for w in merged}
        self._fixtures = {w.key: set(w.fixtures) for w in merged}

    def entries(self) -> list[CaughtWarning]:
        """Every distinct warning, the most frequent first."""
        return _ordered(
            CaughtWarning(
                category=key[1],
                message=key[2],
                filename=key[3],
                lineno=key[4],
                package=self._packages[key],
                phase=key[0],
                count=count,
                fixtures=tuple(sorted(self._fixtures[key])),
            )
            for key, count in self._counts.items()
        )

    @property
    def total(self) -> int:
        return sum(self._counts.values())


def _ordered(entries: Iterable[CaughtWarning]) -> list[CaughtWarning]:
    return sorted(entries, key=lambda w: (-w.count, w.package, w.filename, w.lineno, w.message, w.phase))


def merge_warnings(runs: Sequence[Sequence[CaughtWarning]]) -> list[CaughtWarning]:
    """The warnings of several processes' runs (xdist workers, shards) as one list.

    A ``collection`` warning keeps its largest count (each process collected the same fixtures); a
    ``tuning`` warning's counts add up (each fixture is tuned in one process). Fixture lists join.
    """
    merged: dict[tuple[str, str, str, str, int], CaughtWarning] = {}
    for run in runs:
        for w in run:
            seen = merged.get(w.key)
            if seen is None:
                merged[w.key] = w
                continue
            count = max(seen.count, w.count) if w.phase == COLLECTION else seen.count + w.count
            fixtures = tuple(sorted(set(seen.fixtures) | set(w.fixtures)))
            merged[w.key] = replace(seen, count=count, fixtures=fixtures)
    return _ordered(merged.values())


def package_of(filename: str, search_paths: Sequence[str]) -> tuple[str, str]:
    """``(package, shown path)`` of the file a warning was raised in.

    The package is the first path component under the longest ``search_paths`` entry (``sys.path``)
    that holds the file: ``.../site-packages/torch/jit/_script.py`` is ``("torch",
    "torch/jit/_script.py")``. A file under none of them keeps its full path and names its own
    directory; ``<frozen importlib._bootstrap>`` and other pseudo-files belong to ``python``.
    """
    if not filename or filename.startswith("<") or not os.path.isabs(filename):
        return "python", filename or "?"
    path = os.path.normpath(filename)
    best = ""
    for entry in search_paths:
        if not entry:
            continue
        root = os.path.normpath(entry)
        if len(root) > len(best) and path.startswith(root.rstrip(os.sep) + os.sep):
            best = root
    if not best:
        return os.path.basename(os.path.dirname(path)) or "?", path
    shown = os.path.relpath(path, best)
    top = shown.split(os.sep, 1)[0]
    return (top[:-3] if top.endswith(".py") else top), shown.replace(os.sep, "/")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def summary_line(entries: Sequence[CaughtWarning], *, verbose: bool = False, reported: bool = False) -> str | None:
    """``aitune: 22 warnings from torch (14), torchvision (6), aitune_ci (2); -v shows them``; None if none.

    Args:
        entries: the run's warnings.
        verbose: the details follow (``-v``), so the line does not point to ``-v``.
        reported: a report file is written, which lists them too.
    """
    total = sum(w.count for w in entries)
    if not total:
        return None
    pointers = ([] if verbose else ["-v shows them"]) + (["the report lists them"] if reported else [])
    tail = f"; {', '.join(pointers)}" if pointers else ":"
    return f"aitune: {_plural(total, 'warning')} from {by_package(entries)} while tuning{tail}"


def by_package(entries: Sequence[CaughtWarning], most: int = 4) -> str:
    """``torch (14), torchvision (6), aitune_ci (2)``: warnings per package, the most frequent first."""
    counts: dict[str, int] = {}
    for w in entries:
        counts[w.package] = counts.get(w.package, 0) + w.count
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = ", ".join(f"{name} ({n:,})" for name, n in ranked[:most])
    return shown + (f", {len(ranked) - most} more" if len(ranked) > most else "")


def detail_lines(entries: Sequence[CaughtWarning], *, width: int = 240) -> list[str]:
    """One line per distinct warning: count, category, message (first line), where, and when."""
    lines = []
    for w in entries:
        message = w.message.strip().splitlines()[0] if w.message.strip() else ""
        if len(message) > width:
            message = message[: width - 1] + "…"
        when = w.phase if not w.fixtures else f"{w.phase} {', '.join(w.fixtures)}"
        lines.append(f"  {w.count:>5,}x {w.category}: {message} [{w.where}, {when}]")
    return lines
