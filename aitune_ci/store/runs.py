"""Run JSON files: load one with clear errors, and merge the shards of a CI matrix into one run.

``--aitune-shard i/n`` splits fixtures between jobs; each job writes its own run JSON
(``--aitune-report run.json``). ``merge_runs`` joins them so one report, one PR comment and one
benchmark export cover the whole matrix.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aitune_ci.caught_warnings import merge_warnings, warnings_from_json
from aitune_ci.errors import AituneCIError, DataFileError
from aitune_ci.result import TuneResult
from aitune_ci.verdict import Verdict

__all__ = ["MergeConflict", "MissingShards", "RUN_SCHEMA_VERSION", "load_run", "merge_runs"]

#: Version of the run JSON that the plugin writes and ``load_run`` reads (its one definition).
RUN_SCHEMA_VERSION = 1

_FIX = "re-create it with `pytest --aitune --aitune-report run.json` (or `aitune-ci merge` for merged shards)"


class MergeConflict(AituneCIError, ValueError):
    """Two runs hold different results for the same (fixture, backend): they cannot be merged."""


class MissingShards(MergeConflict):
    """The runs are shards of one split (``--aitune-shard i/n``), and some of its shards are not among them."""


def _shard_of(run: Mapping[str, Any], source: object) -> tuple[int, int] | None:
    """``(i, n)`` of a run written by ``--aitune-shard i/n``; None for a whole run (or one written before runs said)."""
    shard = run.get("shard")
    if shard is None:
        return None
    index, count = (shard.get(k) if isinstance(shard, dict) else None for k in ("index", "count"))
    if not (isinstance(index, int) and isinstance(count, int) and 1 <= index <= count):
        raise DataFileError(
            source, f"'shard' must be {{'index': i, 'count': n}} with 1 <= i <= n, found {shard!r}", _FIX
        )
    return index, count


def _check_shards(runs: Sequence[Mapping[str, Any]], names: Sequence[object], allow_missing: bool) -> list[int]:
    """The shard indexes of a split that no run covers (empty when none is missing or no run is a shard).

    Raises:
        MergeConflict: shards of different splits (1/2 and 1/3).
        MissingShards: a shard of the split is missing, unless ``allow_missing``.
    """
    found = [(str(name), shard) for run, name in zip(runs, names, strict=True) if (shard := _shard_of(run, name))]
    shards = dict(found)  # one entry per file: the same file passed twice counts once
    if not shards:
        return []
    counts = {count for _, count in shards.values()}
    if len(counts) > 1:
        seen = ", ".join(f"{i}/{n} ({name})" for name, (i, n) in shards.items())
        raise MergeConflict(f"the runs are shards of different splits: {seen}. Merge the shards of one CI run")
    count = counts.pop()
    missing = sorted(set(range(1, count + 1)) - {i for i, _ in shards.values()})
    if missing and not allow_missing:
        by_index: dict[int, list[str]] = {}
        for name, (index, _) in found:
            by_index.setdefault(index, []).append(name)
        twice = [
            f"{i}/{count} is in both {' and '.join(files)}" for i, files in sorted(by_index.items()) if len(files) > 1
        ]
        raise MissingShards(
            f"shard{'s' if len(missing) > 1 else ''} {', '.join(f'{i}/{count}' for i in missing)} "
            f"{'are' if len(missing) > 1 else 'is'} missing"
            + (f" (and shard {'; '.join(twice)}: a file passed twice?)" if twice else "")
            + ": merged, the run would pass the checks of those shards unseen. Pass one run file per shard "
            "(each --aitune-shard i/n writes its own), or --allow-missing-shards to merge what there is"
        )
    return missing


def _check_run(data: Any, source: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise DataFileError(source, f"expected a JSON object, found {type(data).__name__}", _FIX)
    if "benchmarks" in data and "machine_info" in data:
        raise DataFileError(
            source, "this is a pytest-benchmark export, not an aitune-ci run", "pass the run JSON it was made from"
        )
    if "results" not in data and "backends" in data and "name" in data:
        # A single TuneResult (what `aitune-ci demo` writes): a run of one fixture with no verdicts.
        TuneResult.from_json(data, source)
        return {"schema_version": RUN_SCHEMA_VERSION, "started": None, "results": [data], "verdicts": []}
    version = data.get("schema_version")
    if version is None and "results" not in data:
        keys = ", ".join(sorted(map(str, data))[:8]) or "none"
        raise DataFileError(source, f"not an aitune-ci run file: no 'schema_version' or 'results' (keys: {keys})", _FIX)
    if version != RUN_SCHEMA_VERSION:
        newer = isinstance(version, int) and version > RUN_SCHEMA_VERSION
        problem = f"unknown run schema_version {version!r} (this aitune-ci reads {RUN_SCHEMA_VERSION})"
        raise DataFileError(source, problem, "upgrade aitune-ci" if newer else _FIX)
    results, verdicts = data.get("results"), data.get("verdicts", [])
    if not isinstance(results, list) or not isinstance(verdicts, list):
        raise DataFileError(source, "'results' and 'verdicts' must be lists", _FIX)
    for r in results:
        TuneResult.from_json(r, source)
    for v in verdicts:
        Verdict.from_json(v, source)
    broken = data.get("broken", [])  # optional: fixtures that failed before any verdict
    if not isinstance(broken, list) or not all(
        isinstance(b, dict) and isinstance(b.get("fixture"), str) and isinstance(b.get("error"), str) for b in broken
    ):
        raise DataFileError(source, "'broken' must be a list of {'fixture': ..., 'error': ...}", _FIX)
    for key in ("winner_changes", "missing_artifacts"):  # optional: {fixture: text}
        notes = data.get(key, {})
        if not isinstance(notes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in notes.items()):
            raise DataFileError(source, f"'{key}' must map fixture names to text", _FIX)
    try:
        warnings_from_json(data.get("warnings"))  # optional: runs written before warnings were kept have none
    except ValueError as exc:
        raise DataFileError(source, str(exc), _FIX) from None
    return data


def load_run(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a run JSON (or a single tune result, read as a run of one fixture).

    Raises:
        DataFileError: the file is missing, not JSON, of an unknown ``schema_version``, or holds a
            malformed result or verdict; the message names the file and how to regenerate it.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFileError(path, f"cannot read it ({exc.strerror or exc})", _FIX) from None
    if raw.startswith(b"PK\x03\x04"):
        raise DataFileError(
            path, "a zip archive, not a run JSON: a .ait artifact is read with `aitune-ci inspect`", _FIX
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, f"not a text file ({exc.reason} at byte {exc.start})", _FIX) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        if _is_history_line(text.split("\n", 1)[0]):
            raise DataFileError(
                path,
                "a history file (.aitune/history/<hardware>.jsonl: one line per tuned fixture), not a run JSON",
                _FIX,
            ) from None
        raise DataFileError(path, f"not valid JSON ({exc})", _FIX) from None
    if (
        isinstance(data, dict)
        and "results" not in data
        and isinstance(data.get("fixture"), str)
        and isinstance(data.get("backends"), dict)
    ):
        raise DataFileError(
            path, "not an aitune-ci run file: it looks like a committed baseline (.aitune/baselines/...)", _FIX
        )
    return _check_run(data, path)


def _is_history_line(line: str) -> bool:
    try:
        data = json.loads(line)
    except ValueError:
        return False
    return isinstance(data, dict) and {"fixture", "date", "commit"} <= set(data)


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, default=str)


def _backend_rows(result: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {(b.get("module", ""), b["backend"]): b for b in result.get("backends", ())}


def merge_runs(
    runs: Sequence[Mapping[str, Any]], sources: Sequence[object] | None = None, *, allow_missing_shards: bool = False
) -> dict[str, Any]:
    """Merge run JSONs (the shards of one CI run) into one run JSON.

    Results and verdicts are keyed by fixture and by (fixture, backend). An exact duplicate (the
    same shard passed twice, or a fixture re-run identically) is kept once. The same fixture from
    two runs is merged when its backend rows do not disagree (e.g. a fixture tuned per backend
    subset); ``winner`` must then agree too. ``started`` is the earliest start. Warnings caught while
    tuning merge as ``caught_warnings.merge_warnings`` says.

    Args:
        runs: run JSON objects (as ``load_run`` returns them).
        sources: names for the error messages (file paths), one per run.
        allow_missing_shards: merge the shards of a split (``--aitune-shard i/n``) with some of them
            missing; the merged run lists them under ``missing_shards``.

    Raises:
        MergeConflict: the same (fixture, backend) holds different results or verdicts in two runs
            (the message names the check and both sources), or the runs are shards of different splits.
        MissingShards: a shard of the runs' split is not among them (unless ``allow_missing_shards``).
        DataFileError: a run is malformed (see ``load_run``).
    """
    names = list(sources) if sources is not None else [f"run {i + 1}" for i in range(len(runs))]
    if len(names) != len(runs):
        raise ValueError(f"got {len(runs)} runs but {len(names)} sources")
    checked = [_check_run(dict(run), name) for run, name in zip(runs, names, strict=True)]
    missing = _check_shards(checked, names, allow_missing_shards)

    results: dict[str, dict[str, Any]] = {}
    result_source: dict[str, object] = {}
    verdicts: dict[tuple[str, str], Mapping[str, Any]] = {}
    verdict_source: dict[tuple[str, str], object] = {}
    hint = (
        "Each shard must run different fixtures (--aitune-shard i/n) and each file be passed once; "
        "re-run the conflicting shard or pass only the newer file."
    )
    for run, name in zip(checked, names, strict=True):
        for r in run["results"]:
            fixture = r["name"]
            if fixture not in results:
                results[fixture], result_source[fixture] = dict(r), name
                continue
            mine = results[fixture]
            if _canonical(mine) == _canonical(r):
                continue
            rows, new_rows = _backend_rows(mine), _backend_rows(r)
            for key in sorted(set(rows) & set(new_rows)):
                if _canonical(rows[key]) != _canonical(new_rows[key]):
                    check = f"{fixture}[{key[1]}]" + (f" (module {key[0]})" if key[0] else "")
                    raise MergeConflict(f"{check} has different results in {result_source[fixture]} and {name}. {hint}")
            if mine.get("winner") != r.get("winner"):
                raise MergeConflict(
                    f"{fixture}: the winner is {mine.get('winner')!r} in {result_source[fixture]} but "
                    f"{r.get('winner')!r} in {name}. {hint}"
                )
            mine["backends"] = list(mine["backends"]) + [b for k, b in new_rows.items() if k not in rows]
        for v in run.get("verdicts", ()):
            key = (v["fixture"], v["backend"])
            if key in verdicts:
                if _canonical(verdicts[key]) != _canonical(v):
                    raise MergeConflict(
                        f"{key[0]}[{key[1]}] has different verdicts in {verdict_source[key]} and {name}. {hint}"
                    )
                continue
            verdicts[key], verdict_source[key] = v, name

    starts = [r.get("started") for r in checked if isinstance(r.get("started"), (int, float))]
    distinct = {_canonical(run): run for run in checked}.values()  # one file passed twice counts once
    caught = merge_warnings([warnings_from_json(run.get("warnings")) for run in distinct])
    merged = {
        "schema_version": RUN_SCHEMA_VERSION,
        "started": min(starts) if starts else None,
        "results": list(results.values()),
        "verdicts": list(verdicts.values()),
        "warnings": [w.to_json() for w in caught],
        "merged_from": len(checked),
    }
    broken = {b["fixture"]: b for run in checked for b in run.get("broken", ())}
    if broken:
        merged["broken"] = list(broken.values())
    for key in ("winner_changes", "missing_artifacts"):
        notes = {k: v for run in checked for k, v in run.get(key, {}).items()}
        if notes:
            merged[key] = dict(sorted(notes.items()))
    if missing:
        merged["missing_shards"] = missing
    return merged
