"""Nightly history: one JSON line per run per fixture in ``.aitune/history/<hardware>.jsonl``, kept for drift.

A verdict compares one run with one baseline, so a slow drift never fails one; the history keeps
every night's summary so that ``aitune_ci.report.trends`` can find where a series shifted.
``pytest --aitune --aitune-update`` appends its run (the plugin's session), and so does
``aitune-ci report RUN.json --append-history``; a run already in the file (same fixture, date and
commit) is not appended twice, so the action's nightly may do both.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aitune_ci.atomic import ensure_gitignore, locked
from aitune_ci.environment import CPU_RUN_FIELDS, compared_fields, environment_differences
from aitune_ci.errors import DataFileError
from aitune_ci.formatting import strict_number
from aitune_ci.result import TuneResult
from aitune_ci.store.baseline import backend_key

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "HISTORY_COLUMNS",
    "HISTORY_SCHEMA_VERSION",
    "HistoryWarning",
    "append_history",
    "append_run_history",
    "current_commit",
    "environment_changes",
    "history_line",
    "history_path",
    "read_history",
]

HISTORY_SCHEMA_VERSION = 1

#: Columns of ``read_history``'s frame, in order (one row per line per backend).
HISTORY_COLUMNS = (
    "date",
    "commit",
    "fixture",
    "hardware_key",
    "backend",
    "module",
    "status",
    "precision",
    "median_ms",
    "ci_low_ms",
    "ci_high_ms",
    "p90_ms",
    "batch_size",
    "throughput",
    "accuracy_passed",
    "sqnr_db",
    "cosine",
    "max_abs",
    "winner",
    "environment",
)


class HistoryWarning(UserWarning):
    """A history line was skipped (corrupt, or written by a newer aitune-ci)."""


def history_path(directory: str | os.PathLike[str], hardware_key: str) -> Path:
    """``<directory>/<hardware_key>.jsonl``."""
    if not hardware_key or "/" in hardware_key or hardware_key.startswith("."):
        raise ValueError(f"hardware key {hardware_key!r} cannot name a history file")
    return Path(directory) / f"{hardware_key}.jsonl"


def current_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """This checkout's commit: ``GITHUB_SHA`` in Actions, else ``git rev-parse HEAD``, else None."""
    sha = os.environ.get("GITHUB_SHA", "").strip()
    if sha:
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _strict(x: float | None) -> float | str | None:
    """``strict_number``, and None (not measured) kept as null."""
    return None if x is None else strict_number(x)


def history_line(result: TuneResult, commit: str | None, date: str | None = None) -> dict[str, Any]:
    """The history record of one fixture's run (pure; ``append_history`` writes it)."""
    env = dict(result.environment)
    backends: dict[str, Any] = {}
    for row in result.backends:
        lat = row.latency
        worst = row.accuracy.worst if row.accuracy is not None else None
        backends[backend_key(row.backend, row.module)] = {
            "status": row.status,
            "precision": row.precision,
            "median_ms": _strict(lat.median_ms) if lat else None,
            "ci_low_ms": _strict(lat.ci_low_ms) if lat else None,
            "ci_high_ms": _strict(lat.ci_high_ms) if lat else None,
            "p90_ms": _strict(lat.p90_ms) if lat else None,
            "batch_size": lat.batch_size if lat else None,
            "throughput": _strict(lat.throughput) if lat else None,
            "accuracy_passed": row.accuracy.passed if row.accuracy is not None else None,
            "sqnr_db": _strict(worst.sqnr_db) if worst else None,
            "cosine": _strict(worst.cosine) if worst else None,
            "max_abs": _strict(worst.max_abs) if worst else None,
        }
    return {
        "schema_version": HISTORY_SCHEMA_VERSION,
        "date": date or result.created_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "commit": commit,
        "fixture": result.name,
        "hardware_key": env.get("hardware_key"),
        "environment": {k: v for k, v in sorted(env.items()) if v is not None},
        "winner": result.winner,
        "backends": dict(sorted(backends.items())),
    }


def append_history(
    directory: str | os.PathLike[str],
    result: TuneResult,
    commit: str | None = None,
    *,
    date: str | None = None,
) -> Path:
    """Append ``result``'s line to ``<directory>/<hardware_key>.jsonl`` and return that path.

    The append holds the file's lock (parallel jobs never interleave lines) and is fsync'ed; a
    previous writer that died mid-line leaves a corrupt line that ``read_history`` skips, never one
    glued to ours. A line of the same run (fixture, date and commit) already in the file is kept and
    nothing is appended: the plugin's ``--aitune-update`` and ``aitune-ci report --append-history``
    may both see one run.

    Args:
        commit: the commit measured; None looks it up (``current_commit``).
        date: ISO-8601 time of the run; defaults to the result's ``created_at``, else now.
    """
    return _append(directory, result, commit, date)[0]


def _append(
    directory: str | os.PathLike[str], result: TuneResult, commit: str | None, date: str | None
) -> tuple[Path, bool]:
    """``append_history``, and whether a line was appended (False: the file held this run already)."""
    hardware = result.environment.get("hardware_key")
    if not isinstance(hardware, str) or not hardware:
        raise ValueError(f"result {result.name!r} has no environment['hardware_key']; cannot place its history")
    path = history_path(directory, hardware)
    record = history_line(result, commit if commit is not None else current_commit(), date)
    data = (json.dumps(record, sort_keys=True, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_gitignore(path.parent)  # its .jsonl.lock must not be committed (as the baselines' locks)
    with locked(path):
        with open(path, "ab+") as f:
            f.seek(0)
            if any(_same_run(line, record) for line in f):
                return path, False
            f.seek(0, os.SEEK_END)
            if f.tell() > 0:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data  # the last writer died mid-line: keep its fragment on its own line
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return path, True


def _same_run(line: bytes, record: Mapping[str, Any]) -> bool:
    """Whether a stored line records the same run of the same fixture as ``record`` (corrupt lines do not)."""
    try:
        stored = json.loads(line)
    except ValueError:
        return False
    return isinstance(stored, dict) and all(stored.get(k) == record[k] for k in ("fixture", "date", "commit"))


def append_run_history(
    directory: str | os.PathLike[str], run: Mapping[str, Any], commit: str | None = None
) -> dict[Path, int]:
    """``append_history`` for every result of a run JSON; the lines appended to each file (0: it held them)."""
    commit = commit if commit is not None else current_commit()
    appended: dict[Path, int] = {}
    for data in run.get("results", ()):
        path, added = _append(directory, TuneResult.from_json(data, source="run JSON"), commit, None)
        appended[path] = appended.get(path, 0) + added
    return appended


def _number(x: Any) -> float:
    if x is None:
        return math.nan
    if isinstance(x, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(x, math.nan)
    if isinstance(x, bool):
        raise TypeError("a boolean where a number belongs")
    return float(x)


def _rows_of(record: Any) -> list[dict[str, Any]]:
    """The frame rows of one history line; raises ValueError/TypeError/KeyError when malformed."""
    if not isinstance(record, dict):
        raise TypeError(f"expected a JSON object, found {type(record).__name__}")
    backends = record["backends"]
    if not isinstance(backends, dict) or not isinstance(record["fixture"], str):
        raise TypeError("'backends' must be an object and 'fixture' a string")
    date = datetime.fromisoformat(str(record["date"]).replace("Z", "+00:00"))
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    rows = []
    environment = _environment_key(record.get("environment"))
    for key, b in backends.items():
        module, _, backend = key.rpartition("/")
        rows.append(
            {
                "date": date,
                "commit": record.get("commit"),
                "fixture": record["fixture"],
                "hardware_key": record.get("hardware_key"),
                "backend": backend,
                "module": module,
                "status": b["status"],
                "precision": b.get("precision"),
                "median_ms": _number(b.get("median_ms")),
                "ci_low_ms": _number(b.get("ci_low_ms")),
                "ci_high_ms": _number(b.get("ci_high_ms")),
                "p90_ms": _number(b.get("p90_ms")),
                "batch_size": b.get("batch_size"),
                "throughput": _number(b.get("throughput")),
                "accuracy_passed": b.get("accuracy_passed"),
                "sqnr_db": _number(b.get("sqnr_db")),
                "cosine": _number(b.get("cosine")),
                "max_abs": _number(b.get("max_abs")),
                "winner": record.get("winner") == backend and not module,
                "environment": environment,
            }
        )
    return rows


def _environment_key(env: Any) -> str | None:
    """The environment fields a shift can be put down to, as sorted JSON (a flat frame holds strings)."""
    if not isinstance(env, dict):
        return None
    fields = ("device_type", *compared_fields(env), *CPU_RUN_FIELDS)
    return json.dumps({k: env[k] for k in fields if k in env}, sort_keys=True)


def environment_changes(before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """What changed between two rows' ``environment`` column: ``{field: (before, after)}``.

    Only fields both lines record count (a field an older or newer aitune-ci did not write is
    unknown, not changed); ``{}`` when either side is unknown (no environment, or NaN from a CSV).
    """
    if not isinstance(before, str) or not isinstance(after, str) or not before or not after:
        return {}
    old, new = json.loads(before), json.loads(after)
    return {k: v for k, v in environment_differences(old, new).items() if k in old and k in new}


def read_history(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a history file into a long frame: one row per line per backend (``HISTORY_COLUMNS``), sorted by date.

    A corrupt line (a crashed writer, a bad merge) or one from a newer aitune-ci is skipped with a
    ``HistoryWarning`` naming the file and line; the other nights still count.

    Raises:
        DataFileError: the file does not exist or cannot be read.
    """
    import pandas as pd

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataFileError(
            path,
            f"cannot read the history file ({exc.strerror or exc})",
            "check the path; nightly runs create it with `aitune-ci report RUN.json --append-history .aitune/history`",
        ) from None
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            version = record.get("schema_version") if isinstance(record, dict) else None
            if version != HISTORY_SCHEMA_VERSION:
                if isinstance(version, int) and version > HISTORY_SCHEMA_VERSION:
                    warnings.warn(
                        f"{path}:{lineno}: skipped a history line of schema_version {version}, written by a newer "
                        f"aitune-ci (this one reads {HISTORY_SCHEMA_VERSION}); upgrade aitune-ci to use it",
                        HistoryWarning,
                        stacklevel=2,
                    )
                    continue
                raise ValueError(f"unknown schema_version {version!r}")
            rows.extend(_rows_of(record))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"{path}:{lineno}: skipped a corrupt history line ({problem[:200]}); the other lines are used. "
                "Delete or fix that line to silence this warning.",
                HistoryWarning,
                stacklevel=2,
            )
    frame = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    frame["date"] = pd.to_datetime(frame["date"], utc=True)
    for col in ("median_ms", "ci_low_ms", "ci_high_ms", "p90_ms", "throughput", "sqnr_db", "cosine", "max_abs"):
        frame[col] = frame[col].astype(float)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    return frame.sort_values(["date", "fixture", "module", "backend"], kind="stable").reset_index(drop=True)
